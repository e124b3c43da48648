// Workload specs as people write them — the YAML documents of `mlfleetctl apply -f` and the
// flags of `mlfleetctl deploy` and `jobs run` — compiled into the wire specs (DeploymentSpec,
// JobSpec) in base units with every default filled in, so that both ways of asking for the same
// thing send the same spec (and re-applying an unchanged file changes nothing).
//
// A file is checked whole before anything is sent: every problem of every document is
// reported, each naming the document and the field path. The schema is strict — an unknown
// field is an error, so a typo (`replica: 3`) cannot silently drop a setting.
import YAML from 'yaml';
import { ARTIFACT_FORMATS, checkName, formatRef, parseRef } from './artifact-ref.js';
import { InvalidArgumentError } from './errors.js';
import type { DeploymentSpec, JobSpec, ResourceRequest } from './proto.js';
import { parseBytes, parseCpuMillis, parseDuration } from './units.js';
import { z } from './validation.js';
import { quoted } from './truncate.js';
import { argvBytes, envBytes, formatLimit, LIMITS } from './limits.js';
import { ROLLOUT_LIMITS, rolloutProblem, type RolloutGuardInput } from './rollout-spec.js';
import { AUTOSCALE_LIMITS, AUTOSCALE_YAML_NAMES, autoscaleProblems, DEFAULT_TARGET_CONCURRENCY } from './autoscale-spec.js';

export type { DeploymentSpec, JobSpec, ResourceRequest };

// ---- names and values both the CLI and YAML check -------------------------------------------

/** Deployment, job and tenant names: DNS labels, as Kubernetes object names. */
export const WORKLOAD_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
export const WORKLOAD_NAME_RULE = 'lowercase letters, digits and "-" (1-63, starting and ending with a letter or digit)';
export const STACK_NAME = /^[a-z0-9][a-z0-9-]*$/;
/** A container image reference, loosely: no spaces, no control characters. */
export const IMAGE_REF = /^[A-Za-z0-9][A-Za-z0-9._/:@-]*$/;
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Node label keys, as shared/validation.ts labelMap checks them. */
export const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/;

/** Throws InvalidArgumentError unless `name` is a valid deployment or job name. */
export function checkWorkloadName(name: string, what = 'name'): string {
  if (name.length > 63 || !WORKLOAD_NAME.test(name)) throw new InvalidArgumentError(`${what} ${quoted(name)} is not valid: use ${WORKLOAD_NAME_RULE}`);
  return name;
}

/** Throws unless `stack` could name a stack. */
export function checkStack(stack: string): string {
  if (stack.length > 63 || !STACK_NAME.test(stack)) throw new InvalidArgumentError(`stack ${quoted(stack)} is not a stack name (lowercase letters, digits and "-", like onnx)`);
  return stack;
}

/** Throws unless `image` looks like an image reference. */
export function checkImage(image: string): string {
  if (image.length > 512 || !IMAGE_REF.test(image)) throw new InvalidArgumentError(`image ${quoted(image)} is not an image reference (like mlfleet/runtime:0.1.0)`);
  return image;
}

/** "KEY=value" → [KEY, value]; the key checked with `keyRule`. */
export function parseAssignment(text: string, what: string, keyRule: RegExp, keyHint: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`${what} ${quoted(text)} is not KEY=VALUE`);
  const key = text.slice(0, eq);
  if (!keyRule.test(key)) throw new InvalidArgumentError(`${what} ${quoted(text)}: ${quoted(key)} is not valid; ${keyHint}`);
  return [key, text.slice(eq + 1)];
}

export const ENV_KEY_HINT = 'environment variable names are letters, digits and _, not starting with a digit';
export const LABEL_KEY_HINT = 'label keys are letters, digits, ".", "_", "-" and "/" (at most 63)';

// ---- the inputs in base units, and their defaults ----------------------------------------------

export interface ResourceInput {
  cpuMillis?: number;
  memoryBytes?: number;
  gpus?: number;
  gpuMemoryBytes?: number;
  gpuModel?: string;
  nicMbps?: number;
}

interface WorkloadInput {
  name: string;
  stack?: string;
  image?: string;
  command?: string[];
  env?: Record<string, string>;
  resources?: ResourceInput;
  constraints?: Record<string, string>;
  priority?: number;
}

export interface DeploymentInput extends WorkloadInput {
  model: string;
  port?: number;
  readinessPath?: string;
  replicas?: number;
  maxPerNode?: number;
  rollout?: { maxSurge?: number; maxUnavailable?: number } & RolloutGuardInput;
  /** Anyone may infer through the gateways, with no token. */
  public?: boolean;
  /** The largest request body the gateways pass on (0 or absent: 8 MiB). */
  maxRequestBytes?: number;
  /** Autoscaling (docs/autoscaling.md): a maximum makes the deployment autoscaled; the rest need one. */
  minReplicas?: number;
  maxReplicas?: number;
  targetConcurrency?: number;
  scaleToZeroAfterMs?: number;
}

