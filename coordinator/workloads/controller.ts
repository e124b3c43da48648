// The leader's workload controller: holds every deployment, job and allocation (loaded from the
// store when leadership is won, kept in step by its own writes), and runs the reconcile pass —
// decide what each workload needs (reconcile.ts), ask the pure scheduler for a plan, commit the
// plan with an optimistic transaction (plan-commit.ts), and send every node whose allocations
// changed its full desired set. One mutation runs at a time (API calls, agent reports and passes
// share one queue), so decisions never interleave. A partitioned job's output dataset is
// assembled outside the queue (dataset-assembly.ts), its outcome recorded through it.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Clock, Timer } from '../../shared/clock.js';
import { AlreadyExistsError, ConflictError, FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError, ResourceExhaustedError, UnavailableError } from '../../shared/errors.js';
import { KeyedMutex } from '../../shared/keyed-mutex.js';
import { keys } from '../../shared/keys.js';
import type { Logger } from '../../shared/log.js';
import type { Allocation, AllocationStatus, Deployment, DeploymentSpec, Job, JobSpec, ResourceRequest, Resources } from '../../shared/proto.js';
import type { Op, Store } from '../../shared/store/store.js';
import { formatHostPort, parseHostPort } from '../../shared/config.js';
import { ALLOCATION_STATES, JOB_PEER_PORT, TERMINAL_STATES, type AllocationState, type DeploymentStatus } from '../../shared/workloads.js';
import { displayStatus, NOTHING_ALLOCATED } from '../node-record.js';
import type { FencedWriter, NodeRegistry } from '../node-registry.js';
import type { ArtifactRegistry } from '../registry/artifact-registry.js';
import { schedule } from '../scheduler/scheduler.js';
import type { Ask, Plan, SchedAllocation, SchedNode, Snapshot, TenantQuota } from '../scheduler/types.js';
import { findTenant, listTenants } from '../tenants.js';
import type { EventInput, EventLog } from './event-log.js';
import { commitPlan, type PlanWrite } from './plan-commit.js';
import type { StartPhaseBook } from './start-phases.js';
import { assembleDataset, failsTheJob } from './dataset-assembly.js';
import { rollsOut, updatedMessage } from './deployment-update.js';
import { crashLoopMessage, decideCrashBackoff, DEFAULT_CRASH_BACKOFF, type CrashBackoffPolicy, type CrashLoop } from './crash-backoff.js';
import { decideDeployment, decideJob, type NodeHealth, type Stop } from './reconcile.js';
import {
  byCreation,
  hasEnded,
  isCurrent,
  isLive,
  isPartitioned,
  isTerminal,
  toProtoDeployment,
  toProtoJob,
  workerCount,
  workersOf,
  workloadKey,
  type AllocationRecord,
  type DeploymentRecord,
  type JobRecord,
  type OutputPart,
  type WorkloadKind,
} from './records.js';
import { resolveDeployment, resolveJob, type StackLookup } from './resolve.js';
import { quoted } from '../../shared/truncate.js';

export interface WorkloadControllerOptions {
  /** Host ports handed to serving replicas. */
  portRange: [number, number];
  /** How often every workload is looked at even when nothing happened (deadlines, alias moves). */
  tickMs: number;
  /** How long an ended job's containers (and their logs) are kept on the hosts. */
  jobRetentionMs: number;
  /** Ended allocations are forgotten this long after they ended. */
  allocationRetentionMs: number;
  /** How replacements of failing replicas back off (crash-backoff.ts). */
  crashBackoff: CrashBackoffPolicy;
}

export const DEFAULT_CONTROLLER_OPTIONS: WorkloadControllerOptions = {
  portRange: [20_000, 29_999],
  tickMs: 2_000,
  jobRetentionMs: 60 * 60_000,
  allocationRetentionMs: 60 * 60_000,
  crashBackoff: DEFAULT_CRASH_BACKOFF,
};

/** What a replica or worker reserves when its spec asks for nothing. */
export const DEFAULT_RESOURCES = { cpuMillis: 100, memoryBytes: 256 * 2 ** 20 };

/** Where a job's output push goes (see WorkloadController.jobOutputTarget). */
export interface JobOutputTarget {
  tenant: string;
  /** model: rank 0's output is the model's next version; dataset: a partition's output is a part of it. */
  kind: 'model' | 'dataset';
  /** The model or dataset name (in `tenant`). */
  name: string;
  /** "job/NAME". */
  sourceJob: string;
  attempt: number;
  /** The dataset versions the job read: "name:3". */
  sourceDatasets: string[];
}

export interface WorkloadControllerDeps {
  store: Store;
  writer: FencedWriter;
  nodes: NodeRegistry;
  artifacts: ArtifactRegistry;
  /** Where deployments and jobs look up the stack they name. */
  stacks: StackLookup;
  events: EventLog;
  clock: Clock;
  log: Logger;
  options?: Partial<WorkloadControllerOptions>;
  /** Called after every reconcile pass (the leader rebuilds the gateways' routing table). */
  onPass?: () => void;
  /** Where output datasets are assembled from their parts (default: the system's temporary directory). */
  scratchDir?: string;
  /** Cold-start bookkeeping: schedule phases, the first ready's event and histograms (start-phases.ts). */
  startPhases?: StartPhaseBook;
}

interface Stored<T> {
  record: T;
  modRevision: number;
}

interface PendingAsk {
  ask: Ask;
  kind: WorkloadKind;
  tenant: string;
  name: string;
  allocation: Omit<AllocationRecord, 'node' | 'gpuIndexes' | 'hostPort'>;
}

const WRITE_CHUNK = 100;

export class WorkloadController {
  private readonly deployments = new Map<string, Stored<DeploymentRecord>>();
  private readonly jobs = new Map<string, Stored<JobRecord>>();
  private readonly allocations = new Map<string, Stored<AllocationRecord>>();
  /** modRevision of each node's plan key as this leader last read or wrote it. */
  private readonly nodePlans = new Map<string, number>();
  /** Why a workload's replicas or workers are waiting (the scheduler's last explanation). */
  private readonly pendingReasons = new Map<string, string>();
  /** Deployments whose replicas keep failing, by key (crash-backoff.ts); this leader's memory only. */
  private readonly crashLoops = new Map<string, CrashLoop>();
  /** The desired set last sent to each node, to send only changes. */
  private readonly sent = new Map<string, string>();
  /** The latest measured p50 latency (ms) of each deployment, by deployment key; memory only. */
  private readonly latencies = new Map<string, number>();
  private readonly queue = new KeyedMutex();
  /** Output datasets being assembled, by job key; memory only (a new leader starts again). */
  private readonly assembling = new Map<string, Promise<void>>();
  /** Aborts assemblies when leadership ends. */
  private readonly stopping = new AbortController();
  private readonly options: WorkloadControllerOptions;
  private readonly ticker: Timer;
  private kicked = false;
  private passing: Promise<void> | undefined;
  private closed = false;
  private lastResolveMs = 0;

  private constructor(private readonly deps: WorkloadControllerDeps) {
    this.options = { ...DEFAULT_CONTROLLER_OPTIONS, ...deps.options };
    this.ticker = deps.clock.setInterval(() => this.kick(), this.options.tickMs);
  }

