// The autoscaling settings of a deployment (docs/autoscaling.md "Spec"): their bounds, their
// defaults, and the rules tying them together, in one place for the CLI's `deploy` flags, the
// YAML Deployment fields and the coordinator's ApplyDeployment schema. Each surface names the
// settings its own way (AutoscaleNames), so a problem names the flag or field to change.

/** Bounds each surface checks on its own field, as the API does. */
export const AUTOSCALE_LIMITS = {
  replicas: 1000,
  targetConcurrency: 100_000,
  scaleToZeroAfterMs: 30 * 24 * 3600_000,
} as const;

/** In-flight requests per replica aimed at when none is given (the wire's 0). */
export const DEFAULT_TARGET_CONCURRENCY = 4;

/**
 * The settings as given: undefined where a setting was not given (on the wire, where 0 means
 * "not set", a 0). `replicas` is whether a fixed size was given too (the CLI and YAML only: on
 * the wire every spec carries replicas).
 */
export interface AutoscaleShape {
  replicas?: boolean;
  minReplicas?: number;
  maxReplicas?: number;
  targetConcurrency?: number;
  scaleToZeroAfterMs?: number;
}

export type AutoscaleSetting = 'replicas' | 'minReplicas' | 'maxReplicas' | 'targetConcurrency' | 'scaleToZeroAfter';
export type AutoscaleNames = Record<AutoscaleSetting, string>;

/** The names mlfleetctl deploy's flags give them. */
export const AUTOSCALE_FLAG_NAMES: AutoscaleNames = {
  replicas: '--replicas',
  minReplicas: '--min-replicas',
  maxReplicas: '--max-replicas',
  targetConcurrency: '--target-concurrency',
  scaleToZeroAfter: '--scale-to-zero-after',
};
/** The names in a YAML Deployment's spec. */
export const AUTOSCALE_YAML_NAMES: AutoscaleNames = {
  replicas: 'replicas',
  minReplicas: 'minReplicas',
  maxReplicas: 'maxReplicas',
  targetConcurrency: 'targetConcurrency',
  scaleToZeroAfter: 'scaleToZeroAfter',
};
/** The DeploymentSpec fields, on the wire (as the API's schema reports them). */
export const AUTOSCALE_WIRE_NAMES: AutoscaleNames = {
  replicas: 'replicas',
  minReplicas: 'minReplicas',
  maxReplicas: 'maxReplicas',
  targetConcurrency: 'targetConcurrency',
  scaleToZeroAfter: 'scaleToZeroAfterMs',
};

export interface AutoscaleProblem {
  setting: AutoscaleSetting;
  message: string;
}

/**
 * What is wrong with a combination of autoscaling settings (empty: nothing). A deployment is
 * autoscaled when it has a maximum; the other settings mean nothing without one, and a fixed
 * size contradicts the bounds. Each problem names the setting to change, as `names` calls it.
 */
export function autoscaleProblems(shape: AutoscaleShape, names: AutoscaleNames): AutoscaleProblem[] {
  const problems: AutoscaleProblem[] = [];
  const { minReplicas: min, maxReplicas: max, targetConcurrency: target, scaleToZeroAfterMs: idle } = shape;
  if (shape.replicas && (min !== undefined || max !== undefined)) {
    const bounds = [min !== undefined ? names.minReplicas : undefined, max !== undefined ? names.maxReplicas : undefined].filter((n) => n !== undefined).join(' and ');
    problems.push({ setting: 'replicas', message: `give ${names.replicas} (a fixed size) or ${bounds} (autoscaled between bounds), not both` });
  }
  if (max === undefined) {
    const needsMax: Array<[AutoscaleSetting, unknown]> = [['minReplicas', min], ['targetConcurrency', target], ['scaleToZeroAfter', idle]];
    for (const [setting, value] of needsMax) {
      if (value !== undefined) problems.push({ setting, message: `${names[setting]} applies to an autoscaled deployment only: give ${names.maxReplicas} too (or leave ${names[setting]} out for a fixed size)` });
    }
  } else if (min !== undefined && min > max) {
    problems.push({ setting: 'minReplicas', message: `${names.minReplicas} ${min} is above ${names.maxReplicas} ${max}: the minimum must be at most the maximum` });
  }
  if (target !== undefined && !(target > 0)) {
    problems.push({ setting: 'targetConcurrency', message: `${names.targetConcurrency} must be more than 0 (in-flight requests per replica; leave it out for ${DEFAULT_TARGET_CONCURRENCY})` });
  }
  if (idle !== undefined && min !== undefined && min > 0) {
    problems.push({ setting: 'scaleToZeroAfter', message: `${names.scaleToZeroAfter} removes the last replica, which ${names.minReplicas} ${min} keeps: give ${names.minReplicas} 0 or leave ${names.scaleToZeroAfter} out` });
  }
  return problems;
}

/** Whether a spec is autoscaled (max_replicas > 0): the leader then sizes it, not `replicas`. */
export function isAutoscaled(spec: { maxReplicas?: number } | null | undefined): boolean {
  return (spec?.maxReplicas ?? 0) > 0;
}