export interface JobInput extends WorkloadInput {
  datasets?: string[];
  workers?: number;
  /** Attempts after the first that fails. */
  retries?: number;
  retryBackoffMs?: number;
  deadlineMs?: number;
  /** Rank 0's /output is pushed as the next version of this model when the job succeeds. */
  output?: JobOutputInput;
  /** K partitions: K workers placed independently, each told its partition (0: not partitioned). */
  partitions?: number;
  /** A dataset of the job's tenant: its next version is the union of the partitions' /output. */
  outputDataset?: string;
}

/** A job's output model and the metadata its pushed versions get (as `models push` takes them). */
export interface JobOutputInput {
  model: string;
  /** Empty: from the file's extension, or saved_model.pb in a directory. */
  format?: string;
  type?: string;
  inputFormat?: string;
  outputFormat?: string;
  accuracy?: number;
  labels?: Record<string, string>;
}

/**
 * What an absent setting means. Resources left at 0 get the coordinator's own defaults (a small
 * CPU and memory share); port 0 and an empty readiness path get the stack's (or 8080 and
 * /v2/health/ready for an image).
 */
export const DEPLOYMENT_DEFAULTS = { replicas: 1, maxSurge: 1, maxUnavailable: 0, priority: 0, maxPerNode: 0 } as const;
export const JOB_DEFAULTS = { workers: 1, retries: 0, retryBackoffMs: 1000, deadlineMs: 0, priority: 0 } as const;

/** The most partitions a job may have, as the most workers or replicas. */
export const MAX_PARTITIONS = 1000;

/** What each surface (wire fields, YAML fields, CLI flags) calls the settings jobShapeProblems checks. */
export interface JobShapeNames {
  workers: string;
  partitions: string;
  outputModel: string;
  outputDataset: string;
}

/**
 * The rules tying a job's workers, partitions and output together, in one place for the CLI,
 * YAML files and the coordinator: a partitioned job's workers are its partitions (not a gang
 * of workers per partition), a job has at most one output, and an output dataset is assembled
 * from partitions. Each problem names the setting to change, as `names` calls it.
 */
export function jobShapeProblems(
  job: { workers: number; partitions: number; outputModel: boolean; outputDataset: string },
  names: JobShapeNames,
): Array<{ setting: keyof JobShapeNames; message: string }> {
  const problems: Array<{ setting: keyof JobShapeNames; message: string }> = [];
  if (job.partitions > 0 && job.workers > 1) {
    problems.push({ setting: 'workers', message: `a partitioned job's workers are its partitions (${names.partitions} ${job.partitions} runs ${job.partitions} workers); leave out ${names.workers}` });
  }
  if (job.outputDataset && job.outputModel) {
    problems.push({ setting: 'outputDataset', message: `a job has one output: give ${names.outputModel} or ${names.outputDataset}, not both` });
  }
  if (job.outputDataset && job.partitions === 0) {
    problems.push({ setting: 'partitions', message: `${names.outputDataset} is the union of the partitions' /output: give ${names.partitions} K (1 for a single worker)` });
  }
  return problems;
}

/** The names the CLI's `jobs run` flags give them. */
export const JOB_FLAG_NAMES: JobShapeNames = { workers: '--workers', partitions: '--partitions', outputModel: '--output-model', outputDataset: '--output-dataset' };
/** The names in a YAML Job's spec. */
const JOB_YAML_NAMES: JobShapeNames = { workers: 'workers', partitions: 'partitions', outputModel: 'output.model', outputDataset: 'output.dataset' };

function resourceRequest(r: ResourceInput = {}): ResourceRequest {
  return {
    cpuMillis: r.cpuMillis ?? 0,
    memoryBytes: r.memoryBytes ?? 0,
    gpus: r.gpus ?? 0,
    gpuMemoryBytes: r.gpuMemoryBytes ?? 0,
    gpuModel: r.gpuModel ?? '',
    nicMbps: r.nicMbps ?? 0,
  };
}

/**
 * The deployment spec to send: every field set, defaults filled in. An autoscaled one (with
 * maxReplicas) starts at max(min, 1) replicas and aims at 4 in flight per replica unless told;
 * autoscaleProblems (shared/autoscale-spec.ts) is checked before, by the CLI and the YAML schema.
 */