  static async load(deps: WorkloadControllerDeps): Promise<WorkloadController> {
    const controller = new WorkloadController(deps);
    // What a coordinator that died (or lost leadership) while assembling left behind: the
    // assemblies start again from the parts, which the store keeps.
    if (deps.scratchDir) await fs.rm(deps.scratchDir, { recursive: true, force: true });
    await controller.reload();
    deps.artifacts.usedBy = (kind, tenant, name, version) => controller.versionUser(kind, tenant, name, version);
    deps.artifacts.pinned = (digest) => controller.partPinned(digest);
    deps.log.info({ deployments: controller.deployments.size, jobs: controller.jobs.size, allocations: controller.allocations.size }, 'workloads loaded');
    controller.kick();
    return controller;
  }

  close(): void {
    this.closed = true;
    this.ticker.cancel();
    this.stopping.abort(new Error('no longer the leader'));
    this.deps.artifacts.usedBy = undefined;
    this.deps.artifacts.pinned = undefined;
  }

  /** Waits for the running pass and output assemblies (tests, shutdown). */
  async settle(): Promise<void> {
    while (this.passing || this.assembling.size > 0) await Promise.all([this.passing, ...this.assembling.values()]);
  }

  /** Asks for a reconcile pass soon; passes never overlap and bursts of kicks make one pass. */
  kick(): void {
    if (this.closed) return;
    this.kicked = true;
    if (this.passing) return;
    this.passing = (async () => {
      while (this.kicked && !this.closed) {
        this.kicked = false;
        await this.queue.run('workloads', () => this.pass()).catch((err: unknown) => this.deps.log.warn({ err }, 'reconcile pass failed; the next one retries'));
      }
      this.passing = undefined;
    })();
  }

  // ---- deployments -------------------------------------------------------------------------

  applyDeployment(tenant: string, spec: DeploymentSpec): Promise<{ deployment: Deployment; created: boolean }> {
    return this.mutate(async () => {
      const key = keys.deployment(tenant, spec.name);
      const existing = this.deployments.get(key);
      const resolved = await resolveDeployment(this.deps.artifacts, this.deps.stacks, tenant, spec);
      const now = this.deps.clock.now();
      if (!existing) await this.checkDeploymentQuota(tenant);
      const record: DeploymentRecord = existing
        ? { ...existing.record, spec, updatedAtMs: now }
        : { tenant, spec, generation: 1, resolvedVersion: 0, modelDigest: '', run: resolved.run, createdAtMs: now, updatedAtMs: now };
      const changed = !existing || rollsOut(existing.record, spec, resolved.run);
      if (existing && changed) record.generation = existing.record.generation + 1;
      Object.assign(record, { run: resolved.run, resolvedVersion: resolved.resolvedVersion, modelDigest: resolved.modelDigest });
      if (existing && isDeepStrictEqual(existing.record.spec, spec) && !changed) return { deployment: this.deploymentView(key), created: false };
      await this.putWorkload(this.deployments, key, record, existing);
      this.event({ tenant, object: `deployment/${spec.name}`, type: existing ? (changed ? 'RolloutStarted' : 'Updated') : 'Created', message: existing ? (changed ? `rolling out generation ${record.generation} (model ${resolved.run.model!.ref})` : updatedMessage(existing.record.spec, spec)) : `${spec.replicas} replicas of model ${resolved.run.model!.ref}` });
      this.kick();
      return { deployment: this.deploymentView(key), created: !existing };
    });
  }

  scaleDeployment(tenant: string, name: string, replicas: number): Promise<Deployment> {
    return this.mutate(async () => {
      const [key, existing] = this.deploymentNamed(tenant, name);
      if (existing.record.spec.replicas !== replicas) {
        const record = { ...existing.record, spec: { ...existing.record.spec, replicas }, updatedAtMs: this.deps.clock.now() };
        await this.putWorkload(this.deployments, key, record, existing);
        this.event({ tenant, object: `deployment/${name}`, type: 'Scaled', message: `from ${existing.record.spec.replicas} to ${replicas} replicas` });
        this.kick();
      }
      return this.deploymentView(key);
    });
  }

  deleteDeployment(tenant: string, name: string): Promise<void> {
    return this.mutate(async () => {
      const [key, existing] = this.deploymentNamed(tenant, name);
      const mine = this.allocationsOf('deployment', tenant, name);
      await this.writeStops(mine.filter((a) => a.desired === 'run').map((a) => ({ id: a.id, reason: 'deployment removed' })), [
        { type: 'delete', key },
      ], [{ key, target: 'modRevision', op: '=', value: existing.modRevision }]);
      this.deployments.delete(key);
      this.latencies.delete(key);
      this.pendingReasons.delete(workloadKey('deployment', tenant, name));
      this.event({ tenant, object: `deployment/${name}`, type: 'Deleted', message: `stopping ${mine.filter(isLive).length} replicas` });
      this.pushDesired();
    });
  }

  getDeployment(tenant: string, name: string): Deployment {
    return this.deploymentView(this.deploymentNamed(tenant, name)[0]);
  }

  listDeployments(tenant: string | undefined): Deployment[] {
    const health = this.nodeHealth();
    return listed(this.deployments, tenant).map((key) => this.deploymentView(key, health));
  }

  /**
   * A deployment's measured p50 latency, as agents report it; the latest report wins. Kept in
   * memory like heartbeats: a new leader knows none until the next reports.
   */
  recordLatency(tenant: string, name: string, p50Ms: number): void {
    const key = keys.deployment(tenant, name);
    if (this.deployments.has(key) && Number.isFinite(p50Ms) && p50Ms >= 0) this.latencies.set(key, p50Ms);
  }

  /** The deployment's latest measured p50 latency (ms); undefined until one is reported. */
  latencyOf(tenant: string, name: string): number | undefined {
    return this.latencies.get(keys.deployment(tenant, name));
  }

  /** What names the stack: a deployment, or a job not yet ended; undefined when nothing does. */
  stackUser(stack: string): string | undefined {
    for (const { record } of this.deployments.values()) if (record.spec.stack === stack) return `deployment "${record.spec.name}" of tenant "${record.tenant}"`;
    for (const { record } of this.jobs.values()) {
      if (record.spec.stack === stack && record.finishedAtMs === 0) return `job "${record.spec.name}" of tenant "${record.tenant}"`;
    }
    return undefined;
  }

  // ---- jobs --------------------------------------------------------------------------------

  runJob(tenant: string, spec: JobSpec): Promise<Job> {
    return this.mutate(async () => {
      const key = keys.job(tenant, spec.name);
      if (this.jobs.has(key)) throw new AlreadyExistsError(`job "${spec.name}" already exists; pick another name (jobs are not re-run in place)`);
      const resolved = await resolveJob(this.deps.artifacts, this.deps.stacks, tenant, spec);
      const run = isPartitioned(spec) ? { ...resolved, worldSize: spec.partitions, partitions: spec.partitions, ...(spec.outputDataset ? { outputDataset: spec.outputDataset } : {}) } : resolved;
      const now = this.deps.clock.now();
      const record: JobRecord = {
        tenant,
        spec: { ...spec, workers: spec.workers || 1 },
        status: 'pending',
        attempts: 0,
        message: 'waiting to be placed',
        run,
        createdAtMs: now,
        startedAtMs: 0,
        finishedAtMs: 0,
        notBeforeMs: 0,
        outputModel: '',
        outputDataset: '',
      };
      await this.putWorkload(this.jobs, key, record, undefined);
      this.event({ tenant, object: `job/${spec.name}`, type: 'Created', message: `${workersOf(record.spec)}: ${run.command.join(' ')}` });
      this.kick();
      return this.jobView(key);
    });
  }

