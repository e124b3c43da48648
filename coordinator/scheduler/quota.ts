// Tenant quotas in the scheduler: a placement never takes a tenant past a limit, and (for
// preemption) a quota is also a guarantee — see preemption.ts. Usage is the tenant's allocations
// in the snapshot plus this plan's placements, less what this plan preempts. Whole GPUs count
// into `gpus` and their devices' full memory into `gpuMemoryBytes`; a GPU-memory share counts
// its size into `gpuMemoryBytes` only.
import type { ClusterState, Usage } from './cluster-state.js';
import type { PreparedAsk } from './prepared-ask.js';
import type { TenantQuota } from './types.js';

type Limit = 'gpus' | 'gpuMemoryBytes' | 'cpuMillis' | 'memoryBytes';

const LIMITS: ReadonlyArray<{ field: Limit; name: string; format: (n: number) => string }> = [
  { field: 'gpus', name: 'GPU', format: String },
  { field: 'gpuMemoryBytes', name: 'GPU memory', format: formatBytes },
  { field: 'cpuMillis', name: 'CPU', format: formatCpu },
  { field: 'memoryBytes', name: 'memory', format: formatBytes },
];

/** What the ask adds to its tenant's usage, at least (whole devices may have more memory than asked). */
function demand(p: PreparedAsk): Usage {
  return {
    cpuMillis: p.cpuMillis,
    memoryBytes: p.memoryBytes,
    gpus: p.gpus,
    gpuMemoryBytes: p.share ? p.gpuMemoryBytes : p.gpus * p.gpuMemoryBytes,
  };
}

/** Why placing `p` anywhere would take its tenant past a limit, or undefined. */
export function quotaFailure(state: ClusterState, p: PreparedAsk): string | undefined {
  const quota = state.quotas.get(p.ask.tenant);
  if (quota === undefined) return undefined;
  const usage = state.usageOf(p.ask.tenant);
  const asked = demand(p);
  for (const { field } of LIMITS) {
    if (quota[field] > 0 && asked[field] > 0 && usage[field] + asked[field] > quota[field]) {
      return quotaMessage(p.ask.tenant, field, quota, usage[field], asked[field]);
    }
  }
  return undefined;
}

/** The GPU memory the tenant may still take (Infinity: no limit). */
export function gpuMemoryRoom(state: ClusterState, tenant: string): number {
  const limit = state.quotas.get(tenant)?.gpuMemoryBytes ?? 0;
  return limit > 0 ? limit - state.usageOf(tenant).gpuMemoryBytes : Infinity;
}

export function gpuMemoryQuotaMessage(state: ClusterState, tenant: string, asked: number): string {
  return quotaMessage(tenant, 'gpuMemoryBytes', state.quotas.get(tenant)!, state.usageOf(tenant).gpuMemoryBytes, asked);
}

function quotaMessage(tenant: string, field: Limit, quota: TenantQuota, used: number, asked: number): string {
  const { name, format } = LIMITS.find((l) => l.field === field)!;
  return `tenant "${tenant}" ${name} quota is ${format(quota[field])}: ${format(used)} in use, ${format(asked)} more asked`;
}

/**
 * Whether the tenant uses more than its quota guarantees, so its allocations may be preempted
 * by other tenants. Only limits that are set guarantee anything: a tenant with none set (or no
 * quota at all) is always above its guarantee.
 */
export function aboveQuota(state: ClusterState, tenant: string): boolean {
  const quota = state.quotas.get(tenant);
  if (quota === undefined) return true;
  const usage = state.usageOf(tenant);
  let anySet = false;
  for (const { field } of LIMITS) {
    if (quota[field] <= 0) continue;
    anySet = true;
    if (usage[field] > quota[field]) return true;
  }
  return !anySet;
}

/** 85899345920 → "80Gi" (the CLI's units; shared/units.ts is not imported: it pulls in gRPC). */
function formatBytes(bytes: number): string {
  const units = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1).replace(/\.0$/, '')}${units[unit]}`;
}

/** 2500 → "2.5", 500 → "500m". */
function formatCpu(millis: number): string {
  return millis % 1000 === 0 || millis > 1000 ? String(Number((millis / 1000).toFixed(3))) : `${millis}m`;
}
