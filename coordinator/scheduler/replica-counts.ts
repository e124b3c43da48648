// Replicas of each workload on each node, for a line of snapshots that applyPlan() derives one
// from another. Each snapshot's counts are a layer that holds only the workloads its plan
// changed, over its parent's layer; every 16 layers the line is flattened into one map. A
// look-up walks at most 16 maps, and a new snapshot costs what its plan changed rather than a
// copy of every workload in the cluster.
const MAX_DEPTH = 16;

export class ReplicaCounts {
  private constructor(
    /** Workload → node position → replicas; an empty map marks a workload gone from every node. */
    private readonly own: Map<string, Map<number, number>>,
    private readonly parent: ReplicaCounts | undefined,
    private readonly depth: number,
  ) {}

  static empty(): ReplicaCounts {
    return new ReplicaCounts(new Map(), undefined, 0);
  }

  /** Node position → replicas of `workload` there; undefined (or empty) when it runs nowhere. */
  get(workload: string): ReadonlyMap<number, number> | undefined {
    for (let layer: ReplicaCounts | undefined = this; layer !== undefined; layer = layer.parent) {
      const counts = layer.own.get(workload);
      if (counts !== undefined) return counts;
    }
    return undefined;
  }

  /** A new layer over this one, to record a derived snapshot's changes in with add(). */
  child(): ReplicaCounts {
    const parent = this.depth >= MAX_DEPTH ? this.flattened() : this;
    return new ReplicaCounts(new Map(), parent, parent.depth + 1);
  }

  /** Changes this layer; only while it is being built, before anyone reads it. */
  add(workload: string, node: number, delta: number): void {
    let counts = this.own.get(workload);
    if (counts === undefined) {
      counts = new Map(this.parent?.get(workload));
      this.own.set(workload, counts);
    }
    const count = (counts.get(node) ?? 0) + delta;
    if (count === 0) counts.delete(node);
    else counts.set(node, count);
  }

  private flattened(): ReplicaCounts {
    const layers: ReplicaCounts[] = [];
    for (let layer: ReplicaCounts | undefined = this; layer !== undefined; layer = layer.parent) layers.push(layer);
    const merged = new Map<string, Map<number, number>>();
    for (const layer of layers.reverse()) {
      for (const [workload, counts] of layer.own) {
        // A workload gone from every node is dropped, not kept as an empty map.
        if (counts.size > 0) merged.set(workload, counts);
        else merged.delete(workload);
      }
    }
    return new ReplicaCounts(merged, undefined, 0);
  }
}