  cancelJob(tenant: string, name: string): Promise<Job> {
    return this.mutate(async () => {
      const [key, existing] = this.jobNamed(tenant, name);
      if (hasEnded(existing.record)) {
        throw new FailedPreconditionError(`job "${name}" already ended (${existing.record.status})`);
      }
      const now = this.deps.clock.now();
      await this.putWorkload(this.jobs, key, { ...existing.record, status: 'cancelled', message: 'cancelled', finishedAtMs: now }, existing);
      const mine = this.allocationsOf('job', tenant, name);
      await this.writeStops(mine.filter(isLive).map((a) => ({ id: a.id, reason: 'job cancelled' })));
      this.event({ tenant, object: `job/${name}`, type: 'Cancelled', message: 'cancelled by a user' });
      this.releaseParts(mine);
      this.pushDesired();
      return this.jobView(key);
    });
  }

  getJob(tenant: string, name: string): Job {
    return this.jobView(this.jobNamed(tenant, name)[0]);
  }

  listJobs(tenant: string | undefined): Job[] {
    return listed(this.jobs, tenant).map((key) => this.jobView(key));
  }

  /**
   * Where a node's push of a job's output goes, or why it may not push it: only the agent of the
   * node that runs the allocation, in its rank's current attempt, while it runs, and only for the
   * output the job declares — a model (rank 0's output, taken once every other worker exited 0)
   * or a dataset (every partition's output, a part of it). The name, tenant and lineage come
   * from the job, not the agent.
   */
  jobOutputTarget(node: string, allocationId: string): JobOutputTarget {
    const a = this.allocations.get(allocationId)?.record;
    const refuse = (why: string) => new PermissionDeniedError(`node "${node}" may not push the output of allocation ${allocationId.slice(0, 8)}: ${why}`);
    if (!a || a.node !== node) throw refuse('no such job allocation is placed on it');
    if (a.kind !== 'job') throw refuse('it is not a job allocation');
    const job = this.jobs.get(keys.job(a.tenant, a.workload))?.record;
    if (!job?.spec.output && !job?.spec.outputDataset) throw refuse(`job "${a.workload}" declares no output`);
    const dataset = job.spec.outputDataset;
    if (!dataset && a.rank !== 0) throw refuse(`it is worker ${a.rank}; only rank 0's output is pushed`);
    if (!isCurrent(job, a) || job.status !== 'running' || !isLive(a)) throw refuse(`it is not running in the current attempt of job "${a.workload}"`);
    const target = {
      tenant: a.tenant,
      sourceJob: `job/${job.spec.name}`,
      attempt: a.attempt,
      sourceDatasets: job.run.datasets.map((d) => `${d.name}:${d.version}`),
    };
    if (dataset) return { ...target, kind: 'dataset', name: dataset };
    // A job's output model is its success: taken once every other worker (in its current attempt)
    // exited 0 (the agent tries again meanwhile). Should a gang's worker fail instead, the attempt
    // fails and this is refused.
    const completed = new Set(this.allocationsOf('job', a.tenant, a.workload).filter((o) => isCurrent(job, o) && o.status === 'completed').map((o) => o.rank));
    const waiting = Array.from({ length: workerCount(job.spec) }, (_, rank) => rank).filter((rank) => rank !== a.rank && !completed.has(rank));
    if (waiting.length > 0) {
      throw new UnavailableError(`job "${a.workload}": worker${waiting.length === 1 ? '' : 's'} ${waiting.join(', ')} not done yet; its output is taken once every worker exited 0`);
    }
    return { ...target, kind: 'model', name: job.spec.output!.model };
  }

  /**
   * Records the stored part of a partition's output on its allocation (persisted, so a new
   * leader assembles from it); a part recorded before (the agent pushed again after a restart)
   * stays, and is the answer.
   */
  recordOutputPart(node: string, allocationId: string, part: OutputPart): Promise<OutputPart> {
    return this.mutate(async () => {
      const target = this.jobOutputTarget(node, allocationId);
      if (target.kind !== 'dataset') throw new FailedPreconditionError(`job allocation ${allocationId.slice(0, 8)} pushes model ${target.name}, not a part of a dataset`);
      const current = this.allocations.get(allocationId)!.record;
      if (current.outputPart) return current.outputPart;
      await this.writeAllocations([{ ...current, outputPart: { digest: part.digest, sizeBytes: part.sizeBytes }, updatedAtMs: this.deps.clock.now() }]);
      return part;
    });
  }

  /**
   * A part a running job still needs to assemble its output dataset: that of a partition's current
   * attempt (a completed partition keeps its part while others retry), not of one that failed.
   */
  private partPinned(digest: string): boolean {
    for (const { record: a } of this.allocations.values()) {
      if (a.outputPart?.digest !== digest) continue;
      const job = this.jobs.get(keys.job(a.tenant, a.workload))?.record;
      if (job?.status === 'running' && isCurrent(job, a)) return true;
    }
    return false;
  }

  /** Deletes the parts these allocations stored, unless a version or a running job's current partition uses them. */
  private releaseParts(allocations: AllocationRecord[]): void {
    const digests = new Set(allocations.flatMap((a) => (a.outputPart ? [a.outputPart.digest] : [])));
    for (const digest of digests) {
      this.deps.artifacts.releaseBlob(digest).catch((err: unknown) => this.deps.log.warn({ err, digest }, 'could not delete an output part; it is tried again when its allocation is forgotten'));
    }
  }

  // ---- allocations -------------------------------------------------------------------------

  listAllocations(filter: { tenant: string | undefined; node: string; workload: string; all: boolean }): AllocationRecord[] {
    return [...this.allocations.values()]
      .map((s) => s.record)
      .filter((a) => filter.tenant === undefined || a.tenant === filter.tenant)
      .filter((a) => !filter.node || a.node === filter.node)
      .filter((a) => !filter.workload || a.workload === filter.workload || `${a.kind}/${a.workload}` === filter.workload)
      .filter((a) => filter.all || a.desired === 'run' || !isTerminal(a))
      .sort(byCreation);
  }

  /** An allocation by id or unique id prefix, within `tenant` (undefined: any). */
  findAllocation(idOrPrefix: string, tenant: string | undefined): AllocationRecord {
    const matches = [...this.allocations.values()].map((s) => s.record).filter((a) => a.id.startsWith(idOrPrefix) && (tenant === undefined || a.tenant === tenant));
    if (matches.length === 0) throw new NotFoundError(`allocation ${quoted(idOrPrefix)} not found; \`mlfleetctl ps --all\` lists them`);
    if (matches.length > 1) throw new InvalidArgumentError(`allocation prefix ${quoted(idOrPrefix)} is ambiguous (${matches.length} match); give more of the id`);
    return matches[0]!;
  }

  /** Compute a tenant holds now (allocations placed and not ended). */
  usage(tenant: string): Resources & { deployments: number } {
    const used = this.held((a) => (a.tenant === tenant ? tenant : undefined)).get(tenant) ?? { ...NOTHING_ALLOCATED };
    return { ...used, deployments: listed(this.deployments, tenant).length };
  }

  /** What live allocations hold on every node that holds anything (whole GPUs count their devices' memory). */
  allocatedByNode(): Map<string, Resources> {
    return this.held((a) => a.node);
  }

