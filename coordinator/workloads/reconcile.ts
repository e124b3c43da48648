// What a deployment or a job needs next, decided from its record and its allocations alone: how
// many new allocations to ask the scheduler for, which allocations to stop, and (jobs) the
// status to move to. Pure: the controller gathers the inputs and carries out the result.
import type { DeploymentStatus, JobStatus } from '../../shared/workloads.js';
import { formatDuration } from '../../shared/units.js';
import { isLive, isPartitioned, isTerminal, workerCount, type AllocationRecord, type DeploymentRecord, type JobRecord } from './records.js';

export interface Stop {
  id: string;
  reason: string;
  /** Record the allocation as failed (its node is gone) rather than just stopping it. */
  fail?: boolean;
}

export interface DeploymentDecision {
  asks: number;
  stops: Stop[];
  status: DeploymentStatus;
}

/** Node state as the controllers need it. */
export type NodeHealth = 'ready' | 'draining' | 'down';

/**
 * Keeps `replicas` ready replicas of the current generation. A spec or model change is rolled
 * out like a Kubernetes Deployment: at most `maxSurge` extra replicas, at most `maxUnavailable`
 * fewer ready ones than asked, old replicas stopped as new ones become ready. Replicas on a
 * draining node are replaced the same way; those on a down node are replaced at once.
 */
export function decideDeployment(
  record: DeploymentRecord,
  allocations: AllocationRecord[],
  nodeHealth: (node: string) => NodeHealth,
): DeploymentDecision {
  const stops: Stop[] = [];
  const live: AllocationRecord[] = [];
  for (const a of allocations) {
    if (a.desired !== 'run') continue;
    if (isTerminal(a)) stops.push({ id: a.id, reason: a.reason || `replica ${a.status}` });
    else if (nodeHealth(a.node) === 'down') stops.push({ id: a.id, reason: `node ${a.node} is down`, fail: true });
    else live.push(a);
  }
  const replicas = record.spec.replicas;
  const rollout = record.spec.rollout;
  let maxSurge = rollout?.maxSurge ?? 1;
  const maxUnavailable = rollout?.maxUnavailable ?? 0;
  if (maxSurge === 0 && maxUnavailable === 0) maxSurge = 1;

  const current = live.filter((a) => a.generation === record.generation && nodeHealth(a.node) === 'ready');
  const outdated = live.filter((a) => !current.includes(a));
  const ready = (a: AllocationRecord) => a.status === 'ready';
  let asks = 0;
  if (outdated.length === 0) {
    if (current.length < replicas) asks = replicas - current.length;
    // Scale down: the least useful first (not ready, then the newest).
    const extra = [...current].sort((a, b) => Number(ready(a)) - Number(ready(b)) || b.createdAtMs - a.createdAtMs).slice(0, Math.max(0, current.length - replicas));
    for (const a of extra) stops.push({ id: a.id, reason: `scaled down to ${replicas}` });
  } else {
    const total = current.length + outdated.length;
    asks = Math.max(0, Math.min(replicas - current.length, replicas + maxSurge - total));
    let readyCount = live.filter(ready).length;
    const minReady = replicas - maxUnavailable;
    const surplus = Math.max(0, total - replicas);
    let stopped = 0;
    for (const a of [...outdated].sort((x, y) => Number(ready(x)) - Number(ready(y)))) {
      const why = nodeHealth(a.node) === 'draining' ? `node ${a.node} is draining` : `replaced by generation ${record.generation}`;
      if (!ready(a)) {
        // A replica that is not ready serves nothing; it goes once a newer one is on its way.
        if (stopped < surplus || current.length + asks >= replicas) {
          stops.push({ id: a.id, reason: why });
          stopped += 1;
        }
      } else if (readyCount - 1 >= minReady) {
        stops.push({ id: a.id, reason: why });
        readyCount -= 1;
        stopped += 1;
      }
    }
  }
  const readyCurrent = current.filter(ready).length;
  const status: DeploymentStatus = readyCurrent >= replicas && outdated.length === 0 ? 'available' : 'progressing';
  return { asks, stops, status };
}

export interface JobDecision {
  /**
   * Workers to place now: every rank of the next attempt, or — partitions being placed
   * independently — the ranks of the running attempt not placed yet.
   */
  place: { attempt: number; ranks: number[] } | undefined;
  stops: Stop[];
  /** The job record to store, when it changes. */
  next: JobRecord | undefined;
  /** An event to record with the change. */
  event: { type: string; message: string } | undefined;
  /** Every partition of the attempt exited 0 with its part stored: make the output dataset from these (by rank). */
  assemble: AllocationRecord[] | undefined;
}

const ENDED: ReadonlySet<JobStatus> = new Set(['succeeded', 'failed', 'cancelled']);

