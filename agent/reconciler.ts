// The agent's reconciler: makes what runs on this host match the desired allocation set the
// leader sent last (persisted in LocalState, so it goes on while the control plane is away).
// Level-triggered (DESIGN principle 4): each pass lists the driver's tasks and compares them
// with the desired set, on every new set, after each step of an allocation and every few
// seconds; a lost event costs one resync period, never correctness. It owns
//  - one job per allocation: pulling (model and datasets leased from the model cache) →
//    starting (driver.start) → running → ready (HTTP readiness, then liveness probes);
//  - adoption: a task the driver lists for a desired allocation is taken over, never started
//    again, and an allocation whose task this host started but which has since vanished is
//    failed, not re-run: only the coordinator replaces allocations;
//  - tasks nobody wants any more, reported once as `stopped`: a job's task is stopped and kept,
//    with its logs, for stoppedJobRetentionMs after it ended (a gang's other ranks, cancelled or
//    past their deadline, are what a user debugging the job reads), then removed; any other task
//    (a server: its port and resources must go) is removed at once;
//  - the latest AllocationStatus of each allocation, reported (debounced) as it changes.
// Closing stops the jobs and probes but never a task (DESIGN principle 7).
import fs from 'node:fs/promises';
import path from 'node:path';
import { formatHostPort } from '../shared/config.js';
import { InvalidArgumentError } from '../shared/errors.js';
import { sleep, systemClock, type Clock, type Timer } from '../shared/clock.js';
import { silentLogger, type Logger } from '../shared/log.js';
import type { Allocation, AllocationStatus, StartPhase } from '../shared/proto.js';
import { StartStopwatch } from '../shared/start-phases.js';
import { CHECKPOINT_MOUNT, OUTPUT_MOUNT, TERMINAL_STATES, taskEnvironment, type AllocationState, type RunBlob, type RunSpec } from '../shared/workloads.js';
import type { Driver, Task, TaskStatus } from './drivers/driver.js';
import { isTransient, type OutputPusher } from './job-output.js';
import type { DesiredSet, LocalState, RunRecord } from './local-state.js';
import type { CacheLease, ModelCache } from './model-cache.js';
import { probeHttp } from './readiness.js';
import { makeTaskDir, stripSetIds } from './task-dirs.js';
import { parseBoundedJson } from '../shared/limits.js';

export interface ReconcilerTiming {
  /** A full pass at least this often, events or not. */
  resyncMs: number;
  /** Between readiness probes of a server that is not ready yet. */
  readinessIntervalMs: number;
  /** Between liveness probes of a ready server. */
  livenessIntervalMs: number;
  /** Between tries of a job output push while the leader cannot be reached. */
  outputRetryMs: number;
  /**
   * A job's checkpoint directories stay on the host this long after its last allocation here
   * started or went (a retry landing here within it resumes), then they are removed.
   */
  checkpointRetentionMs: number;
  /** How often the checkpoint directories are looked at. */
  checkpointSweepMs: number;
  /** One probe that takes longer counts as not answering. */
  probeTimeoutMs: number;
  /** SIGTERM → SIGKILL when a task is stopped or removed. */
  removeGraceMs: number;
  /**
   * A job's task whose allocation left the desired set is kept, stopped and with its logs, until
   * this long after it ended (the driver's finish time, so an agent restart does not reset it).
   */
  stoppedJobRetentionMs: number;
  /** Status changes within this window go out in one report. */
  reportDebounceMs: number;
  /**
   * An adopted server that is not ready gets at least this long (within its readiness timeout)
   * before it fails: the agent may have been down for most of its timeout.
   */
  adoptGraceMs: number;
}

export const DEFAULT_TIMING: ReconcilerTiming = {
  resyncMs: 2_000,
  readinessIntervalMs: 200,
  livenessIntervalMs: 5_000,
  outputRetryMs: 2_000,
  checkpointRetentionMs: 24 * 3_600_000,
  checkpointSweepMs: 10 * 60_000,
  probeTimeoutMs: 2_000,
  removeGraceMs: 10_000,
  stoppedJobRetentionMs: 3_600_000,
  reportDebounceMs: 50,
  adoptGraceMs: 10_000,
};

/** For this long after a server starts, readiness is probed every FAST_READINESS_INTERVAL_MS. */
const FAST_READINESS_MS = 5_000;
const FAST_READINESS_INTERVAL_MS = 50;

/** Used when a spec names no readiness timeout. */
const DEFAULT_READINESS_TIMEOUT_MS = 10 * 60_000;