  /** Sums what live allocations hold, grouped by `group` (undefined: left out); one pass. */
  private held(group: (a: AllocationRecord) => string | undefined): Map<string, Resources> {
    const sums = new Map<string, Resources>();
    for (const { record: a } of this.allocations.values()) {
      const key = isLive(a) ? group(a) : undefined;
      if (key === undefined) continue;
      let sum = sums.get(key);
      if (!sum) sums.set(key, (sum = { ...NOTHING_ALLOCATED }));
      sum.cpuMillis += a.resources.cpuMillis;
      sum.memoryBytes += a.resources.memoryBytes;
      sum.gpus += a.resources.gpus;
      sum.gpuMemoryBytes += a.resources.gpus > 0 ? this.gpuMemoryHeld(a) : a.resources.gpuMemoryBytes;
      sum.nicMbps += a.resources.nicMbps;
    }
    return sums;
  }

  // ---- agents ------------------------------------------------------------------------------

  /** The full desired set of a node: what its agent should run. */
  desiredFor(node: string): Allocation[] {
    return this.desiredOn(node).map((s) => toAgentAllocation(s.record, s.modRevision));
  }

  /** The digests of the blobs (model, datasets) the allocations a node should run use: what its credential may download. */
  blobsOf(node: string): Set<string> {
    const digests = new Set<string>();
    for (const { record } of this.desiredOn(node)) {
      if (record.run.model) digests.add(record.run.model.digest);
      for (const dataset of record.run.datasets) digests.add(dataset.digest);
    }
    return digests;
  }

  /** The node's agent sent it its set (on hello): remember, so only changes are pushed. */
  markSent(node: string): void {
    this.sent.set(node, desiredSignature(this.desiredOn(node).map((s) => s.record)));
  }

  private desiredOn(node: string): Array<Stored<AllocationRecord>> {
    return [...this.allocations.values()].filter((s) => s.record.node === node && s.record.desired === 'run');
  }

  /** Allocation states reported by a node's agent (hello or status report). */
  reportStatuses(node: string, statuses: AllocationStatus[]): Promise<void> {
    if (statuses.length === 0) return Promise.resolve();
    return this.mutate(async () => {
      const updates: AllocationRecord[] = [];
      const now = this.deps.clock.now();
      for (const status of statuses) {
        const stored = this.allocations.get(status.id);
        if (!stored || stored.record.node !== node) continue;
        const current = stored.record;
        const state = status.state as AllocationState;
        if (!ALLOCATION_STATES.includes(state)) continue;
        // A stopping allocation only ends; its last reports of running on change nothing.
        if (current.desired === 'stop' && !TERMINAL_STATES.has(state)) continue;
        // An ended allocation stays ended (a late report of an earlier state changes nothing).
        if (isTerminal(current) && !(current.status === 'failed' && state === 'stopped') && current.status !== state) continue;
        const next: AllocationRecord = {
          ...current,
          status: state === 'stopped' && current.status === 'failed' ? 'failed' : state,
          reason: current.desired === 'stop' && current.reason && (state === 'stopped' || state === 'running' || state === 'ready') ? current.reason : status.reason,
          endpoint: status.endpoint,
          exitCode: status.exitCode,
          outputVersion: state === 'completed' ? status.outputVersion || current.outputVersion || 0 : current.outputVersion || 0,
        };
        if (next.status === current.status && next.reason === current.reason && next.endpoint === current.endpoint && next.exitCode === current.exitCode && next.outputVersion === (current.outputVersion || 0)) continue;
        next.updatedAtMs = now;
        updates.push(next);
        if (next.status !== current.status) {
          this.event({
            tenant: next.tenant,
            object: `${next.kind}/${next.workload}`,
            allocation: next.id,
            node,
            type: STATE_EVENTS[next.status],
            message: [next.reason, next.endpoint && next.status === 'ready' ? `at ${next.endpoint}` : ''].filter(Boolean).join(' ') || next.status,
          });
          const phases = next.status === 'ready' && this.deps.startPhases && status.startPhases?.length ? this.deps.startPhases.ready(next.id, status.startPhases) : undefined;
          if (phases) this.event({ tenant: next.tenant, object: `${next.kind}/${next.workload}`, allocation: next.id, node, type: 'ColdStart', message: phases });
        }
      }
      if (updates.length > 0) {
        await this.writeAllocations(updates);
        this.kick();
      }
    });
  }

  // ---- the pass ----------------------------------------------------------------------------

  private async pass(): Promise<void> {
    const now = this.deps.clock.now();
    const health = this.nodeHealth();
    if (now - this.lastResolveMs >= this.options.tickMs) {
      this.lastResolveMs = now;
      await this.followModelRefs();
    }
    const stops: Stop[] = [];
    const pending: PendingAsk[] = [];
    const statuses = new Map<string, { status: DeploymentStatus }>();
    const byWorkload = this.byWorkload();

    for (const [key, { record }] of this.deployments) {
      const mine = byWorkload.get(workloadKey('deployment', record.tenant, record.spec.name)) ?? [];
      const decision = decideDeployment(record, mine, health);
      const asks = this.crashBackoff(key, record, mine, now) ? 0 : decision.asks;
      this.deps.startPhases?.short(workloadKey('deployment', record.tenant, record.spec.name), decision.asks, now);
      stops.push(...decision.stops);
      statuses.set(key, { status: decision.status });
      for (let i = 0; i < asks; i++) pending.push(this.deploymentAsk(record));
      if (asks === 0) this.pendingReasons.delete(workloadKey('deployment', record.tenant, record.spec.name));
    }
    for (const key of this.crashLoops.keys()) if (!this.deployments.has(key)) this.crashLoops.delete(key);
    for (const [key, stored] of this.jobs) {
      const { record } = stored;
      const mine = byWorkload.get(workloadKey('job', record.tenant, record.spec.name)) ?? [];
      const decision = decideJob(record, mine, now, health);
      stops.push(...decision.stops);
      if (decision.next) {
        const next = decision.next;
        await this.putWorkload(this.jobs, key, next, stored);
        for (const event of decision.events) this.event({ tenant: record.tenant, object: `job/${record.spec.name}`, ...event });
        // An attempt that ended without success leaves its parts to nothing, as does a partition's failed attempt.
        this.releaseParts(next.status === 'running' ? mine.filter((a) => !isCurrent(next, a)) : mine);
      }
      if (decision.place.length > 0) pending.push(...this.jobAsks(record, decision.place));
      else this.pendingReasons.delete(workloadKey('job', record.tenant, record.spec.name));
      if (decision.assemble) this.assemble(key, record, decision.assemble);
    }
    await this.writeStops(stops);
    if (pending.length > 0) await this.place(pending);
    await this.collectGarbage(now);
    this.pushDesired();
    this.deps.onPass?.();
  }

  /** Counts the deployment's failed replicas and says whether its replacements wait (crash-backoff.ts). */
  private crashBackoff(key: string, record: DeploymentRecord, mine: AllocationRecord[], now: number): boolean {
    const crash = decideCrashBackoff(this.crashLoops.get(key), mine, now, this.options.crashBackoff);
    if (crash.loop) this.crashLoops.set(key, crash.loop);
    else this.crashLoops.delete(key);
    for (const event of crash.events) this.event({ tenant: record.tenant, object: `deployment/${record.spec.name}`, allocation: '', node: '', ...event });
    return crash.hold;
  }

  /** Every deployment with its allocations (for the routing table). */
  serving(): Array<{ record: DeploymentRecord; allocations: AllocationRecord[] }> {
    const byWorkload = this.byWorkload();
    return [...this.deployments.values()].map(({ record }) => ({ record, allocations: byWorkload.get(workloadKey('deployment', record.tenant, record.spec.name)) ?? [] }));
  }

