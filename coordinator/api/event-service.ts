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

/**
 * Replays read and parse up to the whole event log (10,000 entries): this many at once, the
 * rest wait their turn, so that a flood of watches cannot hold the event loop for long
 * stretches ahead of the lease renewal and the agents' heartbeats.
 */
const REPLAYS_AT_ONCE = 4;
/** Replayed events written per turn of the event loop. */
const REPLAY_BATCH = 100;

export function eventService(deps: EventServiceDeps): grpc.UntypedServiceImplementation {
  const replays = new Turns(REPLAYS_AT_ONCE);
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
        let lastId = 0;
        if (replay > 0) {
          await replays.take();
          try {
            if (call.cancelled) return;
            const past = await log.recent(replay, visible);
            for (let i = 0; i < past.length && !call.cancelled; i++) {
              const e = past[i]!;
              if (!call.write(e)) await drainedOrCancelled(call);
              lastId = e.id;
              if ((i + 1) % REPLAY_BATCH === 0) await yieldToEventLoop();
            }
          } finally {
            replays.give();
          }
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

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** At most `size` holders at once; the others wait in order. */
class Turns {
  private held = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly size: number) {}

  async take(): Promise<void> {
    if (this.held < this.size) {
      this.held += 1;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  give(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.held -= 1;
  }
}
