// Cold-start phases (docs/autoscaling.md "Cold starts"): how long each step of a replica's start
// took. The agent times pull, create, start and load and sends them once, with the replica's
// first `ready` (AllocationStatus.start_phases); the leader adds schedule. Both observe them as
// histograms and the leader writes them into the allocation's events, formatted here.
import type { StartPhase } from './proto.js';

/** The phases, in the order they happen and are shown. */
export const START_PHASES = ['schedule', 'pull', 'create', 'start', 'load'] as const;
export type StartPhaseName = (typeof START_PHASES)[number];

/** The phases an agent reports (schedule is the leader's). */
export const AGENT_START_PHASES = ['pull', 'create', 'start', 'load'] as const satisfies readonly StartPhaseName[];

/** At most this many phases in one status; none longer than a day. */
export const MAX_START_PHASES = 8;
export const MAX_START_PHASE_SECONDS = 86_400;

/** Histogram buckets (seconds) for a start and its phases: 10 ms to two minutes. */
export const START_PHASE_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120];

/** The phases in their order (unknown names last), one entry per name. */
export function orderStartPhases(phases: readonly StartPhase[]): StartPhase[] {
  const rank = (name: string) => {
    const i = (START_PHASES as readonly string[]).indexOf(name);
    return i < 0 ? START_PHASES.length : i;
  };
  const seen = new Set<string>();
  return phases.filter((p) => !seen.has(p.phase) && seen.add(p.phase)).sort((a, b) => rank(a.phase) - rank(b.phase));
}

/** The whole start: the sum of its phases, in seconds. */
export function startSeconds(phases: readonly StartPhase[]): number {
  return phases.reduce((sum, p) => sum + p.seconds, 0);
}

/** `ready in 1.42 s: schedule 0.01 s, pull 0.00 s, create 0.08 s, start 0.31 s, load 1.02 s`. */
export function formatStartPhases(phases: readonly StartPhase[]): string {
  const ordered = orderStartPhases(phases);
  return `ready in ${startSeconds(ordered).toFixed(2)} s: ${ordered.map((p) => `${p.phase} ${p.seconds.toFixed(2)} s`).join(', ')}`;
}

/**
 * Times a start's phases on one clock: `mark(phase)` ends `phase` now (it began where the last
 * one ended). A phase never marked is absent from `phases()`.
 */
export class StartStopwatch {
  private last: number;
  private readonly marked: StartPhase[] = [];

  constructor(private readonly now: () => number) {
    this.last = now();
  }

  mark(phase: StartPhaseName): void {
    const at = this.now();
    this.marked.push({ phase, seconds: Math.max(0, at - this.last) / 1000 });
    this.last = at;
  }

  phases(): StartPhase[] {
    return this.marked.map((p) => ({ ...p }));
  }
}
