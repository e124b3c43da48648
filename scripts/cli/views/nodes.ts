// The node as mlfleetctl shows it: the stable -o json shape (DESIGN "Interfaces users
// touch") and the table and detail renderings. Only the fields listed in DESIGN.md go into
// the JSON shape, so adding a proto field never changes what scripts parse.
import type { Node } from '../../../shared/proto.js';
import { formatBytes, formatCpuMillis } from '../../../shared/units.js';
import { ago, formatLabels, indent, isoOrNull, keyValues, sortedRecord, table, type KeyValue, type Printable } from '../output.js';

export interface NodeJson {
  name: string;
  status: string;
  cordoned: boolean;
  address: string;
  labels: Record<string, string>;
  capacity: {
    cpuMillis: number;
    memoryBytes: number;
    gpus: { index: number; uuid: string; model: string; memoryBytes: number }[];
    nics: { name: string; speedMbps: number }[];
  };
  allocated: {
    cpuMillis: number;
    memoryBytes: number;
    gpus: number;
    gpuMemoryBytes: number;
    nicMbps: number;
  };
  /** ISO-8601; null when this leader has not heard from the agent. */
  lastHeartbeat: string | null;
}

export function nodeJson(node: Node): NodeJson {
  const capacity = node.capacity;
  const allocated = node.allocated;
  return {
    name: node.name,
    status: node.status,
    cordoned: node.cordoned,
    address: node.address,
    labels: sortedRecord(node.labels ?? {}),
    capacity: {
      cpuMillis: capacity?.cpuMillis ?? 0,
      memoryBytes: capacity?.memoryBytes ?? 0,
      gpus: (capacity?.gpus ?? []).map((g) => ({ index: g.index, uuid: g.uuid, model: g.model, memoryBytes: g.memoryBytes })),
      nics: (capacity?.nics ?? []).map((n) => ({ name: n.name, speedMbps: n.speedMbps })),
    },
    allocated: {
      cpuMillis: allocated?.cpuMillis ?? 0,
      memoryBytes: allocated?.memoryBytes ?? 0,
      gpus: allocated?.gpus ?? 0,
      gpuMemoryBytes: allocated?.gpuMemoryBytes ?? 0,
      nicMbps: allocated?.nicMbps ?? 0,
    },
    lastHeartbeat: isoOrNull(node.lastHeartbeatMs),
  };
}

/** `nodes ls`: a JSON array, or one row per node. */
export function nodeListView(nodes: readonly Node[], now = Date.now()): Printable {
  return {
    data: nodes.map(nodeJson),
    table: () =>
      table(
        ['NAME', 'STATUS', 'CORDONED', 'CPU', 'MEMORY', 'GPUS', 'ADDRESS', 'HEARTBEAT'],
        nodes.map((node) => {
          const n = nodeJson(node);
          return [
            n.name,
            n.status,
            n.cordoned ? 'yes' : 'no',
            `${formatCpuMillis(n.allocated.cpuMillis)}/${formatCpuMillis(n.capacity.cpuMillis)}`,
            `${formatBytes(n.allocated.memoryBytes)}/${formatBytes(n.capacity.memoryBytes)}`,
            `${n.allocated.gpus}/${n.capacity.gpus.length}`,
            n.address || '-',
            ago(node.lastHeartbeatMs, now),
          ];
        }),
      ),
  };
}

/** `nodes show -o json`: the node, and what its agent's cache holds (too long for `nodes ls`). */
export interface NodeDetailJson extends NodeJson {
  cache: { digest: string; sizeBytes: number; inUse: boolean }[];
  /** What the agent's blob deliveries moved since it started; null before it reported any. */
  delivery: { fromPeersBytes: number; fromCoordinatorBytes: number; fromS3Bytes: number; toPeersBytes: number; corruptPieces: number } | null;
}

