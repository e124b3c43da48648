// The -o json shape of mlfleetctl and the REST API (coordinator/rest/): one copy for both.
// Moved from scripts/cli/views/jobs.ts, which keeps the table and detail renderings.
import type { Job } from '../proto.js';
import { isoOrNull, sortedRecord } from './json.js';
import { allocationJson, resourcesJson, type AllocationJson, type ResourcesJson } from './allocations.js';
import { modelDescriptionJson, type ModelDescriptionJson } from './artifacts.js';

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
  /** The dataset version made from the partitions' outputs ("name:3"), once it succeeded; '' otherwise. */
  outputDataset: string;
  /**
   * Where the job's output goes when it succeeds, as YAML's `output:` says it: rank 0's /output
   * as a model (--output-model), or the partitions' /output as a dataset (--output-dataset);
   * null: nowhere.
   */
  output: ModelOutputJson | { dataset: string } | null;
  /** 0: not partitioned; K: K workers, one per partition. */
  partitions: number;
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

interface ModelOutputJson extends ModelDescriptionJson {
  model: string;
  format: string;
}

function outputJson(spec: Job['spec']): JobJson['output'] {
  if (spec?.outputDataset) return { dataset: spec.outputDataset };
  if (!spec?.output) return null;
  const { model, format, metadata } = spec.output;
  return { model, format, ...modelDescriptionJson(metadata) };
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
    outputDataset: job.outputDataset,
    output: outputJson(spec),
    partitions: spec?.partitions ?? 0,
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
