// Priorities and preemption
//
// Asks are considered by priority, highest first; asks of equal priority in the order given. An
// ask that fits on no node may preempt (stop) running allocations to make room, when it has
// `preempt: true` and is within its own tenant's quota. The rules:
//
// 1. Only allocations of strictly lower priority may be preempted, and only those of the ask's
//    own tenant or of a tenant using more than its quota in some limit. A quota is a guarantee
//    up to the limits that are set: a tenant with no quota, or with no limit set, has no
//    guarantee, so its usage always counts as above it. Placements of the same plan are never
//    preempted.
// 2. On each node, victims are taken lowest priority first (ties: the one that frees the most of
//    the resource the ask is short of there, then allocation id order) until the ask fits; then
//    every victim the ask turns out not to need is spared, the highest priority first. Nothing
//    is evicted beyond what the ask needs.
// 3. The ask goes to the node that needs the fewest victims, then the lowest total victim
//    priority (then the node met first in the call's shuffled order). The plan lists one
//    Preemption per victim, "preempted by job/t/train (priority 100 > 10)", and the ask's
//    placement on that node.
// 4. Preemption frees only resources: not host ports, not a workload's max-per-node slots, not
//    a node that is not ready, cordoned or lacks the constraint or GPU model.
// 5. What the victims free is for the preempting ask alone. Later asks of the same plan still
//    see the victims' resources as held (they run until their agents stop them), on top of what
//    the preempting ask takes; they become free when the plan is applied and the next
//    schedule() sees the cluster without the victims.
// 6. A preemption made for a gang member is withdrawn with the rest of the gang when the gang
//    cannot be placed whole.
import type { ClusterState } from './cluster-state.js';
import { checks, firstFailure, fits } from './feasibility.js';
import type { HeldAllocation, NodeState } from './node-state.js';
import type { CandidateList } from './node-order.js';
import type { PreparedAsk } from './prepared-ask.js';
import { aboveQuota } from './quota.js';

export interface PreemptionChoice {
  ns: NodeState;
  victims: HeldAllocation[];
}

/** The checks that evicting allocations can turn from failing to passing. */
const RESOURCE_CHECKS = new Set(['cpu', 'memory', 'nic', 'gpus'].map((name) => checks.findIndex((c) => c.name === name)));

/** The node and victims that make room for `p` at least cost (rules 1–3), or undefined. */
export function choosePreemption(state: ClusterState, list: CandidateList, p: PreparedAsk): PreemptionChoice | undefined {
  const mayPreempt = new Map<string, boolean>();
  const eligible = (h: HeldAllocation): boolean => {
    const a = h.alloc;
    if (h.evicted || a.priority >= p.ask.priority) return false;
    if (a.tenant === p.ask.tenant) return true;
    let above = mayPreempt.get(a.tenant);
    if (above === undefined) {
      above = aboveQuota(state, a.tenant);
      mayPreempt.set(a.tenant, above);
    }
    return above;
  };
  let best: PreemptionChoice | undefined;
  let bestPriority = Infinity;
  for (const i of list.nodes) {
    const ns = state.nodes[i]!;
    // Every answer here has a victim of at least the lowest priority below the ask's: once the
    // best is one victim of no more than that, this node cannot beat it.
    let lowest = Infinity;
    for (const a of ns.allocations) if (a.priority < lowest) lowest = a.priority;
    if (lowest >= p.ask.priority || (best?.victims.length === 1 && lowest >= bestPriority)) continue;
    const victims = victimsOn(state, ns, p, eligible);
    if (victims === undefined) continue;
    const priority = victims.reduce((sum, v) => sum + v.alloc.priority, 0);
    if (best === undefined || victims.length < best.victims.length || (victims.length === best.victims.length && priority < bestPriority)) {
      best = { ns, victims };
      bestPriority = priority;
    }
  }
  return best;
}

/** The fewest victims on `ns` that make `p` fit there, or undefined. Leaves `ns` as it found it. */
function victimsOn(state: ClusterState, ns: NodeState, p: PreparedAsk, eligible: (h: HeldAllocation) => boolean): HeldAllocation[] | undefined {
  const failing = firstFailure(ns, p, state);
  if (failing < 0 || !RESOURCE_CHECKS.has(failing)) return undefined;
  const candidates = ns.heldAllocations().filter(eligible);
  if (candidates.length === 0) return undefined;
  const freed = candidates.map((h) => relevance(failing, h, ns, p));
  const order = candidates.map((_, i) => i);
  order.sort((a, b) => {
    const x = candidates[a]!.alloc;
    const y = candidates[b]!.alloc;
    return x.priority - y.priority || freed[b]! - freed[a]! || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);
  });
  const range = state.portRange;
  const taken: HeldAllocation[] = [];
  let roomMade = false;
  for (const i of order) {
    const h = candidates[i]!;
    ns.hold(h, -1, false, range);
    taken.push(h);
    if (fits(ns, p, state)) {
      roomMade = true;
      break;
    }
  }
  if (roomMade) {
    // Spare what is not needed, the most valuable first: put it back and see that the ask still fits.
    for (let i = taken.length - 1; i >= 0; i--) {
      const h = taken[i]!;
      ns.hold(h, 1, false, range);
      if (fits(ns, p, state)) taken.splice(i, 1);
      else ns.hold(h, -1, false, range);
    }
  }
  for (const h of taken) ns.hold(h, 1, false, range);
  return roomMade ? taken : undefined;
}

/** How much of what `p` is short of on `ns` (the check it fails there) evicting `h` frees. */
function relevance(failing: number, h: HeldAllocation, ns: NodeState, p: PreparedAsk): number {
  switch (checks[failing]!.name) {
    case 'cpu':
      return h.cpuMillis;
    case 'memory':
      return h.memoryBytes;
    case 'nic':
      return h.nicMbps;
    default: {
      // GPUs: devices of the model it frees (whole asks), or their memory (share asks).
      let sum = 0;
      for (const d of h.devices) {
        if (!ns.models[d]!.includes(p.model)) continue;
        if (p.share) sum += h.shareBytes > 0 ? h.shareBytes : ns.deviceMemory[d]!;
        else if (h.shareBytes === 0 && ns.deviceMemory[d]! >= p.gpuMemoryBytes) sum += 1;
      }
      return sum;
    }
  }
}

export function preemptionReason(p: PreparedAsk, victim: HeldAllocation): string {
  return `preempted by ${p.ask.workload} (priority ${p.ask.priority} > ${victim.alloc.priority})`;
}
