// A node as the store keeps it. Only transitions are written here (registration, ready/down,
// cordon/drain); heartbeats and usage stay in the leader's memory (DESIGN principle 5).
import type { Capacity, Node, Usage, CacheEntry, DeliveryCounters, Resources } from '../shared/proto.js';

export const NOTHING_ALLOCATED: Resources = { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, nicMbps: 0 };

export type NodeStoredStatus = 'ready' | 'down';
export type NodeStatus = 'ready' | 'down' | 'draining';

export interface NodeRecord {
  name: string;
  status: NodeStoredStatus;
  cordoned: boolean;
  draining: boolean;
  address: string;
  labels: Record<string, string>;
  capacity: Capacity;
  agentVersion: string;
  registeredAtMs: number;
  statusChangedAtMs: number;
}

/** The leader's in-memory view of one node: the stored record plus what heartbeats bring. */
export interface NodeView {
  record: NodeRecord;
  /** modRevision of the record in the store, for compare-and-swap updates. */
  modRevision: number;
  /** When this leader last heard from the agent; 0 when never. */
  lastHeartbeatMs: number;
  /** Liveness clock: the last heartbeat, or when this leader took over (one TTL of grace). */
  lastSeenMs: number;
  usage: Usage | undefined;
  cache: CacheEntry[];
  /** Hello.peer_upload_mbps: 0 (or absent) when the agent serves no pieces to peers. Memory only. */
  peerUploadMbps?: number;
  /** Where the agent's blob bytes came from, as its last heartbeat said. */
  delivery?: DeliveryCounters | undefined;
}

export function displayStatus(record: NodeRecord): NodeStatus {
  if (record.status === 'down') return 'down';
  return record.draining ? 'draining' : 'ready';
}

/** The node as the API shows it; `allocated` is what placed allocations hold on it. */
export function toProtoNode(view: NodeView, allocated: Resources = NOTHING_ALLOCATED): Node {
  const { record } = view;
  return {
    name: record.name,
    status: displayStatus(record),
    cordoned: record.cordoned,
    address: record.address,
    labels: record.labels,
    capacity: record.capacity,
    allocated,
    lastHeartbeatMs: view.lastHeartbeatMs,
    agentVersion: record.agentVersion,
    registeredAtMs: record.registeredAtMs,
    statusChangedAtMs: record.statusChangedAtMs,
    usage: view.usage ?? null,
    cache: view.cache,
    delivery: view.delivery ?? null,
  };
}
