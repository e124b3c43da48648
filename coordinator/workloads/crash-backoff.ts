// Crash loops of a deployment, as Kubernetes' CrashLoopBackOff: each replica that fails (exits,
// or never starts) makes the next replacement wait longer, doubling from `initialMs` up to
// `maxMs`, and the count starts over once a replica made after the last failure has stayed
// ready for `resetAfterMs`. Without it a deployment whose replicas fail at once (an engine
// shutting down, a server that exits at start) is replaced as fast as the controller can place
// it, dozens of allocations a second. Pure: the deployment's allocations and the time in, the
// new state, whether to hold replacements and the events out; the controller keeps the state
// (per deployment, in memory: a new leader starts counting afresh) and applies the result.
import { formatDuration } from '../../shared/units.js';
import { isTerminal, type AllocationRecord } from './records.js';

export interface CrashBackoffPolicy {
  /** The wait after the first failure; it doubles with each failure after it. */
  initialMs: number;
  maxMs: number;
  /** A replica made after the last failure and ready this long ends the loop. */
  resetAfterMs: number;
}

export const DEFAULT_CRASH_BACKOFF: CrashBackoffPolicy = { initialMs: 1_000, maxMs: 2 * 60_000, resetAfterMs: 60_000 };

export interface CrashLoop {
  /** Failures in a row. */
  failures: number;
  lastFailureAtMs: number;
  /** No replacement replica is placed before this. */
  notBeforeMs: number;
  /** Why the last replica failed. */
  reason: string;
  /** Failed allocations already counted (those still reported failed while desired to run). */
  counted: string[];
}

export interface CrashDecision {
  /** The state to keep; undefined: no loop (never failed, or reset). */
  loop: CrashLoop | undefined;
  /** Replacements wait: ask for no new replica in this pass. */
  hold: boolean;
  events: Array<{ type: string; message: string }>;
}

/** The wait after `failures` failures in a row. */
export function backoffDelay(failures: number, policy: CrashBackoffPolicy): number {
  return Math.min(policy.maxMs, policy.initialMs * 2 ** Math.max(0, Math.min(failures - 1, 30)));
}

/**
 * Counts the replicas that failed since the last pass (ended while still desired to run: a
 * replica stopped on purpose, or lost with its node, is no crash), and decides whether
 * replacements wait.
 */
export function decideCrashBackoff(loop: CrashLoop | undefined, allocations: readonly AllocationRecord[], now: number, policy: CrashBackoffPolicy): CrashDecision {
  const failedNow = allocations.filter((a) => a.desired === 'run' && isTerminal(a) && a.status !== 'stopped');
  const counted = new Set(loop?.counted ?? []);
  const fresh = failedNow.filter((a) => !counted.has(a.id)).sort((a, b) => a.updatedAtMs - b.updatedAtMs || a.id.localeCompare(b.id));
  let next = loop;
  if (next && fresh.length === 0) {
    const steady = allocations.some((a) => a.desired === 'run' && a.status === 'ready' && a.createdAtMs > next!.lastFailureAtMs && now - a.updatedAtMs >= policy.resetAfterMs);
    if (steady) return { loop: undefined, hold: false, events: [] };
  }
  const events: CrashDecision['events'] = [];
  if (fresh.length > 0) {
    const last = fresh.at(-1)!;
    const failures = (next?.failures ?? 0) + fresh.length;
    const delay = backoffDelay(failures, policy);
    const reason = last.reason || `replica ${last.status}`;
    next = { failures, lastFailureAtMs: now, notBeforeMs: now + delay, reason, counted: [] };
    events.push({ type: 'BackOff', message: `${describeFailures(fresh.length, failures)} (${reason}); the next replica starts in ${formatDuration(delay)}` });
  }
  if (!next) return { loop: undefined, hold: false, events };
  // Only ids that can still be seen as fresh need remembering: bounded by the replicas.
  next = { ...next, counted: failedNow.map((a) => a.id) };
  return { loop: next, hold: now < next.notBeforeMs, events };
}

/** What `deployments show` says of a loop that holds replacements back, or '' when none does. */
export function crashLoopMessage(loop: CrashLoop | undefined, now: number): string {
  if (!loop || now >= loop.notBeforeMs) return '';
  return `crash loop back-off: ${loop.failures} replica failure${loop.failures === 1 ? '' : 's'} in a row, the last: ${loop.reason}; the next replica starts in ${formatDuration(loop.notBeforeMs - now)}`;
}

function describeFailures(fresh: number, total: number): string {
  const now = fresh === 1 ? 'a replica failed' : `${fresh} replicas failed`;
  return total === fresh ? now : `${now}, ${total} in a row`;
}
