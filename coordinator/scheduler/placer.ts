// Places one ask on the working state: the quota check, then Nomad-style sampling — visit nodes
// in the call's shuffled order from a rotating cursor and score only the first K that fit — and,
// when nothing fits, an explanation that counts every node, then preemption if the ask may.
//
// Sampling is what makes 100,000 asks on 10,000 nodes affordable: an ask costs K feasible
// candidates (plus the nodes skipped to find them), not a pass over the cluster. K grows with
// the cluster — log2 of the node count, 14 at 10,000 nodes — and is at least 8, so a small
// cluster is scored whole and behaves exactly as its tests say. Two things keep sampling from
// undoing the scoring: nodes caching the ask's model are visited first, and when the best
// candidate already runs a replica of the ask's workload (then all of them do: the replica
// penalty outweighs every other term) the scan goes on, K more at a time, until it meets a
// node without one or has seen every node, so replicas spread whatever K is.
import type { ClusterState } from './cluster-state.js';
import { devicesMemory, pickShareDevice, pickWholeDevices } from './devices.js';
import { Explanation, firstFailure, fits, QUOTA_CHECK } from './feasibility.js';
import type { Holding, NodeState } from './node-state.js';
import type { CandidateList, NodeOrder } from './node-order.js';
import { choosePreemption, preemptionReason } from './preemption.js';
import { replicasOn, type PreparedAsk } from './prepared-ask.js';
import { gpuMemoryQuotaMessage, gpuMemoryRoom, quotaFailure } from './quota.js';
import { score } from './scoring.js';
import type { Placement, Preemption } from './types.js';

export type Outcome =
  | { placed: true; placement: Placement; preemptions: Preemption[] }
  | { placed: false; reason: string; quota: boolean };

interface Unplaced {
  reason: string;
  quota: boolean;
}

const MIN_CANDIDATES = 8;
/** How many nodes of the cached list are visited at most before the general scan, per candidate wanted. */
const CACHED_VISITS_PER_CANDIDATE = 4;

export class Placer {
  /** K: feasible candidates scored per ask. */
  private readonly limit: number;
  /** Per node: the attempt that last visited it. */
  private readonly visited: Int32Array;
  private attempt = 0;
  private readonly candidates: NodeState[] = [];
  /**
   * Asks of the same shape that found no node, by shape. Within one call free resources only
   * shrink, so the answer holds until something is given back (forget()).
   */
  private readonly unplaceable = new Map<string, Unplaced>();
  private readonly outside = new Map<CandidateList, Map<number, { count: number; example: NodeState }>>();

  constructor(
    private readonly state: ClusterState,
    private readonly order: NodeOrder,
  ) {
    const n = state.nodes.length;
    this.limit = Math.max(MIN_CANDIDATES, Math.ceil(Math.log2(Math.max(n, 1))));
    this.visited = new Int32Array(n);
  }

  /** Drops remembered failures: call when resources were given back. */
  forget(): void {
    this.unplaceable.clear();
  }

  place(p: PreparedAsk): Outcome {
    const overQuota = quotaFailure(this.state, p);
    if (overQuota !== undefined) return { placed: false, reason: overQuota, quota: true };
    p.gpuMemoryRoom = gpuMemoryRoom(this.state, p.ask.tenant);
    p.replicas = this.state.replicasOf(p.ask.workload);
    let key: string | undefined;
    let unplaced: Unplaced | undefined;
    if (this.unplaceable.size > 0) {
      key = shapeOf(p);
      unplaced = this.unplaceable.get(key);
    }
    if (unplaced === undefined) {
      const found = this.findNode(p);
      if (found !== undefined) return { placed: true, placement: this.take(p, found), preemptions: [] };
    }
    // An ask that may preempt is explained only when preempting does not place it either.
    if (p.ask.preempt && !unplaced?.quota) {
      const outcome = this.preempt(p);
      if (outcome !== undefined) return outcome;
    }
    unplaced ??= this.explained(p, key);
    if (!p.ask.preempt || unplaced.quota) return { placed: false, ...unplaced };
    return { placed: false, reason: `${unplaced.reason}; preempting lower-priority allocations would not make room`, quota: false };
  }