export interface ReconcilerOptions {
  driver: Driver;
  cache: ModelCache;
  /** Where the desired set was persisted and which allocations were started is kept. */
  state: LocalState;
  /** Host of the endpoints other hosts reach tasks at (the agent's advertise address). */
  advertiseHost: string;
  /** The statuses that changed since the last call; a report to the leader. */
  onStatus: (changed: AllocationStatus[]) => void;
  /** A server this agent started became ready for the first time: its start's phases (the agent's histograms). */
  onStarted?: (phases: StartPhase[]) => void;
  /**
   * The agent's data directory: jobs get writable `outputs/<allocation>` (/output) and
   * `checkpoints/<tenant>/<job>/rank-<r>` (/checkpoint) under it. Undefined: jobs get neither.
   */
  dataDir?: string;
  /** Pushes rank 0's /output of a job that declares an output model, once it exited 0. */
  pushOutput?: OutputPusher;
  clock?: Clock;
  log?: Logger;
  timing?: Partial<ReconcilerTiming>;
}

interface Held {
  blob: RunBlob;
  lease: CacheLease;
}

/** What the reconciler knows of one allocation, desired or on its way out. */
interface Entry {
  readonly id: string;
  /** Undefined for a task nobody wants that was found on the host. */
  allocation: Allocation | undefined;
  spec: RunSpec | undefined;
  status: AllocationStatus;
  leases: Held[];
  /** Aborted on removal and on close: ends the job. */
  readonly work: AbortController;
  /** Aborted also when the allocation ends: ends probing. */
  readonly probes: AbortController;
  job: Promise<void> | undefined;
  /** From the launch's start until driver.start returns: a pass must not judge it by a list. */
  launching: boolean;
  /** Its task was started or adopted. */
  hasTask: boolean;
  /** Its job's /output is being pushed (rank 0 exited 0). */
  pushing: boolean;
  /** Pass sequence number at which its task was known to exist (lists older than that may miss it). */
  taskSeq: number;
  /** Its task being stopped or removed (it left the desired set). */
  leaving: Promise<void> | undefined;
  /** A job's task stopped on leaving the desired set: kept, ended, with its logs, until its retention ends. */
  stopped: boolean;
  /** Times the start this process launched, until its first ready (then its phases go out with that status). */
  stopwatch: StartStopwatch | undefined;
}

