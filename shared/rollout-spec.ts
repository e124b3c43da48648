// The rollout settings of a deployment beyond surge and unavailability: a canary's share, and the
// thresholds of automatic rollback (coordinator/workloads/rollout-guard.ts), with their bounds and
// defaults in one place for the CLI's `deploy` flags, the YAML Deployment's `rollout` fields and
// the coordinator's ApplyDeployment schema. On the wire a 0 means "the default".

export const ROLLOUT_LIMITS = {
  canaryPercent: 99,
  maxP99Ratio: 1000,
  watchMs: 24 * 3600_000,
  minRequests: 1_000_000,
} as const;

/** The defaults the guard uses for a 0 on the wire (README "Canary and automatic rollback"). */
export const ROLLOUT_DEFAULTS = {
  maxErrorRate: 0.05,
  maxP99Ratio: 2,
  watchMs: 60_000,
  minRequests: 20,
} as const;

/** The settings as the CLI and YAML give them: undefined where not given. */
export interface RolloutGuardInput {
  canaryPercent?: number;
  maxErrorRate?: number;
  maxP99Ratio?: number;
  watchMs?: number;
  minRequests?: number;
  /** false: no automatic rollback. */
  autoRollback?: boolean;
}

/** A problem with one setting, or undefined when it is fine (each surface names the setting its own way). */
export function rolloutProblem(setting: keyof RolloutGuardInput, value: number): string | undefined {
  switch (setting) {
    case 'canaryPercent':
      return Number.isInteger(value) && value >= 0 && value <= ROLLOUT_LIMITS.canaryPercent ? undefined : `must be a whole percentage from 0 to ${ROLLOUT_LIMITS.canaryPercent} (0: a plain rolling update), got ${value}`;
    case 'maxErrorRate':
      return Number.isFinite(value) && value > 0 && value <= 1 ? undefined : `must be a fraction above 0 and at most 1 (0.05: 5 points above the previous version's), got ${value}`;
    case 'maxP99Ratio':
      return Number.isFinite(value) && value >= 1 && value <= ROLLOUT_LIMITS.maxP99Ratio ? undefined : `must be a ratio from 1 to ${ROLLOUT_LIMITS.maxP99Ratio} (2: twice the previous version's p99), got ${value}`;
    case 'watchMs':
      return Number.isInteger(value) && value > 0 && value <= ROLLOUT_LIMITS.watchMs ? undefined : `must be a duration above 0 and at most 24h, got ${value} ms`;
    case 'minRequests':
      return Number.isInteger(value) && value >= 1 && value <= ROLLOUT_LIMITS.minRequests ? undefined : `must be a whole number from 1 to ${ROLLOUT_LIMITS.minRequests}, got ${value}`;
    default:
      return undefined;
  }
}
