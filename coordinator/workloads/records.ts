// Deployments, jobs and allocations as the store keeps them, and how users see them.
import type { AllocationInfo, Deployment, DeploymentSpec, Job, JobSpec, ResourceRequest } from '../../shared/proto.js';
import type { AllocationState, DeploymentStatus, JobStatus, RunSpec } from '../../shared/workloads.js';
import { TERMINAL_STATES } from '../../shared/workloads.js';

export type WorkloadKind = 'deployment' | 'job';

export interface DeploymentRecord {
  tenant: string;
  spec: DeploymentSpec;
  /** Grows with every change of what the replicas run (spec or resolved model version). */
  generation: number;
  resolvedVersion: number;
  modelDigest: string;
  /** The RunSpec of the current generation (without the per-allocation parts). */
  run: RunSpec;
  createdAtMs: number;
  updatedAtMs: number;
  /**
   * The last good run: fully rolled out and healthy through its watch (rollout-guard.ts). Absent
   * in records from before automatic rollback, and until a first rollout has been watched.
   */
  lastGood?: GoodRun;
  /** Rolled back: stays on lastGood, not following its alias, until applied or promoted again. */
  pinned?: boolean;
  /** A canary in progress: the generation its stable replicas run (the new one is `generation`). */
  canaryOf?: number;
  /** When the current generation's rollout started (for the watch); absent: not watched. */
  rolloutStartedAtMs?: number;
  /** The highest generation ever given (a rollback returns to a lower one); absent: `generation`. */
  highestGeneration?: number;
}

/** What a deployment ran when it was last good, to roll back to. */
export interface GoodRun {
  generation: number;
  resolvedVersion: number;
  modelDigest: string;
  run: RunSpec;
  spec: DeploymentSpec;
}

export interface JobRecord {
  tenant: string;
  spec: JobSpec;
  status: JobStatus;
  /**
   * Attempts started so far (1 while the first runs). A partitioned job retries each partition
   * on its own: the most attempts any partition has taken (a retry counts from when it is due).
   */
  attempts: number;
  /**
   * Partitioned jobs: the partitions that failed at least once, by index — the attempt each is on
   * now and when that attempt may be placed; the others are on attempt 1. Absent until a first
   * retry (and in records from before per-partition retries): every partition is on `attempts`.
   */
  partitionRetries?: Record<number, PartitionRetry>;
  message: string;
  run: RunSpec;
  createdAtMs: number;
  startedAtMs: number;
  finishedAtMs: number;
  /** A retry is not placed before this time. */
  notBeforeMs: number;
  /** NAME:VERSION the job pushed (spec.output), once it succeeded. */
  outputModel: string;
  /** NAME:VERSION assembled from the partitions' parts (spec.outputDataset), once it succeeded; absent in older records. */
  outputDataset?: string;
}

export interface AllocationRecord {
  id: string;
  kind: WorkloadKind;
  workload: string;
  tenant: string;
  node: string;
  priority: number;
  resources: ResourceRequest;
  gpuIndexes: number[];
  hostPort: number;
  run: RunSpec;
  /** Deployments: the generation it runs. */
  generation: number;
  /** Jobs: the attempt it belongs to and its rank in the gang. */
  attempt: number;
  rank: number;
  /** run: the agent should run it; stop: it is being (or has been) stopped. */
  desired: 'run' | 'stop';
  status: AllocationState;
  reason: string;
  endpoint: string;
  exitCode: number;
  /** Jobs with an output model, rank 0 once completed: the version its /output was pushed as (0: none). */
  outputVersion?: number;
  /** Partitions of a job with an output dataset: the blob its /output was stored as, once pushed. */
  outputPart?: OutputPart;
  createdAtMs: number;
  updatedAtMs: number;
}

/** A partition retried on its own: the attempt it is on, placed no sooner than `notBeforeMs`. */
export interface PartitionRetry {
  attempt: number;
  notBeforeMs: number;
}

/** One partition's /output, stored as a blob (a directory tar) that no version names yet. */
export interface OutputPart {
  digest: string;
  sizeBytes: number;
}

/** A partitioned job's workers are its partitions, placed one by one (records from before partitions have none). */
export function isPartitioned(spec: JobSpec): boolean {
  return spec.partitions > 0;
}