export function compileDeploymentSpec(input: DeploymentInput): DeploymentSpec {
  const autoscaled = (input.maxReplicas ?? 0) > 0;
  return {
    name: input.name,
    model: input.model,
    stack: input.stack ?? '',
    image: input.image ?? '',
    command: input.command ?? [],
    env: input.env ?? {},
    port: input.port ?? 0,
    readinessPath: input.readinessPath ?? '',
    replicas: autoscaled ? Math.max(input.minReplicas ?? 0, 1) : (input.replicas ?? DEPLOYMENT_DEFAULTS.replicas),
    resources: resourceRequest(input.resources),
    constraints: input.constraints ?? {},
    maxPerNode: input.maxPerNode ?? DEPLOYMENT_DEFAULTS.maxPerNode,
    priority: input.priority ?? DEPLOYMENT_DEFAULTS.priority,
    public: input.public ?? false,
    maxRequestBytes: input.maxRequestBytes ?? 0,
    minReplicas: input.minReplicas ?? 0,
    maxReplicas: input.maxReplicas ?? 0,
    targetConcurrency: input.targetConcurrency ?? (autoscaled ? DEFAULT_TARGET_CONCURRENCY : 0),
    scaleToZeroAfterMs: input.scaleToZeroAfterMs ?? 0,
    // Always sent whole: on the wire an absent policy means the defaults, but a present one
    // takes its zeros literally.
    rollout: {
      maxSurge: input.rollout?.maxSurge ?? DEPLOYMENT_DEFAULTS.maxSurge,
      maxUnavailable: input.rollout?.maxUnavailable ?? DEPLOYMENT_DEFAULTS.maxUnavailable,
      canaryPercent: input.rollout?.canaryPercent ?? 0,
      maxErrorRate: input.rollout?.maxErrorRate ?? 0,
      maxP99Ratio: input.rollout?.maxP99Ratio ?? 0,
      watchMs: input.rollout?.watchMs ?? 0,
      minRequests: input.rollout?.minRequests ?? 0,
      autoRollbackOff: input.rollout?.autoRollback === false,
    },
  };
}

/** The job spec to send: every field set, defaults filled in. */
export function compileJobSpec(input: JobInput): JobSpec {
  return {
    name: input.name,
    stack: input.stack ?? '',
    image: input.image ?? '',
    command: input.command ?? [],
    env: input.env ?? {},
    datasets: input.datasets ?? [],
    resources: resourceRequest(input.resources),
    workers: input.workers ?? JOB_DEFAULTS.workers,
    maxRetries: input.retries ?? JOB_DEFAULTS.retries,
    retryBackoffMs: input.retryBackoffMs ?? JOB_DEFAULTS.retryBackoffMs,
    deadlineMs: input.deadlineMs ?? JOB_DEFAULTS.deadlineMs,
    constraints: input.constraints ?? {},
    priority: input.priority ?? JOB_DEFAULTS.priority,
    output: input.output
      ? {
          model: checkName(input.output.model, 'output model'),
          format: input.output.format ?? '',
          metadata: {
            type: input.output.type ?? '',
            inputFormat: input.output.inputFormat ?? '',
            outputFormat: input.output.outputFormat ?? '',
            accuracy: input.output.accuracy ?? 0,
            labels: input.output.labels ?? {},
            sourceJob: '',
            sourceDatasets: [],
          },
        }
      : null,
    partitions: input.partitions ?? 0,
    outputDataset: input.outputDataset === undefined ? '' : checkName(input.outputDataset, 'output dataset'),
  };
}

// ---- the YAML schema (human units) ------------------------------------------------------------

export const WORKLOAD_KINDS = ['Deployment', 'Job'] as const;
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number];

export type WorkloadObject =
  | { kind: 'Deployment'; name: string; tenant: string; spec: DeploymentSpec }
  | { kind: 'Job'; name: string; tenant: string; spec: JobSpec };

/** Records a problem at the current field (plus `path`); the transform's result is discarded. */
function issue(ctx: z.RefinementCtx, message: string, path: Array<string | number> = []): typeof z.NEVER {
  ctx.addIssue({ code: z.ZodIssueCode.custom, message, path });
  return z.NEVER;
}

function shown(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return JSON.stringify(value);
}

/** A message from shared/units.ts without its leading "what": `"12Q" is not a size; use …`. */
function unitsMessage(err: unknown): string {
  return (err as Error).message.trim();
}

/** A whole number within [min, max]. */
const whole = (min: number, max: number) =>
  z.unknown().transform((input, ctx) => {
    if (typeof input !== 'number' || !Number.isInteger(input)) return issue(ctx, `expected a whole number, got ${shown(input)}`);
    if (input < min || input > max) return issue(ctx, `must be between ${min} and ${max}, got ${input}`);
    return input;
  });

const UINT32 = 2 ** 32 - 1;
const count = whole(0, UINT32);

/** Cores as a number (2, 0.5) or a string ("2", "500m"), into millicores. */
const cpu = z.unknown().transform((input, ctx) => {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) return issue(ctx, `expected a CPU amount such as 2, 0.5 or "500m", got ${shown(input)}`);
    return Math.round(input * 1000);
  }
  if (typeof input !== 'string') return issue(ctx, `expected a CPU amount such as 2, 0.5 or "500m", got ${shown(input)}`);
  try {
    return parseCpuMillis(input, '');
  } catch (err) {
    return issue(ctx, unitsMessage(err));
  }
});

