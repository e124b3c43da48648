// The tenant as mlfleetctl shows it: the stable -o json shape (limits and usage in base
// units; a limit of 0 means none) and the table, where each resource reads "used / limit".
import type { Tenant } from '../../../shared/proto.js';
import { formatBytes, formatCpuMillis } from '../../../shared/units.js';
import { ago, keyValues, table, type Printable } from '../output.js';
import { tenantJson, type TenantJson } from '../../../shared/views/tenants.js';

export { tenantJson, type TenantJson };

/** "4 / 64", "16Gi / 512Gi", "0 / unlimited". */
function usedOf(used: number, limit: number, format: (n: number) => string): string {
  return `${format(used)} / ${limit > 0 ? format(limit) : 'unlimited'}`;
}

/** Each resource as [label, "used / limit"], in the order the flags and the table use. */
function limits(t: TenantJson): [string, string][] {
  return [
    ['CPU', usedOf(t.usage.cpuMillis, t.quota.cpuMillis, formatCpuMillis)],
    ['Memory', usedOf(t.usage.memoryBytes, t.quota.memoryBytes, formatBytes)],
    ['GPUs', usedOf(t.usage.gpus, t.quota.gpus, String)],
    ['GPU memory', usedOf(t.usage.gpuMemoryBytes, t.quota.gpuMemoryBytes, formatBytes)],
    ['Storage', usedOf(t.usage.storageBytes, t.quota.storageBytes, formatBytes)],
    ['Deployments', usedOf(t.usage.deployments, t.quota.maxDeployments, String)],
  ];
}

/** `tenants ls`: a JSON array, or one row per tenant. */
export function tenantListView(tenants: readonly Tenant[]): Printable {
  const list = tenants.map(tenantJson);
  return {
    data: list,
    table: () =>
      table(
        ['NAME', 'CPU', 'MEMORY', 'GPUS', 'GPU MEMORY', 'STORAGE', 'DEPLOYMENTS', 'DESCRIPTION'],
        list.map((t) => [t.name, ...limits(t).map(([, value]) => value), t.description]),
      ),
  };
}

/** `tenants show` and `tenants set-quota`: the tenant, or a key: value block. */
export function tenantDetailView(tenant: Tenant, now = Date.now()): Printable {
  const t = tenantJson(tenant);
  return {
    data: t,
    table: () =>
      keyValues([
        ['Name', t.name],
        ['Description', t.description || '-'],
        ['Created', t.createdAt ? `${t.createdAt} (${ago(tenant.createdAtMs, now)})` : '-'],
        ...limits(t),
      ]),
  };
}

/** `tenants create`: the tenant, or one line saying it exists now. */
export function tenantCreatedView(tenant: Tenant): Printable {
  return { data: tenantJson(tenant), table: () => `tenant ${tenant.name} created` };
}