  /** Schedules the asks and commits the plan; re-reads and re-plans when the commit finds a node changed. */
  private async place(pending: PendingAsk[]): Promise<void> {
    const byId = new Map(pending.map((p) => [p.ask.id, p]));
    let remaining = pending;
    for (let attempt = 0; attempt < 3 && remaining.length > 0; attempt++) {
      const snapshot = await this.snapshot();
      const plan = schedule(snapshot, remaining.map((p) => p.ask));
      const result = await this.commit(plan, byId);
      this.notePlan(plan, byId);
      if (result.conflicted.size === 0) return;
      this.deps.log.info({ nodes: [...result.conflicted] }, 'plan conflicted with a change on its nodes; re-reading and re-planning');
      await this.reload();
      const placedIds = new Set(result.committed);
      remaining = remaining.filter((p) => !placedIds.has(p.ask.id) && plan.placements.some((pl) => pl.askId === p.ask.id));
    }
  }

  private async commit(plan: Plan, byId: Map<string, PendingAsk>): Promise<{ committed: string[]; conflicted: Set<string> }> {
    const now = this.deps.clock.now();
    const writes: PlanWrite[] = [];
    const jobUpdates = new Map<string, JobRecord>();
    const jobPlaced = new Map<string, number>();
    for (const placement of plan.placements) {
      const p = byId.get(placement.askId)!;
      const record: AllocationRecord = { ...p.allocation, node: placement.node, gpuIndexes: placement.gpuIndexes, hostPort: placement.hostPort, createdAtMs: now, updatedAtMs: now };
      writes.push({ node: placement.node, record, group: p.ask.group || record.id });
    }
    this.introducePeers(writes.map((w) => w.record).filter((r) => r.kind === 'job' && r.run.worldSize > 1 && !r.run.partitions));
    for (const preemption of plan.preemptions) {
      const victim = this.allocations.get(preemption.allocationId)?.record;
      if (!victim) continue;
      writes.push({ node: victim.node, record: { ...victim, desired: 'stop', reason: preemption.reason, updatedAtMs: now }, group: byId.get(preemption.askId)?.ask.group || preemption.askId });
    }
    const result = await commitPlan(this.deps.writer, writes, this.nodePlans, WRITE_CHUNK);
    for (const [node, revision] of result.nodeRevisions) this.nodePlans.set(node, revision);
    const committed: string[] = [];
    for (const { record, modRevision } of result.written) {
      const previous = this.allocations.get(record.id);
      this.allocations.set(record.id, { record, modRevision });
      if (previous) {
        const by = plan.preemptions.find((p) => p.allocationId === record.id);
        const preemptor = by ? byId.get(by.askId) : undefined;
        this.event({ tenant: record.tenant, object: `${record.kind}/${record.workload}`, allocation: record.id, node: record.node, type: 'Preempted', message: record.reason });
        if (preemptor) this.event({ tenant: preemptor.tenant, object: `${preemptor.kind}/${preemptor.name}`, node: record.node, type: 'Preempting', message: `stopped ${record.kind}/${record.workload} allocation ${record.id.slice(0, 8)} (priority ${record.priority}) on ${record.node}` });
        continue;
      }
      committed.push(record.id);
      const p = byId.get(record.id)!;
      this.deps.startPhases?.committed(workloadKey(p.kind, p.tenant, p.name), record.id, this.deps.clock.now());
      this.event({ tenant: record.tenant, object: `${record.kind}/${record.workload}`, allocation: record.id, node: record.node, type: 'Scheduled', message: `on ${record.node}${record.gpuIndexes.length ? ` with GPU ${record.gpuIndexes.join(',')}` : ''}${record.hostPort ? `, port ${record.hostPort}` : ''}` });
      if (p.kind === 'job') {
        const key = keys.job(p.tenant, p.name);
        jobPlaced.set(key, (jobPlaced.get(key) ?? 0) + 1);
        const job = jobUpdates.get(key) ?? this.jobs.get(key)?.record;
        if (job && job.status === 'pending') {
          jobUpdates.set(key, { ...job, status: 'running', attempts: record.attempt, startedAtMs: now, message: `attempt ${record.attempt} running` });
        }
      }
    }
    for (const [key, record] of jobUpdates) {
      await this.putWorkload(this.jobs, key, record, this.jobs.get(key));
      const placed = jobPlaced.get(key) ?? 0;
      const all = workerCount(record.spec);
      const message = isPartitioned(record.spec) && placed < all ? `${placed} of ${all} partitions placed, the others wait for capacity` : `${workersOf(record.spec)} placed`;
      this.event({ tenant: record.tenant, object: `job/${record.spec.name}`, type: 'Started', message: `attempt ${record.attempts}: ${message}` });
    }
    return { committed, conflicted: result.conflicted };
  }

  /**
   * A gang is placed whole or not at all, so its workers are all here: each learns where every
   * rank listens (node address host, host port), in rank order — MLFLEET_PEERS, MASTER_ADDR and
   * MASTER_PORT (shared/workloads.ts taskEnvironment).
   */
  private introducePeers(workers: AllocationRecord[]): void {
    const hosts = new Map(this.deps.nodes.list().map((view) => [view.record.name, addressHost(view.record.address)]));
    const gangs = new Map<string, AllocationRecord[]>();
    for (const w of workers) {
      const key = `${workloadKey(w.kind, w.tenant, w.workload)}#${w.attempt}`;
      gangs.set(key, [...(gangs.get(key) ?? []), w]);
    }
    for (const gang of gangs.values()) {
      gang.sort((a, b) => a.rank - b.rank);
      const peers = gang.map((w) => formatHostPort(hosts.get(w.node) || w.node, w.hostPort));
      for (const w of gang) w.run = { ...w.run, peers };
    }
  }

  /** Remembers why asks failed (shown by show and events, once per change of reason). */
  private notePlan(plan: Plan, byId: Map<string, PendingAsk>): void {
    const reasons = new Map<string, { p: PendingAsk; reason: string }>();
    for (const failure of plan.failures) {
      const p = byId.get(failure.askId);
      if (p && !reasons.has(p.ask.workload)) reasons.set(p.ask.workload, { p, reason: failure.reason });
    }
    for (const [key, { p, reason }] of reasons) {
      if (this.pendingReasons.get(key) === reason) continue;
      this.pendingReasons.set(key, reason);
      this.event({ tenant: p.tenant, object: `${p.kind}/${p.name}`, type: 'Pending', message: reason });
    }
    for (const placement of plan.placements) {
      const p = byId.get(placement.askId);
      if (p && !reasons.has(p.ask.workload)) this.pendingReasons.delete(p.ask.workload);
    }
  }

  private deploymentAsk(record: DeploymentRecord): PendingAsk {
    const { spec, tenant } = record;
    const id = newAllocationId();
    const resources = withDefaults(spec.resources);
    const workload = workloadKey('deployment', tenant, spec.name);
    return {
      kind: 'deployment',
      tenant,
      name: spec.name,
      ask: {
        id,
        workload,
        tenant,
        priority: spec.priority,
        resources: { ...resources },
        constraints: spec.constraints,
        maxPerNode: spec.maxPerNode,
        modelDigest: record.modelDigest,
        needsPort: true,
        group: '',
        preempt: true,
      },
      allocation: this.newAllocation(id, 'deployment', tenant, spec.name, spec.priority, resources, record.run, record.generation, 0, 0),
    };
  }