/** A size ("512Mi", "20Gi", "1.5GB") or a whole number of bytes. */
const size = z.unknown().transform((input, ctx) => {
  if (typeof input === 'number' && Number.isSafeInteger(input) && input >= 0) return input;
  if (typeof input !== 'string') return issue(ctx, `expected a size such as "512Mi" or a whole number of bytes, got ${shown(input)}`);
  try {
    const bytes = parseBytes(input, '');
    return Number.isSafeInteger(bytes) ? bytes : issue(ctx, `"${input}" is too large`);
  } catch (err) {
    return issue(ctx, unitsMessage(err));
  }
});

/** A duration with its unit ("500ms", "5s", "2m", "1h", "30d"), into milliseconds. */
const duration = z.unknown().transform((input, ctx) => {
  if (typeof input !== 'string') return issue(ctx, `expected a duration such as "5s", "2m" or "1h", got ${shown(input)}`);
  try {
    return parseDuration(input, '');
  } catch (err) {
    return issue(ctx, unitsMessage(err));
  }
});

/** A number of in-flight requests above 0 and at most `max` (fractions allowed: 0.5). */
const positiveNumber = (max: number) =>
  z.unknown().transform((input, ctx) => {
    if (typeof input !== 'number' || !Number.isFinite(input)) return issue(ctx, `expected a number such as 4 or 0.5, got ${shown(input)}`);
    if (input <= 0 || input > max) return issue(ctx, `must be more than 0 and at most ${max}, got ${input}`);
    return input;
  });

/** A rollout setting (shared/rollout-spec.ts), checked as the CLI and the API check it. */
const rolloutSetting = (setting: 'canaryPercent' | 'maxErrorRate' | 'maxP99Ratio' | 'minRequests') =>
  z.unknown().transform((input, ctx) => {
    if (typeof input !== 'number' || !Number.isFinite(input)) return issue(ctx, `expected a number, got ${shown(input)}`);
    const problem = rolloutProblem(setting, input);
    return problem ? issue(ctx, problem) : input;
  });

/** A duration above 0 and at most `maxMs`. */
const positiveDuration = (maxMs: number, maxText: string, zero = 'must be more than 0 (leave it out to keep the last replica)') =>
  duration.superRefine((ms, ctx) => {
    if (typeof ms !== 'number') return; // already refused, its problem named
    if (ms <= 0) issue(ctx, zero);
    else if (ms > maxMs) issue(ctx, `must be at most ${maxText}`);
  });

const text = (max: number) =>
  z.unknown().transform((input, ctx) => {
    if (typeof input !== 'string') return issue(ctx, `expected a string, got ${shown(input)}`);
    if (input.length > max) return issue(ctx, `must be at most ${max} characters`);
    return input;
  });

/** A string, or a number or boolean written as one (`command: [sleep, 10]`). */
const scalar = (max: number) =>
  z.unknown().transform((input, ctx) => {
    if (typeof input !== 'string' && typeof input !== 'number' && typeof input !== 'boolean') return issue(ctx, `expected a string, got ${shown(input)}`);
    const value = String(input);
    if (value.length > max) return issue(ctx, `must be at most ${max} characters`);
    return value;
  });

/** A string checked by `check` (which throws InvalidArgumentError with the reason). */
const checked = (check: (value: string) => unknown) =>
  z.unknown().transform((input, ctx) => {
    if (typeof input !== 'string') return issue(ctx, `expected a string, got ${shown(input)}`);
    try {
      check(input);
    } catch (err) {
      return issue(ctx, (err as Error).message.trim());
    }
    return input;
  });

/** A model or dataset REF, normalized (name, name:3 or name@alias). */
const ref = (kind: 'model' | 'dataset') =>
  checked((value) => {
    if (value.trim() === '') throw new InvalidArgumentError(`expected a ${kind} REF: name, name:3 or name@alias`);
    parseRef(value);
  }).transform((value) => formatRef(parseRef(value)));

/** A mapping of names to scalars; numbers and booleans become strings (`PORT: 8080`). */
const stringMap = (keyRule: RegExp, keyHint: string, maxValue: number) =>
  z.unknown().transform((input, ctx) => {
    if (typeof input !== 'object' || input === null || Array.isArray(input)) return issue(ctx, `expected a mapping of names to values, got ${shown(input)}`);
    const result: Record<string, string> = {};
    for (const [key, value] of Object.entries(input)) {
      if (!keyRule.test(key)) {
        issue(ctx, `"${key}" is not a valid name; ${keyHint}`, [key]);
        continue;
      }
      if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
        issue(ctx, `expected a string, got ${shown(value)}`, [key]);
        continue;
      }
      const v = String(value);
      if (v.length > maxValue) issue(ctx, `must be at most ${maxValue} characters`, [key]);
      result[key] = v;
    }
    return result;
  });

