// EventService: the audit trail, and the workload events (live, with a replay of the newest).
// Admins see every tenant's entries, anyone else only their own tenant's.
import type * as grpc from '@grpc/grpc-js';
import type { WorkloadEvent } from '../../shared/proto.js';
import type { AuditLog } from '../audit-log.js';
import type { EventLog } from '../workloads/event-log.js';
import { Wakeup } from '../../shared/wakeup.js';
import { drainedOrCancelled, type RpcEdge } from './rpc.js';
import { listAuditEventsSchema } from './schemas.js';
import { assertTenantVisible, listScope } from './tenant-service.js';
import { watchEventsSchema } from './workload-schemas.js';

export interface EventServiceDeps {
  edge: RpcEdge;
  audit: AuditLog;
  /** The workload event log while this coordinator leads; throws NotLeaderError otherwise. */
  events(): EventLog;
}

export function eventService(deps: EventServiceDeps): grpc.UntypedServiceImplementation {
  return {
    ListAuditEvents: deps.edge.unary('EventService.ListAuditEvents', listAuditEventsSchema, async ({ tenant, limit, beforeId, pageToken }, { principal }) => {
      if (tenant) assertTenantVisible(principal, tenant);
      const scope = principal.role === 'admin' ? tenant : principal.tenant;
      return deps.audit.list({ tenant: scope, limit: limit || 100, beforeId, pageToken });
    }),
    WatchEvents: deps.edge.serverStream('EventService.WatchEvents', watchEventsSchema, async ({ tenant, object, replay, follow }, { principal }, call) => {
      const scope = listScope(principal, tenant);
      // Node events belong to no tenant: operators (admins) see them.
      const visible = (e: WorkloadEvent) =>
        (scope === undefined ? true : e.tenant === scope || (e.tenant === '' && principal.role === 'admin')) && (!object || e.object === object);
      const log = deps.events();
      const live: WorkloadEvent[] = [];
      const wakeup = new Wakeup();
      const unsubscribe = follow
        ? log.watch((e) => {
            if (!visible(e)) return;
            live.push(e);
            wakeup.wake();
          })
        : undefined;
      try {
        const past = await log.recent(replay, visible);
        let lastId = 0;
        for (const e of past) {
          if (!call.write(e)) await drainedOrCancelled(call);
          lastId = e.id;
        }
        if (!follow) return;
        call.once('cancelled', () => wakeup.wake());
        while (!call.cancelled) {
          const next = live.shift();
          if (!next) {
            await wakeup.wait();
            continue;
          }
          if (next.id <= lastId) continue;
          lastId = next.id;
          if (!call.write(next)) await drainedOrCancelled(call);
        }
      } finally {
        unsubscribe?.();
      }
    }),
  };
}
