// The deployment concern of the workload controller: applying, scaling and removing
// deployments, their views (status and message from the last decision, the scheduler's reason,
// crash backoff), the latency the agents report, the deployment half of the reconcile pass
// (decideDeployment's stops and asks, crash backoff) and the model REFs deployments follow. It
// acts on the controller's state (core.ts).
import { isDeepStrictEqual } from 'node:util';
import { ResourceExhaustedError } from '../../shared/errors.js';
import { appliedReplicas, boundsText, isAutoscaled, refuseScale, type AutoscalerViews } from './autoscaled.js';
import { keys } from '../../shared/keys.js';
import type { Deployment, DeploymentSpec, DeploymentTraffic } from '../../shared/proto.js';
import type { DeploymentStatus } from '../../shared/workloads.js';
import { findTenant } from '../tenants.js';
import { found, listed, newAllocation, newAllocationId, withDefaults, type PendingAsk, type Stored, type WorkloadCore } from './core.js';
import { crashLoopMessage, decideCrashBackoff, type CrashLoop } from './crash-backoff.js';
import { rollsOut, updatedMessage } from './deployment-update.js';
import { decideDeployment, type NodeHealth, type Stop } from './reconcile.js';
import { isLive, toProtoDeployment, workloadKey, type AllocationRecord, type DeploymentRecord } from './records.js';
import { resolveDeployment } from './resolve.js';
import { startRollout } from './rollouts.js';

export class DeploymentWorkloads {
  /** Deployments whose replicas keep failing, by key (crash-backoff.ts); this leader's memory only. */
  private readonly crashLoops = new Map<string, CrashLoop>();
  /** The latest measured p50 latency (ms) of each deployment, by deployment key; memory only. */
  private readonly latencies = new Map<string, number>();

  /** Fills each view's `autoscaler` (set by the leader once its autoscaler runs). */
  autoscalerViews: AutoscalerViews | undefined;
  /** Fills each view's `traffic`: what the gateways measured of these replicas (the leader's RouteBook). */
  trafficOf: ((allocations: string[]) => DeploymentTraffic | null) | undefined;

  constructor(private readonly core: WorkloadCore) {}

  apply(tenant: string, given: DeploymentSpec): Promise<{ deployment: Deployment; created: boolean }> {
    const { core } = this;
    return core.mutate(async () => {
      const key = keys.deployment(tenant, given.name);
      const existing = core.deployments.get(key);
      // An autoscaled deployment's size is the autoscaler's: kept (within the new bounds) on a re-apply.
      const spec = { ...given, replicas: appliedReplicas(existing?.record.spec, given) };
      const resolved = await resolveDeployment(core.deps.artifacts, core.deps.stacks, tenant, spec);
      const now = core.deps.clock.now();
      if (!existing) await this.checkQuota(tenant);
      const record: DeploymentRecord = existing
        ? { ...existing.record, spec, updatedAtMs: now }
        : { tenant, spec, generation: 1, resolvedVersion: 0, modelDigest: '', run: resolved.run, createdAtMs: now, updatedAtMs: now };
      const changed = !existing || rollsOut(existing.record, spec, resolved.run);
      Object.assign(record, { run: resolved.run, resolvedVersion: resolved.resolvedVersion, modelDigest: resolved.modelDigest });
      if (existing && isDeepStrictEqual(existing.record.spec, spec) && !changed) return { deployment: this.view(key), created: false };
      // A change of what runs is a new generation, watched for automatic rollback (rollouts.ts).
      const next = !existing ? { ...record, rolloutStartedAtMs: now } : changed ? startRollout(existing.record, record, now) : record;
      await core.putWorkload(core.deployments, key, next, existing);
      core.event({ tenant, object: `deployment/${spec.name}`, type: existing ? (changed ? 'RolloutStarted' : 'Updated') : 'Created', message: existing ? (changed ? `${next.canaryOf !== undefined ? `canary of ${spec.rollout!.canaryPercent}%:` : 'rolling out'} generation ${next.generation} (model ${resolved.run.model!.ref})` : updatedMessage(existing.record.spec, spec)) : `${spec.replicas} replicas${isAutoscaled(spec) ? ` (autoscaled, ${boundsText(spec)})` : ''} of model ${resolved.run.model!.ref}` });
      core.kick();
      return { deployment: this.view(key), created: !existing };
    });
  }

