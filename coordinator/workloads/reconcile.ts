// What a deployment or a job needs next, decided from its record and its allocations alone: how
// many new allocations to ask the scheduler for, which allocations to stop, and (jobs) the
// status to move to. Pure: the controller gathers the inputs and carries out the result.
import type { DeploymentStatus } from '../../shared/workloads.js';
import { formatDuration } from '../../shared/units.js';
import { canaryReplicas } from './rollout-guard.js';
import { attemptOf, hasEnded, isLive, isPartitioned, isTerminal, workerCount, workersOf, type AllocationRecord, type DeploymentRecord, type JobRecord, type PartitionRetry } from './records.js';

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
  if (record.canaryOf !== undefined) return decideCanary(record, current, outdated, stops);
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

/**
 * A canary in progress (record.canaryOf): the new generation runs its share of the replicas
 * (rollout-guard.ts canaryReplicas) next to the stable generation's, which is left as it is; any
 * other generation's replicas (a canary replaced by a newer one) go. Promotion ends it: then the
 * rolling update above replaces the stable replicas.
 */
function decideCanary(record: DeploymentRecord, current: AllocationRecord[], outdated: AllocationRecord[], stops: Stop[]): DeploymentDecision {
  const want = canaryReplicas(record.spec.replicas, record.spec.rollout?.canaryPercent ?? 0);
  const byAge = [...current].sort((a, b) => Number(a.status === 'ready') - Number(b.status === 'ready') || b.createdAtMs - a.createdAtMs);
  for (const a of byAge.slice(0, Math.max(0, current.length - want))) stops.push({ id: a.id, reason: `the canary runs ${want} replicas` });
  for (const a of outdated) {
    if (a.generation !== record.canaryOf) stops.push({ id: a.id, reason: `replaced by generation ${record.generation}` });
  }
  return { asks: Math.max(0, want - current.length), stops, status: 'progressing' };
}

export interface JobDecision {
  /**
   * Workers to place now, each in its attempt: every rank of a gang's next attempt, or — partitions
   * being placed independently, each retried on its own — the partitions due and not placed yet.
   */
  place: Array<{ rank: number; attempt: number }>;
  stops: Stop[];
  /** The job record to store, when it changes. */
  next: JobRecord | undefined;
  /** Events to record with the change (one per partition retried). */
  events: Array<{ type: string; message: string }>;
  /** Every partition exited 0 with its part stored: make the output dataset from these (by rank). */
  assemble: AllocationRecord[] | undefined;
}

const NONE: JobDecision = { place: [], stops: [], next: undefined, events: [], assemble: undefined };

/**
 * Runs a job to completion: every worker exiting 0 → succeeded; past its deadline everything is
 * stopped and the job fails. A gang's workers are placed together, and any of them failing (or
 * preempted, or its node lost) fails the attempt as a whole: the job is retried after
 * `retryBackoffMs` × 2^(attempt-1) until `maxRetries` retries are spent. A partitioned job's
 * partitions are placed one by one as capacity allows and retried one by one (decidePartitions).
 * With an output dataset, success waits for the dataset, made from the partitions' parts (`assemble`).
 */
