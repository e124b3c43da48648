// Canaries, promotion, rollback and automatic rollback of deployments: the I/O around the pure
// rollout guard (rollout-guard.ts). Each pass, a deployment being watched (a rollout started and
// not yet judged good) has its new generation's replica failures and the gateways' measures of
// both generations (RouteBook.trafficOf; the previous one's counted from the rollout's first pass
// only, so both cover the same window) put to the guard; a rollback returns the deployment to
// its last good run — generation, model version, run spec — and pins it there (it stops
// following its alias) until a person applies or promotes again. The alias is not moved back.
import { FailedPreconditionError } from '../../shared/errors.js';
import { keys } from '../../shared/keys.js';
import { found, type Stored, type WorkloadCore } from './core.js';
import type { DeploymentRecord, AllocationRecord } from './records.js';
import { workloadKey } from './records.js';
import { countsSince, decideRolloutGuard, guardPolicy, type Counts, type Traffic } from './rollout-guard.js';

/** What the gateways measured for a set of replicas (wired to RouteBook.trafficOf on the leader). */
export type TrafficSource = (allocations: ReadonlySet<string>) => Traffic;

const NO_TRAFFIC: Traffic = { count: 0, errors: 0, p99Ms: 0 };

/** The fields a change of what runs sets: a new generation, watched from now, a canary when asked for. */
export function startRollout(previous: DeploymentRecord, next: DeploymentRecord, now: number): DeploymentRecord {
  const generation = Math.max(previous.generation, previous.highestGeneration ?? 0) + 1;
  const percent = next.spec.rollout?.canaryPercent ?? 0;
  // A canary replaced by a newer one keeps the same stable generation.
  const canaryOf = percent > 0 ? (previous.canaryOf ?? previous.generation) : undefined;
  return { ...next, generation, highestGeneration: generation, canaryOf, pinned: false, rolloutStartedAtMs: now };
}

export class Rollouts {
  /** When each watched deployment's generation was first seen fully rolled out, by key; memory only. */
  private readonly rolledOut = new Map<string, { generation: number; atMs: number }>();
  /** The previous version's replicas' totals when each watched rollout was first judged, by key; memory only, like the totals. */
  private readonly baselines = new Map<string, { startedAtMs: number; counts: Map<string, Counts> }>();
  trafficOf: TrafficSource | undefined;
  /** One replica's summed requests and errors (RouteBook.countsOf), for the previous version's window. */
  countsOf: ((allocation: string) => Counts | undefined) | undefined;

  constructor(private readonly core: WorkloadCore) {}

  /** `deployments promote`: a canary's new generation replaces the stable one as a rolling update. */
  async promote(tenant: string, name: string): Promise<void> {
    const { core } = this;
    await core.mutate(async () => {
      const [key, stored] = this.named(tenant, name);
      const { record } = stored;
      if (record.canaryOf === undefined) throw new FailedPreconditionError(`deployment "${name}" has no canary to promote (generation ${record.generation} is rolling out or rolled out in full)`);
      const next: DeploymentRecord = { ...record, canaryOf: undefined, pinned: false, updatedAtMs: core.deps.clock.now() };
      await core.putWorkload(core.deployments, key, next, stored);
      core.event({ tenant, object: `deployment/${name}`, type: 'Promoted', message: `generation ${record.generation} (model version ${record.resolvedVersion}) replaces generation ${record.canaryOf} on all ${record.spec.replicas} replicas` });
      core.kick();
    });
  }

  /** `deployments rollback`: back to the last good run, pinned there. */
  async rollback(tenant: string, name: string): Promise<void> {
    await this.core.mutate(async () => {
      const [key, stored] = this.named(tenant, name);
      const good = stored.record.lastGood;
      if (!good) throw new FailedPreconditionError(`deployment "${name}" has no last good version to roll back to: no rollout of it has been fully rolled out and watched yet`);
      if (good.generation === stored.record.generation && stored.record.canaryOf === undefined) {
        throw new FailedPreconditionError(`deployment "${name}" already runs its last good version ${good.resolvedVersion} (generation ${good.generation})`);
      }
      await this.rollBack(key, stored, `rolled back by hand to version ${good.resolvedVersion} (generation ${good.generation})`);
    });
  }

