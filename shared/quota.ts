// Tenant quota limits by the names operators use (`tenants set-quota --clear gpu-memory`),
// mapped to the Quota message's fields; shared by the CLI, the coordinator and its tests.
import type { Quota } from './proto.js';

export const QUOTA_FIELDS = {
  cpu: 'cpuMillis',
  memory: 'memoryBytes',
  gpus: 'gpus',
  'gpu-memory': 'gpuMemoryBytes',
  storage: 'storageBytes',
  deployments: 'maxDeployments',
} as const satisfies Record<string, keyof Quota>;

export type QuotaName = keyof typeof QUOTA_FIELDS;
export const QUOTA_NAMES = Object.keys(QUOTA_FIELDS) as [QuotaName, ...QuotaName[]];