  scale(tenant: string, name: string, replicas: number): Promise<Deployment> {
    const { core } = this;
    return core.mutate(async () => {
      const [key, existing] = this.named(tenant, name);
      refuseScale(existing.record.spec);
      if (existing.record.spec.replicas !== replicas) {
        const record = { ...existing.record, spec: { ...existing.record.spec, replicas }, updatedAtMs: core.deps.clock.now() };
        await core.putWorkload(core.deployments, key, record, existing);
        core.event({ tenant, object: `deployment/${name}`, type: 'Scaled', message: `from ${existing.record.spec.replicas} to ${replicas} replicas` });
        core.kick();
      }
      return this.view(key);
    });
  }

  delete(tenant: string, name: string): Promise<void> {
    const { core } = this;
    return core.mutate(async () => {
      const [key, existing] = this.named(tenant, name);
      const mine = core.allocationsOf('deployment', tenant, name);
      await core.writeStops(mine.filter((a) => a.desired === 'run').map((a) => ({ id: a.id, reason: 'deployment removed' })), [
        { type: 'delete', key },
      ], [{ key, target: 'modRevision', op: '=', value: existing.modRevision }]);
      core.deployments.delete(key);
      this.latencies.delete(key);
      core.pendingReasons.delete(workloadKey('deployment', tenant, name));
      core.event({ tenant, object: `deployment/${name}`, type: 'Deleted', message: `stopping ${mine.filter(isLive).length} replicas` });
      core.pushDesired();
    });
  }

  get(tenant: string, name: string): Deployment {
    return this.view(this.named(tenant, name)[0]);
  }

  list(tenant: string | undefined): Deployment[] {
    const health = this.core.nodeHealth();
    return listed(this.core.deployments, tenant).map((key) => this.view(key, health));
  }

  /** A deployment's measured p50 latency (see WorkloadController.recordLatency). */
  recordLatency(tenant: string, name: string, p50Ms: number): void {
    const key = keys.deployment(tenant, name);
    if (this.core.deployments.has(key) && Number.isFinite(p50Ms) && p50Ms >= 0) this.latencies.set(key, p50Ms);
  }

  latencyOf(tenant: string, name: string): number | undefined {
    return this.latencies.get(keys.deployment(tenant, name));
  }

  /** The deployment half of a pass: each deployment's stops and asks (none while its replacements back off). */
  decide(byWorkload: Map<string, AllocationRecord[]>, now: number, health: (node: string) => NodeHealth): { stops: Stop[]; pending: PendingAsk[] } {
    const { core } = this;
    const stops: Stop[] = [];
    const pending: PendingAsk[] = [];
    for (const [key, { record }] of core.deployments) {
      const mine = byWorkload.get(workloadKey('deployment', record.tenant, record.spec.name)) ?? [];
      const decision = decideDeployment(record, mine, health);
      const asks = this.crashBackoff(key, record, mine, now) ? 0 : decision.asks;
      core.deps.startPhases?.short(workloadKey('deployment', record.tenant, record.spec.name), decision.asks, now);
      stops.push(...decision.stops);
      for (let i = 0; i < asks; i++) pending.push(this.ask(record));
      if (asks === 0) core.pendingReasons.delete(workloadKey('deployment', record.tenant, record.spec.name));
    }
    for (const key of this.crashLoops.keys()) if (!core.deployments.has(key)) this.crashLoops.delete(key);
    return { stops, pending };
  }

  /** A deployment whose model REF is an alias or "latest" follows it: a move rolls it out. */
  async followModelRefs(): Promise<void> {
    const { core } = this;
    for (const [key, stored] of [...core.deployments]) {
      const { record } = stored;
      // Rolled back: stays on its last good version until a person applies or promotes again.
      if (record.pinned) continue;
      let resolved;
      try {
        resolved = await resolveDeployment(core.deps.artifacts, core.deps.stacks, record.tenant, record.spec);
      } catch (err) {
        core.deps.log.debug({ err: (err as Error).message, deployment: key }, 'model REF does not resolve; keeping the current version');
        continue;
      }
      if (resolved.modelDigest === record.modelDigest && resolved.resolvedVersion === record.resolvedVersion) continue;
      const now = core.deps.clock.now();
      const next = startRollout(record, { ...record, run: resolved.run, resolvedVersion: resolved.resolvedVersion, modelDigest: resolved.modelDigest, updatedAtMs: now }, now);
      await core.putWorkload(core.deployments, key, next, stored);
      core.event({ tenant: record.tenant, object: `deployment/${record.spec.name}`, type: 'RolloutStarted', message: `${record.spec.model} moved to version ${resolved.resolvedVersion}; rolling out generation ${next.generation}` });
    }
  }

