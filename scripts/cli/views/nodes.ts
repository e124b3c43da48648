// The node as mlfleetctl shows it: the stable -o json shape (DESIGN "Interfaces users
// touch") and the table and detail renderings. Only the fields listed in DESIGN.md go into
// the JSON shape, so adding a proto field never changes what scripts parse.
import type { Node } from '../../../shared/proto.js';
import { formatBytes, formatCpuMillis } from '../../../shared/units.js';
import { ago, formatLabels, indent, isoOrNull, keyValues, table, type KeyValue, type Printable } from '../output.js';
import { nodeDetailJson, nodeJson, type NodeDetailJson, type NodeJson } from '../../../shared/views/nodes.js';

export { nodeDetailJson, nodeJson, type NodeDetailJson, type NodeJson };

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
      const cacheBytes = n.cacheBytes;
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
