// The job concern of the workload controller: running, cancelling and showing jobs, where a
// job's output push goes and the parts of an output dataset, the job half of the reconcile pass
// (decideJob's outcome applied, asks for workers, jobs marked running once placed, ended jobs'
// containers released) and the assembly of an output dataset outside the queue
// (dataset-assembly.ts). It acts on the controller's state (core.ts).
import os from 'node:os';
import path from 'node:path';
import { AlreadyExistsError, FailedPreconditionError, PermissionDeniedError, UnavailableError } from '../../shared/errors.js';
import { keys } from '../../shared/keys.js';
import type { Job, JobSpec } from '../../shared/proto.js';
import { JOB_PEER_PORT } from '../../shared/workloads.js';
import { found, listed, newAllocation, newAllocationId, withDefaults, type PendingAsk, type WorkloadCore } from './core.js';
import { assembleDataset, failsTheJob } from './dataset-assembly.js';
import { decideJob, type NodeHealth, type Stop } from './reconcile.js';
import { hasEnded, isCurrent, isLive, isPartitioned, toProtoJob, workerCount, workersOf, workloadKey, type AllocationRecord, type JobRecord, type OutputPart } from './records.js';
import { resolveJob } from './resolve.js';

/** Where a job's output push goes (see JobWorkloads.outputTarget). */
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

export class JobWorkloads {
  /** Output datasets being assembled, by job key; memory only (a new leader starts again). */
  readonly assembling = new Map<string, Promise<void>>();
  /** Aborts assemblies when leadership ends. */
  private readonly stopping = new AbortController();

  constructor(private readonly core: WorkloadCore) {}

  close(): void {
    this.stopping.abort(new Error('no longer the leader'));
  }

  run(tenant: string, spec: JobSpec): Promise<Job> {
    const { core } = this;
    return core.mutate(async () => {
      const key = keys.job(tenant, spec.name);
      if (core.jobs.has(key)) throw new AlreadyExistsError(`job "${spec.name}" already exists; pick another name (jobs are not re-run in place)`);
      const resolved = await resolveJob(core.deps.artifacts, core.deps.stacks, tenant, spec);
      const run = isPartitioned(spec) ? { ...resolved, worldSize: spec.partitions, partitions: spec.partitions, ...(spec.outputDataset ? { outputDataset: spec.outputDataset } : {}) } : resolved;
      const now = core.deps.clock.now();
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
      await core.putWorkload(core.jobs, key, record, undefined);
      core.event({ tenant, object: `job/${spec.name}`, type: 'Created', message: `${workersOf(record.spec)}: ${run.command.join(' ')}` });
      core.kick();
      return this.view(key);
    });
  }

  cancel(tenant: string, name: string): Promise<Job> {
    const { core } = this;
    return core.mutate(async () => {
      const [key, existing] = this.named(tenant, name);
      if (hasEnded(existing.record)) {
        throw new FailedPreconditionError(`job "${name}" already ended (${existing.record.status})`);
      }
      const now = core.deps.clock.now();
      await core.putWorkload(core.jobs, key, { ...existing.record, status: 'cancelled', message: 'cancelled', finishedAtMs: now }, existing);
      const mine = core.allocationsOf('job', tenant, name);
      await core.writeStops(mine.filter(isLive).map((a) => ({ id: a.id, reason: 'job cancelled' })));
      core.event({ tenant, object: `job/${name}`, type: 'Cancelled', message: 'cancelled by a user' });
      this.releaseParts(mine);
      core.pushDesired();
      return this.view(key);
    });
  }

  get(tenant: string, name: string): Job {
    return this.view(this.named(tenant, name)[0]);
  }

  list(tenant: string | undefined): Job[] {
    return listed(this.core.jobs, tenant).map((key) => this.view(key));
  }