  /** Asks for these ranks, each in its attempt: a gang's together (one group, host ports for its peers), partitions each on its own. */
  private jobAsks(record: JobRecord, place: Array<{ rank: number; attempt: number }>): PendingAsk[] {
    const { spec, tenant } = record;
    const workload = workloadKey('job', tenant, spec.name);
    const resources = withDefaults(spec.resources);
    const gang = !isPartitioned(spec) && spec.workers > 1;
    const worldSize = workerCount(spec);
    return place.map(({ rank, attempt }) => {
      const id = newAllocationId();
      return {
        kind: 'job' as const,
        tenant,
        name: spec.name,
        ask: {
          id,
          workload,
          tenant,
          priority: spec.priority,
          resources: { ...resources },
          constraints: spec.constraints,
          maxPerNode: 0,
          modelDigest: '',
          // A gang's workers reach each other: each gets a host port (MLFLEET_PEERS, MASTER_PORT).
          needsPort: gang,
          group: gang ? `${workload}#${attempt}` : '',
          preempt: true,
        },
        allocation: this.newAllocation(id, 'job', tenant, spec.name, spec.priority, resources, { ...record.run, port: gang ? JOB_PEER_PORT : 0, rank, worldSize, attempt }, 0, attempt, rank),
      };
    });
  }

  /**
   * Makes the output dataset of a job whose partitions all exited 0, outside the queue (it
   * reads, unpacks and packs every part), then records the outcome through it: succeeded with
   * the version, or failed when the parts cannot make one (a path two partitions wrote, nothing
   * written at all). A transient failure is tried again by a later pass.
   */
  private assemble(key: string, record: JobRecord, partitions: AllocationRecord[]): void {
    if (this.assembling.has(key) || this.closed) return;
    const { tenant, spec, attempts: attempt } = record;
    const dataset = spec.outputDataset;
    const work = (async () => {
      let outcome: { version: number } | { error: string };
      try {
        const version = await assembleDataset(
          this.deps.artifacts,
          this.deps.writer,
          this.deps.scratchDir ?? path.join(os.tmpdir(), 'mlfleet-scratch'),
          {
            tenant,
            dataset,
            sourceJob: `job/${spec.name}`,
            attempt,
            sourceDatasets: record.run.datasets.map((d) => `${d.name}:${d.version}`),
            parts: partitions.map((a) => ({ partition: a.rank, ...a.outputPart! })),
          },
          this.stopping.signal,
        );
        outcome = { version };
      } catch (err) {
        if (!failsTheJob(err)) {
          if (!this.closed) this.deps.log.warn({ err, job: key }, 'could not assemble the output dataset yet; the next pass tries again');
          return;
        }
        outcome = { error: (err as Error).message };
      }
      await this.mutate(async () => {
        const stored = this.jobs.get(key);
        // Cancelled meanwhile, or another leader got there first: nothing more to record.
        if (!stored || stored.record.status !== 'running' || stored.record.attempts !== attempt) return;
        const now = this.deps.clock.now();
        const ended: JobRecord =
          'version' in outcome
            ? { ...stored.record, status: 'succeeded', finishedAtMs: now, outputDataset: `${dataset}:${outcome.version}`, message: `${workersOf(spec)} exited 0; its output is dataset ${dataset}:${outcome.version}` }
            : { ...stored.record, status: 'failed', finishedAtMs: now, message: `failed: its output dataset ${dataset} could not be made: ${outcome.error}` };
        await this.putWorkload(this.jobs, key, ended, stored);
        this.event({ tenant, object: `job/${spec.name}`, type: ended.status === 'succeeded' ? 'Succeeded' : 'Failed', message: ended.message });
        this.releaseParts(partitions);
      });
    })()
      .catch((err: unknown) => this.deps.log.warn({ err, job: key }, 'could not record the output dataset; the next pass tries again'))
      .finally(() => this.assembling.delete(key));
    this.assembling.set(key, work);
  }

  private newAllocation(
    id: string,
    kind: WorkloadKind,
    tenant: string,
    workload: string,
    priority: number,
    resources: ResourceRequest,
    run: AllocationRecord['run'],
    generation: number,
    attempt: number,
    rank: number,
  ): PendingAsk['allocation'] {
    const now = this.deps.clock.now();
    return { id, kind, workload, tenant, priority, resources, run, generation, attempt, rank, desired: 'run', status: 'pending', reason: '', endpoint: '', exitCode: 0, outputVersion: 0, createdAtMs: now, updatedAtMs: now };
  }

  private async snapshot(): Promise<Snapshot> {
    const nodes: SchedNode[] = this.deps.nodes.list().map((view) => {
      const { record } = view;
      return {
        name: record.name,
        ready: displayStatus(record) === 'ready',
        cordoned: record.cordoned,
        labels: record.labels,
        cpuMillis: record.capacity.cpuMillis,
        memoryBytes: record.capacity.memoryBytes,
        gpus: record.capacity.gpus.map((g) => ({ index: g.index, model: g.model, memoryBytes: g.memoryBytes })),
        nicMbps: record.capacity.nics.reduce((sum, nic) => sum + nic.speedMbps, 0),
        cached: new Set(view.cache.map((c) => c.digest)),
      };
    });
    const allocations: SchedAllocation[] = [];
    for (const { record: a } of this.allocations.values()) {
      if (!isLive(a)) continue;
      allocations.push({
        id: a.id,
        node: a.node,
        tenant: a.tenant,
        workload: workloadKey(a.kind, a.tenant, a.workload),
        priority: a.priority,
        resources: { cpuMillis: a.resources.cpuMillis, memoryBytes: a.resources.memoryBytes, gpus: a.resources.gpus, gpuMemoryBytes: a.resources.gpuMemoryBytes, gpuModel: a.resources.gpuModel, nicMbps: a.resources.nicMbps },
        gpuIndexes: a.gpuIndexes,
        hostPort: a.hostPort,
      });
    }
    const quotas = new Map<string, TenantQuota>();
    for (const tenant of await listTenants(this.deps.store)) {
      const q = tenant.quota;
      if (q.cpuMillis || q.memoryBytes || q.gpus || q.gpuMemoryBytes) quotas.set(tenant.name, { cpuMillis: q.cpuMillis, memoryBytes: q.memoryBytes, gpus: q.gpus, gpuMemoryBytes: q.gpuMemoryBytes });
    }
    return { nodes, allocations, quotas, portRange: this.options.portRange };
  }

  /** A deployment whose model REF is an alias or "latest" follows it: a move rolls it out. */
  private async followModelRefs(): Promise<void> {
    for (const [key, stored] of [...this.deployments]) {
      const { record } = stored;
      let resolved;
      try {
        resolved = await resolveDeployment(this.deps.artifacts, this.deps.stacks, record.tenant, record.spec);
      } catch (err) {
        this.deps.log.debug({ err: (err as Error).message, deployment: key }, 'model REF does not resolve; keeping the current version');
        continue;
      }
      if (resolved.modelDigest === record.modelDigest && resolved.resolvedVersion === record.resolvedVersion) continue;
      const next: DeploymentRecord = { ...record, run: resolved.run, resolvedVersion: resolved.resolvedVersion, modelDigest: resolved.modelDigest, generation: record.generation + 1, updatedAtMs: this.deps.clock.now() };
      await this.putWorkload(this.deployments, key, next, stored);
      this.event({ tenant: record.tenant, object: `deployment/${record.spec.name}`, type: 'RolloutStarted', message: `${record.spec.model} moved to version ${resolved.resolvedVersion}; rolling out generation ${next.generation}` });
    }
  }

