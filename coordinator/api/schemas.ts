// One schema per request message (DESIGN principle 8). Handlers receive the parsed result.
import { ARTIFACT_NAME, NAME_RULE, parseRef } from '../../shared/artifact-ref.js';
import { QUOTA_NAMES } from '../../shared/quota.js';
import { labelMap, MAX_NODE_NAME_CHARS, nodeName, withinJsonBytes, z } from '../../shared/validation.js';
import { LIMITS } from '../../shared/limits.js';
import { PAGE_TOKEN } from '../audit-log.js';
import { MAX_RETAINED_VERSIONS } from '../registry/retention.js';

const uint = z.number().int().nonnegative();

const gpuDevice = z.object({
  index: uint,
  uuid: z.string().min(1, 'is required'),
  model: z.string().min(1, 'is required'),
  memoryBytes: uint.positive('must be more than 0'),
  computeCapability: z.string(),
  migEnabled: z.boolean(),
  driverVersion: z.string(),
});

const capacity = z.object({
  cpuMillis: uint.positive('must be more than 0'),
  memoryBytes: uint.positive('must be more than 0'),
  gpus: z.array(gpuDevice).refine((gpus) => new Set(gpus.map((g) => g.index)).size === gpus.length, 'GPU indexes must be unique'),
  nics: z.array(z.object({ name: z.string().min(1), speedMbps: uint, ipv4: z.string() })),
  disks: z.array(z.object({ mount: z.string(), fsType: z.string(), sizeBytes: uint, availableBytes: uint })),
});

const cacheEntry = z.object({ digest: z.string(), sizeBytes: uint, inUse: z.boolean() });

export const helloSchema = z.object({
  nodeName,
  agentVersion: z.string().max(64),
  address: z.string().max(300),
  labels: labelMap,
  capacity: capacity.nullable().refine((c) => c !== null, 'is required'),
  appliedRevision: uint,
  allocations: z.array(z.unknown()),
  cache: z.array(cacheEntry),
  sessionId: z.string().max(100),
  peerUploadMbps: uint,
});

export const heartbeatSchema = z.object({
  seq: uint,
  sentAtMs: uint,
  usage: z.unknown(),
  latencies: z
    .array(
      z.object({
        tenant: z.string().max(63),
        model: z.string().max(100),
        allocation: z.string().max(64),
        count: uint,
        errors: uint,
        p50Ms: z.number().nonnegative().finite(),
        p99Ms: z.number().nonnegative().finite(),
      }),
    )
    .max(10_000),
  delivery: z
    .object({ fromPeersBytes: uint, fromCoordinatorBytes: uint, fromS3Bytes: uint, toPeersBytes: uint, corruptPieces: uint })
    .nullable(),
});

export const getClusterStatusSchema = z.object({});

/** The most nodes one page of ListNodes may ask for. */
export const MAX_NODE_PAGE = 5_000;

export const listNodesSchema = z.object({
  status: z.enum(['', 'ready', 'down', 'draining'], { errorMap: () => ({ message: 'must be ready, down or draining (or empty for all)' }) }),
  selector: labelMap,
  limit: z.number().int().min(0).max(MAX_NODE_PAGE, `must be at most ${MAX_NODE_PAGE} (0 for every node)`),
  after: z.string().max(MAX_NODE_NAME_CHARS, `must be a node name (at most ${MAX_NODE_NAME_CHARS} characters)`),
});

export const nodeNameRequestSchema = z.object({ name: nodeName });

/** A tenant name: a DNS label, as Kubernetes namespaces are. */
export const tenantName = z
  .string()
  .min(1, 'is required')
  .max(63, 'must be at most 63 characters')
  .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, 'must be lowercase letters, digits and "-", starting and ending with a letter or digit');

const quota = z.object({
  cpuMillis: uint,
  memoryBytes: uint,
  gpus: uint,
  gpuMemoryBytes: uint,
  storageBytes: uint,
  maxDeployments: uint,
});

export const createTenantSchema = z.object({
  name: tenantName,
  description: z.string().max(256, 'must be at most 256 characters'),
  quota: quota.nullable(),
});

export const listTenantsSchema = z.object({});

export const getTenantSchema = z.object({ name: tenantName });

export const setTenantQuotaSchema = z
  .object({
    name: tenantName,
    quota: quota.nullable(),
    clear: z.array(z.enum(QUOTA_NAMES, {
      errorMap: () => ({ message: `must be one of ${QUOTA_NAMES.join(', ')}` }),
    })),
  })
  .refine((r) => r.clear.length > 0 || (r.quota !== null && Object.values(r.quota).some((v) => v > 0)), {
    message: 'nothing to change: give at least one limit or a limit to clear',
    path: ['quota'],
  });

export const createTokenSchema = z
  .object({
    tenant: z.union([z.literal(''), tenantName]),
    role: z.enum(['admin', 'developer', 'consumer', 'join'], { errorMap: () => ({ message: 'must be admin, developer, consumer or join' }) }),
    description: z.string().max(256, 'must be at most 256 characters'),
    ttlMs: uint,
    singleUse: z.boolean().default(false),
  })
  .refine((r) => r.role === 'join' || r.tenant !== '', { message: 'is required for admin, developer and consumer tokens', path: ['tenant'] })
  .refine((r) => r.role === 'join' || !r.singleUse, { message: 'applies to join tokens only', path: ['singleUse'] });

