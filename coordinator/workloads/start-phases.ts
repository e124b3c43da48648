// The leader's part of cold-start phases (docs/autoscaling.md "Cold starts"): `schedule` runs
// from the pass that first found a deployment short of a replica to the commit of the
// allocation that fills it; the agent's phases (pull, create, start, load) arrive with the
// replica's first ready. This book keeps the first in memory (a new leader starts again: an
// allocation it did not commit has no schedule) and, at the first ready, gives the event's
// message and observes the histograms. Pure bookkeeping: the controller tells it what happened
// and when (coordinator/workloads/controller.ts, three calls).
import type { StartPhase } from '../../shared/proto.js';
import { formatStartPhases, orderStartPhases } from '../../shared/start-phases.js';

/** How many committed allocations waiting for their first ready (and workloads short of replicas) are remembered; the oldest go first. */
export const MAX_TRACKED_STARTS = 10_000;

export class StartPhaseBook {
  /** By workload key: when each replica it is still short of was first asked for, oldest first. */
  private readonly asked = new Map<string, number[]>();
  /** By allocation id: its schedule phase, in seconds, until its first ready. */
  private readonly scheduled = new Map<string, number>();

  constructor(
    /** Observes a start's phases (the coordinator's histograms). */
    private readonly observe: (phases: StartPhase[]) => void = () => undefined,
    private readonly maxTracked = MAX_TRACKED_STARTS,
  ) {}

  /**
   * A pass found the workload `count` replicas short at `now`: asks already waiting keep their
   * time, new ones start now; fewer asks drop the newest (a scale-down took them back).
   */
  short(key: string, count: number, now: number): void {
    if (count <= 0) {
      this.asked.delete(key);
      return;
    }
    const times = this.asked.get(key) ?? [];
    times.length = Math.min(times.length, count);
    while (times.length < count) times.push(now);
    this.asked.set(key, times);
    // A deployment deleted while short is never found short of nothing again: bounded instead.
    while (this.asked.size > this.maxTracked) this.asked.delete(this.asked.keys().next().value!);
  }

  /** An allocation of the workload was committed at `now`: it fills the oldest ask (none asked: no schedule phase). */
  committed(key: string, allocationId: string, now: number): void {
    const times = this.asked.get(key);
    const since = times?.shift();
    if (times?.length === 0) this.asked.delete(key);
    if (since === undefined) return;
    this.scheduled.set(allocationId, Math.max(0, now - since) / 1000);
    while (this.scheduled.size > this.maxTracked) this.scheduled.delete(this.scheduled.keys().next().value!);
  }

  /** The schedule phase remembered for an allocation, in seconds. */
  scheduleOf(allocationId: string): number | undefined {
    return this.scheduled.get(allocationId);
  }

  /**
   * The allocation's first ready with the agent's phases: every phase (schedule first when
   * known) is observed once and the event's message returned; the allocation is forgotten.
   */
  ready(allocationId: string, agentPhases: readonly StartPhase[]): string {
    const schedule = this.scheduled.get(allocationId);
    this.scheduled.delete(allocationId);
    const phases = orderStartPhases([...(schedule === undefined ? [] : [{ phase: 'schedule', seconds: schedule }]), ...agentPhases.filter((p) => p.phase !== 'schedule')]);
    this.observe(phases);
    return formatStartPhases(phases);
  }

  /** An allocation that ended before its first ready. */
  forget(allocationId: string): void {
    this.scheduled.delete(allocationId);
  }
}
