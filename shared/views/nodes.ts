// The -o json shape of mlfleetctl and the REST API (coordinator/rest/): one copy for both.
// Moved from scripts/cli/views/nodes.ts, which keeps the table and detail renderings.
import type { Node } from '../proto.js';
import { isoOrNull, sortedRecord } from './json.js';

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
  /** What the agent's cache holds, in short (`nodes show` lists it): how many artifacts, how many bytes. */
  cacheEntries: number;
  cacheBytes: number;
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
    cacheEntries: node.cache?.length ?? 0,
    cacheBytes: (node.cache ?? []).reduce((sum, entry) => sum + Number(entry.sizeBytes), 0),
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