  private async collectGarbage(now: number): Promise<void> {
    // Ended jobs keep their containers (and logs) on the hosts for a while, then let them go.
    const release: Stop[] = [];
    const byWorkload = this.byWorkload();
    for (const { record: job } of this.jobs.values()) {
      if (job.finishedAtMs === 0 || now - job.finishedAtMs < this.options.jobRetentionMs) continue;
      for (const a of byWorkload.get(workloadKey('job', job.tenant, job.spec.name)) ?? []) if (a.desired === 'run') release.push({ id: a.id, reason: a.reason });
    }
    if (release.length > 0) await this.writeStops(release, [], [], true);
    const forget = [...this.allocations.values()].filter(
      ({ record: a }) => a.desired === 'stop' && isTerminal(a) && now - a.updatedAtMs >= this.options.allocationRetentionMs,
    );
    // Parts a leader could not delete when their job was done with them (it stopped first) go now.
    this.releaseParts(forget.map(({ record }) => record));
    for (let i = 0; i < forget.length; i += WRITE_CHUNK) {
      const chunk = forget.slice(i, i + WRITE_CHUNK);
      await this.deps.writer.txn([], chunk.map(({ record }) => ({ type: 'delete' as const, key: keys.allocation(record.id) })));
      for (const { record } of chunk) this.allocations.delete(record.id);
    }
  }

  // ---- writes ------------------------------------------------------------------------------

  /** Marks allocations to stop (desired = stop), failing those whose node is gone; plus `extra` ops in the first write. */
  private async writeStops(stops: Stop[], extra: Op[] = [], compares: Parameters<FencedWriter['txn']>[0] = [], keepStatus = false): Promise<void> {
    const now = this.deps.clock.now();
    const updates: AllocationRecord[] = [];
    for (const stop of stops) {
      const current = this.allocations.get(stop.id)?.record;
      if (!current || (current.desired === 'stop' && !stop.fail)) continue;
      const next: AllocationRecord = { ...current, desired: 'stop', updatedAtMs: now, reason: keepStatus ? current.reason : stop.reason };
      if (stop.fail && !isTerminal(current)) next.status = 'failed';
      updates.push(next);
      if (!keepStatus && !isTerminal(current)) {
        this.event({ tenant: next.tenant, object: `${next.kind}/${next.workload}`, allocation: next.id, node: next.node, type: stop.fail ? 'Lost' : 'Stopping', message: stop.reason });
      }
    }
    if (updates.length === 0 && extra.length === 0) return;
    await this.writeAllocations(updates, extra, compares);
  }

  private async writeAllocations(updates: AllocationRecord[], extra: Op[] = [], compares: Parameters<FencedWriter['txn']>[0] = []): Promise<void> {
    let first = true;
    for (let i = 0; i < Math.max(1, updates.length); i += WRITE_CHUNK) {
      const chunk = updates.slice(i, i + WRITE_CHUNK);
      const ops: Op[] = chunk.map((a) => ({ type: 'put', key: keys.allocation(a.id), value: JSON.stringify(a) }));
      const result = await this.deps.writer.txn(first ? compares : [], first ? [...ops, ...extra] : ops);
      if (!result.succeeded) throw new ConflictError('the workload changed while it was being updated; try again');
      first = false;
      for (const a of chunk) this.allocations.set(a.id, { record: a, modRevision: result.revision });
    }
  }

  private async putWorkload<T extends DeploymentRecord | JobRecord>(map: Map<string, Stored<T>>, key: string, record: T, existing: Stored<T> | undefined): Promise<void> {
    const result = await this.deps.writer.txn(
      [{ key, target: 'modRevision', op: '=', value: existing?.modRevision ?? 0 }],
      [{ type: 'put', key, value: JSON.stringify(record) }],
    );
    if (!result.succeeded) {
      await this.reload();
      throw new ConflictError(`${key.replace(keys.deploymentsPrefix, 'deployment ').replace(keys.jobsPrefix, 'job ')} changed while it was being updated; try again`);
    }
    map.set(key, { record, modRevision: result.revision });
  }

  /** Sends each node whose desired set changed its new set. */
  private pushDesired(): void {
    const byNode = new Map<string, Array<Stored<AllocationRecord>>>();
    for (const node of this.sent.keys()) byNode.set(node, []);
    for (const stored of this.allocations.values()) {
      let mine = byNode.get(stored.record.node);
      if (!mine) byNode.set(stored.record.node, (mine = []));
      if (stored.record.desired === 'run') mine.push(stored);
    }
    // Runs after every pass and mutation: only a changed set is built, and only then is the revision read.
    const changed: Array<{ node: string; signature: string; allocations: Allocation[] }> = [];
    for (const [node, mine] of byNode) {
      const signature = desiredSignature(mine.map((s) => s.record));
      if (this.sent.get(node) !== signature) changed.push({ node, signature, allocations: mine.map((s) => toAgentAllocation(s.record, s.modRevision)) });
    }
    if (changed.length === 0) return;
    void this.deps.store.revision().then((revision) => {
      for (const { node, signature, allocations } of changed) {
        if (this.sent.get(node) === signature) continue;
        if (this.deps.nodes.sendDesired(node, { revision, allocations })) this.sent.set(node, signature);
      }
    }).catch((err: unknown) => this.deps.log.warn({ err }, 'could not send desired sets'));
  }

  private async reload(): Promise<void> {
    const [deployments, jobs, allocations, plans] = await Promise.all([
      this.deps.store.range(keys.deploymentsPrefix),
      this.deps.store.range(keys.jobsPrefix),
      this.deps.store.range(keys.allocationsPrefix),
      this.deps.store.range(keys.nodePlansPrefix),
    ]);
    this.deployments.clear();
    this.jobs.clear();
    this.allocations.clear();
    this.nodePlans.clear();
    for (const kv of deployments.kvs) this.deployments.set(kv.key, { record: JSON.parse(kv.value) as DeploymentRecord, modRevision: kv.modRevision });
    for (const kv of jobs.kvs) this.jobs.set(kv.key, { record: JSON.parse(kv.value) as JobRecord, modRevision: kv.modRevision });
    for (const kv of allocations.kvs) {
      const record = JSON.parse(kv.value) as AllocationRecord;
      this.allocations.set(record.id, { record, modRevision: kv.modRevision });
    }
    for (const kv of plans.kvs) this.nodePlans.set(kv.key.slice(keys.nodePlansPrefix.length), kv.modRevision);
  }

  // ---- helpers -----------------------------------------------------------------------------

  private mutate<T>(fn: () => Promise<T>): Promise<T> {
    return this.queue.run('workloads', fn);
  }

  /** Records an event; one about a whole workload names no allocation and no node. */
  private event(input: Omit<EventInput, 'allocation' | 'node'> & Partial<Pick<EventInput, 'allocation' | 'node'>>): void {
    const { tenant, object, allocation = '', node = '', type, message } = input;
    this.deps.events.record({ tenant, object, allocation, node, type, message });
  }

  private nodeHealth(): (node: string) => NodeHealth {
    const health = new Map<string, NodeHealth>();
    for (const view of this.deps.nodes.list()) {
      const status = displayStatus(view.record);
      health.set(view.record.name, status === 'down' ? 'down' : status === 'draining' ? 'draining' : 'ready');
    }
    return (node) => health.get(node) ?? 'down';
  }

  /** Every allocation by its workloadKey, in one scan: for passes over every workload (allocationsOf scans per call). */
  private byWorkload(): Map<string, AllocationRecord[]> {
    const groups = new Map<string, AllocationRecord[]>();
    for (const { record } of this.allocations.values()) {
      const key = workloadKey(record.kind, record.tenant, record.workload);
      const group = groups.get(key);
      if (group) group.push(record);
      else groups.set(key, [record]);
    }
    return groups;
  }