  /**
   * Where a node's push of a job's output goes, or why it may not push it: only the agent of the
   * node that runs the allocation, in its rank's current attempt, while it runs, and only for the
   * output the job declares — a model (rank 0's output, taken once every other worker exited 0)
   * or a dataset (every partition's output, a part of it). The name, tenant and lineage come
   * from the job, not the agent.
   */
  outputTarget(node: string, allocationId: string): JobOutputTarget {
    const { core } = this;
    const a = core.allocations.get(allocationId)?.record;
    const refuse = (why: string) => new PermissionDeniedError(`node "${node}" may not push the output of allocation ${allocationId.slice(0, 8)}: ${why}`);
    if (!a || a.node !== node) throw refuse('no such job allocation is placed on it');
    if (a.kind !== 'job') throw refuse('it is not a job allocation');
    const job = core.jobs.get(keys.job(a.tenant, a.workload))?.record;
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
    const completed = new Set(core.allocationsOf('job', a.tenant, a.workload).filter((o) => isCurrent(job, o) && o.status === 'completed').map((o) => o.rank));
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
    const { core } = this;
    return core.mutate(async () => {
      const target = this.outputTarget(node, allocationId);
      if (target.kind !== 'dataset') throw new FailedPreconditionError(`job allocation ${allocationId.slice(0, 8)} pushes model ${target.name}, not a part of a dataset`);
      const current = core.allocations.get(allocationId)!.record;
      if (current.outputPart) return current.outputPart;
      await core.writeAllocations([{ ...current, outputPart: { digest: part.digest, sizeBytes: part.sizeBytes }, updatedAtMs: core.deps.clock.now() }]);
      return part;
    });
  }

  /**
   * A part a running job still needs to assemble its output dataset: that of a partition's current
   * attempt (a completed partition keeps its part while others retry), not of one that failed.
   */
  partPinned(digest: string): boolean {
    for (const { record: a } of this.core.allocations.values()) {
      if (a.outputPart?.digest !== digest) continue;
      const job = this.core.jobs.get(keys.job(a.tenant, a.workload))?.record;
      if (job?.status === 'running' && isCurrent(job, a)) return true;
    }
    return false;
  }

  /** Deletes the parts these allocations stored, unless a version or a running job's current partition uses them. */
  releaseParts(allocations: AllocationRecord[]): void {
    const digests = new Set(allocations.flatMap((a) => (a.outputPart ? [a.outputPart.digest] : [])));
    for (const digest of digests) {
      this.core.deps.artifacts.releaseBlob(digest).catch((err: unknown) => this.core.deps.log.warn({ err, digest }, 'could not delete an output part; it is tried again when its allocation is forgotten'));
    }
  }

  /** The job half of a pass: each job's decision applied; returns its stops and asks. */
  async decide(byWorkload: Map<string, AllocationRecord[]>, now: number, health: (node: string) => NodeHealth): Promise<{ stops: Stop[]; pending: PendingAsk[] }> {
    const { core } = this;
    const stops: Stop[] = [];
    const pending: PendingAsk[] = [];
    for (const [key, stored] of core.jobs) {
      const { record } = stored;
      const mine = byWorkload.get(workloadKey('job', record.tenant, record.spec.name)) ?? [];
      const decision = decideJob(record, mine, now, health);
      stops.push(...decision.stops);
      if (decision.next) {
        const next = decision.next;
        await core.putWorkload(core.jobs, key, next, stored);
        for (const event of decision.events) core.event({ tenant: record.tenant, object: `job/${record.spec.name}`, ...event });
        // An attempt that ended without success leaves its parts to nothing, as does a partition's failed attempt.
        this.releaseParts(next.status === 'running' ? mine.filter((a) => !isCurrent(next, a)) : mine);
      }
      if (decision.place.length > 0) pending.push(...this.asks(record, decision.place));
      else core.pendingReasons.delete(workloadKey('job', record.tenant, record.spec.name));
      if (decision.assemble) this.assemble(key, record, decision.assemble);
    }
    return { stops, pending };
  }

  /** Pending jobs whose workers were just placed start running: their records and events. */
  async started(placed: AllocationRecord[], now: number): Promise<void> {
    const { core } = this;
    const jobUpdates = new Map<string, JobRecord>();
    const jobPlaced = new Map<string, number>();
    for (const record of placed) {
      if (record.kind !== 'job') continue;
      const key = keys.job(record.tenant, record.workload);
      jobPlaced.set(key, (jobPlaced.get(key) ?? 0) + 1);
      const job = jobUpdates.get(key) ?? core.jobs.get(key)?.record;
      if (job && job.status === 'pending') {
        jobUpdates.set(key, { ...job, status: 'running', attempts: record.attempt, startedAtMs: now, message: `attempt ${record.attempt} running` });
      }
    }
    for (const [key, record] of jobUpdates) {
      await core.putWorkload(core.jobs, key, record, core.jobs.get(key));
      const placedCount = jobPlaced.get(key) ?? 0;
      const all = workerCount(record.spec);
      const message = isPartitioned(record.spec) && placedCount < all ? `${placedCount} of ${all} partitions placed, the others wait for capacity` : `${workersOf(record.spec)} placed`;
      core.event({ tenant: record.tenant, object: `job/${record.spec.name}`, type: 'Started', message: `attempt ${record.attempts}: ${message}` });
    }
  }

