// Request schemas of the workload services (deployments, jobs, allocations, workload events).
import { ARTIFACT_FORMATS, ARTIFACT_NAME, NAME_RULE, parseRef } from '../../shared/artifact-ref.js';
import { boundedArgv, boundedEnv, labelMap, withinJsonBytes, z } from '../../shared/validation.js';
import { LIMITS } from '../../shared/limits.js';
import { jobShapeProblems, MAX_PARTITIONS, type JobShapeNames } from '../../shared/workload-spec.js';
import { artifactMetadata, artifactName, tenantName } from './schemas.js';
import { quoted } from '../../shared/truncate.js';
import { rolloutProblem } from '../../shared/rollout-spec.js';
import { AUTOSCALE_LIMITS, AUTOSCALE_WIRE_NAMES, autoscaleProblems } from '../../shared/autoscale-spec.js';

const uint = z.number().int().nonnegative();

/** A rollout setting on the wire: 0 is "not set" (the default); anything else as the CLI checks it. */
const rolloutField = (setting: 'canaryPercent' | 'maxErrorRate' | 'maxP99Ratio' | 'watchMs' | 'minRequests') =>
  z.number().superRefine((value, ctx) => {
    const problem = value === 0 ? undefined : rolloutProblem(setting, value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
const optionalTenant = z.union([z.literal(''), tenantName]);

/** Deployment and job names: DNS labels, as Kubernetes object names. */
export const workloadName = z
  .string()
  .min(1, 'is required')
  .max(63, 'must be at most 63 characters')
  .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, 'must be lowercase letters, digits and "-", starting and ending with a letter or digit');

const ref = (what: string) =>
  z.string().superRefine((value, ctx) => {
    if (value === '') {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: `is required: the ${what} REF (name, name:3 or name@alias)` });
      return;
    }
    try {
      parseRef(value);
    } catch (err) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: (err as Error).message });
    }
  });

/** A container image reference, loosely: no spaces, no control characters. */
const image = z.string().max(512).regex(/^$|^[A-Za-z0-9][A-Za-z0-9._/:@-]*$/, 'is not an image reference (like mlfleet/runtime:0.1.0)');
const stack = z.string().max(63).regex(/^$|^[a-z0-9][a-z0-9-]*$/, 'must be a stack name (lowercase letters, digits, "-")');
const command = boundedArgv;
const env = boundedEnv;

const GiB = 2 ** 30;
export const resourceRequest = z.object({
  cpuMillis: uint.max(1_024_000, 'must be at most 1024 cores'),
  memoryBytes: uint.max(64 * 1024 * GiB, 'must be at most 64Ti'),
  gpus: uint.max(64, 'must be at most 64'),
  gpuMemoryBytes: uint.max(1024 * GiB, 'must be at most 1Ti'),
  gpuModel: z.string().max(64),
  nicMbps: uint.max(10_000_000),
});

const oneOfStackOrImage = <T extends { stack: string; image: string }>(spec: T, ctx: z.RefinementCtx) => {
  if ((spec.stack === '') === (spec.image === '')) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'give exactly one of stack and image', path: ['stack'] });
  }
};

/** The largest request body a deployment may ask its gateways to pass on. */
const MAX_REQUEST_BYTES = 2 ** 30;

export const deploymentSpec = z
  .object({
    name: workloadName,
    model: ref('model'),
    stack,
    image,
    command,
    env,
    port: uint.max(65_535, 'must be a port number'),
    readinessPath: z.string().max(1024).regex(/^$|^\/\S*$/, 'must be a path starting with /'),
    replicas: uint.max(1000, 'must be at most 1000'),
    resources: resourceRequest.nullable(),
    constraints: labelMap,
    maxPerNode: uint.max(1000),
    priority: z.number().int().min(-1_000_000).max(1_000_000, 'must be between -1000000 and 1000000'),
    rollout: z
      .object({
        maxSurge: uint.max(1000),
        maxUnavailable: uint.max(1000),
        // 0: a plain rolling update; the thresholds' 0: their defaults (shared/rollout-spec.ts).
        canaryPercent: rolloutField('canaryPercent'),
        maxErrorRate: rolloutField('maxErrorRate'),
        maxP99Ratio: rolloutField('maxP99Ratio'),
        watchMs: rolloutField('watchMs'),
        minRequests: rolloutField('minRequests'),
        autoRollbackOff: z.boolean(),
      })
      .nullable(),
    public: z.boolean(),
    maxRequestBytes: z.number().int().min(0).max(MAX_REQUEST_BYTES, `must be at most ${MAX_REQUEST_BYTES} (1 GiB)`),
    minReplicas: uint.max(AUTOSCALE_LIMITS.replicas, `must be at most ${AUTOSCALE_LIMITS.replicas}`),
    maxReplicas: uint.max(AUTOSCALE_LIMITS.replicas, `must be at most ${AUTOSCALE_LIMITS.replicas}`),
    // 0: the default (4); a negative one is refused by autoscaleProblems with its reason.
    targetConcurrency: z.number().max(AUTOSCALE_LIMITS.targetConcurrency, `must be at most ${AUTOSCALE_LIMITS.targetConcurrency}`),
    scaleToZeroAfterMs: uint.max(AUTOSCALE_LIMITS.scaleToZeroAfterMs, 'must be at most 30 days'),
  })
  .superRefine(oneOfStackOrImage)
  .superRefine(withinJsonBytes(LIMITS.specBytes))
  .superRefine((spec, ctx) => {
    // The CLI's and YAML's rules but one: on the wire every spec carries `replicas`, and an
    // autoscaled spec's (max_replicas > 0) is ignored here — the controller keeps the size the
    // autoscaler chose (max(min, 1) at first), clamped to the bounds. A 0 is "not set".
    const shape = {
      minReplicas: spec.minReplicas > 0 ? spec.minReplicas : undefined,
      maxReplicas: spec.maxReplicas > 0 ? spec.maxReplicas : undefined,
      targetConcurrency: spec.targetConcurrency !== 0 ? spec.targetConcurrency : undefined,
      scaleToZeroAfterMs: spec.scaleToZeroAfterMs > 0 ? spec.scaleToZeroAfterMs : undefined,
    };
    for (const problem of autoscaleProblems(shape, AUTOSCALE_WIRE_NAMES)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem.message, path: [AUTOSCALE_WIRE_NAMES[problem.setting]] });
  });

