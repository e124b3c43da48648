// EventService: the audit trail. Admins see every tenant's entries, anyone else only their own.
import type * as grpc from '@grpc/grpc-js';
import type { AuditLog } from '../audit-log.js';
import type { RpcEdge } from './rpc.js';
import { listAuditEventsSchema } from './schemas.js';
import { assertTenantVisible } from './tenant-service.js';

export function eventService(deps: { edge: RpcEdge; audit: AuditLog }): grpc.UntypedServiceImplementation {
  return {
    ListAuditEvents: deps.edge.unary('EventService.ListAuditEvents', listAuditEventsSchema, async ({ tenant, limit, beforeId }, { principal }) => {
      if (tenant) assertTenantVisible(principal, tenant);
      const scope = principal.role === 'admin' ? tenant : principal.tenant;
      return { events: await deps.audit.list({ tenant: scope, limit: limit || 100, beforeId }) };
    }),
  };
}
