// The leader's workload controller: holds every deployment, job and allocation (loaded from the
// store when leadership is won, kept in step by its own writes), and runs the reconcile pass —
// decide what each workload needs (reconcile.ts), ask the pure scheduler for a plan, commit the
// plan with an optimistic transaction (plan-commit.ts), and send every node whose allocations
// changed its full desired set. One mutation runs at a time (API calls, agent reports and passes
// share one queue), so decisions never interleave. Each concern acts on the state held here
// (core.ts) from its own module: deployments (deployments.ts), jobs and their outputs (jobs.ts);
// this file keeps the state, the queue, the pass, placement, allocations and the agents' side.
import fs from 'node:fs/promises';
import type { Clock, Timer } from '../../shared/clock.js';
import { ConflictError, InvalidArgumentError, NotFoundError } from '../../shared/errors.js';
import { KeyedMutex } from '../../shared/keyed-mutex.js';
import { keys } from '../../shared/keys.js';
import type { Logger } from '../../shared/log.js';
import type { Allocation, AllocationStatus, Deployment, DeploymentSpec, DeploymentTraffic, Job, JobSpec, Resources } from '../../shared/proto.js';
import type { Op, Store } from '../../shared/store/store.js';
import { formatHostPort, parseHostPort } from '../../shared/config.js';
import { ALLOCATION_STATES, TERMINAL_STATES, type AllocationState } from '../../shared/workloads.js';
import { displayStatus, NOTHING_ALLOCATED } from '../node-record.js';
import type { FencedWriter, NodeRegistry } from '../node-registry.js';
import type { ArtifactRegistry } from '../registry/artifact-registry.js';
import type { AutoscaledDeployment, AutoscaleTarget } from '../autoscale/target.js';
import { schedule } from '../scheduler/scheduler.js';
import type { Plan, SchedAllocation, SchedNode, Snapshot, TenantQuota } from '../scheduler/types.js';
import { listTenants } from '../tenants.js';
import { listed, type EventArgs, type PendingAsk, type Stored, type WorkloadCore } from './core.js';
import { AutoscaledWorkloads, isAutoscaled, type AutoscalerViews } from './autoscaled.js';
import { Rollouts } from './rollouts.js';
import { DeploymentWorkloads } from './deployments.js';
import type { EventLog } from './event-log.js';
import { JobWorkloads, type JobOutputTarget } from './jobs.js';
import { commitPlan, type PlanWrite } from './plan-commit.js';
import type { StartPhaseBook } from './start-phases.js';
import { DEFAULT_CRASH_BACKOFF, type CrashBackoffPolicy } from './crash-backoff.js';
import type { NodeHealth, Stop } from './reconcile.js';
import { byCreation, isLive, isTerminal, workloadKey, type AllocationRecord, type DeploymentRecord, type JobRecord, type OutputPart, type WorkloadKind } from './records.js';
import type { StackLookup } from './resolve.js';
import { quoted } from '../../shared/truncate.js';

export { DEFAULT_RESOURCES } from './core.js';
export type { JobOutputTarget } from './jobs.js';

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

const WRITE_CHUNK = 100;

export class WorkloadController implements AutoscaleTarget {
  private readonly deployments = new Map<string, Stored<DeploymentRecord>>();
  private readonly jobs = new Map<string, Stored<JobRecord>>();
  private readonly allocations = new Map<string, Stored<AllocationRecord>>();
  /** modRevision of each node's plan key as this leader last read or wrote it. */
  private readonly nodePlans = new Map<string, number>();
  /** Why a workload's replicas or workers are waiting (the scheduler's last explanation). */
  private readonly pendingReasons = new Map<string, string>();
  /** The desired set last sent to each node, to send only changes. */
  private readonly sent = new Map<string, string>();
  private readonly queue = new KeyedMutex();
  private readonly options: WorkloadControllerOptions;
  private readonly ticker: Timer;
  /** The state and shared operations the concerns below act on. */
  private readonly core: WorkloadCore;
  private readonly deploymentPart: DeploymentWorkloads;
  private readonly jobPart: JobWorkloads;
  private readonly autoscaledPart: AutoscaledWorkloads;
  /** Canaries, promotion, rollback and automatic rollback (rollouts.ts). */
  readonly rollouts: Rollouts;
  /** The tenants' quotas as last read (by a pass's plan, or once a tick while any deployment is autoscaled). */
  private quotas: ReadonlyMap<string, TenantQuota> = new Map();
  private kicked = false;
  private passing: Promise<void> | undefined;
  private closed = false;
  private lastResolveMs = 0;