export function nodeDetailJson(node: Node): NodeDetailJson {
  const cache = (node.cache ?? [])
    .map((entry) => ({ digest: entry.digest, sizeBytes: Number(entry.sizeBytes), inUse: entry.inUse }))
    .sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
  const d = node.delivery;
  const delivery = d
    ? { fromPeersBytes: Number(d.fromPeersBytes), fromCoordinatorBytes: Number(d.fromCoordinatorBytes), fromS3Bytes: Number(d.fromS3Bytes), toPeersBytes: Number(d.toPeersBytes), corruptPieces: Number(d.corruptPieces) }
    : null;
  return { ...nodeJson(node), cache, delivery };
}

/** `nodes show`: the node object, or a key: value block with GPU, NIC and cache lists. */
export function nodeDetailView(node: Node, now = Date.now()): Printable {
  const n = nodeDetailJson(node);
  return {
    data: n,
    table: () => {
      const heartbeat = n.lastHeartbeat ? `${n.lastHeartbeat} (${ago(node.lastHeartbeatMs, now)})` : 'never';
      const head: KeyValue[] = [
        ['Name', n.name],
        ['Status', node.statusChangedAtMs > 0 ? `${n.status} (since ${ago(node.statusChangedAtMs, now)})` : n.status],
        ['Cordoned', n.cordoned ? 'yes' : 'no'],
        ['Address', n.address || '-'],
        ['Labels', formatLabels(n.labels)],
        ['Agent version', node.agentVersion || '-'],
        ['Registered', isoOrNull(node.registeredAtMs) ?? '-'],
        ['Last heartbeat', heartbeat],
        ['CPU', `${formatCpuMillis(n.allocated.cpuMillis)} of ${formatCpuMillis(n.capacity.cpuMillis)} allocated`],
        ['Memory', `${formatBytes(n.allocated.memoryBytes)} of ${formatBytes(n.capacity.memoryBytes)} allocated`],
        ['GPUs', `${n.allocated.gpus} of ${n.capacity.gpus.length} allocated`],
      ];
      const nicsLine: KeyValue[] = [['NICs', n.capacity.nics.length === 0 ? '<none>' : String(n.capacity.nics.length)]];
      const blocks = [keyValues(head, nicsLine)];
      if (n.capacity.gpus.length > 0) {
        blocks.push(
          indent(
            table(
              ['INDEX', 'UUID', 'MODEL', 'MEMORY'],
              n.capacity.gpus.map((g) => [String(g.index), g.uuid, g.model, formatBytes(g.memoryBytes)]),
            ),
          ),
        );
      }
      blocks.push(keyValues(nicsLine, head));
      if (n.capacity.nics.length > 0) {
        blocks.push(
          indent(
            table(
              ['NAME', 'SPEED'],
              n.capacity.nics.map((nic) => [nic.name, nic.speedMbps > 0 ? `${nic.speedMbps} Mbps` : 'unknown']),
            ),
          ),
        );
      }
      const cacheBytes = n.cache.reduce((sum, entry) => sum + entry.sizeBytes, 0);
      const cacheLine: KeyValue[] = [['Cache', n.cache.length === 0 ? '<empty>' : `${n.cache.length} blobs, ${formatBytes(cacheBytes)}`]];
      blocks.push(keyValues(cacheLine, head));
      if (n.cache.length > 0) {
        blocks.push(indent(table(['DIGEST', 'SIZE', 'IN USE'], n.cache.map((entry) => [entry.digest, formatBytes(entry.sizeBytes), entry.inUse ? 'yes' : 'no']))));
      }
      const d = n.delivery;
      const deliveryLines: KeyValue[] = d
        ? [
            ['Received', `${formatBytes(d.fromPeersBytes)} from peers, ${formatBytes(d.fromCoordinatorBytes)} from the coordinator, ${formatBytes(d.fromS3Bytes)} from S3`],
            ['Sent to peers', formatBytes(d.toPeersBytes)],
            ['Corrupt pieces', String(d.corruptPieces)],
          ]
        : [['Received', 'not reported yet']];
      blocks.push(keyValues(deliveryLines, head));
      return blocks.join('\n');
    },
  };
}

/** cordon / uncordon / drain: the node as it is now, or one line saying what happened. */
export function nodeActionView(node: Node, done: string): Printable {
  return { data: nodeJson(node), table: () => `node ${node.name} ${done}` };
}
