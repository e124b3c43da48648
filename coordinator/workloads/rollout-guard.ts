// Automatic rollback: whether a rollout's new replicas are healthy enough to keep, decided from
// plain numbers. Watched from the moment the rollout starts until its new generation has been
// fully rolled out and stayed so for `watchMs`; in that time it is rolled back when its replicas
// fail repeatedly (the crash-backoff count of the new generation), or — once enough requests went
// through the gateways — when its error rate or its p99 is past the previous version's by more
// than the policy allows. Pure: the controller gathers the inputs (crash-backoff.ts, the gateways'
// reports in routes.ts) and carries out the verdict.
import type { DeploymentSpec } from '../../shared/proto.js';
import { ROLLOUT_DEFAULTS } from '../../shared/rollout-spec.js';

type RolloutPolicy = NonNullable<DeploymentSpec['rollout']>;

export interface RolloutGuardPolicy {
  /** Off: nothing is rolled back automatically. */
  enabled: boolean;
  /** The new version's error rate may exceed the previous version's by this much (0.05: 5 points). */
  maxErrorRate: number;
  /** The new version's p99 may be this many times the previous version's. */
  maxP99Ratio: number;
  /** How long the new generation is watched once fully rolled out. */
  watchMs: number;
  /** Requests to the new version before its error rate and p99 count. */
  minRequests: number;
  /** Replicas of the new generation that failed since its rollout started that roll it back (a crash loop). */
  maxReplicaFailures: number;
}

/** The documented defaults (shared/rollout-spec.ts ROLLOUT_DEFAULTS), and 3 replica failures in a row. */
export const DEFAULT_ROLLOUT_GUARD: RolloutGuardPolicy = { enabled: true, ...ROLLOUT_DEFAULTS, maxReplicaFailures: 3 };

/** The guard's policy from a deployment's RolloutPolicy (the wire's 0: the default). */
export function guardPolicy(rollout: RolloutPolicy | null | undefined): RolloutGuardPolicy {
  const d = DEFAULT_ROLLOUT_GUARD;
  return {
    enabled: !rollout?.autoRollbackOff,
    maxErrorRate: rollout?.maxErrorRate || d.maxErrorRate,
    maxP99Ratio: rollout?.maxP99Ratio || d.maxP99Ratio,
    watchMs: Number(rollout?.watchMs ?? 0) || d.watchMs,
    minRequests: rollout?.minRequests || d.minRequests,
    maxReplicaFailures: d.maxReplicaFailures,
  };
}

/** What the gateways measured for a set of replicas over the recent window. */
export interface Traffic {
  count: number;
  errors: number;
  /** 0: not measured. */
  p99Ms: number;
}

/** Requests and errors of one replica, as the gateways' reports summed them. */
export interface Counts {
  count: number;
  errors: number;
}

/**
 * The previous version's requests and errors over the rollout's window, so that the two versions
 * are compared over the same time: each replica's totals now less what it had when the rollout
 * was first judged (`baseline`). A replica not in the baseline counts whole (it was measured
 * later); one now below its baseline had its totals restart (a new leader's start empty) and
 * counts whole too.
 */
export function countsSince(now: ReadonlyMap<string, Counts>, baseline: ReadonlyMap<string, Counts>): Counts {
  const sum: Counts = { count: 0, errors: 0 };
  for (const [id, total] of now) {
    const before = baseline.get(id);
    const restarted = !before || total.count < before.count || total.errors < before.errors;
    sum.count += restarted ? total.count : total.count - before.count;
    sum.errors += restarted ? total.errors : total.errors - before.errors;
  }
  return sum;
}

export interface GuardInput {
  now: number;
  /** When the new generation's rollout started. */
  startedAtMs: number;
  /** When it became fully rolled out (every replica of the new generation ready, no old one left); undefined: not yet. */
  rolledOutAtMs: number | undefined;
  /** The version rolled back to, for the message. */
  goodVersion: number;
  /** Replicas of the new generation that failed since its rollout started. */
  replicaFailures: number;
  /** The last failure's reason. */
  failureReason: string;
  /** The new generation's replicas. */
  fresh: Traffic;
  /** The previous version's replicas, over the same window (countsSince; none left: zeros). */
  previous: Traffic;
}

export type GuardVerdict =
  | { action: 'watch' }
  /** Watched long enough: the new generation is the last good one. */
  | { action: 'good' }
  | { action: 'rollback'; signal: 'replica-failures' | 'error-rate' | 'latency'; message: string };

export function decideRolloutGuard(input: GuardInput, policy: RolloutGuardPolicy): GuardVerdict {
  const to = `rolled back to version ${input.goodVersion}`;
  if (policy.enabled) {
    if (input.replicaFailures >= policy.maxReplicaFailures) {
      return { action: 'rollback', signal: 'replica-failures', message: `${to}: ${input.replicaFailures} replicas of the new version failed since it started rolling out (the last: ${input.failureReason || 'failed'}), the limit is ${policy.maxReplicaFailures}` };
    }
    const { fresh, previous } = input;
    if (fresh.count >= policy.minRequests) {
      const rate = fresh.errors / fresh.count;
      const before = previous.count > 0 ? previous.errors / previous.count : 0;
      if (rate - before > policy.maxErrorRate) {
        return {
          action: 'rollback',
          signal: 'error-rate',
          message: `${to}: error rate ${percent(rate)} (${fresh.errors}/${fresh.count}) against ${percent(before)} for version ${input.goodVersion}, over the threshold ${percent(policy.maxErrorRate)}`,
        };
      }
      if (previous.count >= policy.minRequests && previous.p99Ms > 0 && fresh.p99Ms > previous.p99Ms * policy.maxP99Ratio) {
        return {
          action: 'rollback',
          signal: 'latency',
          message: `${to}: p99 ${ms(fresh.p99Ms)} against ${ms(previous.p99Ms)} for version ${input.goodVersion}, over ${policy.maxP99Ratio}× its p99`,
        };
      }
    }
  }
  if (input.rolledOutAtMs !== undefined && input.now - input.rolledOutAtMs >= policy.watchMs) return { action: 'good' };
  return { action: 'watch' };
}

function percent(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

function ms(x: number): string {
  return `${x.toFixed(1)} ms`;
}

/** Canary replicas of a deployment of `replicas`: ceil(replicas × percent / 100), at least 1. */
export function canaryReplicas(replicas: number, percent: number): number {
  return Math.max(1, Math.ceil((replicas * percent) / 100));
}