  /** Places `p` by preempting (preemption.ts), or undefined when that makes no room. */
  private preempt(p: PreparedAsk): Outcome | undefined {
    const choice = choosePreemption(this.state, this.order.forAsk(p), p);
    if (choice === undefined) return undefined;
    const preemptions: Preemption[] = [];
    for (const victim of choice.victims) {
      this.state.evict(choice.ns, victim);
      preemptions.push({ allocationId: victim.alloc.id, askId: p.ask.id, reason: preemptionReason(p, victim) });
    }
    // The victims' resources are free for this ask only: lift them while it takes its share,
    // then hold them again for everyone else (preemption.ts, rule 5).
    const range = this.state.portRange;
    for (const victim of choice.victims) choice.ns.hold(victim, -1, false, range);
    const placement = this.take(p, choice.ns);
    for (const victim of choice.victims) choice.ns.hold(victim, 1, false, range);
    this.forget();
    return { placed: true, placement, preemptions };
  }

  /** Why the last findNode() found nothing, remembered for asks of the same shape. */
  private explained(p: PreparedAsk, key: string | undefined): Unplaced {
    const unplaced = this.explain(p, this.order.forAsk(p));
    this.unplaceable.set(key ?? shapeOf(p), unplaced);
    return unplaced;
  }

  /** The best of the first K nodes that fit, or undefined when no node does. */
  private findNode(p: PreparedAsk): NodeState | undefined {
    const attempt = ++this.attempt;
    const found = this.candidates;
    found.length = 0;
    const cached = this.order.cachedFor(p);
    if (cached !== undefined) this.scan(cached, p, attempt, this.limit, this.limit * CACHED_VISITS_PER_CANDIDATE);
    const list = this.order.forAsk(p);
    // With no candidate the scan only stops at the end of the list: every node has been checked.
    let exhausted = this.scan(list, p, attempt, this.limit, Infinity);
    if (found.length === 0) return undefined;
    let best = this.best(p);
    // Every candidate runs a replica already: look further, K at a time, for a node that does not.
    while (best.replicas > 0 && !exhausted) {
      exhausted = this.scan(list, p, attempt, found.length + this.limit, Infinity);
      best = this.best(p);
    }
    return best.ns;
  }

  /**
   * Visits `list` from its cursor until `want` candidates are found, `maxVisits` nodes are
   * visited, or the list ends. Returns whether it visited the whole list.
   */
  private scan(list: CandidateList, p: PreparedAsk, attempt: number, want: number, maxVisits: number): boolean {
    const nodes = list.nodes;
    const n = nodes.length;
    const state = this.state;
    const found = this.candidates;
    let pos = list.cursor;
    let visits = 0;
    while (found.length < want && visits < n && visits < maxVisits) {
      const i = nodes[pos]!;
      pos = pos + 1 === n ? 0 : pos + 1;
      visits++;
      if (this.visited[i] === attempt) continue;
      this.visited[i] = attempt;
      const ns = state.nodes[i]!;
      if (fits(ns, p, state)) found.push(ns);
    }
    list.cursor = pos;
    return visits === n;
  }

  private best(p: PreparedAsk): { ns: NodeState; replicas: number } {
    let best = this.candidates[0]!;
    let bestScore = -Infinity;
    for (const ns of this.candidates) {
      const s = score(ns, p);
      if (s > bestScore) {
        best = ns;
        bestScore = s;
      }
    }
    return { ns: best, replicas: replicasOn(p, best.index) };
  }

