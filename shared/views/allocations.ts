// The -o json shape of mlfleetctl and the REST API (coordinator/rest/): one copy for both.
// Moved from scripts/cli/views/allocations.ts, which keeps the table and detail renderings.
import type { AllocationInfo, ResourceRequest } from '../proto.js';
import { isoOrNull } from './json.js';

export interface ResourcesJson {
  /** 0: the coordinator's default. */
  cpuMillis: number;
  /** 0: the coordinator's default. */
  memoryBytes: number;
  gpus: number;
  gpuMemoryBytes: number;
  gpuModel: string;
  nicMbps: number;
}

export interface AllocationJson {
  id: string;
  /** deployment | job */
  kind: string;
  workload: string;
  tenant: string;
  /** '' while not placed. */
  node: string;
  /** pending | pulling | starting | running | ready | failed | completed | stopped */
  status: string;
  reason: string;
  /** host:port of the replica's server, once it runs; '' otherwise. */
  endpoint: string;
  resources: ResourcesJson;
  gpuIndexes: number[];
  hostPort: number;
  exitCode: number;
  /** Jobs: which attempt (1-based) and which worker. */
  attempt: number;
  rank: number;
  /** Deployments: the spec generation it runs. */
  generation: number;
  /** run | stop */
  desired: string;
  modelDigest: string;
  createdAt: string | null;
  updatedAt: string | null;
}

export function resourcesJson(r: ResourceRequest | null): ResourcesJson {
  return {
    cpuMillis: r?.cpuMillis ?? 0,
    memoryBytes: r?.memoryBytes ?? 0,
    gpus: r?.gpus ?? 0,
    gpuMemoryBytes: r?.gpuMemoryBytes ?? 0,
    gpuModel: r?.gpuModel ?? '',
    nicMbps: r?.nicMbps ?? 0,
  };
}

export function allocationJson(a: AllocationInfo): AllocationJson {
  return {
    id: a.id,
    kind: a.kind,
    workload: a.workload,
    tenant: a.tenant,
    node: a.node,
    status: a.status,
    reason: a.reason,
    endpoint: a.endpoint,
    resources: resourcesJson(a.resources),
    gpuIndexes: [...a.gpuIndexes],
    hostPort: a.hostPort,
    exitCode: a.exitCode,
    attempt: a.attempt,
    rank: a.rank,
    generation: a.generation,
    desired: a.desired,
    modelDigest: a.modelDigest,
    createdAt: isoOrNull(a.createdAtMs),
    updatedAt: isoOrNull(a.updatedAtMs),
  };
}
