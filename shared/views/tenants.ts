// The -o json shape of mlfleetctl and the REST API (coordinator/rest/): one copy for both.
// Moved from scripts/cli/views/tenants.ts, which keeps the table and detail renderings.
import type { Tenant } from '../proto.js';
import { isoOrNull } from './json.js';

export interface TenantJson {
  name: string;
  description: string;
  /** 0 is "no limit". */
  quota: {
    cpuMillis: number;
    memoryBytes: number;
    gpus: number;
    gpuMemoryBytes: number;
    storageBytes: number;
    maxDeployments: number;
  };
  usage: {
    cpuMillis: number;
    memoryBytes: number;
    gpus: number;
    gpuMemoryBytes: number;
    storageBytes: number;
    deployments: number;
  };
  /** ISO-8601; null when the coordinator did not say. */
  createdAt: string | null;
}

export function tenantJson(tenant: Tenant): TenantJson {
  const quota = tenant.quota;
  const usage = tenant.usage;
  return {
    name: tenant.name,
    description: tenant.description,
    quota: {
      cpuMillis: quota?.cpuMillis ?? 0,
      memoryBytes: quota?.memoryBytes ?? 0,
      gpus: quota?.gpus ?? 0,
      gpuMemoryBytes: quota?.gpuMemoryBytes ?? 0,
      storageBytes: quota?.storageBytes ?? 0,
      maxDeployments: quota?.maxDeployments ?? 0,
    },
    usage: {
      cpuMillis: usage?.cpuMillis ?? 0,
      memoryBytes: usage?.memoryBytes ?? 0,
      gpus: usage?.gpus ?? 0,
      gpuMemoryBytes: usage?.gpuMemoryBytes ?? 0,
      storageBytes: usage?.storageBytes ?? 0,
      deployments: usage?.deployments ?? 0,
    },
    createdAt: isoOrNull(tenant.createdAtMs),
  };
}
