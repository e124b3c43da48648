// TenantService: admins manage every tenant; anyone else sees only their own, and another
// tenant answers NOT_FOUND exactly like one that does not exist.
import type * as grpc from '@grpc/grpc-js';
import { InvalidArgumentError, NotFoundError } from '../../shared/errors.js';
import type { Store } from '../../shared/store/store.js';
import type { Principal } from '../auth/token-registry.js';
import type { FencedWriter } from '../node-registry.js';
import { NO_QUOTA, type ComputeUsage, createTenant, getTenant, listTenants, setTenantQuota, toProtoTenant, type TenantRecord } from '../tenants.js';
import type { RpcEdge } from './rpc.js';
import { createTenantSchema, getTenantSchema, listTenantsSchema, setTenantQuotaSchema } from './schemas.js';

export interface TenantServiceDeps {
  edge: RpcEdge;
  store: Store;
  /** The leader's fenced writer; throws NotLeaderError on a follower. */
  writer(): FencedWriter;
  now(): number;
  /** Bytes the tenant's model and dataset versions take. */
  storageUsed(tenant: string): Promise<number>;
  /** Compute the tenant's workloads hold now, and its deployment count. */
  computeUsed(tenant: string): ComputeUsage;
}

/** Throws the same NOT_FOUND for another tenant's name as for a name that does not exist. */
export function assertTenantVisible(principal: Principal, tenant: string): void {
  if (principal.role !== 'admin' && principal.tenant !== tenant) throw new NotFoundError(`tenant "${tenant}" not found`);
}

/** The tenant a call acts in: the caller's, or for admins the one it names. */
export function tenantOf(principal: Principal, requested: string): string {
  if (!requested) {
    if (!principal.tenant) throw new InvalidArgumentError('this credential belongs to no tenant: name one');
    return principal.tenant;
  }
  assertTenantVisible(principal, requested);
  return requested;
}

/** Which tenant a list shows: the named one, else the caller's; admins naming none see all (undefined). */
export function listScope(principal: Principal, requested: string): string | undefined {
  if (!requested && principal.role === 'admin') return undefined;
  return tenantOf(principal, requested);
}

export function tenantService(deps: TenantServiceDeps): grpc.UntypedServiceImplementation {
  const { edge, store } = deps;
  const withUsage = async (record: TenantRecord) => toProtoTenant(record, await deps.storageUsed(record.name), deps.computeUsed(record.name));
  return {
    CreateTenant: edge.unary(
      'TenantService.CreateTenant',
      createTenantSchema,
      async ({ name, description, quota }) =>
        withUsage(await createTenant(deps.writer(), { name, description, quota: quota ?? NO_QUOTA, createdAtMs: deps.now() })),
      ({ name }) => `tenant/${name}`,
    ),
    ListTenants: edge.unary('TenantService.ListTenants', listTenantsSchema, async (_request, { principal }) => {
      const tenants = await listTenants(store);
      return { tenants: await Promise.all(tenants.filter((t) => principal.role === 'admin' || t.name === principal.tenant).map(withUsage)) };
    }),
    GetTenant: edge.unary('TenantService.GetTenant', getTenantSchema, async ({ name }, { principal }) => {
      assertTenantVisible(principal, name);
      return withUsage(await getTenant(store, name));
    }),
    SetTenantQuota: edge.unary(
      'TenantService.SetTenantQuota',
      setTenantQuotaSchema,
      async ({ name, quota, clear }) => withUsage(await setTenantQuota(store, deps.writer(), name, quota ?? NO_QUOTA, clear)),
      ({ name }) => `tenant/${name}`,
    ),
  };
}