const stringList = (item: z.ZodType<string, z.ZodTypeDef, unknown>, max: number, example: string) =>
  z.unknown().transform((input, ctx) => {
    if (!Array.isArray(input)) return issue(ctx, `expected a list such as ${example}, got ${shown(input)}`);
    if (input.length > max) return issue(ctx, `must have at most ${max} items`);
    const result: string[] = [];
    input.forEach((value, index) => {
      const parsed = item.safeParse(value);
      if (parsed.success) result.push(parsed.data);
      else for (const i of parsed.error.issues) ctx.addIssue({ ...i, path: [index, ...i.path] } as z.IssueData);
    });
    return result;
  });

const resourcesSchema = z
  .object({
    cpu: cpu.optional(),
    memory: size.optional(),
    gpus: whole(0, 64).optional(),
    gpuMemory: size.optional(),
    gpuModel: text(64).optional(),
    nicMbps: count.optional(),
  })
  .strict()
  .transform((r): ResourceInput => ({ cpuMillis: r.cpu, memoryBytes: r.memory, gpus: r.gpus, gpuMemoryBytes: r.gpuMemory, gpuModel: r.gpuModel, nicMbps: r.nicMbps }));

const commonFields = {
  stack: checked(checkStack).optional(),
  image: checked(checkImage).optional(),
  command: stringList(scalar(LIMITS.commandArgBytes), LIMITS.commandArgs, '[python, train.py]')
    .superRefine((argv, ctx) => {
      if (!Array.isArray(argv)) return; // already refused, its problem named
      const bytes = argvBytes(argv);
      if (bytes > LIMITS.commandTotalBytes) issue(ctx, `is ${bytes} bytes in all, over the limit of ${formatLimit(LIMITS.commandTotalBytes)}`);
    })
    .optional(),
  env: stringMap(ENV_NAME, ENV_KEY_HINT, LIMITS.envValueBytes)
    .superRefine((env, ctx) => {
      if (typeof env !== 'object' || env === null) return; // already refused, its problem named
      const count = Object.keys(env).length;
      if (count > LIMITS.envVars) issue(ctx, `has ${count} variables, over the limit of ${LIMITS.envVars}`);
      const bytes = envBytes(env);
      if (bytes > LIMITS.envTotalBytes) issue(ctx, `is ${bytes} bytes in all, over the limit of ${formatLimit(LIMITS.envTotalBytes)}`);
    })
    .optional(),
  resources: resourcesSchema.optional(),
  constraints: stringMap(LABEL_KEY, LABEL_KEY_HINT, 128)
    .superRefine((labels, ctx) => {
      if (typeof labels !== 'object' || labels === null) return; // already refused, its problem named
      const count = Object.keys(labels).length;
      if (count > LIMITS.labels) issue(ctx, `has ${count} entries, over the limit of ${LIMITS.labels}`);
    })
    .optional(),
  priority: whole(-1_000_000, 1_000_000).optional(),
};

/** Exactly one of stack and image: a missing one is reported at `stack`, a second one at `image`. */
function stackOrImage(spec: { stack?: string; image?: string }, ctx: z.RefinementCtx): void {
  if (spec.stack !== undefined && spec.image !== undefined) issue(ctx, 'give stack or image, not both', ['image']);
  if (spec.stack === undefined && spec.image === undefined) issue(ctx, 'is required: give stack (a built-in runtime such as onnx) or image (your own container)', ['stack']);
}

