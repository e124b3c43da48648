// Tenants and their quotas in the store. Usage is what the tenant holds now: storage is what
// its model and dataset versions take; compute is what its placed allocations hold.
import { AlreadyExistsError, ConflictError, NotFoundError } from '../shared/errors.js';
import { keys } from '../shared/keys.js';
import { QUOTA_FIELDS, type QuotaName } from '../shared/quota.js';
import type { Quota, Tenant } from '../shared/proto.js';
import type { Store } from '../shared/store/store.js';
import type { FencedWriter } from './node-registry.js';

export interface TenantRecord {
  name: string;
  description: string;
  quota: Quota;
  createdAtMs: number;
}

export const NO_QUOTA: Quota = { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, storageBytes: 0, maxDeployments: 0 };


export interface ComputeUsage {
  cpuMillis: number;
  memoryBytes: number;
  gpus: number;
  gpuMemoryBytes: number;
  deployments: number;
}

export function toProtoTenant(record: TenantRecord, storageBytes: number, compute: ComputeUsage): Tenant {
  return {
    name: record.name,
    description: record.description,
    quota: record.quota,
    usage: { cpuMillis: compute.cpuMillis, memoryBytes: compute.memoryBytes, gpus: compute.gpus, gpuMemoryBytes: compute.gpuMemoryBytes, storageBytes, deployments: compute.deployments },
    createdAtMs: record.createdAtMs,
  };
}

export async function listTenants(store: Store): Promise<TenantRecord[]> {
  const { kvs } = await store.range(keys.tenantsPrefix);
  return kvs.map((kv) => JSON.parse(kv.value) as TenantRecord);
}

export async function getTenant(store: Store, name: string): Promise<TenantRecord> {
  const record = await findTenant(store, name);
  if (!record) throw new NotFoundError(`tenant "${name}" not found`);
  return record;
}

/** The tenant's record, or undefined when there is no such tenant. */
export async function findTenant(store: Store, name: string): Promise<TenantRecord | undefined> {
  const kv = await store.get(keys.tenant(name));
  return kv ? (JSON.parse(kv.value) as TenantRecord) : undefined;
}

export async function createTenant(writer: FencedWriter, record: TenantRecord): Promise<TenantRecord> {
  const key = keys.tenant(record.name);
  const result = await writer.txn([{ key, target: 'createRevision', op: '=', value: 0 }], [{ type: 'put', key, value: JSON.stringify(record) }]);
  if (!result.succeeded) throw new AlreadyExistsError(`tenant "${record.name}" already exists`);
  return record;
}

/** Sets the non-zero limits of `quota`, clears those named in `clear`, keeps the rest. */
export async function setTenantQuota(store: Store, writer: FencedWriter, name: string, quota: Quota, clear: string[]): Promise<TenantRecord> {
  const key = keys.tenant(name);
  for (let attempt = 0; attempt < 5; attempt++) {
    const kv = await store.get(key);
    if (!kv) throw new NotFoundError(`tenant "${name}" not found`);
    const current = JSON.parse(kv.value) as TenantRecord;
    const next: Quota = { ...current.quota };
    for (const [field, value] of Object.entries(quota) as [keyof Quota, number][]) if (value > 0) next[field] = value;
    for (const name of clear) next[QUOTA_FIELDS[name as QuotaName]] = 0;
    const updated = { ...current, quota: next };
    const result = await writer.txn([{ key, target: 'modRevision', op: '=', value: kv.modRevision }], [{ type: 'put', key, value: JSON.stringify(updated) }]);
    if (result.succeeded) return updated;
  }
  throw new ConflictError(`tenant "${name}" kept changing while its quota was set; try again`);
}
