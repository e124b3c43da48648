// The audit trail: every state-changing call (who, tenant, what, result) as a structured log
// line on whichever coordinator answered, and, on the leader, as an entry in the store that
// `mlfleetctl events --audit` lists.
//
// It cannot be drowned: every field of an entry is cut to a bound (an error that quotes a
// 3.5 MB input is stored as at most 1 KiB of it), and entries are kept in rings, each trimmed
// to its newest RETAIN on its own: one per tenant for its developers' and consumers' calls,
// one per tenant for its admins' calls, and one for nodes (node credentials, join tokens). A
// tenant's 10,000 refused calls thus evict only that tenant's older entries.
//
// A ring's keys sort newest first (the time and the random suffix are stored inverted), so a
// page is a bounded ascending range of each ring, merged. Entries written before rings
// existed (`/mlfleet/audit/<time>-<suffix>`, oldest first) are read as one more ring, and the
// leader moves them into their rings, cut to the bounds, in small batches.
import { randomBytes } from 'node:crypto';
import type { Clock } from '../shared/clock.js';
import { keys } from '../shared/keys.js';
import type { Logger } from '../shared/log.js';
import type { AuditEvent } from '../shared/proto.js';
import type { KeyValue, Store } from '../shared/store/store.js';
import { truncate } from '../shared/truncate.js';
import type { FencedWriter } from './node-registry.js';

export type AuditEntry = Omit<AuditEvent, 'id' | 'timeMs'>;

/** Entries kept per ring. */
const RETAIN = 10_000;
/** A ring is trimmed after this many writes to it. */
const TRIM_EVERY = 200;

/** Each stored field's bound in UTF-8 bytes (an entry is under 2 KiB). */
const FIELD_MAX_BYTES: Record<keyof AuditEntry, number> = {
  tokenId: 64,
  role: 32,
  tenant: 64,
  method: 128,
  target: 256,
  result: 64,
  message: 1024,
  peer: 128,
};

/** A page holds at most this many bytes of entries (at least one entry). */
const PAGE_MAX_BYTES = 1 << 20;
/** Entries one call may look at (those it skips included: before_id, old entries' tenants). */
const SCAN_BUDGET = 2_000;
/** Entries read from a ring at a time; old entries were unbounded, so fewer of those. */
const CHUNK = 64;
const LEGACY_CHUNK = 4;

/** Where a page starts: the newest-first sort key of the last entry of the page before. */
export const PAGE_TOKEN = /^\d{15}-[0-9a-f]{8}$/;

const MAX_TIME = 10 ** 15 - 1;
const inverted = {
  time: (digits: string) => String(MAX_TIME - Number(digits)).padStart(15, '0'),
  hex: (hex: string) => Array.from(hex, (d) => (15 - parseInt(d, 16)).toString(16)).join(''),
};

/** Keys written before rings: `/mlfleet/audit/<time, 15 digits>-<8 hex>`, oldest first. */
const LEGACY_START = `${keys.auditPrefix}0`;
const LEGACY_END = `${keys.auditPrefix}:`; // ':' follows '9'
const LEGACY_KEY = /^(\d{15})-([0-9a-f]{8})$/;

/** A ring's key for an entry: its sort key is the newest-first form of (time, suffix). */
function sortKey(timeMs: number, suffix: string): string {
  return `${inverted.time(String(timeMs))}-${suffix}`;
}

/** An old key's newest-first sort key, and back (the inversion is its own inverse). */
function legacyToSortKey(rest: string): string | undefined {
  const match = LEGACY_KEY.exec(rest);
  return match ? `${inverted.time(match[1]!)}-${inverted.hex(match[2]!)}` : undefined;
}
function sortKeyToLegacy(sort: string): string {
  const [time, hex] = sort.split('-') as [string, string];
  return `${keys.auditPrefix}${inverted.time(time)}-${inverted.hex(hex)}`;
}

/** Every field cut to its bound. */
export function boundedEntry(entry: AuditEntry): AuditEntry {
  const bounded = { ...entry };
  for (const field of Object.keys(FIELD_MAX_BYTES) as (keyof AuditEntry)[]) {
    bounded[field] = truncate(String(entry[field] ?? ''), FIELD_MAX_BYTES[field]);
  }
  return bounded;
}