const deploymentSpecSchema = z
  .object({
    ...commonFields,
    model: ref('model').optional(),
    port: whole(1, 65_535).optional(),
    readinessPath: checked((value) => {
      if (!/^\/\S*$/.test(value)) throw new InvalidArgumentError(`${quoted(value)} is not a path starting with /`);
    }).optional(),
    replicas: count.optional(),
    maxPerNode: count.optional(),
    rollout: z
      .object({
        maxSurge: count.optional(),
        maxUnavailable: count.optional(),
        canaryPercent: rolloutSetting('canaryPercent').optional(),
        maxErrorRate: rolloutSetting('maxErrorRate').optional(),
        maxP99Ratio: rolloutSetting('maxP99Ratio').optional(),
        watch: positiveDuration(ROLLOUT_LIMITS.watchMs, '24h', 'must be more than 0 (leave it out for the default 60s)').optional(),
        minRequests: rolloutSetting('minRequests').optional(),
        autoRollback: z.boolean({ invalid_type_error: 'must be true or false' }).optional(),
      })
      .strict()
      .optional(),
    public: z.boolean({ invalid_type_error: 'must be true or false' }).optional(),
    maxRequestSize: size.optional(),
    minReplicas: whole(0, AUTOSCALE_LIMITS.replicas).optional(),
    maxReplicas: whole(1, AUTOSCALE_LIMITS.replicas).optional(),
    targetConcurrency: positiveNumber(AUTOSCALE_LIMITS.targetConcurrency).optional(),
    scaleToZeroAfter: positiveDuration(AUTOSCALE_LIMITS.scaleToZeroAfterMs, '30d').optional(),
  })
  .strict()
  .superRefine((spec, ctx) => {
    stackOrImage(spec, ctx);
    if (spec.model === undefined) issue(ctx, 'is required: the model REF to serve (name, name:3 or name@alias)', ['model']);
    // Across fields only once each is right (a refused one is not a number here).
    const settings = [spec.replicas, spec.minReplicas, spec.maxReplicas, spec.targetConcurrency, spec.scaleToZeroAfter];
    if (settings.some((value) => value !== undefined && typeof value !== 'number')) return;
    const shape = { replicas: spec.replicas !== undefined, minReplicas: spec.minReplicas, maxReplicas: spec.maxReplicas, targetConcurrency: spec.targetConcurrency, scaleToZeroAfterMs: spec.scaleToZeroAfter };
    for (const problem of autoscaleProblems(shape, AUTOSCALE_YAML_NAMES)) issue(ctx, problem.message, [AUTOSCALE_YAML_NAMES[problem.setting]]);
  });

/**
 * `output:` of a Job: either `model:` (rank 0's /output is pushed as its next version, with what
 * `models push` flags say) or `dataset:` (a partitioned job's parts are assembled into its next
 * version), never both.
 */
const outputFields = z
  .object({
    model: checked((value) => checkName(value, 'output model')).optional(),
    dataset: checked((value) => checkName(value, 'output dataset')).optional(),
    format: checked((value) => {
      if (!ARTIFACT_FORMATS.model.includes(value)) throw new InvalidArgumentError(`${quoted(value)} is not a model format: ${ARTIFACT_FORMATS.model.join(', ')}`);
    }).optional(),
    type: text(64).optional(),
    inputFormat: text(64).optional(),
    outputFormat: text(64).optional(),
    accuracy: z.number().min(0, 'must be between 0 and 1').max(1, 'must be between 0 and 1').optional(),
    meta: stringMap(LABEL_KEY, LABEL_KEY_HINT, 256).optional(),
  })
  .strict();
const outputSchema = outputFields
  .superRefine((output, ctx) => {
    if (output.model === undefined && output.dataset === undefined) issue(ctx, 'is required: give model (rank 0\'s /output becomes its next version) or dataset (the partitions\' /output become its next version)', ['model']);
    if (output.model !== undefined && output.dataset !== undefined) issue(ctx, 'a job has one output: give model or dataset, not both', ['dataset']);
    else if (output.dataset !== undefined) {
      const modelFields = (['format', 'type', 'inputFormat', 'outputFormat', 'accuracy', 'meta'] as const).filter((field) => output[field] !== undefined);
      for (const field of modelFields) issue(ctx, 'describes an output model; an output dataset takes only its name', [field]);
    }
  })
  .transform(({ meta, model, dataset, ...rest }): { model?: JobOutputInput; dataset?: string } =>
    dataset !== undefined ? { dataset } : { model: { ...rest, model: model!, labels: meta } },
  );

const jobSpecSchema = z
  .object({
    ...commonFields,
    datasets: stringList(ref('dataset'), 32, '[imagenet@v2, labels:3]').optional(),
    workers: whole(1, UINT32).optional(),
    retries: count.optional(),
    retryBackoff: duration.optional(),
    deadline: duration.optional(),
    output: outputSchema.optional(),
    partitions: whole(1, MAX_PARTITIONS).optional(),
  })
  .strict()
  .superRefine((spec, ctx) => {
    stackOrImage(spec, ctx);
    const shape = { workers: spec.workers ?? 1, partitions: spec.partitions ?? 0, outputModel: spec.output?.model !== undefined, outputDataset: spec.output?.dataset ?? '' };
    const paths: Record<keyof JobShapeNames, string[]> = { workers: ['workers'], partitions: ['partitions'], outputModel: ['output', 'model'], outputDataset: ['output', 'dataset'] };
    for (const problem of jobShapeProblems(shape, JOB_YAML_NAMES)) issue(ctx, problem.message, paths[problem.setting]);
  });

