// The scheduler (DESIGN principle 3): a pure function from a cluster snapshot and the asks
// waiting for a place to a plan — placements with concrete GPU devices and host ports,
// preemptions, and failures that say why. No I/O, no clock; its only randomness is a seeded
// shuffle, so the same snapshot, asks and seed always give the same plan.
//
// The leader applies a plan with an optimistic transaction and re-plans on conflict (Nomad's
// plan/apply split); applyPlan() is the snapshot the next plan sees.
//
// Order: asks by priority, highest first, then in the order given. A gang (asks sharing a
// `group`) is placed at its first member's turn, all members in a row, and all or none.
import { seededRandom } from '../../shared/clock.js';
import { ClusterIndex } from './cluster-index.js';
import { ClusterState } from './cluster-state.js';
import { NodeOrder } from './node-order.js';
import { Placer } from './placer.js';
import { prepareAsk, type PreparedAsk } from './prepared-ask.js';
import type { Ask, Placement, Plan, Preemption, SchedAllocation, Snapshot } from './types.js';

export interface ScheduleOptions {
  /** Seeds the node shuffle; a leader passes a fresh one per evaluation. Default 0. */
  seed?: number;
}

export function schedule(snapshot: Snapshot, asks: Ask[], options: ScheduleOptions = {}): Plan {
  const state = new ClusterState(snapshot);
  const placer = new Placer(state, new NodeOrder(snapshot.nodes, seededRandom(options.seed ?? 0)));
  const plan: Plan = { placements: [], preemptions: [], failures: [] };

  const ordered = asks.map(prepareAsk).sort((a, b) => b.ask.priority - a.ask.priority || a.order - b.order);
  const gangs = new Map<string, PreparedAsk[]>();
  for (const p of ordered) {
    if (p.ask.group === '') continue;
    const members = gangs.get(p.ask.group);
    if (members) members.push(p);
    else gangs.set(p.ask.group, [p]);
  }

  for (const p of ordered) {
    if (p.ask.group === '') {
      const outcome = placer.place(p);
      if (outcome.placed) {
        plan.placements.push(outcome.placement);
        plan.preemptions.push(...outcome.preemptions);
      } else {
        plan.failures.push({ askId: p.ask.id, reason: outcome.reason, quota: outcome.quota });
      }
    } else {
      const members = gangs.get(p.ask.group);
      if (members === undefined) continue; // placed (or failed) at its first member's turn
      gangs.delete(p.ask.group);
      placeGang(state, placer, p.ask.group, members, plan);
    }
    state.commit();
  }
  return plan;
}

/** All members or none: a member that cannot be placed gives back what the others took. */
function placeGang(state: ClusterState, placer: Placer, group: string, members: PreparedAsk[], plan: Plan): void {
  const mark = state.mark();
  const placements: Placement[] = [];
  const preemptions: Preemption[] = [];
  for (const [i, p] of members.entries()) {
    const outcome = placer.place(p);
    if (outcome.placed) {
      placements.push(outcome.placement);
      preemptions.push(...outcome.preemptions);
      continue;
    }
    state.rollback(mark);
    placer.forget();
    // Nothing of the gang is placed (what the first members took is given back); say how far it got.
    const reason = `gang ${group}: only ${i} of ${members.length} workers fit, so none is placed; rank ${i}: ${outcome.reason}`;
    for (const m of members) plan.failures.push({ askId: m.ask.id, reason, quota: outcome.quota });
    return;
  }
  plan.placements.push(...placements);
  plan.preemptions.push(...preemptions);
}

/**
 * The snapshot after `plan` is carried out: its placements added as allocations (with the ask's
 * id as allocation id), its preempted allocations removed. `asks` are the asks the plan was
 * made for. The next schedule() on the result sees exactly what this plan took.
 */
export function applyPlan(snapshot: Snapshot, plan: Plan, asks: readonly Ask[]): Snapshot {
  const byId = new Map(asks.map((a) => [a.id, a]));
  const preempted = new Set(plan.preemptions.map((p) => p.allocationId));
  const removed = preempted.size === 0 ? [] : snapshot.allocations.filter((a) => preempted.has(a.id));
  const kept = preempted.size === 0 ? snapshot.allocations : snapshot.allocations.filter((a) => !preempted.has(a.id));
  const added = plan.placements.map((placement) => {
    const ask = byId.get(placement.askId);
    if (ask === undefined) throw new Error(`applyPlan: placement for ask "${placement.askId}", which is not among the asks given`);
    return allocationFor(ask, placement);
  });
  const next: Snapshot = { ...snapshot, allocations: kept.concat(added) };
  ClusterIndex.derive(snapshot, next, removed, added);
  return next;
}

export function allocationFor(ask: Ask, placement: Placement): SchedAllocation {
  return {
    id: ask.id,
    node: placement.node,
    tenant: ask.tenant,
    workload: ask.workload,
    priority: ask.priority,
    resources: ask.resources,
    gpuIndexes: placement.gpuIndexes,
    hostPort: placement.hostPort,
  };
}
