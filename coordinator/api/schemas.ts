// One schema per request message (DESIGN principle 8). Handlers receive the parsed result.
import { labelMap, nodeName, z } from '../../shared/validation.js';

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
});

export const heartbeatSchema = z.object({
  seq: uint,
  sentAtMs: uint,
  usage: z.unknown(),
});

export const getClusterStatusSchema = z.object({});

export const listNodesSchema = z.object({
  status: z.enum(['', 'ready', 'down', 'draining'], { errorMap: () => ({ message: 'must be ready, down or draining (or empty for all)' }) }),
  selector: labelMap,
});

export const nodeNameRequestSchema = z.object({ name: nodeName });
