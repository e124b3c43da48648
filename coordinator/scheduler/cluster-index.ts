// A snapshot's allocations summed up per node (NodeLoad), per workload (replicas on each node)
// and per tenant with a quota: what every schedule() call on that snapshot starts from.
// Building it is one pass over the allocations — at 100,000 allocations the largest fixed cost
// of a call — so it is kept for each snapshot object (a WeakMap: it goes when the snapshot
// goes), and the snapshot that applyPlan() returns gets its index derived from its parent's,
// touching only the nodes and workloads the plan changed. Snapshots are values: nothing here
// is visible to callers except speed.
import type { Usage } from './cluster-state.js';
import { NodeLoad } from './node-load.js';
import { ReplicaCounts } from './replica-counts.js';
import type { SchedAllocation, Snapshot } from './types.js';

const indexes = new WeakMap<Snapshot, ClusterIndex>();

/** Whether `index` was made from what `snapshot` holds now: one changed in place since is indexed afresh. */
function sameInputs(index: ClusterIndex, snapshot: Snapshot): boolean {
  const from = index.source;
  return (
    from.allocations === snapshot.allocations &&
    index.allocationCount === snapshot.allocations.length &&
    from.nodes === snapshot.nodes &&
    index.loads.length === snapshot.nodes.length &&
    from.portRange === snapshot.portRange &&
    from.quotas === snapshot.quotas
  );
}

export class ClusterIndex {
  readonly allocationCount: number;

  private constructor(
    /** The parts of the snapshot it was made from, as they were then. */
    readonly source: Readonly<Snapshot>,
    readonly loads: readonly NodeLoad[],
    private readonly byName: ReadonlyMap<string, number>,
    /** Usage of the tenants with a quota (nothing reads the others'). */
    readonly usage: ReadonlyMap<string, Readonly<Usage>>,
    readonly replicas: ReplicaCounts,
  ) {
    this.allocationCount = source.allocations.length;
  }

  /** The index of `snapshot`: remembered, derived by applyPlan, or built now. */
  static of(snapshot: Snapshot): ClusterIndex {
    let index = indexes.get(snapshot);
    if (index === undefined || !sameInputs(index, snapshot)) {
      index = ClusterIndex.build(snapshot);
      indexes.set(snapshot, index);
    }
    return index;
  }

  private static build(snapshot: Snapshot): ClusterIndex {
    const loads = snapshot.nodes.map((node) => NodeLoad.empty(node));
    const byName = new Map(snapshot.nodes.map((node, i) => [node.name, i]));
    const usage = new Map<string, Usage>();
    const replicas = ReplicaCounts.empty();
    for (const alloc of snapshot.allocations) add(loads, byName, usage, replicas, snapshot, alloc, 1);
    return new ClusterIndex({ ...snapshot }, loads, byName, usage, replicas);
  }

  /**
   * Records the index of `next`: `parent`'s snapshot with `removed` allocations taken out and
   * `added` ones put in. Does nothing unless the parent's index is already known.
   */
  static derive(parent: Snapshot, next: Snapshot, removed: readonly SchedAllocation[], added: readonly SchedAllocation[]): void {
    const index = indexes.get(parent);
    if (index === undefined || !sameInputs(index, parent)) return;
    if (next.nodes !== parent.nodes || next.portRange !== parent.portRange || next.quotas !== parent.quotas) return;
    const loads = index.loads.slice();
    const copied = new Set<number>();
    const usage = new Map<string, Usage>();
    for (const [tenant, u] of index.usage) usage.set(tenant, { ...u });
    const replicas = index.replicas.child();
    const change = (alloc: SchedAllocation, sign: 1 | -1) => {
      const i = index.byName.get(alloc.node);
      if (i !== undefined && !copied.has(i)) {
        loads[i] = loads[i]!.copy();
        copied.add(i);
      }
      add(loads, index.byName, usage, replicas, next, alloc, sign);
    };
    for (const alloc of removed) change(alloc, -1);
    for (const alloc of added) change(alloc, 1);
    indexes.set(next, new ClusterIndex({ ...next }, loads, index.byName, usage, replicas));
  }
}

function add(
  loads: NodeLoad[],
  byName: ReadonlyMap<string, number>,
  usage: Map<string, Usage>,
  replicas: ReplicaCounts,
  snapshot: Snapshot,
  alloc: SchedAllocation,
  sign: 1 | -1,
): void {
  const i = byName.get(alloc.node);
  const r = alloc.resources;
  const share = r.gpus === 0 && r.gpuMemoryBytes > 0;
  // On a node that has left the snapshot it holds nothing, but still counts for its tenant.
  const gpuMemoryBytes = i === undefined ? (share ? r.gpuMemoryBytes : r.gpus * r.gpuMemoryBytes) : loads[i]!.add(alloc, sign, snapshot.portRange);
  if (i !== undefined) replicas.add(alloc.workload, i, sign);
  if (!snapshot.quotas.has(alloc.tenant)) return;
  let u = usage.get(alloc.tenant);
  if (u === undefined) {
    u = { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0 };
    usage.set(alloc.tenant, u);
  }
  u.cpuMillis += sign * r.cpuMillis;
  u.memoryBytes += sign * r.memoryBytes;
  u.gpus += sign * (share ? 0 : r.gpus);
  u.gpuMemoryBytes += sign * gpuMemoryBytes;
}