export class Reconciler {
  private readonly driver: Driver;
  private readonly cache: ModelCache;
  private readonly state: LocalState;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly timing: ReconcilerTiming;
  private readonly entries = new Map<string, Entry>();
  private readonly runs: Map<string, RunRecord>;
  private desired = new Map<string, Allocation>();
  private revision = 0;
  private readonly dirty = new Map<string, AllocationStatus>();
  private flushTimer: Timer | undefined;
  private resyncTimer: Timer | undefined;
  private passTail: Promise<void> = Promise.resolve();
  private queuedPass: Promise<void> | undefined;
  /** Jobs and removals under way, for close() to wait on. */
  private readonly work = new Set<Promise<void>>();
  private seq = 0;
  private lastCheckpointSweepMs = 0;
  private started = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: ReconcilerOptions) {
    this.driver = options.driver;
    this.cache = options.cache;
    this.state = options.state;
    this.clock = options.clock ?? systemClock;
    this.log = (options.log ?? silentLogger()).child({ component: 'reconciler' });
    this.timing = { ...DEFAULT_TIMING, ...options.timing };
    this.runs = this.state.runs();
    this.accept(this.state.desired());
  }

  /** Starts reconciling the persisted set now and then every resyncMs. Idempotent. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.resyncTimer = this.clock.setInterval(() => void this.sync(), this.timing.resyncMs);
    void this.sync();
  }

  /** start(), then close() once `signal` aborts; resolves when closed. */
  async run(signal: AbortSignal): Promise<void> {
    this.start();
    if (!signal.aborted) await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    await this.close();
  }

  /** A new desired set from the leader (already persisted); an older revision is ignored. */
  setDesired(set: DesiredSet): void {
    if (this.closed || !this.accept(set)) return;
    if (this.started) void this.sync();
  }

  /** One full pass, after any pass under way; concurrent callers share the next pass. */
  sync(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.queuedPass) return this.queuedPass;
    const next = this.passTail.then(async () => {
      this.queuedPass = undefined;
      try {
        await this.pass();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'reconcile pass failed; retrying at the next resync');
      }
    });
    this.queuedPass = next;
    this.passTail = next;
    return next;
  }

  /** Every allocation's latest status, for the session's hello. */
  statuses(): AllocationStatus[] {
    return [...this.entries.values()].map((entry) => ({ ...entry.status })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  status(allocationId: string): AllocationStatus | undefined {
    const status = this.entries.get(allocationId)?.status;
    return status ? { ...status } : undefined;
  }

  /** Whether the allocation is this host's: desired here, its task being removed, or a job's kept stopped task (for its logs). */
  has(allocationId: string): boolean {
    return this.desired.has(allocationId) || this.entries.has(allocationId);
  }

  /**
   * Stops passes, jobs and probes and waits for them, and sends what changed. Tasks keep
   * running: the next agent adopts them. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.resyncTimer?.cancel();
      const reason = new Error('the agent is closing');
      for (const entry of this.entries.values()) entry.work.abort(reason);
      await this.passTail;
      while (this.work.size > 0) await Promise.all([...this.work]);
      this.flushTimer?.cancel();
      this.flush();
    })();
    return this.closing;
  }

  // ---- passes ----------------------------------------------------------------------------

  private accept(set: DesiredSet): boolean {
    if (set.revision < this.revision) return false;
    this.revision = set.revision;
    this.desired = new Map(set.allocations.map((allocation) => [allocation.id, allocation]));
    return true;
  }

  private async pass(): Promise<void> {
    if (this.closed) return;
    const listedSeq = ++this.seq;
    const tasks = new Map((await this.driver.list()).map((task) => [task.allocationId, task]));
    if (this.closed) return;
    for (const allocation of this.desired.values()) {
      const entry = this.entries.get(allocation.id);
      if (!entry) {
        this.admit(allocation, tasks.get(allocation.id), listedSeq);
      } else if (!entry.leaving && !entry.stopped) {
        entry.allocation = allocation;
        this.observe(entry, tasks.get(allocation.id), listedSeq);
      }
    }
    // Before the first desired set ever arrived, an empty set means "not known yet", not
    // "remove everything".
    if (this.revision === 0) return;
    for (const entry of this.entries.values()) if (!this.desired.has(entry.id)) this.retire(entry, tasks.get(entry.id), listedSeq);
    for (const task of tasks.values()) {
      if (!this.desired.has(task.allocationId) && !this.entries.has(task.allocationId)) this.retire(this.orphan(task), task, listedSeq);
    }
    for (const id of this.runs.keys()) {
      if (!this.desired.has(id) && !this.entries.has(id) && !tasks.has(id)) this.forget(id);
    }
    if (this.options.dataDir && this.clock.now() - this.lastCheckpointSweepMs >= this.timing.checkpointSweepMs) {
      this.lastCheckpointSweepMs = this.clock.now();
      this.track(this.sweepCheckpoints(this.options.dataDir).catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'could not sweep checkpoint directories')));
    }
  }

  /**
   * Removes the checkpoints of jobs none of whose allocations is here and none of which started
   * or went within checkpointRetentionMs (the job directory's mtime says when: see touchJobDir).
   */
  private async sweepCheckpoints(dataDir: string): Promise<void> {
    const root = path.join(dataDir, 'checkpoints');
    const here = new Set<string>();
    // A kept stopped task does not need its job's checkpoints: their retention began when it stopped.
    for (const entry of this.entries.values()) if (entry.allocation?.kind === 'job' && !entry.stopped) here.add(path.join(entry.allocation.tenant, entry.allocation.workload));
    for (const allocation of this.desired.values()) if (allocation.kind === 'job') here.add(path.join(allocation.tenant, allocation.workload));
    const tenants = await fs.readdir(root).catch(() => [] as string[]);
    for (const tenant of tenants) {
      for (const job of await fs.readdir(path.join(root, tenant)).catch(() => [] as string[])) {
        if (here.has(path.join(tenant, job))) continue;
        const dir = path.join(root, tenant, job);
        const stat = await fs.stat(dir).catch(() => undefined);
        if (!stat || this.clock.now() - stat.mtimeMs < this.timing.checkpointRetentionMs) continue;
        await fs.rm(dir, { recursive: true, force: true });
        this.log.info({ tenant, job }, 'removed the checkpoints of a job that has not run here for a while');
      }
      await fs.rmdir(path.join(root, tenant)).catch(() => undefined);
    }
  }

  /** Marks a job's checkpoint directory as just used (its retention starts again). */
  private async touchJobDir(allocation: Allocation): Promise<void> {
    const root = this.options.dataDir;
    if (!root || allocation.kind !== 'job') return;
    const now = new Date(this.clock.now());
    await fs.utimes(path.join(root, 'checkpoints', allocation.tenant, allocation.workload), now, now).catch(() => undefined);
  }

  /** A desired allocation seen for the first time by this process. */
  private admit(allocation: Allocation, task: TaskStatus | undefined, listedSeq: number): void {
    const entry = this.newEntry(allocation.id, allocation, { state: 'pending' });
    this.entries.set(entry.id, entry);
    const run = this.runs.get(entry.id);
    let spec: RunSpec;
    try {
      spec = parseRunSpec(allocation.specJson);
    } catch (err) {
      this.finish(entry, 'failed', (err as Error).message, 0);
      return;
    }
    entry.spec = spec;

    if (task) {
      entry.hasTask = true;
      entry.taskSeq = listedSeq;
      if (!run?.startedAtMs) this.recordStarted(entry.id, task.startedAtMs || this.clock.now());
    }
    if (run?.final) {
      // It ended before this process began: say so again, and never run it again.
      this.setStatus(entry, { ...run.final });
      if (task) this.spawn(entry, (signal) => this.holdLeases(entry, signal));
      return;
    }
    if (task) {
      this.log.info({ allocation: entry.id, running: task.running }, 'adopting a task that already exists');
      if (!task.running) {
        this.finishFromExit(entry, task);
        this.spawn(entry, (signal) => this.holdLeases(entry, signal));
        return;
      }
      this.setStatus(entry, { state: 'running', endpoint: this.endpoint(allocation) });
      const timeout = spec.readinessTimeoutMs;
      const readyBy = Math.max(task.startedAtMs + timeout, this.clock.now() + Math.min(timeout, this.timing.adoptGraceMs));
      this.spawn(entry, async (signal) => {
        await this.holdLeases(entry, signal);
        await this.watch(entry, readyBy);
      });
      return;
    }
    if (run?.startedAtMs) {
      this.finish(entry, 'failed', 'its task disappeared', 0);
      return;
    }
    entry.launching = true;
    this.spawn(entry, (signal) => this.launch(entry, signal));
  }

  /** A known allocation against the latest list: has its task ended or vanished? */
  private observe(entry: Entry, task: TaskStatus | undefined, listedSeq: number): void {
    if (TERMINAL_STATES.has(entry.status.state as AllocationState) || entry.launching || !entry.hasTask) return;
    // The list was asked for before the task was started: it cannot show it.
    if (entry.taskSeq > listedSeq) return;
    if (!task) this.finish(entry, 'failed', 'its task disappeared', 0);
    else if (!task.running) this.finishFromExit(entry, task);
  }

  // ---- one allocation --------------------------------------------------------------------

  /** pulling → starting → running → (ready). */
  private async launch(entry: Entry, signal: AbortSignal): Promise<void> {
    const allocation = entry.allocation!;
    const spec = entry.spec!;
    const stopwatch = new StartStopwatch(() => this.clock.now());
    try {
      this.setStatus(entry, { state: 'pulling' });
      entry.leases = await this.acquire(spec, signal);
      signal.throwIfAborted();
      stopwatch.mark('pull');
      this.setStatus(entry, { state: 'starting' });
      await this.makeJobDirs(allocation, spec);
      // A driver that finds the task already created says nothing: its start then counts it all.
      await this.driver.start(this.task(allocation, spec, entry.leases), { created: () => stopwatch.mark('create') });
      stopwatch.mark('start');
    } catch (err) {
      entry.launching = false;
      this.release(entry);
      // Removed or closing: not a failure of the allocation.
      if (signal.aborted) return;
      this.finish(entry, 'failed', (err as Error).message, 0);
      // A start that failed half-way (created, then the engine went away) leaves no dead task
      // behind: the coordinator replaces the allocation, and this one never runs again.
      this.track(
        this.driver.remove(entry.id, 0).catch((removeError: unknown) =>
          this.log.warn({ allocation: entry.id, err: (removeError as Error).message }, 'could not remove what a failed start left; trying again when it leaves the desired set'),
        ),
      );
      return;
    }
    entry.launching = false;
    entry.hasTask = true;
    entry.taskSeq = ++this.seq;
    entry.stopwatch = stopwatch;
    this.recordStarted(entry.id, this.clock.now());
    if (signal.aborted) return;
    this.setStatus(entry, { state: 'running', endpoint: this.endpoint(allocation) });
    void this.sync();
    await this.watch(entry, this.clock.now() + spec.readinessTimeoutMs);
  }

  /** Readiness until ready or `readyBy`, then liveness, until the allocation ends. */
  private async watch(entry: Entry, readyBy: number): Promise<void> {
    const spec = entry.spec!;
    const port = entry.allocation!.hostPort;
    // Without a readiness path (jobs) or a port, running is as far as it goes.
    if (!spec.readinessPath || port === 0) return;
    const signal = entry.probes.signal;
    const probe = () => probeHttp(port, spec.readinessPath, { timeoutMs: this.timing.probeTimeoutMs, signal });
    const ended = () => signal.aborted || TERMINAL_STATES.has(entry.status.state as AllocationState);
    // The first seconds are probed closely: a replica woken from zero has requests waiting for
    // it, and a refused connection costs next to nothing.
    const closelyUntil = this.clock.now() + FAST_READINESS_MS;
    for (;;) {
      const result = await probe();
      if (ended()) return;
      if (result.ok) break;
      if (this.clock.now() >= readyBy) {
        this.finish(entry, 'failed', `not ready after ${seconds(spec.readinessTimeoutMs)} (${result.reason})`, 0);
        return;
      }
      const interval = this.clock.now() < closelyUntil ? Math.min(FAST_READINESS_INTERVAL_MS, this.timing.readinessIntervalMs) : this.timing.readinessIntervalMs;
      if (!(await this.pause(interval, signal))) return;
    }
    this.becameReady(entry);
    for (;;) {
      if (!(await this.pause(this.timing.livenessIntervalMs, signal))) return;
      const result = await probe();
      if (ended()) return;
      if (result.ok && entry.status.state === 'running') this.setStatus(entry, { state: 'ready', reason: '' });
      else if (!result.ok && entry.status.state === 'ready') this.setStatus(entry, { state: 'running', reason: `stopped answering: ${result.reason}` });
    }
  }

  /** The first ready: a start this process launched sends its phases with it, once. */
  private becameReady(entry: Entry): void {
    const stopwatch = entry.stopwatch;
    entry.stopwatch = undefined;
    if (!stopwatch) {
      this.setStatus(entry, { state: 'ready', reason: '' });
      return;
    }
    stopwatch.mark('load');
    const startPhases = stopwatch.phases();
    this.setStatus(entry, { state: 'ready', reason: '', startPhases });
    try {
      this.options.onStarted?.(startPhases);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'recording start phases failed');
    }
  }

  /** An adopted task's blobs, leased again so the cache keeps them while it exists. */
  private async holdLeases(entry: Entry, signal: AbortSignal): Promise<void> {
    try {
      entry.leases = await this.acquire(entry.spec!, signal);
    } catch (err) {
      if (!signal.aborted) this.log.warn({ allocation: entry.id, err: (err as Error).message }, 'could not lease the blobs of an adopted task; the cache may evict them');
    }
  }

  /** Every blob of the spec from the cache, all or none. */
  private async acquire(spec: RunSpec, signal: AbortSignal): Promise<Held[]> {
    const blobs = [...(spec.model ? [spec.model] : []), ...spec.datasets];
    const results = await Promise.allSettled(
      blobs.map((blob) => this.cache.acquire({ digest: blob.digest, sizeBytes: blob.sizeBytes, directory: blob.directory }, signal)),
    );
    const failure = results.findIndex((result) => result.status === 'rejected');
    if (failure >= 0) {
      for (const result of results) if (result.status === 'fulfilled') result.value.release();
      const blob = blobs[failure]!;
      const err = (results[failure] as PromiseRejectedResult).reason as Error;
      if (signal.aborted) throw err;
      throw new Error(`could not get ${blob.kind} ${blob.ref} (${blob.digest}) into the cache: ${err.message}`);
    }
    return blobs.map((blob, i) => ({ blob, lease: (results[i] as PromiseFulfilledResult<CacheLease>).value }));
  }

  /** The driver's view of the allocation: mounts, environment, resources. */
  private task(allocation: Allocation, spec: RunSpec, held: Held[]): Task {
    const paths = new Map(held.map((h) => [h.blob, h.lease.path]));
    return driverTask(allocation, spec, paths, { onHost: this.driver.name === 'process', dirs: this.jobDirs(allocation, spec) });
  }

  /**
   * An allocation nobody wants any more (`task`: its task in a list asked for at `listedSeq`). A
   * job's task is stopped, then kept until stoppedJobRetentionMs after it ended, then removed;
   * any other task is removed at once. Kept or removed, the allocation is let go of when its task
   * stops: it holds no lease, no output directory, no probe, and is reported `stopped` once.
   */
  private retire(entry: Entry, task: TaskStatus | undefined, listedSeq: number): void {
    if (entry.leaving) return;
    if ((entry.allocation?.kind ?? task?.kind) !== 'job') this.leave(entry, 'remove');
    else if (!entry.stopped || task?.running) this.leave(entry, 'stop');
    // A list asked for before the stop may not show the stopped task yet.
    else if (entry.taskSeq <= listedSeq && !this.kept(task)) this.leave(entry, 'remove');
  }

  /**
   * Whether a job's stopped task is within its retention: it ended less than
   * stoppedJobRetentionMs ago. One that cannot say when (a container created but never started)
   * has no logs worth keeping.
   */
  private kept(task: TaskStatus | undefined): boolean {
    return task !== undefined && task.finishedAtMs > 0 && this.clock.now() < task.finishedAtMs + this.timing.stoppedJobRetentionMs;
  }

  /** Stops (keeping it) or removes the task of an allocation nobody wants, after its job ends. */
  private leave(entry: Entry, how: 'stop' | 'remove'): void {
    entry.work.abort(new Error('removed from the desired set'));
    const leaving = (async () => {
      await entry.job;
      // Closing: the next agent stops or removes it.
      if (this.closed) {
        entry.leaving = undefined;
        return;
      }
      try {
        if (how === 'stop') await this.driver.stop(entry.id, this.timing.removeGraceMs);
        else await this.driver.remove(entry.id, this.timing.removeGraceMs);
      } catch (err) {
        this.log.warn({ allocation: entry.id, err: (err as Error).message }, `could not ${how} a task; trying again at the next resync`);
        entry.leaving = undefined;
        return;
      }
      if (!entry.stopped) await this.letGo(entry);
      if (how === 'stop') {
        entry.stopped = true;
        entry.taskSeq = ++this.seq;
        entry.leaving = undefined;
        this.log.info({ allocation: entry.id, keptForMs: this.timing.stoppedJobRetentionMs }, 'stopped: no longer in the desired set; kept with its logs');
      } else {
        this.entries.delete(entry.id);
        this.forget(entry.id);
        this.log.info({ allocation: entry.id }, 'removed: no longer in the desired set');
      }
      this.setStatus(entry, { state: 'stopped', reason: 'no longer in the desired set', endpoint: '' }, true);
      // What the stopped task left in its checkpoint directory keeps no setuid bit (after the status: nothing waits on it).
      if (how === 'stop' && entry.allocation?.kind === 'job' && entry.spec) await this.stripJobDirs(entry.allocation, entry.spec).catch(() => undefined);
      // A task that ended long before it was stopped is past its retention already.
      if (how === 'stop') void this.sync();
    })();
    entry.leaving = leaving;
    this.track(leaving);
  }

  /**
   * What an allocation held while its task ran: cache leases, its output directory. Its job's
   * checkpoint retention starts again now (see sweepCheckpoints).
   */
  private async letGo(entry: Entry): Promise<void> {
    this.release(entry);
    if (this.options.dataDir) await fs.rm(path.join(this.options.dataDir, 'outputs', entry.id), { recursive: true, force: true }).catch(() => undefined);
    if (entry.allocation) await this.touchJobDir(entry.allocation);
  }

  /** A task on the host that no desired allocation claims. */
  private orphan(task: TaskStatus): Entry {
    const state: AllocationState = task.running ? 'running' : task.exitCode === 0 ? 'completed' : 'failed';
    const entry = this.newEntry(task.allocationId, undefined, { state, exitCode: task.exitCode ?? 0 });
    entry.hasTask = true;
    this.entries.set(entry.id, entry);
    return entry;
  }

  private finishFromExit(entry: Entry, task: TaskStatus): void {
    const code = task.exitCode;
    if (entry.allocation?.kind === 'job' && entry.spec) {
      const { allocation, spec } = entry;
      this.track(this.stripJobDirs(allocation, spec).catch((err: unknown) => this.log.warn({ allocation: allocation.id, err: (err as Error).message }, 'could not clear setuid bits in the job directories')));
    }
    if (code === 0 && entry.allocation?.kind === 'job' && entry.spec && pushesOutput(entry.spec)) this.startOutputPush(entry);
    else if (code === 0) this.finish(entry, 'completed', '', 0);
    else if (code === undefined) this.finish(entry, 'failed', task.reason || 'the task ended without an exit code', 0);
    else this.finish(entry, 'failed', task.reason ? `exited with code ${code} (${task.reason})` : `exited with code ${code}`, code);
  }

  /**
   * Rank 0 of a job with an output model, or a partition of a job with an output dataset, exited
   * 0: its /output goes to the leader, and only then is it `completed` (with the version; 0 for a
   * partition's part), so the job succeeds only with its output stored. Tried again while the
   * leader cannot be reached; any other refusal fails the allocation.
   */
  private startOutputPush(entry: Entry): void {
    if (entry.pushing || TERMINAL_STATES.has(entry.status.state as AllocationState)) return;
    entry.pushing = true;
    const previous = entry.job;
    const allocation = entry.allocation!;
    const spec = entry.spec!;
    this.setStatus(entry, { state: 'running', reason: 'exited 0; pushing its output', endpoint: '' });
    this.spawn(entry, async (signal) => {
      await previous;
      await this.stripJobDirs(allocation, spec);
      const dirs = this.jobDirs(allocation, spec);
      if (!dirs || !this.options.pushOutput) {
        this.finish(entry, 'failed', 'exited 0, but this agent cannot push job outputs', 0);
        return;
      }
      for (;;) {
        try {
          const version = await this.options.pushOutput({ allocationId: entry.id, dir: dirs.output, output: spec.output, dataset: spec.outputDataset }, signal);
          this.log.info({ allocation: entry.id, model: spec.output?.model, dataset: spec.outputDataset, version }, 'pushed the job output');
          this.finish(entry, 'completed', '', 0, version);
          return;
        } catch (err) {
          if (signal.aborted) return;
          if (!isTransient(err)) {
            this.finish(entry, 'failed', `exited 0, but its output could not be pushed: ${(err as Error).message}`, 0);
            return;
          }
          this.log.warn({ allocation: entry.id, err: (err as Error).message }, 'could not push the job output yet; trying again');
          if (!(await this.pause(this.timing.outputRetryMs, signal))) return;
        }
      }
    });
  }

  /** A job allocation's writable directories on this host; undefined for a deployment or without a data directory. */
  private jobDirs(allocation: Allocation, spec: RunSpec): { output: string; checkpoint: string } | undefined {
    const root = this.options.dataDir;
    if (!root || allocation.kind !== 'job') return undefined;
    return {
      output: path.join(root, 'outputs', allocation.id),
      // Per job and rank, not per allocation: a retry on this host finds what the last attempt saved.
      checkpoint: path.join(root, 'checkpoints', allocation.tenant, allocation.workload, `rank-${spec.rank}`),
    };
  }

  /** Creates them, writable by the user the driver runs tasks as and reachable by no other (task-dirs.ts). */
  private async makeJobDirs(allocation: Allocation, spec: RunSpec): Promise<void> {
    const dirs = this.jobDirs(allocation, spec);
    if (!dirs) return;
    for (const dir of [dirs.output, dirs.checkpoint]) await makeTaskDir(this.options.dataDir!, dir, this.driver.taskOwner);
    await this.touchJobDir(allocation);
  }

  /** A job's task ended: no setuid or setgid file it left is kept or pushed. */
  private async stripJobDirs(allocation: Allocation, spec: RunSpec): Promise<void> {
    const dirs = this.jobDirs(allocation, spec);
    if (!dirs) return;
    for (const dir of [dirs.output, dirs.checkpoint]) {
      const changed = await stripSetIds(dir);
      if (changed.length > 0) this.log.warn({ allocation: allocation.id, files: changed }, 'cleared setuid/setgid bits the task left on files');
    }
  }

  /** A terminal state: remembered across restarts, and the end of probing. */
  private finish(entry: Entry, state: 'failed' | 'completed', reason: string, exitCode: number, outputVersion = 0): void {
    if (this.setStatus(entry, { state, reason, exitCode, endpoint: '', outputVersion })) {
      this.state.recordFinal(entry.status);
      this.runs.set(entry.id, { allocationId: entry.id, startedAtMs: this.runs.get(entry.id)?.startedAtMs ?? 0, final: entry.status });
    }
    entry.probes.abort(new Error(`allocation ${state}`));
  }

  // ---- plumbing --------------------------------------------------------------------------

  private newEntry(id: string, allocation: Allocation | undefined, status: Partial<AllocationStatus>): Entry {
    const work = new AbortController();
    const probes = new AbortController();
    work.signal.addEventListener('abort', () => probes.abort(work.signal.reason), { once: true });
    return {
      id,
      allocation,
      spec: undefined,
      status: { id, state: 'pending', reason: '', endpoint: '', exitCode: 0, updatedAtMs: this.clock.now(), outputVersion: 0, startPhases: [], ...status },
      leases: [],
      work,
      probes,
      job: undefined,
      launching: false,
      hasTask: false,
      pushing: false,
      taskSeq: 0,
      leaving: undefined,
      stopped: false,
      stopwatch: undefined,
    };
  }

  /**
   * Applies `patch` to the entry's status; false when nothing changed. A terminal state is
   * final: only removal (`stopped`, with `force`) moves on from it.
   */
  private setStatus(entry: Entry, patch: Partial<AllocationStatus>, force = false): boolean {
    const current = entry.status;
    if (!force && TERMINAL_STATES.has(current.state as AllocationState)) return false;
    // Start phases go out once, with the status that carries them.
    const next: AllocationStatus = { ...current, startPhases: [], ...patch, id: entry.id, updatedAtMs: patch.updatedAtMs ?? this.clock.now() };
    if (next.state === current.state && next.reason === current.reason && next.endpoint === current.endpoint && next.exitCode === current.exitCode && next.outputVersion === current.outputVersion) {
      return false;
    }
    entry.status = next;
    // A change within the same report keeps the phases the one before it carried.
    const pendingPhases = this.dirty.get(entry.id)?.startPhases ?? [];
    this.dirty.set(entry.id, next.startPhases.length === 0 && pendingPhases.length > 0 ? { ...next, startPhases: pendingPhases } : next);
    this.log.info({ allocation: entry.id, state: next.state, reason: next.reason || undefined }, 'allocation state');
    this.flushTimer ??= this.clock.setTimeout(() => {
      this.flushTimer = undefined;
      this.flush();
    }, this.timing.reportDebounceMs);
    return true;
  }

  private flush(): void {
    if (this.dirty.size === 0) return;
    const changed = [...this.dirty.values()];
    this.dirty.clear();
    try {
      this.options.onStatus(changed);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'reporting allocation statuses failed');
    }
  }

  private endpoint(allocation: Allocation): string {
    return allocation.hostPort === 0 ? '' : formatHostPort(this.options.advertiseHost, allocation.hostPort);
  }

  private recordStarted(id: string, atMs: number): void {
    this.state.recordStarted(id, atMs);
    const run = this.runs.get(id);
    if (!run?.startedAtMs) this.runs.set(id, { allocationId: id, startedAtMs: atMs, final: run?.final });
  }

  private forget(id: string): void {
    if (!this.runs.delete(id)) return;
    this.state.forgetRun(id);
  }

  private release(entry: Entry): void {
    for (const held of entry.leases) held.lease.release();
    entry.leases = [];
  }

  private spawn(entry: Entry, job: (signal: AbortSignal) => Promise<void>): void {
    const running = job(entry.work.signal).catch((err: unknown) => {
      this.log.error({ allocation: entry.id, err }, 'allocation job failed unexpectedly');
    });
    entry.job = running;
    this.track(running);
  }

  private track(work: Promise<void>): void {
    this.work.add(work);
    void work.finally(() => this.work.delete(work));
  }

  /** Sleeps on the clock; false when `signal` aborted first. */
  private async pause(ms: number, signal: AbortSignal): Promise<boolean> {
    try {
      await sleep(this.clock, ms, signal);
      return true;
    } catch {
      return false;
    }
  }
}

