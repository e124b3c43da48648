// The JSON shapes the REST API answers with: those of `mlfleetctl … -o json`
// (shared views; docs/rest-api.md). Only the fields the dashboard reads are named.

export interface Whoami {
  role: string;
  tenant: string;
}

export interface NodeJson {
  name: string;
  status: string;
  cordoned: boolean;
  address: string;
  labels: Record<string, string>;
  capacity: { cpuMillis: number; memoryBytes: number; gpus: { index: number; uuid: string; model: string; memoryBytes: number }[] };
  allocated: { cpuMillis: number; memoryBytes: number; gpus: number; gpuMemoryBytes: number };
  lastHeartbeat: string | null;
  cache?: { digest: string; sizeBytes: number; inUse: boolean }[];
}

export interface ResourcesJson {
  cpuMillis: number;
  memoryBytes: number;
  gpus: number;
  gpuMemoryBytes: number;
  gpuModel: string;
}

export interface AllocationJson {
  id: string;
  kind: string;
  workload: string;
  tenant: string;
  node: string;
  status: string;
  reason: string;
  endpoint: string;
  resources: ResourcesJson;
  gpuIndexes: number[];
  exitCode: number;
  attempt: number;
  rank: number;
  generation: number;
  desired: string;
  modelDigest: string;
  createdAt: string | null;
  updatedAt: string | null;
}

export interface DeploymentJson {
  name: string;
  tenant: string;
  model: string;
  resolvedVersion: number;
  replicas: number;
  readyReplicas: number;
  status: string;
  message: string;
  generation: number;
  autoscaling: { minReplicas: number; maxReplicas: number; targetConcurrency: number } | null;
  autoscaler: { desiredReplicas: number; inFlight: number; requestRate: number; panicking: boolean; lastDecision: string; blocked: string } | null;
  canary: { percent: number; readyReplicas: number } | null;
  /** Gateway measurements, when the API carries them. */
  requestRate?: number;
  p50Ms?: number;
  allocations: AllocationJson[];
}

export interface JobJson {
  name: string;
  tenant: string;
  status: string;
  attempts: number;
  message: string;
  partitions: number;
  workers: number;
  maxRetries: number;
  outputModel: string;
  outputDataset: string;
  datasets: string[];
  allocations: AllocationJson[];
  createdAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface ArtifactSummaryJson {
  name: string;
  latestVersion: number;
  versions: number;
  totalBytes: number;
  aliases: Record<string, number>;
  updatedAt: string | null;
}

export interface ArtifactJson {
  name: string;
  versions: {
    version: number;
    digest: string;
    sizeBytes: number;
    format: string;
    createdAt: string | null;
    metadata: { sourceJob: string; sourceDatasets: string[] };
  }[];
  aliases: Record<string, number>;
}

export interface TenantJson {
  name: string;
  quota: { cpuMillis: number; memoryBytes: number; gpus: number; gpuMemoryBytes: number; storageBytes: number; maxDeployments: number };
  usage: { cpuMillis: number; memoryBytes: number; gpus: number; gpuMemoryBytes: number; storageBytes: number; deployments: number };
}

export interface WorkloadEventJson {
  id: number;
  time: string | null;
  tenant: string;
  object: string;
  allocation: string;
  node: string;
  type: string;
  message: string;
}