  /** Ended jobs keep their containers (and logs) on the hosts for a while, then let them go: what to release now. */
  expired(byWorkload: Map<string, AllocationRecord[]>, now: number): Stop[] {
    const release: Stop[] = [];
    for (const { record: job } of this.core.jobs.values()) {
      if (job.finishedAtMs === 0 || now - job.finishedAtMs < this.core.options.jobRetentionMs) continue;
      for (const a of byWorkload.get(workloadKey('job', job.tenant, job.spec.name)) ?? []) if (a.desired === 'run') release.push({ id: a.id, reason: a.reason });
    }
    return release;
  }

  /** Asks for these ranks, each in its attempt: a gang's together (one group, host ports for its peers), partitions each on its own. */
  private asks(record: JobRecord, place: Array<{ rank: number; attempt: number }>): PendingAsk[] {
    const { spec, tenant } = record;
    const workload = workloadKey('job', tenant, spec.name);
    const resources = withDefaults(spec.resources);
    const gang = !isPartitioned(spec) && spec.workers > 1;
    const worldSize = workerCount(spec);
    const now = this.core.deps.clock.now();
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
        allocation: newAllocation(now, id, 'job', tenant, spec.name, spec.priority, resources, { ...record.run, port: gang ? JOB_PEER_PORT : 0, rank, worldSize, attempt }, 0, attempt, rank),
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
    const { core } = this;
    if (this.assembling.has(key) || core.closed()) return;
    const { tenant, spec, attempts: attempt } = record;
    const dataset = spec.outputDataset;
    const work = (async () => {
      let outcome: { version: number } | { error: string };
      try {
        const version = await assembleDataset(
          core.deps.artifacts,
          core.deps.writer,
          core.deps.scratchDir ?? path.join(os.tmpdir(), 'mlfleet-scratch'),
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
          if (!core.closed()) core.deps.log.warn({ err, job: key }, 'could not assemble the output dataset yet; the next pass tries again');
          return;
        }
        outcome = { error: (err as Error).message };
      }
      await core.mutate(async () => {
        const stored = core.jobs.get(key);
        // Cancelled meanwhile, or another leader got there first: nothing more to record.
        if (!stored || stored.record.status !== 'running' || stored.record.attempts !== attempt) return;
        const now = core.deps.clock.now();
        const ended: JobRecord =
          'version' in outcome
            ? { ...stored.record, status: 'succeeded', finishedAtMs: now, outputDataset: `${dataset}:${outcome.version}`, message: `${workersOf(spec)} exited 0; its output is dataset ${dataset}:${outcome.version}` }
            : { ...stored.record, status: 'failed', finishedAtMs: now, message: `failed: its output dataset ${dataset} could not be made: ${outcome.error}` };
        await core.putWorkload(core.jobs, key, ended, stored);
        core.event({ tenant, object: `job/${spec.name}`, type: ended.status === 'succeeded' ? 'Succeeded' : 'Failed', message: ended.message });
        this.releaseParts(partitions);
      });
    })()
      .catch((err: unknown) => core.deps.log.warn({ err, job: key }, 'could not record the output dataset; the next pass tries again'))
      .finally(() => this.assembling.delete(key));
    this.assembling.set(key, work);
  }

  /** The tenant's job and its key; NotFoundError when there is none. */
  private named(tenant: string, name: string): [string, NonNullable<ReturnType<WorkloadCore['jobs']['get']>>] {
    const key = keys.job(tenant, name);
    return [key, found(this.core.jobs.get(key), `job "${name}"`)];
  }

  private view(key: string): Job {
    const { core } = this;
    const { record } = core.jobs.get(key)!;
    const view = toProtoJob(record, core.allocationsOf('job', record.tenant, record.spec.name));
    const reason = core.pendingReasons.get(workloadKey('job', record.tenant, record.spec.name));
    if (record.status === 'pending' && reason) view.message = `waiting for capacity: ${reason}`;
    if (record.status === 'running' && isPartitioned(record.spec)) {
      const now = core.deps.clock.now();
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
}