  /**
   * The pass's part: judges each watched deployment (rollout-guard.ts) and rolls back those past
   * a threshold, or records their generation as the last good one. Runs in the workloads queue.
   */
  async guard(byWorkload: Map<string, AllocationRecord[]>, now: number): Promise<void> {
    const { core } = this;
    for (const [key, stored] of [...core.deployments]) {
      const { record } = stored;
      if (record.rolloutStartedAtMs === undefined) {
        this.rolledOut.delete(key);
        this.baselines.delete(key);
        continue;
      }
      const mine = byWorkload.get(workloadKey('deployment', record.tenant, record.spec.name)) ?? [];
      const fresh = mine.filter((a) => a.generation === record.generation);
      const running = fresh.filter((a) => a.desired === 'run');
      const complete =
        record.canaryOf === undefined &&
        running.filter((a) => a.status === 'ready').length >= record.spec.replicas &&
        !mine.some((a) => a.desired === 'run' && a.generation !== record.generation && a.status !== 'failed' && a.status !== 'stopped' && a.status !== 'completed');
      let seen = this.rolledOut.get(key);
      if (!complete) this.rolledOut.delete(key), (seen = undefined);
      else if (!seen || seen.generation !== record.generation) this.rolledOut.set(key, (seen = { generation: record.generation, atMs: now }));
      const failed = fresh.filter((a) => a.status === 'failed' && a.createdAtMs >= record.rolloutStartedAtMs!).sort((a, b) => a.updatedAtMs - b.updatedAtMs);
      const good = record.lastGood;
      const freshIds = new Set(fresh.map((a) => a.id));
      const previousIds = new Set(mine.filter((a) => a.generation !== record.generation).map((a) => a.id));
      const previous = this.trafficOf?.(previousIds) ?? NO_TRAFFIC;
      // The previous version over the rollout's window only: its errors of an hour ago neither hide the new one's nor count against them.
      const counts = new Map([...previousIds].map((id): [string, Counts] => [id, this.countsOf?.(id) ?? { count: 0, errors: 0 }]));
      let baseline = this.baselines.get(key);
      if (baseline?.startedAtMs !== record.rolloutStartedAtMs) this.baselines.set(key, (baseline = { startedAtMs: record.rolloutStartedAtMs, counts }));
      const verdict = decideRolloutGuard(
        {
          now,
          startedAtMs: record.rolloutStartedAtMs,
          rolledOutAtMs: seen?.atMs,
          goodVersion: good?.resolvedVersion ?? 0,
          replicaFailures: failed.length,
          failureReason: failed.at(-1)?.reason ?? '',
          fresh: this.trafficOf?.(freshIds) ?? NO_TRAFFIC,
          previous: { ...countsSince(counts, baseline!.counts), p99Ms: previous.p99Ms },
        },
        guardPolicy(record.spec.rollout),
      );
      if (verdict.action === 'rollback' && good && good.generation !== record.generation) {
        core.deps.log.warn({ deployment: key, signal: verdict.signal }, verdict.message);
        await this.rollBack(key, stored, verdict.message);
      } else if (verdict.action === 'good') {
        const next: DeploymentRecord = {
          ...record,
          rolloutStartedAtMs: undefined,
          lastGood: { generation: record.generation, resolvedVersion: record.resolvedVersion, modelDigest: record.modelDigest, run: record.run, spec: record.spec },
        };
        await core.putWorkload(core.deployments, key, next, stored);
        this.rolledOut.delete(key);
        this.baselines.delete(key);
        core.event({ tenant: record.tenant, object: `deployment/${record.spec.name}`, type: 'RolloutGood', message: `generation ${record.generation} (model version ${record.resolvedVersion}) stayed healthy through its watch; it is the version rollbacks return to` });
      }
    }
    for (const key of this.rolledOut.keys()) if (!core.deployments.has(key)) this.rolledOut.delete(key);
    for (const key of this.baselines.keys()) if (!core.deployments.has(key)) this.baselines.delete(key);
  }

  private async rollBack(key: string, stored: Stored<DeploymentRecord>, message: string): Promise<void> {
    const { core } = this;
    const { record } = stored;
    const good = record.lastGood!;
    // Back to the good generation's number: its replicas still running are current again.
    const next: DeploymentRecord = {
      ...record,
      spec: { ...good.spec, replicas: record.spec.replicas },
      generation: good.generation,
      highestGeneration: Math.max(record.generation, record.highestGeneration ?? 0),
      resolvedVersion: good.resolvedVersion,
      modelDigest: good.modelDigest,
      run: good.run,
      canaryOf: undefined,
      pinned: true,
      rolloutStartedAtMs: undefined,
      updatedAtMs: core.deps.clock.now(),
    };
    await core.putWorkload(core.deployments, key, next, stored);
    this.rolledOut.delete(key);
    this.baselines.delete(key);
    core.event({ tenant: record.tenant, object: `deployment/${record.spec.name}`, type: 'RolledBack', message });
    core.kick();
  }

  private named(tenant: string, name: string): [string, Stored<DeploymentRecord>] {
    const key = keys.deployment(tenant, name);
    return [key, found(this.core.deployments.get(key), `deployment "${name}"`)];
  }
}