export function decideJob(record: JobRecord, allocations: AllocationRecord[], now: number, nodeHealth: (node: string) => NodeHealth): JobDecision {
  const count = workerCount(record.spec);
  const current = allocations.filter((a) => a.attempt === record.attempts);
  if (hasEnded(record)) {
    const stops = stopAll(allocations, `job ${record.status}`);
    return stops.length > 0 ? { ...NONE, stops } : NONE;
  }
  if (record.status === 'pending') {
    if (current.length > 0 && current.some(isLive)) return { ...NONE, stops: stopAll(allocations, 'an earlier attempt of the job ended') };
    return now >= record.notBeforeMs ? { ...NONE, place: ranks(count).map((rank) => ({ rank, attempt: record.attempts + 1 })) } : NONE;
  }
  if (isPartitioned(record.spec)) return decidePartitions(record, allocations, now, nodeHealth);
  // A running gang.
  const lost = current.filter((a) => isLive(a) && nodeHealth(a.node) === 'down');
  const failed = current.find(failedWorker);
  const cause = failed
    ? `worker ${failed.rank} ${failed.status === 'failed' || failed.status === 'stopped' ? '' : 'was stopped: '}${failed.reason || failed.status}`.replace(/ {2,}/g, ' ')
    : lost.length > 0
      ? `worker ${lost[0]!.rank}'s node ${lost[0]!.node} is down`
      : undefined;
  if (cause) {
    const stops = [...lost.map(lostStop), ...stopAll(allocations, `attempt ${record.attempts} failed`).filter((s) => !lost.some((a) => a.id === s.id))];
    if (record.attempts <= record.spec.maxRetries) {
      const delay = retryDelay(record, record.attempts);
      const message = `attempt ${record.attempts} failed (${cause}); retrying in ${formatDuration(delay)}`;
      return { ...NONE, stops, next: { ...record, status: 'pending', message, notBeforeMs: now + delay }, events: [{ type: 'Retrying', message }] };
    }
    const message = `failed after ${record.attempts} attempt${record.attempts === 1 ? '' : 's'}: ${cause}`;
    return { ...NONE, stops, next: { ...record, status: 'failed', message, finishedAtMs: now }, events: [{ type: 'Failed', message }] };
  }
  if (current.length === count && current.every((a) => a.status === 'completed')) return succeed(record, current, now);
  return pastDeadline(record, allocations, now) ?? NONE;
}

/**
 * A running partitioned job, partition by partition (like a Kubernetes Indexed Job with a backoff
 * limit per index): a partition that fails (exits non-zero, is preempted, loses its node, exits 0
 * without its part stored) is retried on its own after `retryBackoffMs` × 2^(n-1) for its n-th
 * retry, while the others keep running and those that completed keep their result. One that has
 * spent its `maxRetries` fails the job and the others are stopped. All completed → succeeded.
 */
function decidePartitions(record: JobRecord, allocations: AllocationRecord[], now: number, nodeHealth: (node: string) => NodeHealth): JobDecision {
  const place: JobDecision['place'] = [];
  const lostStops: Stop[] = [];
  // Until a partition is first retried, every partition is on the job's attempt (records from before start there too).
  const retries: Record<number, PartitionRetry> = record.partitionRetries
    ? { ...record.partitionRetries }
    : record.attempts > 1
      ? Object.fromEntries(ranks(record.spec.partitions).map((rank) => [rank, { attempt: record.attempts, notBeforeMs: 0 }]))
      : {};
  const retried: Array<{ rank: number; attempt: number; cause: string; delay: number }> = [];
  const done: AllocationRecord[] = [];
  let spent: { rank: number; attempt: number; cause: string } | undefined;
  for (const rank of ranks(record.spec.partitions)) {
    const attempt = attemptOf(record, rank);
    const mine = allocations.filter((a) => a.rank === rank && a.attempt === attempt);
    const failed = mine.find(failedWorker);
    const lost = mine.find((a) => isLive(a) && nodeHealth(a.node) === 'down');
    const completed = mine.find((a) => a.status === 'completed');
    // Its agent reports completed only once the part is stored; one that did not push it never will.
    const unstored = record.spec.outputDataset && completed && !completed.outputPart;
    const cause = failed
      ? `${failed.status === 'failed' || failed.status === 'stopped' ? '' : 'was stopped: '}${failed.reason || failed.status}`
      : lost
        ? `its node ${lost.node} is down`
        : unstored
          ? 'exited 0 but its output was not stored'
          : undefined;
    if (lost) lostStops.push(lostStop(lost));
    if (cause) {
      if (attempt > record.spec.maxRetries) spent ??= { rank, attempt, cause };
      else {
        const delay = retryDelay(record, attempt);
        retries[rank] = { attempt: attempt + 1, notBeforeMs: now + delay };
        retried.push({ rank, attempt, cause, delay });
      }
    } else if (completed) done.push(completed);
    else if (mine.length === 0 && now >= (record.partitionRetries?.[rank]?.notBeforeMs ?? 0)) place.push({ rank, attempt });
  }
  if (spent) {
    const { rank, attempt, cause } = spent;
    const message = `partition ${rank} failed after ${attempt} attempt${attempt === 1 ? '' : 's'}: ${cause}`;
    const stops = [...lostStops, ...stopAll(allocations, `partition ${rank} failed`).filter((s) => !lostStops.some((l) => l.id === s.id))];
    return { ...NONE, stops, next: { ...record, status: 'failed', message, finishedAtMs: now }, events: [{ type: 'Failed', message }] };
  }
  if (done.length === record.spec.partitions) return succeed(record, done, now);
  const deadline = pastDeadline(record, allocations, now);
  if (deadline) return deadline;
  if (retried.length === 0) return { ...NONE, place };
  const events = retried.map(({ rank, attempt, cause, delay }) => ({
    type: 'Retrying',
    message: `partition ${rank} failed in its attempt ${attempt} (${cause}); retrying it in ${formatDuration(delay)}`,
  }));
  const attempts = Math.max(record.attempts, ...retried.map((r) => r.attempt + 1));
  const next: JobRecord = { ...record, attempts, partitionRetries: retries, message: events.at(-1)!.message };
  return { ...NONE, place, stops: lostStops, next, events };
}

