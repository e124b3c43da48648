// The REST API's answers as zod schemas, for its OpenAPI document (coordinator/rest/openapi.ts):
// the -o json shapes of shared/views/ (their interfaces are the definition; these name the
// fields a client can count on, and let more through).
import { z } from 'zod';

const iso = z.string().nullable().describe('ISO-8601; null when never');
const labels = z.record(z.string());

export const error = z.object({ error: z.object({ code: z.string().describe('the gRPC status name, e.g. INVALID_ARGUMENT'), message: z.string() }) });

export const whoami = z.object({ role: z.string(), tenant: z.string(), tokenId: z.string() });

export const cluster = z
  .object({ leader: z.string().nullable(), coordinators: z.array(z.object({ address: z.string(), role: z.string() })), store: z.string(), revision: z.number() })
  .passthrough();

const resources = z.object({ cpuMillis: z.number(), memoryBytes: z.number(), gpus: z.number(), gpuMemoryBytes: z.number(), gpuModel: z.string(), nicMbps: z.number() }).passthrough();

export const node = z
  .object({
    name: z.string(),
    status: z.string(),
    cordoned: z.boolean(),
    address: z.string(),
    labels,
    capacity: z.object({ cpuMillis: z.number(), memoryBytes: z.number(), gpus: z.array(z.object({ index: z.number(), uuid: z.string(), model: z.string(), memoryBytes: z.number() })), nics: z.array(z.unknown()) }).passthrough(),
    allocated: z.object({ cpuMillis: z.number(), memoryBytes: z.number(), gpus: z.number(), gpuMemoryBytes: z.number(), nicMbps: z.number() }).passthrough(),
    lastHeartbeat: iso,
    cacheEntries: z.number().describe("how many artifacts the agent's cache holds"),
    cacheBytes: z.number().describe('their size together'),
  })
  .passthrough();

const quota = z.object({ cpuMillis: z.number(), memoryBytes: z.number(), gpus: z.number(), gpuMemoryBytes: z.number(), storageBytes: z.number(), maxDeployments: z.number() }).passthrough();

export const tenant = z.object({ name: z.string(), description: z.string(), quota, usage: z.object({}).passthrough() }).passthrough();

const metadata = z.object({ type: z.string(), inputFormat: z.string(), outputFormat: z.string(), accuracy: z.number(), labels, sourceJob: z.string(), sourceDatasets: z.array(z.string()) }).passthrough();

export const artifactVersion = z
  .object({ name: z.string(), version: z.number(), digest: z.string(), sizeBytes: z.number(), format: z.string(), directory: z.boolean(), createdAt: iso, metadata })
  .passthrough();

export const artifact = z.object({ name: z.string(), versions: z.array(artifactVersion.omit({ name: true })), aliases: z.record(z.number()) }).passthrough();

export const artifactSummary = z.object({ name: z.string(), latestVersion: z.number(), versions: z.number(), totalBytes: z.number(), aliases: z.record(z.number()), updatedAt: iso }).passthrough();

export const uploadTicket = z.object({
  uploadId: z.string(),
  uploadUrl: z.string().describe('PUT the bytes here from offset (header Upload-Offset); empty for an S3 upload, which uses partUrls'),
  offset: z.number(),
  partUrls: z.array(z.string()),
  partBytes: z.number(),
  partsDone: z.array(z.number()),
  expiresAt: iso,
});

export const allocation = z
  .object({ id: z.string(), kind: z.string(), workload: z.string(), tenant: z.string(), node: z.string(), status: z.string(), reason: z.string(), endpoint: z.string(), resources, attempt: z.number(), rank: z.number(), createdAt: iso, updatedAt: iso })
  .passthrough();

export const deployment = z
  .object({ name: z.string(), tenant: z.string(), model: z.string(), resolvedVersion: z.number(), image: z.string(), replicas: z.number(), readyReplicas: z.number(), status: z.string(), message: z.string(), generation: z.number(), allocations: z.array(allocation), createdAt: iso, updatedAt: iso,
    traffic: z
      .object({ requestRate: z.number().describe('requests per second'), p50Ms: z.number(), p99Ms: z.number(), errorRate: z.number().describe('the share of requests that failed, 0-1'), measuredAt: iso })
      .nullable()
      .describe("what the gateways measure of its replicas, fleet-wide; null before any reported lately") })
  .passthrough();

export const job = z
  .object({ name: z.string(), tenant: z.string(), status: z.string(), attempts: z.number(), message: z.string(), outputModel: z.string(), image: z.string(), workers: z.number(), allocations: z.array(allocation) })
  .passthrough();

export const event = z.object({ id: z.number(), time: iso, tenant: z.string(), object: z.string(), allocation: z.string(), node: z.string(), type: z.string(), message: z.string() }).passthrough();

export const selection = z
  .object({ deployment: z.string(), tenant: z.string(), model: z.string(), version: z.number(), endpoints: z.array(z.string()), reason: z.string(), candidates: z.array(z.object({}).passthrough()) })
  .passthrough();