  /**
   * Every node counted by the first check it fails. When some node fails only the tenant's
   * GPU-memory quota, the ask waits on the quota instead.
   */
  private explain(p: PreparedAsk, list: CandidateList): Unplaced {
    const explanation = new Explanation(p);
    let overQuota = Infinity;
    const outside = this.outsideOf(list, p);
    const nodes = this.state.nodes;
    for (let k = 0, n = outside === undefined ? nodes.length : list.nodes.length; k < n; k++) {
      const ns = outside === undefined ? nodes[k]! : nodes[list.nodes[k]!]!;
      const failed = firstFailure(ns, p, this.state);
      explanation.add(failed, ns);
      if (failed === QUOTA_CHECK) overQuota = Math.min(overQuota, devicesMemory(ns, pickWholeDevices(ns, p)!));
    }
    if (outside !== undefined) for (const [check, { count, example }] of outside) explanation.add(check, example, count);
    if (overQuota !== Infinity) return { reason: gpuMemoryQuotaMessage(this.state, p.ask.tenant, overQuota), quota: true };
    return { reason: explanation.toString(this.state.nodes.length), quota: false };
  }

  /**
   * For a GPU-model list and an ask without constraints or spread limit, the nodes outside the
   * list fail the same way for every such ask (not ready, cordoned, or no such model): counted once.
   */
  private outsideOf(list: CandidateList, p: PreparedAsk): Map<number, { count: number; example: NodeState }> | undefined {
    if (p.model === '' || !p.wantsGpu || p.constraints.length > 0 || p.maxPerNode > 0) return undefined;
    let counts = this.outside.get(list);
    if (counts === undefined) {
      counts = new Map();
      const inside = new Uint8Array(this.state.nodes.length);
      for (const i of list.nodes) inside[i] = 1;
      for (const ns of this.state.nodes) {
        if (inside[ns.index]) continue;
        const check = firstFailure(ns, p, this.state);
        const entry = counts.get(check);
        if (entry) entry.count++;
        else counts.set(check, { count: 1, example: ns });
      }
      this.outside.set(list, counts);
    }
    return counts;
  }

  /** Takes the devices and port `p` gets on `ns`. */
  private take(p: PreparedAsk, ns: NodeState): Placement {
    let devices: number[] = [];
    let shareBytes = 0;
    let gpuMemoryBytes = 0;
    if (p.gpus > 0) {
      devices = pickWholeDevices(ns, p)!;
      gpuMemoryBytes = devicesMemory(ns, devices);
    } else if (p.share) {
      devices = [pickShareDevice(ns, p)];
      shareBytes = gpuMemoryBytes = p.gpuMemoryBytes;
    }
    const hostPort = p.ask.needsPort ? ns.freePort(this.state.portRange, p.ask.id) : 0;
    const holding: Holding = { cpuMillis: p.cpuMillis, memoryBytes: p.memoryBytes, nicMbps: p.nicMbps, devices, shareBytes, hostPort };
    this.state.place(ns, holding, p.ask.tenant, p.ask.workload, p.gpus, gpuMemoryBytes);
    return { askId: p.ask.id, node: ns.node.name, gpuIndexes: ns.indexes(devices), hostPort };
  }
}

/** Everything that decides where an ask fits (not where it is best): asks of one shape fit the same nodes. */
function shapeOf(p: PreparedAsk): string {
  const a = p.ask;
  const constraints = p.constraints.length === 0 ? '' : JSON.stringify(p.constraints);
  const spread = p.maxPerNode > 0 ? `${a.workload}/${p.maxPerNode}` : '';
  const room = p.gpus > 0 && p.gpuMemoryRoom !== Infinity ? `${a.tenant}/${p.gpuMemoryRoom}` : '';
  return `${p.cpuMillis}|${p.memoryBytes}|${p.nicMbps}|${p.gpus}|${p.gpuMemoryBytes}|${p.model}|${a.needsPort}|${spread}|${room}|${constraints}`;
}