/** Every worker (partition) exited 0: succeeded, or — with an output dataset — assemble it first. */
function succeed(record: JobRecord, workers: AllocationRecord[], now: number): JobDecision {
  const sorted = [...workers].sort((a, b) => a.rank - b.rank);
  if (record.spec.outputDataset) return { ...NONE, assemble: sorted };
  // Rank 0's agent pushed its /output before it reported completed (agent/job-output.ts).
  const version = sorted.find((a) => a.rank === 0)?.outputVersion ?? 0;
  const outputModel = record.spec.output && version > 0 ? `${record.spec.output.model}:${version}` : '';
  const pushed = outputModel ? `; its output is model ${outputModel}` : record.spec.output ? '; no output was pushed' : '';
  const message = `${workersOf(record.spec)} exited 0${pushed}`;
  return { ...NONE, next: { ...record, status: 'succeeded', message, finishedAtMs: now, outputModel }, events: [{ type: 'Succeeded', message }] };
}

function pastDeadline(record: JobRecord, allocations: AllocationRecord[], now: number): JobDecision | undefined {
  if (!(record.spec.deadlineMs > 0 && record.startedAtMs > 0 && now - record.startedAtMs > record.spec.deadlineMs)) return undefined;
  const message = `stopped: its deadline of ${formatDuration(record.spec.deadlineMs)} passed`;
  return { ...NONE, stops: stopAll(allocations, 'deadline exceeded'), next: { ...record, status: 'failed', message, finishedAtMs: now }, events: [{ type: 'DeadlineExceeded', message }] };
}

/** Ended without exiting 0, or told to stop (preempted) before it did. */
function failedWorker(a: AllocationRecord): boolean {
  return (isTerminal(a) && a.status !== 'completed') || (a.desired === 'stop' && a.status !== 'completed');
}

/** The wait before retry n (of the job's attempt, or of one partition): the backoff, doubling. */
function retryDelay(record: JobRecord, n: number): number {
  return (record.spec.retryBackoffMs || 1000) * 2 ** (n - 1);
}

function stopAll(allocations: AllocationRecord[], reason: string): Stop[] {
  return allocations.filter(isLive).map((a) => ({ id: a.id, reason }));
}

function lostStop(a: AllocationRecord): Stop {
  return { id: a.id, reason: `node ${a.node} is down`, fail: true };
}

function ranks(count: number): number[] {
  return Array.from({ length: count }, (_, rank) => rank);
}