const envelopeSchema = z
  .object({
    kind: z.unknown().transform((input, ctx) => {
      if (input === undefined) return issue(ctx, 'is required: Deployment or Job');
      if (typeof input !== 'string' || !(WORKLOAD_KINDS as readonly string[]).includes(input)) return issue(ctx, `must be Deployment or Job, got ${shown(input)}`);
      return input as WorkloadKind;
    }),
    name: z.unknown().transform((input, ctx) => {
      if (input === undefined) return issue(ctx, 'is required');
      if (typeof input !== 'string') return issue(ctx, `expected a string, got ${shown(input)}`);
      try {
        return checkWorkloadName(input, '');
      } catch (err) {
        return issue(ctx, (err as Error).message.trim());
      }
    }),
    tenant: checked((value) => checkWorkloadName(value, '')).optional(),
    spec: z.unknown(),
  })
  .strict();

/** The fields of each mapping, by where it is, for "did you mean" on an unknown one. */
const RESOURCE_FIELDS = Object.keys(resourcesSchema.innerType().shape);
const FIELDS: Record<WorkloadKind, Record<string, string[]>> = {
  Deployment: { spec: Object.keys(deploymentSpecSchema.innerType().shape), 'spec.resources': RESOURCE_FIELDS, 'spec.rollout': ['maxSurge', 'maxUnavailable', 'canaryPercent', 'maxErrorRate', 'maxP99Ratio', 'watch', 'minRequests', 'autoRollback'] },
  Job: { spec: Object.keys(jobSpecSchema.innerType().shape), 'spec.resources': RESOURCE_FIELDS, 'spec.output': Object.keys(outputFields.shape) },
};
const ENVELOPE_FIELDS = Object.keys(envelopeSchema.shape);

// ---- files -------------------------------------------------------------------------------------

