// The audit trail: every state-changing call (who, tenant, what, result) as a structured log
// line on whichever coordinator answered, and, on the leader, as an entry in the store that
// `mlfleetctl events --audit` lists. The store keeps the newest RETAIN entries.
import { randomBytes } from 'node:crypto';
import type { Clock } from '../shared/clock.js';
import { keys } from '../shared/keys.js';
import type { Logger } from '../shared/log.js';
import type { AuditEvent } from '../shared/proto.js';
import type { Store } from '../shared/store/store.js';
import type { FencedWriter } from './node-registry.js';

export type AuditEntry = Omit<AuditEvent, 'id' | 'timeMs'>;

const RETAIN = 10_000;
const TRIM_EVERY = 200;

export class AuditLog {
  private writes = 0;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Logs the entry; with a leader's writer also stores it (failures are logged, never thrown). */
  record(entry: AuditEntry, writer: FencedWriter | undefined): void {
    const timeMs = this.clock.now();
    this.log.info({ audit: true, ...entry }, 'audit');
    if (!writer) return;
    const key = keys.audit(timeMs, randomBytes(4).toString('hex'));
    writer
      .txn([], [{ type: 'put', key, value: JSON.stringify({ ...entry, timeMs }) }])
      .then(() => {
        if (++this.writes % TRIM_EVERY === 0) return this.trim(writer);
      })
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message, method: entry.method }, 'could not store audit entry'));
  }

  /** Newest first; `tenant` '' means every tenant. The id is the entry's store revision. */
  async list(filter: { tenant: string; limit: number; beforeId: number }): Promise<AuditEvent[]> {
    const { kvs } = await this.store.range(keys.auditPrefix);
    const events: AuditEvent[] = [];
    for (let i = kvs.length - 1; i >= 0 && events.length < filter.limit; i--) {
      const kv = kvs[i]!;
      if (filter.beforeId > 0 && kv.modRevision >= filter.beforeId) continue;
      const entry = JSON.parse(kv.value) as Omit<AuditEvent, 'id'>;
      if (filter.tenant && entry.tenant !== filter.tenant) continue;
      events.push({ id: kv.modRevision, ...entry });
    }
    return events;
  }

  private async trim(writer: FencedWriter): Promise<void> {
    const { kvs } = await this.store.range(keys.auditPrefix);
    const excess = kvs.slice(0, Math.max(0, kvs.length - RETAIN));
    for (let i = 0; i < excess.length; i += 500) {
      await writer.txn([], excess.slice(i, i + 500).map((kv) => ({ type: 'delete' as const, key: kv.key })));
    }
  }
}