/**
 * Runs a job to completion: every worker of an attempt exiting 0 → succeeded; any worker
 * failing (or preempted, or its node lost) fails the attempt as a whole, and the job is retried
 * after `retryBackoffMs` × 2^(attempt-1) until `maxRetries` retries are spent; past its deadline
 * the attempt is stopped and the job fails. A gang's workers are placed together; a partitioned
 * job's one by one as capacity allows, the attempt running while some still wait. With an
 * output dataset, success waits for the dataset, made from the partitions' parts (`assemble`).
 */
export function decideJob(record: JobRecord, allocations: AllocationRecord[], now: number, nodeHealth: (node: string) => NodeHealth): JobDecision {
  const none: JobDecision = { place: undefined, stops: [], next: undefined, event: undefined, assemble: undefined };
  const count = workerCount(record.spec);
  const unit = isPartitioned(record.spec) ? 'partition' : 'worker';
  const current = allocations.filter((a) => a.attempt === record.attempts);
  const stopAll = (reason: string): Stop[] => allocations.filter(isLive).map((a) => ({ id: a.id, reason }));
  if (ENDED.has(record.status)) {
    const stops = stopAll(`job ${record.status}`);
    return stops.length > 0 ? { ...none, stops } : none;
  }
  if (record.status === 'pending') {
    if (current.length > 0 && current.some(isLive)) return { ...none, stops: stopAll('an earlier attempt of the job ended') };
    return now >= record.notBeforeMs ? { ...none, place: { attempt: record.attempts + 1, ranks: ranks(count) } } : none;
  }
  // running
  const lost = current.filter((a) => isLive(a) && nodeHealth(a.node) === 'down');
  const failed = current.find((a) => (isTerminal(a) && a.status !== 'completed') || (a.desired === 'stop' && a.status !== 'completed'));
  // Its agent reports completed only once the part is stored; one that did not push it never will.
  const unstored = record.spec.outputDataset ? current.find((a) => a.status === 'completed' && !a.outputPart) : undefined;
  const cause = failed
    ? `${unit} ${failed.rank} ${failed.status === 'failed' || failed.status === 'stopped' ? '' : 'was stopped: '}${failed.reason || failed.status}`.replace(/ {2,}/g, ' ')
    : lost.length > 0
      ? `${unit} ${lost[0]!.rank}'s node ${lost[0]!.node} is down`
      : unstored
        ? `${unit} ${unstored.rank} exited 0 but its output was not stored`
        : undefined;
  if (cause) {
    const stops = [...lost.map((a) => ({ id: a.id, reason: `node ${a.node} is down`, fail: true })), ...stopAll(`attempt ${record.attempts} failed`).filter((s) => !lost.some((a) => a.id === s.id))];
    if (record.attempts <= record.spec.maxRetries) {
      const delay = (record.spec.retryBackoffMs || 1000) * 2 ** (record.attempts - 1);
      const message = `attempt ${record.attempts} failed (${cause}); retrying in ${formatDuration(delay)}`;
      return { ...none, stops, next: { ...record, status: 'pending', message, notBeforeMs: now + delay }, event: { type: 'Retrying', message } };
    }
    const message = `failed after ${record.attempts} attempt${record.attempts === 1 ? '' : 's'}: ${cause}`;
    return { ...none, stops, next: { ...record, status: 'failed', message, finishedAtMs: now }, event: { type: 'Failed', message } };
  }
  if (current.length === count && current.every((a) => a.status === 'completed')) {
    if (record.spec.outputDataset) return { ...none, assemble: [...current].sort((a, b) => a.rank - b.rank) };
    // Rank 0's agent pushed its /output before it reported completed (agent/job-output.ts).
    const version = current.find((a) => a.rank === 0)?.outputVersion ?? 0;
    const outputModel = record.spec.output && version > 0 ? `${record.spec.output.model}:${version}` : '';
    const pushed = outputModel ? `; its output is model ${outputModel}` : record.spec.output ? '; no output was pushed' : '';
    const message = `${count} ${unit}${count === 1 ? '' : 's'} exited 0${pushed}`;
    return { ...none, next: { ...record, status: 'succeeded', message, finishedAtMs: now, outputModel }, event: { type: 'Succeeded', message } };
  }
  if (record.spec.deadlineMs > 0 && record.startedAtMs > 0 && now - record.startedAtMs > record.spec.deadlineMs) {
    const message = `stopped: its deadline of ${formatDuration(record.spec.deadlineMs)} passed`;
    return { ...none, stops: stopAll('deadline exceeded'), next: { ...record, status: 'failed', message, finishedAtMs: now }, event: { type: 'DeadlineExceeded', message } };
  }
  if (!isPartitioned(record.spec)) return none;
  const placed = new Set(current.map((a) => a.rank));
  const waiting = ranks(count).filter((rank) => !placed.has(rank));
  return waiting.length > 0 ? { ...none, place: { attempt: record.attempts, ranks: waiting } } : none;
}

function ranks(count: number): number[] {
  return Array.from({ length: count }, (_, rank) => rank);
}
