// The scheduler's working copy of the cluster for one schedule() call: every node's free
// resources (node-state.ts), each tenant's usage, and an undo journal. It starts from the
// snapshot's index (cluster-index.ts: allocations summed per node once) and then changes in
// place as the plan grows. Every change pushes its inverse onto the journal, so a gang that
// cannot be placed whole is given back exactly, and nothing is copied per ask.
import { ClusterIndex } from './cluster-index.js';
import { NodeState, type HeldAllocation, type Holding } from './node-state.js';
import type { ReplicaCounts } from './replica-counts.js';
import type { Snapshot, TenantQuota } from './types.js';

/** A tenant's consumption in the units of TenantQuota. */
export interface Usage {
  cpuMillis: number;
  memoryBytes: number;
  gpus: number;
  gpuMemoryBytes: number;
}

export class ClusterState {
  readonly nodes: NodeState[];
  readonly portRange: readonly [number, number];
  readonly portCount: number;
  readonly quotas: ReadonlyMap<string, TenantQuota>;
  private readonly usage = new Map<string, Usage>();
  private readonly undo: Array<() => void> = [];
  private readonly baseReplicas: ReplicaCounts;
  /** Workloads this call placed or evicted replicas of: copies of the index's counts, changed. */
  private readonly replicas = new Map<string, Map<number, number>>();

  constructor(snapshot: Snapshot) {
    this.portRange = snapshot.portRange;
    this.portCount = Math.max(0, snapshot.portRange[1] - snapshot.portRange[0] + 1);
    this.quotas = snapshot.quotas;
    const index = ClusterIndex.of(snapshot);
    this.nodes = index.loads.map((load, i) => new NodeState(load, i));
    for (const [tenant, u] of index.usage) this.usage.set(tenant, { ...u });
    this.baseReplicas = index.replicas;
  }

  /** Node position → replicas of `workload` there (this plan's placements included, evictions not). */
  replicasOf(workload: string): ReadonlyMap<number, number> | undefined {
    return this.replicas.get(workload) ?? this.baseReplicas.get(workload);
  }

  private countReplica(workload: string, node: number, delta: number): void {
    let counts = this.replicas.get(workload);
    if (counts === undefined) {
      counts = new Map(this.baseReplicas.get(workload));
      this.replicas.set(workload, counts);
    }
    counts.set(node, (counts.get(node) ?? 0) + delta);
  }

  /** Tracked for tenants with a quota; zero for the others. */
  usageOf(tenant: string): Readonly<Usage> {
    return this.usage.get(tenant) ?? { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0 };
  }

  /** A point in the journal that rollback() returns to. */
  mark(): number {
    return this.undo.length;
  }

  /** Undoes every change made since `mark`, newest first. */
  rollback(mark: number): void {
    while (this.undo.length > mark) this.undo.pop()!();
  }

  /** Forgets the journal: what is done so far stays. */
  commit(): void {
    this.undo.length = 0;
  }

  /** Takes `h` on `ns` for a new placement of `tenant`'s `workload` (one of the asks'). */
  place(ns: NodeState, h: Holding, tenant: string, workload: string, gpus: number, gpuMemoryBytes: number): void {
    ns.hold(h, 1, true, this.portRange);
    this.countReplica(workload, ns.index, 1);
    this.addUsage(tenant, h.cpuMillis, h.memoryBytes, gpus, gpuMemoryBytes, 1);
    this.undo.push(() => {
      ns.hold(h, -1, true, this.portRange);
      this.countReplica(workload, ns.index, -1);
      this.addUsage(tenant, h.cpuMillis, h.memoryBytes, gpus, gpuMemoryBytes, -1);
    });
  }

  /**
   * Marks an allocation as stopped by this plan: it no longer counts for its tenant's usage or
   * its workload's spread, but its resources stay held (preemption.ts says why).
   */
  evict(ns: NodeState, held: HeldAllocation): void {
    const r = held.alloc.resources;
    const gpus = held.shareBytes > 0 ? 0 : r.gpus;
    held.evicted = true;
    this.countReplica(held.alloc.workload, ns.index, -1);
    this.addUsage(held.alloc.tenant, r.cpuMillis, r.memoryBytes, gpus, held.gpuMemoryBytes, -1);
    this.undo.push(() => {
      held.evicted = false;
      this.countReplica(held.alloc.workload, ns.index, 1);
      this.addUsage(held.alloc.tenant, r.cpuMillis, r.memoryBytes, gpus, held.gpuMemoryBytes, 1);
    });
  }

  private addUsage(tenant: string, cpuMillis: number, memoryBytes: number, gpus: number, gpuMemoryBytes: number, sign: 1 | -1): void {
    if (!this.quotas.has(tenant)) return;
    let u = this.usage.get(tenant);
    if (u === undefined) {
      u = { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0 };
      this.usage.set(tenant, u);
    }
    u.cpuMillis += sign * cpuMillis;
    u.memoryBytes += sign * memoryBytes;
    u.gpus += sign * gpus;
    u.gpuMemoryBytes += sign * gpuMemoryBytes;
  }
}