/** How many workers each attempt of the job runs: its partitions, or its gang's workers. */
export function workerCount(spec: JobSpec): number {
  return isPartitioned(spec) ? spec.partitions : spec.workers || 1;
}

/** "3 workers", "1 worker", "4 partitions". */
export function workersOf(spec: JobSpec): string {
  const count = workerCount(spec);
  const unit = isPartitioned(spec) ? 'partition' : 'worker';
  return `${count} ${unit}${count === 1 ? '' : 's'}`;
}

const ENDED: ReadonlySet<JobStatus> = new Set(['succeeded', 'failed', 'cancelled']);

/** Succeeded, failed or cancelled: the job runs nothing more. */
export function hasEnded(record: JobRecord): boolean {
  return ENDED.has(record.status);
}

/** The attempt the job's worker of this rank is on: a gang's workers share the job's, a partition has its own. */
export function attemptOf(record: JobRecord, rank: number): number {
  if (!isPartitioned(record.spec) || !record.partitionRetries) return record.attempts;
  return record.partitionRetries[rank]?.attempt ?? 1;
}

/** Whether the job allocation belongs to its rank's current attempt (not to one that failed before). */
export function isCurrent(record: JobRecord, allocation: AllocationRecord): boolean {
  return allocation.attempt === attemptOf(record, allocation.rank);
}

/** "deployment/TENANT/NAME": the key the scheduler spreads and limits replicas by. */
export function workloadKey(kind: WorkloadKind, tenant: string, name: string): string {
  return `${kind}/${tenant}/${name}`;
}

export function isTerminal(allocation: AllocationRecord): boolean {
  return TERMINAL_STATES.has(allocation.status);
}

/** Holds resources on its node: meant to run and not yet ended. */
export function isLive(allocation: AllocationRecord): boolean {
  return allocation.desired === 'run' && !isTerminal(allocation);
}

export function toAllocationInfo(a: AllocationRecord): AllocationInfo {
  return {
    id: a.id,
    kind: a.kind,
    workload: a.workload,
    tenant: a.tenant,
    node: a.node,
    status: a.status,
    reason: a.reason,
    endpoint: a.endpoint,
    resources: a.resources,
    gpuIndexes: a.gpuIndexes,
    hostPort: a.hostPort,
    exitCode: a.exitCode,
    attempt: a.attempt,
    rank: a.rank,
    generation: a.generation,
    desired: a.desired,
    createdAtMs: a.createdAtMs,
    updatedAtMs: a.updatedAtMs,
    modelDigest: a.run.model?.digest ?? '',
  };
}

export function toProtoDeployment(
  record: DeploymentRecord,
  allocations: AllocationRecord[],
  state: { status: DeploymentStatus; message: string },
): Deployment {
  const live = allocations.filter((a) => a.desired === 'run' || !isTerminal(a));
  return {
    spec: record.spec,
    tenant: record.tenant,
    generation: record.generation,
    resolvedVersion: record.resolvedVersion,
    modelDigest: record.modelDigest,
    readyReplicas: live.filter((a) => a.desired === 'run' && a.status === 'ready' && a.generation === record.generation).length,
    status: state.status,
    message: state.message,
    allocations: live.sort(byCreation).map(toAllocationInfo),
    createdAtMs: record.createdAtMs,
    updatedAtMs: record.updatedAtMs,
    autoscaler: null,
    traffic: null,
    lastGoodVersion: record.lastGood?.resolvedVersion ?? 0,
    pinned: record.pinned ?? false,
    canaryReplicas: record.canaryOf === undefined ? 0 : live.filter((a) => a.desired === 'run' && a.status === 'ready' && a.generation === record.generation).length,
  };
}

export function toProtoJob(record: JobRecord, allocations: AllocationRecord[]): Job {
  const current = allocations.filter((a) => isCurrent(record, a)).sort((a, b) => a.rank - b.rank);
  return {
    spec: record.spec,
    tenant: record.tenant,
    status: record.status,
    attempts: record.attempts,
    message: record.message,
    allocations: current.map(toAllocationInfo),
    createdAtMs: record.createdAtMs,
    startedAtMs: record.startedAtMs,
    finishedAtMs: record.finishedAtMs,
    outputModel: record.outputModel,
    outputDataset: record.outputDataset ?? '',
  };
}

export function byCreation(a: AllocationRecord, b: AllocationRecord): number {
  return a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id);
}