  private constructor(private readonly deps: WorkloadControllerDeps) {
    this.options = { ...DEFAULT_CONTROLLER_OPTIONS, ...deps.options };
    this.ticker = deps.clock.setInterval(() => this.kick(), this.options.tickMs);
    this.core = {
      deps,
      options: this.options,
      deployments: this.deployments,
      jobs: this.jobs,
      allocations: this.allocations,
      pendingReasons: this.pendingReasons,
      closed: () => this.closed,
      mutate: (fn) => this.mutate(fn),
      kick: () => this.kick(),
      pushDesired: () => this.pushDesired(),
      event: (input) => this.event(input),
      putWorkload: (map, key, record, existing) => this.putWorkload(map, key, record, existing),
      writeStops: (stops, extra, compares, keepStatus) => this.writeStops(stops, extra, compares, keepStatus),
      writeAllocations: (updates, extra, compares) => this.writeAllocations(updates, extra, compares),
      allocationsOf: (kind, tenant, name) => this.allocationsOf(kind, tenant, name),
      byWorkload: () => this.byWorkload(),
      nodeHealth: () => this.nodeHealth(),
    };
    this.deploymentPart = new DeploymentWorkloads(this.core);
    this.jobPart = new JobWorkloads(this.core);
    this.rollouts = new Rollouts(this.core);
    this.autoscaledPart = new AutoscaledWorkloads(this.core, (tenant) => this.usage(tenant), () => this.quotas);
  }

  static async load(deps: WorkloadControllerDeps): Promise<WorkloadController> {
    const controller = new WorkloadController(deps);
    // What a coordinator that died (or lost leadership) while assembling left behind: the
    // assemblies start again from the parts, which the store keeps.
    if (deps.scratchDir) await fs.rm(deps.scratchDir, { recursive: true, force: true });
    await controller.reload();
    await controller.readQuotas();
    deps.artifacts.usedBy = (kind, tenant, name, version) => controller.deploymentPart.versionUser(kind, tenant, name, version);
    deps.artifacts.pinned = (digest) => controller.jobPart.partPinned(digest);
    deps.artifacts.whileUsesHeld = (fn) => controller.mutate(fn);
    deps.log.info({ deployments: controller.deployments.size, jobs: controller.jobs.size, allocations: controller.allocations.size }, 'workloads loaded');
    controller.kick();
    return controller;
  }

  close(): void {
    this.closed = true;
    this.ticker.cancel();
    this.jobPart.close();
    this.deps.artifacts.usedBy = undefined;
    this.deps.artifacts.pinned = undefined;
    this.deps.artifacts.whileUsesHeld = undefined;
  }

  /** Waits for the running pass and output assemblies (tests, shutdown). */
  async settle(): Promise<void> {
    while (this.passing || this.jobPart.assembling.size > 0) await Promise.all([this.passing, ...this.jobPart.assembling.values()]);
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
    return this.deploymentPart.apply(tenant, spec);
  }

  scaleDeployment(tenant: string, name: string, replicas: number): Promise<Deployment> {
    return this.deploymentPart.scale(tenant, name, replicas);
  }

  deleteDeployment(tenant: string, name: string): Promise<void> {
    return this.deploymentPart.delete(tenant, name);
  }

  /** A canary's new generation replaces the stable one (rollouts.ts). */
  async promoteDeployment(tenant: string, name: string): Promise<Deployment> {
    await this.rollouts.promote(tenant, name);
    return this.deploymentPart.get(tenant, name);
  }

  /** Back to the last good version, pinned (rollouts.ts). */
  async rollbackDeployment(tenant: string, name: string): Promise<Deployment> {
    await this.rollouts.rollback(tenant, name);
    return this.deploymentPart.get(tenant, name);
  }

  getDeployment(tenant: string, name: string): Deployment {
    return this.deploymentPart.get(tenant, name);
  }

  listDeployments(tenant: string | undefined): Deployment[] {
    return this.deploymentPart.list(tenant);
  }

  /**
   * A deployment's measured p50 latency, as agents report it; the latest report wins. Kept in
   * memory like heartbeats: a new leader knows none until the next reports.
   */
  recordLatency(tenant: string, name: string, p50Ms: number): void {
    this.deploymentPart.recordLatency(tenant, name, p50Ms);
  }

  /** The deployment's latest measured p50 latency (ms); undefined until one is reported. */
  latencyOf(tenant: string, name: string): number | undefined {
    return this.deploymentPart.latencyOf(tenant, name);
  }

  // ---- autoscaled deployments (autoscaled.ts) -------------------------------------------------

  /** Every autoscaled deployment as it is now, with its tenant's quota headroom (AutoscaleTarget). */
  autoscaled(): AutoscaledDeployment[] {
    return this.autoscaledPart.autoscaled();
  }

  /** Sets an autoscaled deployment's size: no generation bump, `reason` as its event, a pass kicked (AutoscaleTarget). */
  resizeDeployment(tenant: string, name: string, replicas: number, reason: string): Promise<void> {
    return this.autoscaledPart.resizeDeployment(tenant, name, replicas, reason);
  }

  /** Where each deployment's view gets its `traffic` (the leader's RouteBook). */
  useTrafficViews(trafficOf: ((allocations: string[]) => DeploymentTraffic | null) | undefined): void {
    this.deploymentPart.trafficOf = trafficOf;
  }