export const applyDeploymentSchema = z.object({
  spec: deploymentSpec.nullable().refine((s) => s !== null, 'is required'),
  tenant: optionalTenant,
});

export const scaleDeploymentSchema = z.object({ name: workloadName, replicas: uint.max(1000, 'must be at most 1000'), tenant: optionalTenant });
export const workloadRefSchema = z.object({ name: workloadName, tenant: optionalTenant });
export const listWorkloadsSchema = z.object({ tenant: optionalTenant });

/** Where a job's result goes: a model name of the job's tenant (the coordinator fills in its lineage). */
const jobOutput = z.object({
  model: artifactName,
  format: z.string().refine((f) => f === '' || ARTIFACT_FORMATS.model.includes(f), { message: `must be empty (from the file) or one of ${ARTIFACT_FORMATS.model.join(', ')}` }),
  metadata: artifactMetadata.nullable(),
});

/**
 * A job's output dataset: '' (none), NAME, or TENANT/NAME — whose tenant the service then checks
 * against the job's (a job writes only into its own tenant).
 */
const outputDataset = z.string().superRefine((value, ctx) => {
  if (value === '') return;
  const parts = value.split('/');
  const name = parts.at(-1)!;
  if (parts.length > 2 || (parts.length === 2 && !tenantName.safeParse(parts[0]).success)) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${quoted(value)} is not a dataset name: use ${NAME_RULE} (the dataset is in the job's tenant)` });
  } else if (!ARTIFACT_NAME.test(name)) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `${quoted(name)} is not a dataset name: use ${NAME_RULE}` });
  }
});

/** The JobSpec fields as jobShapeProblems names them, on the wire. */
const JOB_FIELD_NAMES: JobShapeNames = { workers: 'workers', partitions: 'partitions', outputModel: 'output', outputDataset: 'outputDataset' };

export const jobSpec = z
  .object({
    name: workloadName,
    stack,
    image,
    command,
    env,
    datasets: z.array(ref('dataset')).max(32, 'at most 32 datasets'),
    resources: resourceRequest.nullable(),
    workers: uint.max(1000, 'must be at most 1000').refine((n) => n !== 0, 'must be at least 1'),
    maxRetries: uint.max(100, 'must be at most 100'),
    retryBackoffMs: uint.max(86_400_000, 'must be at most 24h'),
    deadlineMs: uint.max(30 * 86_400_000, 'must be at most 30d'),
    constraints: labelMap,
    priority: z.number().int().min(-1_000_000).max(1_000_000, 'must be between -1000000 and 1000000'),
    output: jobOutput.nullable(),
    partitions: uint.max(MAX_PARTITIONS, `must be at most ${MAX_PARTITIONS}`),
    outputDataset,
  })
  .superRefine(withinJsonBytes(LIMITS.specBytes))
  .superRefine((spec, ctx) => {
    oneOfStackOrImage(spec, ctx);
    const shape = { workers: spec.workers, partitions: spec.partitions, outputModel: spec.output !== null, outputDataset: spec.outputDataset };
    for (const problem of jobShapeProblems(shape, JOB_FIELD_NAMES)) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem.message, path: [JOB_FIELD_NAMES[problem.setting]] });
  });

export const runJobSchema = z.object({
  spec: jobSpec.nullable().refine((s) => s !== null, 'is required'),
  tenant: optionalTenant,
});

export const listAllocationsSchema = z.object({
  tenant: optionalTenant,
  node: z.string().max(253),
  workload: z.string().max(70),
  all: z.boolean(),
});

export const getLogsSchema = z.object({
  allocation: z.string().min(4, 'is required: an allocation id or a prefix of at least 4 characters').max(64).regex(/^[0-9a-f-]+$/, 'must be an allocation id (hex), as `mlfleetctl ps` shows'),
  tailBytes: uint,
  follow: z.boolean(),
});

export const watchEventsSchema = z.object({
  tenant: optionalTenant,
  object: z.string().max(140).regex(/^$|^(deployment|job|node|source|model)\/[a-z0-9._-]+$/, 'must be deployment/NAME, job/NAME, node/NAME, source/NAME or model/NAME'),
  replay: uint.max(1000, 'must be at most 1000'),
  follow: z.boolean(),
});