  private allocationsOf(kind: WorkloadKind, tenant: string, name: string): AllocationRecord[] {
    const result: AllocationRecord[] = [];
    for (const { record } of this.allocations.values()) if (record.kind === kind && record.tenant === tenant && record.workload === name) result.push(record);
    return result;
  }

  /** The tenant's deployment and its key; NotFoundError when there is none. */
  private deploymentNamed(tenant: string, name: string): [string, Stored<DeploymentRecord>] {
    const key = keys.deployment(tenant, name);
    return [key, found(this.deployments.get(key), `deployment "${name}"`)];
  }

  /** The tenant's job and its key; NotFoundError when there is none. */
  private jobNamed(tenant: string, name: string): [string, Stored<JobRecord>] {
    const key = keys.job(tenant, name);
    return [key, found(this.jobs.get(key), `job "${name}"`)];
  }

  private deploymentView(key: string, health = this.nodeHealth()): Deployment {
    const { record } = this.deployments.get(key)!;
    const mine = this.allocationsOf('deployment', record.tenant, record.spec.name);
    const decision = decideDeployment(record, mine, health);
    const reason = this.pendingReasons.get(workloadKey('deployment', record.tenant, record.spec.name));
    const ready = mine.filter((a) => a.desired === 'run' && a.status === 'ready' && a.generation === record.generation).length;
    const failedRecently = mine.some((a) => a.status === 'failed' && this.deps.clock.now() - a.updatedAtMs < 60_000);
    const backingOff = crashLoopMessage(this.crashLoops.get(key), this.deps.clock.now());
    const status: DeploymentStatus = reason ? 'pending' : decision.status === 'available' ? 'available' : failedRecently || backingOff ? 'degraded' : 'progressing';
    const message = reason
      ? `${record.spec.replicas - ready} replica(s) cannot be placed: ${reason}`
      : backingOff && status === 'degraded'
        ? backingOff
        : status === 'degraded'
        ? `replicas failed recently: ${mine.filter((a) => a.status === 'failed').at(-1)?.reason ?? ''}`
        : '';
    return toProtoDeployment(record, mine, { status, message });
  }

  private jobView(key: string): Job {
    const { record } = this.jobs.get(key)!;
    const view = toProtoJob(record, this.allocationsOf('job', record.tenant, record.spec.name));
    const reason = this.pendingReasons.get(workloadKey('job', record.tenant, record.spec.name));
    if (record.status === 'pending' && reason) view.message = `waiting for capacity: ${reason}`;
    if (record.status === 'running' && isPartitioned(record.spec)) {
      const now = this.deps.clock.now();
      const backingOff = Object.values(record.partitionRetries ?? {}).filter((r) => r.notBeforeMs > now).length;
      const waiting = record.spec.partitions - view.allocations.length - backingOff;
      // Where each partition stands now (the record's message is the last change: a retry
      // decided, which is history once that retry runs; the events keep every change).
      const done = view.allocations.filter((a) => a.status === 'completed').length;
      const retried = view.allocations.filter((a) => a.status !== 'completed' && a.attempt > 1).length;
      const counts = [
        `${done} of ${record.spec.partitions} partitions exited 0`,
        view.allocations.length > done ? `${view.allocations.length - done} placed${retried > 0 ? ` (${retried} of them retries)` : ''}` : '',
        waiting > 0 ? `${waiting} wait for capacity${reason ? `: ${reason}` : ''}` : '',
        backingOff > 0 ? `${backingOff} wait${backingOff === 1 ? 's' : ''} to be retried` : '',
      ].filter(Boolean);
      view.message = this.assembling.has(key)
        ? `all ${record.spec.partitions} partitions exited 0; making output dataset ${record.spec.outputDataset} from their parts`
        : counts.join('; ');
    }
    return view;
  }

  private versionUser(kind: string, tenant: string, name: string, version: number): string | undefined {
    if (kind !== 'model') return undefined;
    for (const { record } of this.deployments.values()) {
      if (record.tenant !== tenant || record.run.model?.name !== name) continue;
      const live = this.allocationsOf('deployment', tenant, record.spec.name).filter(isLive);
      if (record.resolvedVersion === version || live.some((a) => a.run.model?.version === version)) return `deployment "${record.spec.name}"`;
    }
    return undefined;
  }

  private async checkDeploymentQuota(tenant: string): Promise<void> {
    const record = await findTenant(this.deps.store, tenant);
    const max = record?.quota.maxDeployments ?? 0;
    const count = listed(this.deployments, tenant).length;
    if (max > 0 && count >= max) throw new ResourceExhaustedError(`tenant "${tenant}" deployments quota is ${max}: ${count} exist; remove one or raise the quota`);
  }

  private gpuMemoryHeld(a: AllocationRecord): number {
    const node = this.deps.nodes.find(a.node);
    return a.gpuIndexes.reduce((sum, index) => sum + (node?.record.capacity.gpus.find((g) => g.index === index)?.memoryBytes ?? 0), 0);
  }
}

const STATE_EVENTS: Record<AllocationState, string> = {
  pending: 'Pending',
  pulling: 'Pulling',
  starting: 'Starting',
  running: 'Started',
  ready: 'Ready',
  failed: 'Failed',
  completed: 'Completed',
  stopped: 'Stopped',
};

function found<T>(stored: T | undefined, what: string): T {
  if (!stored) throw new NotFoundError(`${what} not found`);
  return stored;
}

/** The keys of a tenant's (or, undefined, every tenant's) workloads, in key order. */
function listed(map: Map<string, Stored<{ tenant: string }>>, tenant: string | undefined): string[] {
  return [...map.entries()]
    .filter(([, stored]) => tenant === undefined || stored.record.tenant === tenant)
    .map(([key]) => key)
    .sort();
}

function withDefaults(requested: ResourceRequest | null): ResourceRequest {
  const r = requested ?? { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, gpuModel: '', nicMbps: 0 };
  return {
    cpuMillis: r.cpuMillis || DEFAULT_RESOURCES.cpuMillis,
    memoryBytes: r.memoryBytes || DEFAULT_RESOURCES.memoryBytes,
    gpus: r.gpus,
    gpuMemoryBytes: r.gpuMemoryBytes,
    gpuModel: r.gpuModel,
    nicMbps: r.nicMbps,
  };
}

/** The host of a node's advertised address ("10.0.0.7:7701" → "10.0.0.7"); '' when it has none. */
function addressHost(address: string): string {
  if (!address) return '';
  try {
    return parseHostPort(address).host;
  } catch {
    return '';
  }
}

function newAllocationId(): string {
  return randomBytes(8).toString('hex');
}

export function toAgentAllocation(a: AllocationRecord, modRevision: number): Allocation {
  return {
    id: a.id,
    kind: a.kind,
    workload: a.workload,
    tenant: a.tenant,
    resources: { cpuMillis: a.resources.cpuMillis, memoryBytes: a.resources.memoryBytes, gpus: a.resources.gpus, gpuMemoryBytes: a.resources.gpuMemoryBytes, nicMbps: a.resources.nicMbps },
    gpuIndexes: a.gpuIndexes,
    hostPort: a.hostPort,
    specJson: JSON.stringify(a.run),
    modRevision,
  };
}

function desiredSignature(allocations: Array<{ id: string }>): string {
  return allocations.map((a) => a.id).sort().join(',');
}