  /** Where each autoscaled deployment's view gets its `autoscaler` (the leader's autoscaler). */
  useAutoscalerViews(views: AutoscalerViews | undefined): void {
    this.deploymentPart.autoscalerViews = views;
  }

  /** What names the stack: a deployment, or a job not yet ended; undefined when nothing does. */
  stackUser(stack: string): string | undefined {
    for (const { record } of this.deployments.values()) if (record.spec.stack === stack) return `deployment "${record.spec.name}" of tenant "${record.tenant}"`;
    for (const { record } of this.jobs.values()) {
      if (record.spec.stack === stack && record.finishedAtMs === 0) return `job "${record.spec.name}" of tenant "${record.tenant}"`;
    }
    return undefined;
  }

  // ---- jobs (jobs.ts) ----------------------------------------------------------------------

  runJob(tenant: string, spec: JobSpec): Promise<Job> {
    return this.jobPart.run(tenant, spec);
  }

  cancelJob(tenant: string, name: string): Promise<Job> {
    return this.jobPart.cancel(tenant, name);
  }

  getJob(tenant: string, name: string): Job {
    return this.jobPart.get(tenant, name);
  }

  listJobs(tenant: string | undefined): Job[] {
    return this.jobPart.list(tenant);
  }

  /** Where a node's push of a job's output goes, or why it may not push it (JobWorkloads.outputTarget). */
  jobOutputTarget(node: string, allocationId: string): JobOutputTarget {
    return this.jobPart.outputTarget(node, allocationId);
  }

  /** Records the stored part of a partition's output on its allocation (JobWorkloads.recordOutputPart). */
  recordOutputPart(node: string, allocationId: string, part: OutputPart): Promise<OutputPart> {
    return this.jobPart.recordOutputPart(node, allocationId, part);
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
      await this.deploymentPart.followModelRefs();
      if ([...this.deployments.values()].some(({ record }) => isAutoscaled(record.spec))) await this.readQuotas();
    }
    const byWorkload = this.byWorkload();
    await this.rollouts.guard(byWorkload, now);
    const deployments = this.deploymentPart.decide(byWorkload, now, health);
    const jobs = await this.jobPart.decide(byWorkload, now, health);
    await this.writeStops([...deployments.stops, ...jobs.stops]);
    const pending = [...deployments.pending, ...jobs.pending];
    if (pending.length > 0) await this.place(pending);
    await this.collectGarbage(now);
    this.pushDesired();
    this.deps.onPass?.();
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
    const placed: AllocationRecord[] = [];
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
      placed.push(record);
      const p = byId.get(record.id)!;
      this.deps.startPhases?.committed(workloadKey(p.kind, p.tenant, p.name), record.id, this.deps.clock.now());
      this.event({ tenant: record.tenant, object: `${record.kind}/${record.workload}`, allocation: record.id, node: record.node, type: 'Scheduled', message: `on ${record.node}${record.gpuIndexes.length ? ` with GPU ${record.gpuIndexes.join(',')}` : ''}${record.hostPort ? `, port ${record.hostPort}` : ''}` });
    }
    await this.jobPart.started(placed, now);
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
    return { nodes, allocations, quotas: await this.readQuotas(), portRange: this.options.portRange };
  }

  /** The quotas of the tenants that have one, read from the store and kept for autoscaled(). */
  private async readQuotas(): Promise<Map<string, TenantQuota>> {
    const quotas = new Map<string, TenantQuota>();
    for (const tenant of await listTenants(this.deps.store)) {
      const q = tenant.quota;
      if (q.cpuMillis || q.memoryBytes || q.gpus || q.gpuMemoryBytes) quotas.set(tenant.name, { cpuMillis: q.cpuMillis, memoryBytes: q.memoryBytes, gpus: q.gpus, gpuMemoryBytes: q.gpuMemoryBytes });
    }
    this.quotas = quotas;
    return quotas;
  }

  private async collectGarbage(now: number): Promise<void> {
    // Ended jobs keep their containers (and logs) on the hosts for a while, then let them go.
    const release = this.jobPart.expired(this.byWorkload(), now);
    if (release.length > 0) await this.writeStops(release, [], [], true);
    const forget = [...this.allocations.values()].filter(
      ({ record: a }) => a.desired === 'stop' && isTerminal(a) && now - a.updatedAtMs >= this.options.allocationRetentionMs,
    );
    // Parts a leader could not delete when their job was done with them (it stopped first) go now.
    this.jobPart.releaseParts(forget.map(({ record }) => record));
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
  private event(input: EventArgs): void {
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

/** The host of a node's advertised address ("10.0.0.7:7701" → "10.0.0.7"); '' when it has none. */
function addressHost(address: string): string {
  if (!address) return '';
  try {
    return parseHostPort(address).host;
  } catch {
    return '';
  }
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