  /** The deployment that uses a model version (its resolved version, or a live replica's); undefined when none does. */
  versionUser(kind: string, tenant: string, name: string, version: number): string | undefined {
    if (kind !== 'model') return undefined;
    for (const { record } of this.core.deployments.values()) {
      if (record.tenant !== tenant || record.run.model?.name !== name) continue;
      const live = this.core.allocationsOf('deployment', tenant, record.spec.name).filter(isLive);
      // Its current version, what its replicas run, and the last good one a rollback returns to.
      if (record.resolvedVersion === version || record.lastGood?.resolvedVersion === version || live.some((a) => a.run.model?.version === version)) return `deployment "${record.spec.name}"`;
    }
    return undefined;
  }

  /** The tenant's deployment and its key; NotFoundError when there is none. */
  named(tenant: string, name: string): [string, Stored<DeploymentRecord>] {
    const key = keys.deployment(tenant, name);
    return [key, found(this.core.deployments.get(key), `deployment "${name}"`)];
  }

  view(key: string, health = this.core.nodeHealth()): Deployment {
    const { core } = this;
    const { record } = core.deployments.get(key)!;
    const mine = core.allocationsOf('deployment', record.tenant, record.spec.name);
    const decision = decideDeployment(record, mine, health);
    const reason = core.pendingReasons.get(workloadKey('deployment', record.tenant, record.spec.name));
    const ready = mine.filter((a) => a.desired === 'run' && a.status === 'ready' && a.generation === record.generation).length;
    const failedRecently = mine.some((a) => a.status === 'failed' && core.deps.clock.now() - a.updatedAtMs < 60_000);
    const backingOff = crashLoopMessage(this.crashLoops.get(key), core.deps.clock.now());
    const status: DeploymentStatus = reason ? 'pending' : decision.status === 'available' ? 'available' : failedRecently || backingOff ? 'degraded' : 'progressing';
    const message = reason
      ? `${record.spec.replicas - ready} replica(s) cannot be placed: ${reason}`
      : backingOff && status === 'degraded'
        ? backingOff
        : status === 'degraded'
        ? `replicas failed recently: ${mine.filter((a) => a.status === 'failed').at(-1)?.reason ?? ''}`
        : '';
    const view = toProtoDeployment(record, mine, { status, message });
    if (isAutoscaled(record.spec)) view.autoscaler = this.autoscalerViews?.(record.tenant, record.spec.name) ?? null;
    view.traffic = this.trafficOf?.(mine.map((a) => a.id)) ?? null;
    return view;
  }

  /** Counts the deployment's failed replicas and says whether its replacements wait (crash-backoff.ts). */
  private crashBackoff(key: string, record: DeploymentRecord, mine: AllocationRecord[], now: number): boolean {
    const crash = decideCrashBackoff(this.crashLoops.get(key), mine, now, this.core.options.crashBackoff);
    if (crash.loop) this.crashLoops.set(key, crash.loop);
    else this.crashLoops.delete(key);
    for (const event of crash.events) this.core.event({ tenant: record.tenant, object: `deployment/${record.spec.name}`, allocation: '', node: '', ...event });
    return crash.hold;
  }

  private ask(record: DeploymentRecord): PendingAsk {
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
      allocation: newAllocation(this.core.deps.clock.now(), id, 'deployment', tenant, spec.name, spec.priority, resources, record.run, record.generation, 0, 0),
    };
  }

  private async checkQuota(tenant: string): Promise<void> {
    const record = await findTenant(this.core.deps.store, tenant);
    const max = record?.quota.maxDeployments ?? 0;
    const count = listed(this.core.deployments, tenant).length;
    if (max > 0 && count >= max) throw new ResourceExhaustedError(`tenant "${tenant}" deployments quota is ${max}: ${count} exist; remove one or raise the quota`);
  }
}

