// The autoscaled concern of the workload controller (docs/autoscaling.md, "Spec" and "Applying"):
// what an autoscaled deployment's size is when it is applied, resized or scaled by hand, and how
// many more replicas its tenant's quota allows. The decisions are pure functions (tested in
// test/coordinator/autoscaled.test.ts); AutoscaledWorkloads applies them to the controller's state
// (core.ts) for the autoscaler (coordinator/autoscale/target.ts).
import { FailedPreconditionError } from '../../shared/errors.js';
import { keys } from '../../shared/keys.js';
import type { AutoscalerView, DeploymentSpec, ResourceRequest, Resources } from '../../shared/proto.js';
import { isAutoscaled } from '../../shared/autoscale-spec.js';
import { DEFAULT_TARGET_CONCURRENCY, type AutoscaledDeployment, type AutoscaleTarget } from '../autoscale/target.js';
import type { TenantQuota } from '../scheduler/types.js';
import { withDefaults, type WorkloadCore } from './core.js';
import { workloadKey, type AllocationRecord, type DeploymentRecord } from './records.js';

export { isAutoscaled };

/** The sizes an autoscaled deployment may have: min_replicas (at least 1 unless it scales to zero) to max_replicas. */
export function sizeBounds(spec: Pick<DeploymentSpec, 'minReplicas' | 'maxReplicas' | 'scaleToZeroAfterMs'>): { floor: number; max: number } {
  const floor = spec.scaleToZeroAfterMs > 0 ? spec.minReplicas : Math.max(spec.minReplicas, 1);
  return { floor: Math.min(floor, spec.maxReplicas), max: spec.maxReplicas };
}

function clamp(n: number, bounds: { floor: number; max: number }): number {
  return Math.min(Math.max(n, bounds.floor), bounds.max);
}

/**
 * spec.replicas of an applied spec: a fixed-size deployment's as given; an autoscaled one's
 * max(min, 1) when it is new, else the size it has now (the one the autoscaler last chose, or
 * the fixed size it had) clamped to the new bounds.
 */
export function appliedReplicas(previous: DeploymentSpec | undefined, spec: DeploymentSpec): number {
  if (!isAutoscaled(spec)) return spec.replicas;
  if (!previous) return clamp(Math.max(spec.minReplicas, 1), sizeBounds(spec));
  return clamp(previous.replicas, sizeBounds(spec));
}

/** The bounds as users write them: "1–4 replicas". */
export function boundsText(spec: Pick<DeploymentSpec, 'minReplicas' | 'maxReplicas'>): string {
  return `${spec.minReplicas}–${spec.maxReplicas} replicas`;
}

/** Why `mlfleetctl scale` is refused on the deployment; undefined when it is not autoscaled. */
export function scaleRefusal(spec: DeploymentSpec): string | undefined {
  if (!isAutoscaled(spec)) return undefined;
  return `deployment ${spec.name} is autoscaled (${boundsText(spec)}); change --min-replicas/--max-replicas instead`;
}

/**
 * The record after the autoscaler chose `replicas` for it (clamped to its bounds; the
 * generation unchanged: nothing rolls out); undefined when there is nothing to do: not
 * autoscaled, or already that size.
 */
export function resized(record: DeploymentRecord, replicas: number, now: number): DeploymentRecord | undefined {
  if (!isAutoscaled(record.spec) || !Number.isInteger(replicas) || replicas < 0) return undefined;
  const size = clamp(replicas, sizeBounds(record.spec));
  if (size === record.spec.replicas) return undefined;
  return { ...record, spec: { ...record.spec, replicas: size }, updatedAtMs: now };
}

/**
 * How many more replicas asking `per` each the tenant's quota allows, given what it holds
 * (`used`, as WorkloadController.usage counts it); undefined when no limit applies to them.
 * Limits are counted as the scheduler does (scheduler/quota.ts): whole GPUs count their
 * memory asked per device, a GPU-memory share its size.
 */
