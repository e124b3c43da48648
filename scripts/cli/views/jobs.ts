// Jobs as mlfleetctl shows them: the stable -o json shape (DESIGN "Interfaces users touch":
// `jobs show -o json` has name, status, attempts, allocations, outputModel; partitioned jobs add
// partitions and outputDataset), the list table and the detail block with the current attempt's
// workers.
import type { Job } from '../../../shared/proto.js';
import { formatDuration } from '../../../shared/units.js';
import { formatLabels, indent, keyValues, table, type KeyValue, type Printable } from '../output.js';
import { age, formatResources, workerTable } from './allocations.js';
import { jobJson, type JobJson } from '../../../shared/views/jobs.js';

export { jobJson, type JobJson };

/** "4: 2 completed, 1 running, 1 waiting for capacity" — the current attempt's partitions by state. */
function partitionsLine(j: JobJson): string {
  const counts = new Map<string, number>();
  for (const a of j.allocations) counts.set(a.status, (counts.get(a.status) ?? 0) + 1);
  const waiting = j.status === 'running' || j.status === 'pending' ? j.partitions - j.allocations.length : 0;
  const parts = [...counts].map(([status, n]) => `${n} ${status}`);
  if (waiting > 0) parts.push(`${waiting} waiting to be placed`);
  return parts.length > 0 ? `${j.partitions}: ${parts.join(', ')}` : String(j.partitions);
}

/** "2 of at most 3 (retry backoff 30s, doubling)"; a partitioned job retries each partition on its own. */
function attemptsLine(j: JobJson): string {
  const backoff = j.maxRetries > 0 ? `retry backoff ${formatDuration(j.retryBackoffMs || 1000)}, doubling` : '';
  if (j.partitions > 0) return `${j.attempts} (the most of any partition; at most ${j.maxRetries + 1} per partition${backoff ? `, ${backoff}` : ''})`;
  return `${j.attempts} of at most ${j.maxRetries + 1}${backoff ? ` (${backoff})` : ''}`;
}

/** How long it ran (so far); "-" before it started. */
function runTime(job: Job, now: number): string {
  if (job.startedAtMs <= 0) return '-';
  return formatDuration(Math.max(0, (job.finishedAtMs > 0 ? job.finishedAtMs : now) - job.startedAtMs));
}

/** `jobs ls`: a JSON array, or one row per job. */
export function jobListView(jobs: readonly Job[], now = Date.now()): Printable {
  const list = jobs.map(jobJson);
  return {
    data: list,
    table: () =>
      table(
        ['NAME', 'STATUS', 'WORKERS', 'ATTEMPTS', 'DURATION', 'AGE'],
        list.map((j, i) => [j.name, j.status, j.partitions > 0 ? `${j.partitions} partitions` : String(j.workers), String(j.attempts), runTime(jobs[i]!, now), age(jobs[i]!.createdAtMs, now)]),
      ),
  };
}

function detailTable(job: Job, now: number): string {
  const j = jobJson(job);
  const head: KeyValue[] = [
    ['Name', j.name],
    ['Tenant', j.tenant || '-'],
    ['Status', j.status],
  ];
  if (j.message) head.push(['Message', j.message]);
  head.push(
    [j.stack ? 'Stack' : 'Image', j.stack || j.image],
    ['Command', j.command.length > 0 ? j.command.join(' ') : "<the stack's>"],
    ['Datasets', j.datasets.length > 0 ? j.datasets.join(', ') : '<none>'],
    j.partitions > 0 ? ['Partitions', partitionsLine(j)] : ['Workers', String(j.workers)],
    ['Resources', `${formatResources(j.resources)} per worker`],
    ['Attempts', attemptsLine(j)],
    ['Deadline', j.deadlineMs > 0 ? formatDuration(j.deadlineMs) : 'none'],
    ['Constraints', formatLabels(j.constraints)],
    ['Priority', String(j.priority)],
  );
  if (Object.keys(j.env).length > 0) head.push(['Env', formatLabels(j.env)]);
  if (j.outputModel) head.push(['Output model', j.outputModel]);
  else if (j.outputDataset) head.push(['Output dataset', j.outputDataset]);
  else if (j.output && 'dataset' in j.output) head.push(['Output dataset', `${j.output.dataset} (the union of the partitions' /output, made when all exited 0)`]);
  else if (j.output) head.push(['Output model', `${j.output.model} (rank 0's /output, pushed when the job succeeds)`]);
  head.push(['Created', j.createdAt ?? '-'], ['Started', j.startedAt ?? '-'], ['Finished', j.finishedAt ?? '-'], ['Duration', runTime(job, now)]);
  const attempts = [...new Set(j.allocations.map((a) => a.attempt))].sort((x, y) => x - y);
  const workersLine: KeyValue[] = [['Allocations', j.allocations.length === 0 ? '<none>' : `${j.allocations.length} (attempt${attempts.length === 1 ? '' : 's'} ${attempts.join(', ')})`]];
  const blocks = [keyValues(head, workersLine), keyValues(workersLine, head)];
  if (j.allocations.length > 0) blocks.push(indent(workerTable(job.allocations, now)));
  return blocks.join('\n');
}

/** `jobs show`: the job object, or its detail with the workers table. */
export function jobDetailView(job: Job, now = Date.now()): Printable {
  return { data: jobJson(job), table: () => detailTable(job, now) };
}

/** `jobs run`: "job/NAME created", then the job. */
export function jobCreatedView(job: Job, now = Date.now()): Printable {
  return { data: jobJson(job), table: () => `job/${job.spec?.name ?? ''} created\n\n${detailTable(job, now)}` };
}

/** `jobs cancel`: one line, or the job. */
export function jobCancelledView(job: Job): Printable {
  const j = jobJson(job);
  const line = j.status === 'cancelled' ? `job/${j.name} cancelled` : `job/${j.name} had already ended: ${j.status}`;
  return { data: j, table: () => line };
}