export const listTokensSchema = z.object({
  tenant: z.union([z.literal(''), tenantName]),
  includeRevoked: z.boolean(),
});

export const revokeTokenSchema = z.object({
  id: z.string().regex(/^[0-9a-f]{16}$/, 'must be a token id (16 hex digits, as `mlfleetctl tokens ls` shows)'),
});

export const listAuditEventsSchema = z.object({
  tenant: z.union([z.literal(''), tenantName]),
  limit: uint.max(1000, 'must be at most 1000'),
  beforeId: uint,
  pageToken: z.union([z.literal(''), z.string().regex(PAGE_TOKEN, 'must be the nextPageToken of an earlier page')]),
});

export const artifactName = z.string().regex(ARTIFACT_NAME, `must be ${NAME_RULE}`);

/** A REF (`name`, `name:3`, `name@alias`), checked by the same parser the CLI uses. */
const artifactRef = z.string().superRefine((ref, ctx) => {
  try {
    parseRef(ref);
  } catch (err) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: (err as Error).message });
  }
});
export const optionalTenant = z.union([z.literal(''), tenantName]);


export const artifactMetadata = z
  .object({
    type: z.string().max(64),
    inputFormat: z.string().max(64),
    outputFormat: z.string().max(64),
    accuracy: z.number().min(0, 'must be between 0 and 1').max(1, 'must be between 0 and 1'),
    labels: z.record(z.string().min(1).max(63), z.string().max(256)).superRefine((labels, ctx) => {
      const count = Object.keys(labels).length;
      if (count > LIMITS.labels) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `has ${count} entries, over the limit of ${LIMITS.labels}` });
    }),
    sourceJob: z.string().max(253),
    sourceDatasets: z.array(z.string().max(200)).max(LIMITS.sourceDatasets, `at most ${LIMITS.sourceDatasets} datasets`),
  })
  .superRefine(withinJsonBytes(LIMITS.metadataBytes));

export function pushHeaderSchema(formats: readonly string[]) {
  return z.object({
    name: artifactName,
    format: z.string().refine((f) => formats.includes(f), { message: `must be one of ${formats.join(', ')}` }),
    directory: z.boolean(),
    sizeBytes: uint.positive('must be more than 0: an empty file cannot be pushed'),
    digest: z.union([z.literal(''), z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be sha256:<64 hex digits>')]),
    metadata: artifactMetadata.nullable(),
    // Agents pushing a job's output: the job allocation (see coordinator/api/job-output-push.ts).
    jobAllocation: z.string().max(64).regex(/^[0-9a-f]*$/, 'must be an allocation id'),
  });
}

export const listArtifactsSchema = z.object({ tenant: optionalTenant });
export const getArtifactSchema = z.object({ name: artifactName, tenant: optionalTenant });
export const resolveSchema = z.object({ ref: artifactRef, tenant: optionalTenant });
export const downloadSchema = z
  .object({
    ref: z.union([z.literal(''), artifactRef]),
    digest: z.union([z.literal(''), z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be sha256:<64 hex digits>')]),
    offset: uint,
    tenant: optionalTenant,
  })
  .refine((r) => (r.ref === '') !== (r.digest === ''), { message: 'give exactly one of ref and digest', path: ['ref'] });
export const setAliasSchema = z.object({
  name: artifactName,
  alias: artifactName,
  version: uint.positive('is required'),
  tenant: optionalTenant,
});
/** Either a retention (keep 1..10000) or `off` alone; the handler receives the policy or null. */
export const setRetentionSchema = z
  .object({ name: artifactName, tenant: optionalTenant, keep: uint, keepAliased: z.boolean(), off: z.boolean() })
  .superRefine((r, ctx) => {
    if (r.off && (r.keep !== 0 || r.keepAliased)) ctx.addIssue({ code: 'custom', path: ['off'], message: 'clears the retention: give it without keep or keep_aliased' });
    if (!r.off && (r.keep < 1 || r.keep > MAX_RETAINED_VERSIONS)) ctx.addIssue({ code: 'custom', path: ['keep'], message: `must be 1..${MAX_RETAINED_VERSIONS} (or set off to keep every version)` });
  });

export const deleteVersionSchema = z.object({ name: artifactName, version: uint.positive('is required'), tenant: optionalTenant });

export const prefetchModelSchema = z.object({ node: nodeName, ref: artifactRef, tenant: optionalTenant });

/** A gateway's load report on the agent session (docs/autoscaling.md "Signals"). */
export const gatewayLoadSchema = z.object({
  sentAtMs: uint,
  intervalMs: uint,
  deployments: z
    .array(
      z.object({
        tenant: z.string().min(1, 'is required').max(63),
        deployment: z.string().min(1, 'is required').max(63),
        concurrency: z.number().nonnegative().finite().max(1e9),
        inFlight: uint,
        waiting: uint,
        requests: uint,
        wake: z.boolean(),
      }),
    )
    .max(10_000),
});