/** The ring an entry belongs to. */
function ringOf(entry: Pick<AuditEntry, 'role' | 'tenant'>): string {
  if (entry.role === 'admin') return keys.auditRing('admin', entry.tenant);
  if (entry.role === 'developer' || entry.role === 'consumer') return keys.auditRing('tenant', entry.tenant);
  return keys.auditRing('node', '');
}

export interface AuditPage {
  events: AuditEvent[];
  /** '' when nothing older is left. */
  nextPageToken: string;
}

/** One ring being read newest first: its entries read so far and where the next read starts. */
interface RingReader {
  /** Reads the next entries older than `after` (a sort key; '' for the newest). */
  read(after: string, limit: number): Promise<{ entries: { sort: string; kv: KeyValue }[]; done: boolean }>;
  buffer: { sort: string; kv: KeyValue }[];
  done: boolean;
  chunk: number;
  /** Old entries are filtered by tenant when read; a ring holds only its own. */
  tenantFilter: string;
}

export class AuditLog {
  private readonly writesPerRing = new Map<string, number>();
  private readonly trimming = new Set<string>();
  private migrating: FencedWriter | undefined;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Logs the entry; with a leader's writer also stores it (failures are logged, never thrown). */
  record(unbounded: AuditEntry, writer: FencedWriter | undefined): void {
    const timeMs = this.clock.now();
    const entry = boundedEntry(unbounded);
    this.log.info({ audit: true, ...entry }, 'audit');
    if (!writer) return;
    if (this.migrating !== writer) {
      this.migrating = writer;
      void this.migrateLegacy(writer);
    }
    const ring = ringOf(entry);
    const key = ring + sortKey(timeMs, randomBytes(4).toString('hex'));
    writer
      .txn([], [{ type: 'put', key, value: JSON.stringify({ ...entry, timeMs }) }])
      .then(() => {
        const writes = (this.writesPerRing.get(ring) ?? 0) + 1;
        this.writesPerRing.set(ring, writes % TRIM_EVERY);
        if (writes === TRIM_EVERY) return this.trim(ring, writer);
      })
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message, method: entry.method }, 'could not store audit entry'));
  }

  /**
   * One page, newest first; `tenant` '' means every tenant. The id is the entry's store
   * revision. Reads at most about `limit` entries per ring and SCAN_BUDGET in all, never a
   * whole ring.
   */
  async list(filter: { tenant: string; limit: number; beforeId: number; pageToken: string }): Promise<AuditPage> {
    const readers = [...(await this.ringsFor(filter.tenant)).map((ring) => this.ringReader(ring)), this.legacyReader(filter.tenant)];
    const events: AuditEvent[] = [];
    let bytes = 0;
    let scanned = 0;
    let last = filter.pageToken;
    while (events.length < filter.limit && bytes < PAGE_MAX_BYTES && scanned < SCAN_BUDGET) {
      for (const reader of readers) {
        if (reader.buffer.length > 0 || reader.done) continue;
        const { entries, done } = await reader.read(last, Math.min(reader.chunk, filter.limit - events.length + 1));
        reader.buffer = entries;
        reader.done = done;
      }
      let newest: RingReader | undefined;
      for (const reader of readers) {
        const head = reader.buffer[0];
        if (head && (!newest || head.sort < newest.buffer[0]!.sort)) newest = reader;
      }
      if (!newest) break;
      const { sort, kv } = newest.buffer.shift()!;
      scanned++;
      // An old entry being moved into its ring can be met in both, once each.
      if (sort <= last) continue;
      last = sort;
      if (filter.beforeId > 0 && kv.modRevision >= filter.beforeId) continue;
      const event = this.parse(kv);
      if (!event || (newest.tenantFilter && event.tenant !== newest.tenantFilter)) continue;
      events.push(event);
      bytes += Buffer.byteLength(kv.value);
    }
    const more = readers.some((r) => r.buffer.length > 0 || !r.done);
    return { events, nextPageToken: more ? last : '' };
  }

  /** The rings a reader of `tenant` ('' for all) looks in; all of them found by skipping. */
  private async ringsFor(tenant: string): Promise<string[]> {
    if (tenant) return [keys.auditRing('admin', tenant), keys.auditRing('tenant', tenant)];
    const rings: string[] = [];
    // One key per ring: jump past each ring found ('0' follows '/'); old keys sort first.
    let start = `${keys.auditPrefix}a`;
    for (;;) {
      const { kvs } = await this.store.range(keys.auditPrefix, { start, limit: 1 });
      const match = kvs[0] && /^([a-z]+\/[^/]+\/)/.exec(kvs[0].key.slice(keys.auditPrefix.length));
      if (!match) return rings;
      const ring = keys.auditPrefix + match[1]!;
      rings.push(ring);
      start = `${ring.slice(0, -1)}0`;
    }
  }

  private ringReader(ring: string): RingReader {
    return {
      read: async (after, limit) => {
        const { kvs } = await this.store.range(ring, { start: after ? `${ring}${after}\0` : ring, limit });
        return { entries: kvs.map((kv) => ({ sort: kv.key.slice(ring.length), kv })), done: kvs.length < limit };
      },
      buffer: [],
      done: false,
      chunk: CHUNK,
      tenantFilter: '',
    };
  }

  private legacyReader(tenant: string): RingReader {
    return {
      read: async (after, limit) => {
        const end = after ? sortKeyToLegacy(after) : LEGACY_END;
        const { kvs } = await this.store.range(keys.auditPrefix, { start: LEGACY_START, end, limit, descending: true });
        const entries = kvs.flatMap((kv) => {
          const sort = legacyToSortKey(kv.key.slice(keys.auditPrefix.length));
          return sort ? [{ sort, kv }] : [];
        });
        return { entries, done: kvs.length < limit };
      },
      buffer: [],
      done: false,
      chunk: LEGACY_CHUNK,
      tenantFilter: tenant,
    };
  }

  private parse(kv: KeyValue): AuditEvent | undefined {
    try {
      const { timeMs, ...entry } = JSON.parse(kv.value) as AuditEntry & { timeMs: number };
      // Old entries were stored whole: cut them as they are read.
      return { id: kv.modRevision, timeMs, ...boundedEntry(entry) };
    } catch {
      this.log.warn({ key: kv.key }, 'an audit entry is not JSON; skipping it');
      return undefined;
    }
  }

  /**
   * Deletes a ring's oldest entries beyond RETAIN, a batch at a time; one trim per ring at a
   * time (two would each delete the excess both counted).
   */
  private async trim(ring: string, writer: FencedWriter): Promise<void> {
    if (this.trimming.has(ring)) return;
    this.trimming.add(ring);
    try {
      await this.trimNow(ring, writer);
    } finally {
      this.trimming.delete(ring);
    }
  }

  private async trimNow(ring: string, writer: FencedWriter): Promise<void> {
    let excess = (await this.store.range(ring, { limit: 1 })).count - RETAIN;
    while (excess > 0) {
      const { kvs } = await this.store.range(ring, { descending: true, limit: Math.min(excess, 500) });
      if (kvs.length === 0) return;
      await writer.txn([], kvs.map((kv) => ({ type: 'delete' as const, key: kv.key })));
      excess -= kvs.length;
    }
  }

  /** Moves entries written before rings into their rings, cut to the bounds. */
  private async migrateLegacy(writer: FencedWriter): Promise<void> {
    let moved = 0;
    try {
      for (;;) {
        const { kvs } = await this.store.range(keys.auditPrefix, { start: LEGACY_START, end: LEGACY_END, limit: LEGACY_CHUNK });
        if (kvs.length === 0) break;
        const ops = kvs.flatMap((kv) => {
          const sort = legacyToSortKey(kv.key.slice(keys.auditPrefix.length));
          const event = sort ? this.parse(kv) : undefined;
          const drop = { type: 'delete' as const, key: kv.key };
          if (!sort || !event) return [drop];
          const { id: _id, timeMs, ...entry } = event;
          return [drop, { type: 'put' as const, key: ringOf(entry) + sort, value: JSON.stringify({ ...entry, timeMs }) }];
        });
        await writer.txn([], ops);
        moved += kvs.length;
      }
      if (moved > 0) this.log.info({ moved }, 'moved audit entries into per-tenant rings');
    } catch (err) {
      // A later leader (or this one's next term) takes it up again; reads see old keys meanwhile.
      this.log.warn({ err: (err as Error).message, moved }, 'could not move old audit entries into rings');
      if (this.migrating === writer) this.migrating = undefined;
    }
  }
}
