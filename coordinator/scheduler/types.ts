// The scheduler's inputs and outputs (DESIGN principle 3): a snapshot of the cluster and the
// work waiting to be placed go in; a plan comes out. No I/O, no clock: the same inputs always
// give the same plan, so the harness can test it on thousands of synthetic nodes.

export interface SchedGpu {
  index: number;
  model: string;
  memoryBytes: number;
}

export interface SchedNode {
  name: string;
  /** Ready and not draining; anything else takes no new work. */
  ready: boolean;
  cordoned: boolean;
  labels: Record<string, string>;
  cpuMillis: number;
  memoryBytes: number;
  gpus: SchedGpu[];
  /** Total NIC bandwidth; 0 when unknown (then bandwidth requests are not checked). */
  nicMbps: number;
  /** Digests the node's model cache holds. */
  cached: ReadonlySet<string>;
}

export interface ResourceAsk {
  cpuMillis: number;
  memoryBytes: number;
  /** Whole devices, never shared. */
  gpus: number;
  /** With gpus > 0: least memory per device. With gpus = 0 and > 0: a share of one device's memory. */
  gpuMemoryBytes: number;
  /** The device model must contain this, case-insensitively ('' : any). */
  gpuModel: string;
  nicMbps: number;
}

/** Something already placed: it holds resources on its node. */
export interface SchedAllocation {
  id: string;
  node: string;
  tenant: string;
  /** "deployment/TENANT/NAME" or "job/TENANT/NAME": replicas of one workload spread apart. */
  workload: string;
  priority: number;
  resources: ResourceAsk;
  /** Whole devices held, or (for a GPU-memory share) the one device shared. */
  gpuIndexes: number[];
  hostPort: number;
}

/** One replica or worker waiting for a place. */
export interface Ask {
  /** Unique in one schedule() call. */
  id: string;
  workload: string;
  tenant: string;
  priority: number;
  resources: ResourceAsk;
  /** Node labels that must match exactly. */
  constraints: Record<string, string>;
  /** At most this many allocations of `workload` on one node (0: no limit). */
  maxPerNode: number;
  /** Prefer nodes whose cache holds this digest ('' : none). */
  modelDigest: string;
  /** Needs a host port (servers). */
  needsPort: boolean;
  /**
   * Gang: every ask with the same group is placed, or none is (and none holds anything).
   * '' : placed on its own.
   */
  group: string;
  /** May evict lower-priority allocations when nothing else fits (README, "Priorities and preemption"). */
  preempt: boolean;
}

/** A tenant's compute limits; 0 means no limit (and then no guarantee either). */
export interface TenantQuota {
  cpuMillis: number;
  memoryBytes: number;
  gpus: number;
  gpuMemoryBytes: number;
}

/**
 * A value: schedule() never changes it, and remembers what it works out from each snapshot
 * object (allocations summed per node, nodes by GPU model and cached digest) for later calls on
 * the same object and on the snapshots applyPlan() derives from it. Make a new snapshot, or
 * use applyPlan(), rather than changing one or anything in it in place.
 */
export interface Snapshot {
  nodes: SchedNode[];
  allocations: SchedAllocation[];
  /** Tenants without an entry have no limits. */
  quotas: ReadonlyMap<string, TenantQuota>;
  /** Host ports handed to servers: [first, last]. */
  portRange: [number, number];
}

export interface Placement {
  askId: string;
  node: string;
  gpuIndexes: number[];
  hostPort: number;
}

export interface Preemption {
  /** The allocation to stop. */
  allocationId: string;
  /** The ask it makes room for. */
  askId: string;
  reason: string;
}

export interface Failure {
  askId: string;
  /** A sentence a person can act on: "0/12 nodes: 9 insufficient GPU memory, 3 cordoned". */
  reason: string;
  /** The ask is over its tenant's quota (it waits for the tenant's usage to fall). */
  quota: boolean;
}

export interface Plan {
  placements: Placement[];
  preemptions: Preemption[];
  failures: Failure[];
}
