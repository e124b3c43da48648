// The order nodes are visited in, after Nomad's random and limit iterators: one seeded shuffle
// per schedule() call, and lists drawn from it — every node, the nodes with GPUs, the nodes with
// a GPU model, the nodes whose cache holds a digest. Each list keeps a cursor that moves on from
// where the previous ask stopped, so successive asks look at different nodes and no node is
// favoured by its position in the snapshot.
import type { Random } from '../../shared/clock.js';
import type { PreparedAsk } from './prepared-ask.js';
import type { SchedNode } from './types.js';

/** Node positions, and whether each position is one of them. */
interface NodeSet {
  positions: Int32Array;
  member: Uint8Array;
}

/**
 * What does not change for one array of nodes: which have GPUs, which have each GPU model,
 * which cache each digest. Worked out once per array and per question (snapshots derived by
 * applyPlan share their nodes array), not on every call: matching models means a substring
 * search on every device of every node.
 */
class Catalog {
  private withGpus: NodeSet | undefined;
  private readonly byModel = new Map<string, NodeSet>();
  private readonly byDigest = new Map<string, NodeSet>();

  constructor(readonly nodes: readonly SchedNode[]) {}

  gpuNodes(): NodeSet {
    return (this.withGpus ??= this.select((n) => n.gpus.length > 0));
  }

  /** `model` in lower case. */
  modelNodes(model: string): NodeSet {
    let set = this.byModel.get(model);
    if (set === undefined) {
      set = this.select((n) => n.gpus.some((g) => g.model.toLowerCase().includes(model)));
      this.byModel.set(model, set);
    }
    return set;
  }

  cachingNodes(digest: string): NodeSet {
    let set = this.byDigest.get(digest);
    if (set === undefined) {
      set = this.select((n) => n.cached.has(digest));
      this.byDigest.set(digest, set);
    }
    return set;
  }

  private select(keep: (node: SchedNode) => boolean): NodeSet {
    const member = new Uint8Array(this.nodes.length);
    const positions: number[] = [];
    this.nodes.forEach((node, i) => {
      if (!keep(node)) return;
      member[i] = 1;
      positions.push(i);
    });
    return { positions: Int32Array.from(positions), member };
  }
}

const catalogs = new WeakMap<readonly SchedNode[], Catalog & { count: number }>();

function catalogOf(nodes: readonly SchedNode[]): Catalog {
  let catalog = catalogs.get(nodes);
  if (catalog === undefined || catalog.count !== nodes.length) {
    catalog = Object.assign(new Catalog(nodes), { count: nodes.length });
    catalogs.set(nodes, catalog);
  }
  return catalog;
}

export class CandidateList {
  /** Where the next scan starts. */
  cursor = 0;
  constructor(readonly nodes: Int32Array) {}
}

export class NodeOrder {
  /** Every node, shuffled. */
  readonly all: CandidateList;
  private readonly catalog: Catalog;
  /** Position in the shuffle of each node. */
  private readonly rank: Int32Array;
  private withGpus: CandidateList | undefined;
  private readonly byModel = new Map<string, CandidateList>();
  private readonly byDigest = new Map<string, CandidateList | undefined>();

  constructor(nodes: readonly SchedNode[], random: Random) {
    const order = Int32Array.from(nodes, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    this.all = new CandidateList(order);
    this.rank = new Int32Array(order.length);
    order.forEach((node, position) => (this.rank[node] = position));
    this.catalog = catalogOf(nodes);
  }

  /** The nodes that can possibly take `p`; every node outside it fails a check whatever happens. */
  forAsk(p: PreparedAsk): CandidateList {
    if (!p.wantsGpu) return this.all;
    if (p.model === '') return (this.withGpus ??= this.inOrder(this.catalog.gpuNodes()));
    let list = this.byModel.get(p.model);
    if (list === undefined) {
      list = this.inOrder(this.catalog.modelNodes(p.model));
      this.byModel.set(p.model, list);
    }
    return list;
  }

  /** The nodes whose cache holds the ask's model, or undefined. */
  cachedFor(p: PreparedAsk): CandidateList | undefined {
    const digest = p.ask.modelDigest;
    if (digest === '') return undefined;
    if (!this.byDigest.has(digest)) {
      const set = this.catalog.cachingNodes(digest);
      this.byDigest.set(digest, set.positions.length === 0 ? undefined : this.inOrder(set));
    }
    return this.byDigest.get(digest);
  }

  /** `set` in this call's shuffled order. */
  private inOrder(set: NodeSet): CandidateList {
    const list = new Int32Array(set.positions.length);
    if (list.length * 16 < this.all.nodes.length) {
      // A few nodes: sort them by rank rather than walk the whole shuffle (rank and node packed
      // in one number, for the typed array's own numeric sort).
      const n = this.rank.length;
      const keys = Float64Array.from(set.positions, (i) => this.rank[i]! * n + i).sort();
      keys.forEach((key, k) => (list[k] = key % n));
    } else {
      let k = 0;
      for (const i of this.all.nodes) if (set.member[i]) list[k++] = i;
    }
    return new CandidateList(list);
  }
}