export function quotaHeadroom(quota: TenantQuota | undefined, used: Pick<Resources, 'cpuMillis' | 'memoryBytes' | 'gpus' | 'gpuMemoryBytes'>, per: ResourceRequest): number | undefined {
  if (!quota) return undefined;
  const asked = {
    cpuMillis: per.cpuMillis,
    memoryBytes: per.memoryBytes,
    gpus: per.gpus,
    gpuMemoryBytes: per.gpus > 0 ? per.gpus * per.gpuMemoryBytes : per.gpuMemoryBytes,
  };
  let room: number | undefined;
  for (const field of ['cpuMillis', 'memoryBytes', 'gpus', 'gpuMemoryBytes'] as const) {
    if (!(quota[field] > 0 && asked[field] > 0)) continue;
    const n = Math.max(0, Math.floor((quota[field] - used[field]) / asked[field]));
    room = room === undefined ? n : Math.min(room, n);
  }
  return room;
}

/** Fills Deployment.autoscaler: the autoscaler's view of one deployment, undefined when it has none. */
export type AutoscalerViews = (tenant: string, name: string) => AutoscalerView | undefined;

/** The autoscaler's side of the controller (AutoscaleTarget), on the controller's state. */
export class AutoscaledWorkloads implements AutoscaleTarget {
  constructor(
    private readonly core: WorkloadCore,
    /** What the tenant holds now (WorkloadController.usage). */
    private readonly usage: (tenant: string) => Resources,
    /** The tenants' quotas as the last pass read them (only tenants with a limit). */
    private readonly quotas: () => ReadonlyMap<string, TenantQuota>,
  ) {}

  autoscaled(): AutoscaledDeployment[] {
    const { core } = this;
    const result: AutoscaledDeployment[] = [];
    const used = new Map<string, Resources>();
    // Every tick: one scan of the allocations, not one per autoscaled deployment.
    let byWorkload: Map<string, AllocationRecord[]> | undefined;
    for (const { record } of core.deployments.values()) {
      const { spec, tenant } = record;
      if (!isAutoscaled(spec)) continue;
      byWorkload ??= core.byWorkload();
      const ready = (byWorkload.get(workloadKey('deployment', tenant, spec.name)) ?? []).filter((a) => a.desired === 'run' && a.status === 'ready' && a.generation === record.generation).length;
      const quota = this.quotas().get(tenant);
      if (quota && !used.has(tenant)) used.set(tenant, this.usage(tenant));
      result.push({
        tenant,
        name: spec.name,
        minReplicas: spec.minReplicas,
        maxReplicas: spec.maxReplicas,
        targetConcurrency: spec.targetConcurrency > 0 ? spec.targetConcurrency : DEFAULT_TARGET_CONCURRENCY,
        scaleToZeroAfterMs: Number(spec.scaleToZeroAfterMs),
        replicas: spec.replicas,
        readyReplicas: ready,
        quotaHeadroom: quota ? quotaHeadroom(quota, used.get(tenant)!, withDefaults(spec.resources)) : undefined,
      });
    }
    return result;
  }

  resizeDeployment(tenant: string, name: string, replicas: number, reason: string): Promise<void> {
    const { core } = this;
    return core.mutate(async () => {
      const key = keys.deployment(tenant, name);
      const existing = core.deployments.get(key);
      if (!existing) return;
      const next = resized(existing.record, replicas, core.deps.clock.now());
      if (!next) return;
      await core.putWorkload(core.deployments, key, next, existing);
      core.event({ tenant, object: `deployment/${name}`, type: 'Autoscaled', message: reason || `from ${existing.record.spec.replicas} to ${next.spec.replicas} replicas` });
      core.kick();
    });
  }
}

/** Refuses `mlfleetctl scale` on an autoscaled deployment. */
export function refuseScale(spec: DeploymentSpec): void {
  const why = scaleRefusal(spec);
  if (why) throw new FailedPreconditionError(why);
}