/** A workload file with problems; `problems` has one line per problem, each naming its document and field. */
export class WorkloadFileError extends InvalidArgumentError {
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(`${source} is invalid (nothing was sent):\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
}

/** ['spec', 'command', 2] → "spec.command[2]". */
function fieldPath(path: ReadonlyArray<string | number>): string {
  return path.reduce<string>((out, part) => (typeof part === 'number' ? `${out}[${part}]` : out ? `${out}.${part}` : part), '');
}

/** The closest of `known`, when it is close enough to be the one meant ("gpu" → "gpus"). */
function suggestion(key: string, known: readonly string[]): string | undefined {
  let best: { name: string; score: number } | undefined;
  for (const name of known) {
    // A field the key starts (a missing plural "s") wins a tie.
    const score = editDistance(key.toLowerCase(), name.toLowerCase()) - (name.toLowerCase().startsWith(key.toLowerCase()) ? 0.5 : 0);
    if (!best || score < best.score) best = { name, score };
  }
  return best && best.score <= Math.max(1, Math.floor(key.length / 4)) ? best.name : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    previous = current;
  }
  return previous[b.length]!;
}

/** One problem in a document: where (the path, to sort by position) and the line to print. */
interface Problem {
  path: Array<string | number>;
  text: string;
}

/** A zod issue as problems (an unknown-keys issue gives one per key). `kind`: the issue is in that kind's spec. */
function explain(issueData: z.ZodIssue, kind?: WorkloadKind): Problem[] {
  const path = kind ? ['spec', ...issueData.path] : issueData.path;
  const problem = (text: string, at = path): Problem => ({ path: at, text: `${fieldPath(at) || 'document'}: ${text}` });
  if (issueData.code === z.ZodIssueCode.unrecognized_keys) {
    const known = kind ? (FIELDS[kind][fieldPath(path)] ?? []) : ENVELOPE_FIELDS;
    return issueData.keys.map((key) => {
      const hint = suggestion(key, known);
      return problem(`unknown field${hint && hint !== key ? ` (did you mean "${hint}"?)` : ''}`, [...path, key]);
    });
  }
  if (issueData.code === z.ZodIssueCode.invalid_type && issueData.received === 'undefined') return [problem('is required')];
  if (issueData.code === z.ZodIssueCode.invalid_type) {
    const words = (type: string) => (type === 'object' ? 'a mapping' : type);
    return [problem(`expected ${words(issueData.expected)}, got ${words(issueData.received)}`)];
  }
  return [problem(issueData.message)];
}

/** "document 2 (Job "train")": what a person needs to find the document. */
function describeDocument(index: number, raw: unknown): string {
  const record = typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {};
  const kind = typeof record.kind === 'string' && (WORKLOAD_KINDS as readonly string[]).includes(record.kind) ? record.kind : undefined;
  const name = typeof record.name === 'string' ? JSON.stringify(record.name) : undefined;
  const about = [kind, name].filter((x) => x !== undefined).join(' ');
  return `document ${index}${about ? ` (${about})` : ''}`;
}

/** Compiles one document's value, or pushes its problems (all of them: envelope and spec). */
function compileDocument(raw: Record<string, unknown>, problems: Problem[]): WorkloadObject | undefined {
  const envelope = envelopeSchema.safeParse(raw);
  if (!envelope.success) problems.push(...envelope.error.issues.flatMap((i) => explain(i)));
  const kind = typeof raw.kind === 'string' && (WORKLOAD_KINDS as readonly string[]).includes(raw.kind) ? (raw.kind as WorkloadKind) : undefined;
  if (kind === undefined) return undefined;
  if (raw.spec === undefined || raw.spec === null) {
    problems.push({ path: ['spec'], text: 'spec: is required' });
    return undefined;
  }
  if (kind === 'Deployment') {
    const spec = deploymentSpecSchema.safeParse(raw.spec);
    if (!spec.success) problems.push(...spec.error.issues.flatMap((i) => explain(i, kind)));
    if (!envelope.success || !spec.success) return undefined;
    const { name, tenant = '' } = envelope.data;
    const { maxRequestSize, scaleToZeroAfter, rollout: given, ...deployment } = spec.data;
    const { watch, ...policy } = given ?? {};
    const rollout = given ? { ...policy, watchMs: watch } : undefined;
    return { kind, name, tenant, spec: compileDeploymentSpec({ ...deployment, rollout, model: deployment.model!, name, maxRequestBytes: maxRequestSize, scaleToZeroAfterMs: scaleToZeroAfter }) };
  }
  const spec = jobSpecSchema.safeParse(raw.spec);
  if (!spec.success) problems.push(...spec.error.issues.flatMap((i) => explain(i, kind)));
  if (!envelope.success || !spec.success) return undefined;
  const { name, tenant = '' } = envelope.data;
  const { retryBackoff, deadline, output, ...rest } = spec.data;
  return { kind, name, tenant, spec: compileJobSpec({ ...rest, name, retryBackoffMs: retryBackoff, deadlineMs: deadline, output: output?.model, outputDataset: output?.dataset }) };
}

/** Where in the file `path` is (or its nearest ancestor that is there), to list problems in file order. */
function offsetOf(document: YAML.Document, path: ReadonlyArray<string | number>): number {
  for (let depth = path.length; depth >= 0; depth--) {
    const node = depth === 0 ? document.contents : document.getIn(path.slice(0, depth), true);
    if (YAML.isNode(node) && node.range) return node.range[0];
  }
  return 0;
}

/**
 * Parses a workload file: one or more YAML documents (separated by `---`), each a Deployment or
 * a Job. Throws WorkloadFileError listing every problem (as `SOURCE document N (Kind "name"):
 * field: message`) unless the whole file is valid; an empty document is skipped.
 */
export function parseWorkloadFile(content: string, source: string): WorkloadObject[] {
  const problems: string[] = [];
  const objects: WorkloadObject[] = [];
  const seen = new Map<string, number>();
  let index = 0;
  // Measured before the parser sees it: a file this large is no workload file.
  const bytes = Buffer.byteLength(content);
  if (bytes > LIMITS.workloadFileBytes) throw new WorkloadFileError(source, [`${source}: is ${bytes} bytes, over the limit of ${formatLimit(LIMITS.workloadFileBytes)} for a workload file`]);
  for (const document of YAML.parseAllDocuments(content)) {
    index += 1;
    const where = `${source} document ${index}`;
    if (document.errors.length > 0) {
      for (const error of document.errors) {
        const at = error.linePos?.[0] ? `line ${error.linePos[0].line}, column ${error.linePos[0].col}: ` : '';
        problems.push(`${where}: not valid YAML: ${at}${error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`);
      }
      continue;
    }
    let raw: unknown;
    try {
      raw = document.toJS({ maxAliasCount: 100 });
    } catch (err) {
      // An alias to no anchor, or an alias bomb.
      problems.push(`${where}: not valid YAML: ${(err as Error).message}`);
      continue;
    }
    if (raw === null || raw === undefined) continue; // a "---" at the start or the end
    const label = `${source} ${describeDocument(index, raw)}`;
    if (typeof raw !== 'object' || Array.isArray(raw)) {
      problems.push(`${label}: expected a mapping with kind, name and spec, got ${shown(raw)}`);
      continue;
    }
    const mine: Problem[] = [];
    const object = compileDocument(raw as Record<string, unknown>, mine);
    const ordered = mine.map((p, i) => ({ ...p, at: offsetOf(document, p.path), i })).sort((a, b) => a.at - b.at || a.i - b.i);
    problems.push(...ordered.map((p) => `${label}: ${p.text}`));
    if (!object) continue;
    const key = `${object.kind}/${object.tenant}/${object.name}`;
    const first = seen.get(key);
    if (first !== undefined) {
      problems.push(`${label}: ${object.kind} "${object.name}" is already defined by document ${first}`);
      continue;
    }
    seen.set(key, index);
    objects.push(object);
  }
  if (problems.length === 0 && objects.length === 0) problems.push(`${source}: no documents; expected YAML documents with kind: Deployment or kind: Job`);
  if (problems.length > 0) throw new WorkloadFileError(source, problems);
  return objects;
}
