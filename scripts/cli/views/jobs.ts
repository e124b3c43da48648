// Jobs as mlfleetctl shows them: the stable -o json shape (DESIGN "Interfaces users touch":
// `jobs show -o json` has name, status, attempts, allocations, outputModel), the list table and
// the detail block with the current attempt's workers.
import type { Job } from '../../../shared/proto.js';
import { formatDuration } from '../../../shared/units.js';
import { formatLabels, indent, isoOrNull, keyValues, sortedRecord, table, type KeyValue, type Printable } from '../output.js';
import { age, allocationJson, formatResources, resourcesJson, workerTable, type AllocationJson, type ResourcesJson } from './allocations.js';

export interface JobJson {
  name: string;
  tenant: string;
  /** pending | running | succeeded | failed | cancelled */
  status: string;
  /** Attempts started so far. */
  attempts: number;
  /** Why it is pending, or how it ended. */
  message: string;
  /** The model version the job pushed, when it did; '' otherwise. */
  outputModel: string;
  /** Where rank 0's /output goes when the job succeeds (--output-model); null: nowhere. */
  output: { model: string; format: string; type: string; inputFormat: string; outputFormat: string; accuracy: number; labels: Record<string, string> } | null;
  stack: string;
  image: string;
  command: string[];
  env: Record<string, string>;
  datasets: string[];
  /** Per worker. */
  resources: ResourcesJson;
  workers: number;
  maxRetries: number;
  retryBackoffMs: number;
  /** 0: none. */
  deadlineMs: number;
  constraints: Record<string, string>;
  priority: number;
  /** The current (or last) attempt's workers. */
  allocations: AllocationJson[];
  createdAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
}

export function jobJson(job: Job): JobJson {
  const spec = job.spec;
  return {
    name: spec?.name ?? '',
    tenant: job.tenant,
    status: job.status,
    attempts: job.attempts,
    message: job.message,
    outputModel: job.outputModel,
    output: spec?.output
      ? {
          model: spec.output.model,
          format: spec.output.format,
          type: spec.output.metadata?.type ?? '',
          inputFormat: spec.output.metadata?.inputFormat ?? '',
          outputFormat: spec.output.metadata?.outputFormat ?? '',
          accuracy: spec.output.metadata?.accuracy ?? 0,
          labels: sortedRecord(spec.output.metadata?.labels ?? {}),
        }
      : null,
    stack: spec?.stack ?? '',
    image: spec?.image ?? '',
    command: [...(spec?.command ?? [])],
    env: sortedRecord(spec?.env ?? {}),
    datasets: [...(spec?.datasets ?? [])],
    resources: resourcesJson(spec?.resources ?? null),
    workers: spec?.workers ?? 0,
    maxRetries: spec?.maxRetries ?? 0,
    retryBackoffMs: spec?.retryBackoffMs ?? 0,
    deadlineMs: spec?.deadlineMs ?? 0,
    constraints: sortedRecord(spec?.constraints ?? {}),
    priority: spec?.priority ?? 0,
    allocations: job.allocations.map(allocationJson),
    createdAt: isoOrNull(job.createdAtMs),
    startedAt: isoOrNull(job.startedAtMs),
    finishedAt: isoOrNull(job.finishedAtMs),
  };
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
        list.map((j, i) => [j.name, j.status, String(j.workers), String(j.attempts), runTime(jobs[i]!, now), age(jobs[i]!.createdAtMs, now)]),
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
    ['Workers', String(j.workers)],
    ['Resources', `${formatResources(j.resources)} per worker`],
    ['Attempts', `${j.attempts} of at most ${j.maxRetries + 1}${j.maxRetries > 0 ? ` (retry backoff ${formatDuration(j.retryBackoffMs || 1000)}, doubling)` : ''}`],
    ['Deadline', j.deadlineMs > 0 ? formatDuration(j.deadlineMs) : 'none'],
    ['Constraints', formatLabels(j.constraints)],
    ['Priority', String(j.priority)],
  );
  if (Object.keys(j.env).length > 0) head.push(['Env', formatLabels(j.env)]);
  if (j.outputModel) head.push(['Output model', j.outputModel]);
  else if (j.output) head.push(['Output model', `${j.output.model} (rank 0's /output, pushed when the job succeeds)`]);
  head.push(['Created', j.createdAt ?? '-'], ['Started', j.startedAt ?? '-'], ['Finished', j.finishedAt ?? '-'], ['Duration', runTime(job, now)]);
  const workersLine: KeyValue[] = [['Allocations', j.allocations.length === 0 ? '<none>' : `${j.allocations.length} (attempt ${j.allocations[0]!.attempt})`]];
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