/** Allocation.spec_json as a RunSpec, with the defaults of fields an older coordinator leaves out. */
export function parseRunSpec(json: string): RunSpec {
  let raw: Partial<RunSpec> | null;
  try {
    raw = parseBoundedJson(json, "the allocation's spec") as Partial<RunSpec> | null;
  } catch (err) {
    if (err instanceof RangeError) throw new InvalidArgumentError(`${err.message}; the coordinator sent something this agent cannot run`);
    throw new InvalidArgumentError(`the allocation's spec is not JSON (${(err as Error).message}); the coordinator sent something this agent cannot run`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new InvalidArgumentError("the allocation's spec is not a JSON object; the coordinator sent something this agent cannot run");
  }
  return {
    image: raw.image ?? '',
    command: raw.command ?? [],
    env: raw.env ?? {},
    port: raw.port ?? 0,
    readinessPath: raw.readinessPath ?? '',
    readinessTimeoutMs: raw.readinessTimeoutMs || DEFAULT_READINESS_TIMEOUT_MS,
    model: raw.model ?? undefined,
    datasets: raw.datasets ?? [],
    rank: raw.rank ?? 0,
    worldSize: raw.worldSize ?? 1,
    peers: raw.peers ?? [],
    output: raw.output ?? undefined,
    ...(typeof raw.attempt === 'number' ? { attempt: raw.attempt } : {}),
    ...(typeof raw.partitions === 'number' && raw.partitions > 0 ? { partitions: raw.partitions } : {}),
    ...(raw.outputDataset ? { outputDataset: raw.outputDataset } : {}),
  };
}

/** Whether a job task that exited 0 has its /output pushed: rank 0 of a job with an output model, or any partition of one with an output dataset. */
function pushesOutput(spec: RunSpec): boolean {
  return spec.outputDataset !== undefined || (spec.output !== undefined && spec.rank === 0);
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))}s`;
}

/**
 * The Task a driver gets for an allocation: the blobs at `paths` in the cache mounted
 * read-only (or, on the host, given by path), the job's writable directories, the environment.
 * The process driver mounts nothing: the task reads the cache on the host and listens on the
 * host port itself; in a container, the mounts and the container's port.
 */
export function driverTask(
  allocation: Allocation,
  spec: RunSpec,
  paths: ReadonlyMap<RunBlob, string>,
  options: { onHost: boolean; dirs: { output: string; checkpoint: string } | undefined },
): Task {
  const { onHost, dirs } = options;
  const where = (blob: RunBlob) => (onHost ? paths.get(blob)! : blob.mountPath);
  const blobs = [...paths.keys()];
  const env = taskEnvironment(allocation.id, spec, {
    model: spec.model && paths.has(spec.model) ? where(spec.model) : undefined,
    datasets: Object.fromEntries(blobs.filter((b) => b !== spec.model).map((b) => [b.name, where(b)])),
    port: onHost ? allocation.hostPort : spec.port,
    output: dirs && (onHost ? dirs.output : OUTPUT_MOUNT),
    checkpoint: dirs && (onHost ? dirs.checkpoint : CHECKPOINT_MOUNT),
  });
  const writable = dirs
    ? [
        { hostPath: dirs.output, containerPath: OUTPUT_MOUNT, readOnly: false },
        { hostPath: dirs.checkpoint, containerPath: CHECKPOINT_MOUNT, readOnly: false },
      ]
    : [];
  return {
    allocationId: allocation.id,
    kind: allocation.kind,
    workload: allocation.workload,
    tenant: allocation.tenant,
    spec,
    cpuMillis: allocation.resources?.cpuMillis ?? 0,
    memoryBytes: allocation.resources?.memoryBytes ?? 0,
    gpuIndexes: [...allocation.gpuIndexes],
    hostPort: allocation.hostPort,
    mounts: [...blobs.map((b) => ({ hostPath: paths.get(b)!, containerPath: b.mountPath, readOnly: true })), ...writable],
    env,
  };
}
