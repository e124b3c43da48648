// The embedded Store backend: one SQLite file (better-sqlite3), shaped like kine's SQLite
// driver, so a single machine runs the coordinator without etcd (DESIGN principle 1).
//
// Layout: `kv` holds the current state, `events` the change log that watches replay from a
// revision, `leases` the leases with their expiry, `meta` the store revision and the oldest
// revision still in the log. Every write runs in `BEGIN IMMEDIATE`, so writers, in this
// process or another one with the file open, are serialized by SQLite's lock; a transaction
// that changes anything takes exactly one new revision. The log is trimmed to the last
// `retainRevisions` revisions; a watch from before that fails with CompactedError.
//
// Watches are pulled from the log: a watch keeps its own cursor and reads the next chunk when
// its consumer has taken the previous one, so a slow consumer costs no memory and a consumer
// that falls behind compaction gets CompactedError, as with etcd. Writes through any store in
// this process wake the watches at once; writes by other processes are noticed by polling
// `PRAGMA data_version`, which changes only when another connection commits.
//
// Expired leases are deleted (their keys with them, one revision per lease) by a sweeper
// that runs in every process with the file open, and lazily when a keep-alive finds one.
import path from 'node:path';
import Database from 'better-sqlite3';
import { systemClock, type Clock, type Timer } from '../clock.js';
import { InvalidArgumentError, ResourceExhaustedError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { WatchQueue } from './watch-queue.js';
import {
  CompactedError,
  LeaseNotFoundError,
  type Compare,
  type KeyValue,
  type LeaseGrant,
  type Op,
  type OpResult,
  type RangeOptions,
  type RangeResult,
  type Store,
  type TxnResult,
  type Watch,
  type WatchEvent,
  type WatchOptions,
} from './store.js';

export interface SqliteStoreOptions {
  clock?: Clock;
  log?: Logger;
  /** Revisions of history kept for watches to resume from. Default 10,000. */
  retainRevisions?: number;
  /** How often to look for commits by other processes while a watch is open. Default 100 ms. */
  pollIntervalMs?: number;
  /** How often to delete expired leases. Default 500 ms (etcd checks as often). */
  sweepIntervalMs?: number;
  /** How long a write waits for another process's lock before failing. Default 5 s. */
  busyTimeoutMs?: number;
}

interface CompiledOptions {
  clock: Clock;
  log: Logger;
  retainRevisions: number;
  pollIntervalMs: number;
  sweepIntervalMs: number;
  busyTimeoutMs: number;
}

function compileOptions(options: SqliteStoreOptions): CompiledOptions {
  const compiled = {
    clock: options.clock ?? systemClock,
    log: (options.log ?? silentLogger()).child({ component: 'sqlite-store' }),
    retainRevisions: options.retainRevisions ?? 10_000,
    pollIntervalMs: options.pollIntervalMs ?? 100,
    sweepIntervalMs: options.sweepIntervalMs ?? 500,
    busyTimeoutMs: options.busyTimeoutMs ?? 5_000,
  };
  for (const name of ['retainRevisions', 'pollIntervalMs', 'sweepIntervalMs', 'busyTimeoutMs'] as const) {
    if (!Number.isInteger(compiled[name]) || compiled[name] < 1) {
      throw new InvalidArgumentError(`sqlite store option ${name} must be a positive integer; got ${compiled[name]}`);
    }
  }
  return compiled;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
  INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 1), ('compact_revision', 1);
  CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease TEXT NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS kv_by_lease ON kv (lease) WHERE lease <> '';
  CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    revision INTEGER NOT NULL,
    type TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    create_revision INTEGER NOT NULL,
    version INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS events_by_revision ON events (revision);
  -- AUTOINCREMENT: a lease id is never reused, so a stale id cannot renew someone else's lease.
  CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ttl_ms INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases (expires_at);
`;

/** A watch reads at most this many revisions of the log per batch. */
const CHUNK_REVISIONS = 1_000;
/** Compaction runs once this many revisions beyond the retention have piled up. */
const COMPACT_SLACK_FRACTION = 0.1;

interface KvRow {
  key: string;
  value: string;
  create_revision: number;
  mod_revision: number;
  version: number;
  lease: string;
}

interface EventRow {
  revision: number;
  type: 'put' | 'delete';
  key: string;
  value: string;
  create_revision: number;
  version: number;
}

interface LeaseRow {
  id: number;
  ttl_ms: number;
  expires_at: number;
}

function toKeyValue(row: KvRow): KeyValue {
  return {
    key: row.key,
    value: row.value,
    createRevision: row.create_revision,
    modRevision: row.mod_revision,
    version: row.version,
    lease: row.lease,
  };
}

function toWatchEvent(row: EventRow): WatchEvent {
  return {
    type: row.type,
    key: row.key,
    value: row.value,
    revision: row.revision,
    createRevision: row.create_revision,
    version: row.version,
  };
}

/**
 * The least string above every string that starts with `prefix`, in SQLite's BINARY order
 * (UTF-8 bytes, which is code point order); undefined when there is none. Lets a prefix
 * query use the primary key index as a range.
 */
export function prefixEnd(prefix: string): string | undefined {
  const points = Array.from(prefix, (ch) => ch.codePointAt(0)!);
  while (points.length > 0) {
    const last = points.pop()!;
    if (last < 0x10ffff) {
      const next = last + 1 === 0xd800 ? 0xe000 : last + 1; // surrogates are not characters
      return String.fromCodePoint(...points, next);
    }
  }
  return undefined;
}

/** Keys in SQLite's BINARY order (UTF-8 bytes), which JavaScript's < (UTF-16 units) is not. */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** A range's [lo, hi) key bounds: the prefix narrowed by the options; hi undefined: no end. */
function rangeBounds(prefix: string, options: RangeOptions): { lo: string; hi: string | undefined } {
  const lo = options.start !== undefined && byteOrder(options.start, prefix) > 0 ? options.start : prefix;
  const end = prefixEnd(prefix);
  let hi = end;
  if (options.end !== undefined && (hi === undefined || byteOrder(options.end, hi) < 0)) hi = options.end;
  return { lo, hi };
}

function compareHolds(kv: KeyValue | undefined, compare: Compare): boolean {
  let order: number;
  if (compare.target === 'value') {
    if (!kv) return false; // as etcd: a value compare on a missing key never holds
    order = Buffer.compare(Buffer.from(kv.value), Buffer.from(String(compare.value)));
  } else {
    order = Math.sign((kv ? kv[compare.target] : 0) - Number(compare.value));
  }
  switch (compare.op) {
    case '=':
      return order === 0;
    case '!=':
      return order !== 0;
    case '<':
      return order < 0;
    case '>':
      return order > 0;
  }
}

function parseLeaseId(id: string): number | undefined {
  return /^[1-9][0-9]{0,15}$/.test(id) ? Number(id) : undefined;
}

type Statements = ReturnType<typeof prepareStatements>;

function prepareStatements(db: Database.Database) {
  return {
    metaGet: db.prepare<[string], { value: number }>('SELECT value FROM meta WHERE name = ?'),
    metaSet: db.prepare<[number, string]>('UPDATE meta SET value = ? WHERE name = ?'),
    kvGet: db.prepare<[string], KvRow>('SELECT * FROM kv WHERE key = ?'),
    kvRange: db.prepare<[string, string], KvRow>('SELECT * FROM kv WHERE key >= ? AND key < ? ORDER BY key'),
    kvRangeOpen: db.prepare<[string], KvRow>('SELECT * FROM kv WHERE key >= ? ORDER BY key'),
    // Bounded ranges (LIMIT -1: none), for paging through a large prefix.
    kvPage: db.prepare<[string, string, number], KvRow>('SELECT * FROM kv WHERE key >= ? AND key < ? ORDER BY key LIMIT ?'),
    kvPageDesc: db.prepare<[string, string, number], KvRow>('SELECT * FROM kv WHERE key >= ? AND key < ? ORDER BY key DESC LIMIT ?'),
    kvPageOpen: db.prepare<[string, number], KvRow>('SELECT * FROM kv WHERE key >= ? ORDER BY key LIMIT ?'),
    kvPageOpenDesc: db.prepare<[string, number], KvRow>('SELECT * FROM kv WHERE key >= ? ORDER BY key DESC LIMIT ?'),
    kvCount: db.prepare<[string, string], { n: number }>('SELECT COUNT(*) AS n FROM kv WHERE key >= ? AND key < ?'),
    kvCountOpen: db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM kv WHERE key >= ?'),
    kvOfLease: db.prepare<[string], { key: string }>('SELECT key FROM kv WHERE lease = ? ORDER BY key'),
    kvUpsert: db.prepare<[string, string, number, number, number, string]>(
      'INSERT OR REPLACE INTO kv (key, value, create_revision, mod_revision, version, lease) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    kvDelete: db.prepare<[string]>('DELETE FROM kv WHERE key = ?'),
    eventInsert: db.prepare<[number, string, string, string, number, number]>(
      'INSERT INTO events (revision, type, key, value, create_revision, version) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    eventsRange: db.prepare<[number, number, string, string], EventRow>(
      'SELECT revision, type, key, value, create_revision, version FROM events' +
        ' WHERE revision > ? AND revision <= ? AND key >= ? AND key < ? ORDER BY revision, id',
    ),
    eventsRangeOpen: db.prepare<[number, number, string], EventRow>(
      'SELECT revision, type, key, value, create_revision, version FROM events' +
        ' WHERE revision > ? AND revision <= ? AND key >= ? ORDER BY revision, id',
    ),
    eventsCompact: db.prepare<[number]>('DELETE FROM events WHERE revision < ?'),
    leaseGet: db.prepare<[number], LeaseRow>('SELECT * FROM leases WHERE id = ?'),
    leaseInsert: db.prepare<[number, number]>('INSERT INTO leases (ttl_ms, expires_at) VALUES (?, ?)'),
    leaseRenew: db.prepare<[number, number]>('UPDATE leases SET expires_at = ? WHERE id = ?'),
    leaseDelete: db.prepare<[number]>('DELETE FROM leases WHERE id = ?'),
    leasesExpired: db.prepare<[number], { id: number }>(
      'SELECT id FROM leases WHERE expires_at <= ? ORDER BY expires_at LIMIT 100',
    ),
  };
}

/**
 * The changes of one write transaction. Every change it makes carries `revision`, the one
 * new revision the transaction takes if it changes anything at all.
 */
class WriteTxn {
  changed = false;

  constructor(
    private readonly stmts: Statements,
    readonly revision: number,
    readonly now: number,
  ) {}

  get(key: string): KeyValue | undefined {
    const row = this.stmts.kvGet.get(key);
    return row && toKeyValue(row);
  }

  range(prefix: string): KeyValue[] {
    const end = prefixEnd(prefix);
    const rows = end === undefined ? this.stmts.kvRangeOpen.all(prefix) : this.stmts.kvRange.all(prefix, end);
    return rows.map(toKeyValue);
  }

  apply(op: Op): OpResult {
    switch (op.type) {
      case 'put':
        this.put(op.key, op.value, op.lease ?? '');
        return { type: 'put' };
      case 'delete':
        return { type: 'delete', deleted: this.deleteKey(op.key) };
      case 'deletePrefix': {
        const keys = this.range(op.prefix).map((kv) => kv.key);
        keys.forEach((key) => this.deleteKey(key));
        return { type: 'deletePrefix', deleted: keys.length };
      }
      case 'get':
        return { type: 'get', kv: this.get(op.key) };
      case 'range':
        return { type: 'range', kvs: this.range(op.prefix) };
    }
  }

  put(key: string, value: string, lease: string): void {
    if (lease !== '') {
      // An expired lease not yet swept is as gone as a revoked one.
      const id = parseLeaseId(lease);
      const row = id === undefined ? undefined : this.stmts.leaseGet.get(id);
      if (!row || row.expires_at <= this.now) throw new LeaseNotFoundError(lease);
    }
    const previous = this.stmts.kvGet.get(key);
    const createRevision = previous ? previous.create_revision : this.revision;
    const version = previous ? previous.version + 1 : 1;
    this.stmts.kvUpsert.run(key, value, createRevision, this.revision, version, lease);
    this.stmts.eventInsert.run(this.revision, 'put', key, value, createRevision, version);
    this.changed = true;
  }

  deleteKey(key: string): number {
    if (this.stmts.kvDelete.run(key).changes === 0) return 0;
    this.stmts.eventInsert.run(this.revision, 'delete', key, '', 0, 0);
    this.changed = true;
    return 1;
  }

  /** Deletes a lease and every key attached to it. */
  revokeLease(id: number): void {
    for (const { key } of this.stmts.kvOfLease.all(String(id))) this.deleteKey(key);
    this.stmts.leaseDelete.run(id);
  }
}

/** One open watch: its key range and how far into the log it has read. */
interface Watcher {
  prefix: string;
  end: string | undefined;
  /** The last revision read from the log for this watch. */
  cursor: number;
  queue: WatchQueue;
}

/** Stores open in this process, by file, so a write wakes the watches of all of them at once. */
const openStores = new Map<string, Set<SqliteStore>>();

export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;

  private readonly stmts: Statements;
  private readonly watchers = new Set<Watcher>();
  /** Leases renewed while the disk took no write: their expiry, which this process's sweeper honours. */
  private readonly renewedInMemory = new Map<number, number>();
  private readonly sweeper: Timer;
  private poller: Timer | undefined;
  private dataVersion: number;
  private wakeScheduled = false;
  private closed = false;

  /** Opens (creating when missing) the store in the file at `file`. */
  static async create(file: string, options: SqliteStoreOptions = {}): Promise<SqliteStore> {
    const compiled = compileOptions(options);
    const db = new Database(file, { timeout: compiled.busyTimeoutMs });
    try {
      db.pragma('journal_mode = WAL');
      // FULL: a commit survives power loss. A revision handed out and then lost would let a
      // later write reuse it, and fencing compares revisions.
      db.pragma('synchronous = FULL');
      db.transaction(() => db.exec(SCHEMA)).immediate();
    } catch (err) {
      db.close();
      throw err;
    }
    return new SqliteStore(db, file === ':memory:' ? file : path.resolve(file), compiled);
  }

  private constructor(
    private readonly db: Database.Database,
    private readonly file: string,
    private readonly options: CompiledOptions,
  ) {
    this.stmts = prepareStatements(db);
    this.dataVersion = this.readDataVersion();
    this.sweeper = options.clock.setInterval(() => this.sweep(), options.sweepIntervalMs);
    let peers = openStores.get(file);
    if (!peers) openStores.set(file, (peers = new Set()));
    peers.add(this);
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.assertOpen();
    const row = this.stmts.kvGet.get(key);
    return row && toKeyValue(row);
  }

  async range(prefix: string, options: RangeOptions = {}): Promise<RangeResult> {
    this.assertOpen();
    // A read transaction, so the rows, the count and the revision are one snapshot.
    return this.db.transaction(() => {
      const revision = this.meta('revision');
      const { lo, hi } = rangeBounds(prefix, options);
      if (hi !== undefined && byteOrder(lo, hi) >= 0) return { kvs: [], revision, count: 0 };
      const limit = options.limit ? options.limit : -1;
      const s = this.stmts;
      const rows =
        hi === undefined
          ? (options.descending ? s.kvPageOpenDesc : s.kvPageOpen).all(lo, limit)
          : (options.descending ? s.kvPageDesc : s.kvPage).all(lo, hi, limit);
      const kvs = rows.map(toKeyValue);
        const count = limit < 0 ? kvs.length : (hi === undefined ? s.kvCountOpen.get(lo) : s.kvCount.get(lo, hi))!.n;
      return { kvs, revision, count };
    })();
  }

  async revision(): Promise<number> {
    this.assertOpen();
    return this.meta('revision');
  }

  async txn(compares: Compare[], success: Op[], failure: Op[] = []): Promise<TxnResult> {
    const { value, revision } = this.write((w) => {
      const succeeded = compares.every((compare) => compareHolds(w.get(compare.key), compare));
      const results = (succeeded ? success : failure).map((op) => w.apply(op));
      return { succeeded, results };
    });
    return { ...value, revision };
  }

  async put(key: string, value: string, options: { lease?: string } = {}): Promise<number> {
    return this.write((w) => w.put(key, value, options.lease ?? '')).revision;
  }

  async delete(key: string): Promise<number> {
    return this.write((w) => w.deleteKey(key)).revision;
  }

  watch(prefix: string, options: WatchOptions = {}): Watch {
    this.assertOpen();
    const from = options.fromRevision;
    const cursor = from === undefined ? this.meta('revision') : Math.max(0, from - 1);
    // The queue may release at once (signal already aborted), so `watcher` must exist first.
    const watcher = { prefix, end: prefixEnd(prefix), cursor } as Watcher;
    watcher.queue = new WatchQueue(
      { release: () => this.unwatch(watcher), drained: () => this.fill(watcher) },
      options.signal,
    );
    if (watcher.queue.ended) return watcher.queue;
    this.watchers.add(watcher);
    this.poller ??= this.options.clock.setInterval(() => this.poll(), this.options.pollIntervalMs);
    this.fill(watcher);
    return watcher.queue;
  }

  async leaseGrant(ttlMs: number): Promise<LeaseGrant> {
    if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
      throw new InvalidArgumentError(`a lease TTL must be a positive number of milliseconds; got ${ttlMs}`);
    }
    this.assertOpen();
    const granted = Math.ceil(ttlMs);
    const id = this.diskFullAs(() => this.stmts.leaseInsert.run(granted, this.options.clock.now() + granted).lastInsertRowid);
    return { id: String(id), ttlMs: granted };
  }

  async leaseKeepAlive(id: string): Promise<void> {
    const leaseId = parseLeaseId(id);
    let alive: boolean;
    try {
      alive = this.write((w) => {
      const lease = leaseId === undefined ? undefined : this.stmts.leaseGet.get(leaseId);
      if (!lease) return false;
      if (lease.expires_at <= w.now) {
        // Found expired before the sweeper got to it: delete its keys now, not later.
        w.revokeLease(lease.id);
        return false;
      }
      this.stmts.leaseRenew.run(w.now + lease.ttl_ms, lease.id);
      return true;
      }).value;
      if (leaseId !== undefined) this.renewedInMemory.delete(leaseId);
    } catch (err) {
      // A full disk takes no renewal; it takes no other write either, so no other holder can
      // take what this lease holds (a lone coordinator keeps its leadership). The lease is renewed in this process's memory, which this process's
      // sweeper honours, until the disk takes the renewal again.
      const lease = leaseId === undefined || !(err instanceof ResourceExhaustedError) ? undefined : this.stmts.leaseGet.get(leaseId);
      if (!lease) throw err;
      this.renewedInMemory.set(lease.id, this.options.clock.now() + lease.ttl_ms);
      this.options.log.warn({ lease: id, err: (err as Error).message }, 'lease renewed in memory only: the disk is full');
      return;
    }
    if (!alive) throw new LeaseNotFoundError(id);
  }

  async leaseRevoke(id: string): Promise<void> {
    const leaseId = parseLeaseId(id);
    if (leaseId !== undefined) this.write((w) => w.revokeLease(leaseId));
  }

  /**
   * Discards the history before `revision`: watches from an earlier revision then fail with
   * CompactedError. The store also compacts by itself, keeping `retainRevisions`.
   */
  async compact(revision: number): Promise<void> {
    this.assertOpen();
    this.db.transaction(() => this.compactTo(Math.min(revision, this.meta('revision')))).immediate();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sweeper.cancel();
    this.poller?.cancel();
    this.poller = undefined;
    for (const watcher of [...this.watchers]) watcher.queue.close();
    const peers = openStores.get(this.file);
    peers?.delete(this);
    if (peers?.size === 0) openStores.delete(this.file);
    this.db.close();
  }

  /**
   * Runs `body` as one write transaction (BEGIN IMMEDIATE, so it holds the write lock from
   * the start and never fails half-way on an upgrade). It takes a new revision only if it
   * changed something.
   */
  private write<T>(body: (w: WriteTxn) => T): { value: T; revision: number } {
    this.assertOpen();
    let changed = false;
    const result = this.diskFullAs(() => this.db
      .transaction(() => {
        const current = this.meta('revision');
        const w = new WriteTxn(this.stmts, current + 1, this.options.clock.now());
        const value = body(w);
        if (!w.changed) return { value, revision: current };
        changed = true;
        this.stmts.metaSet.run(w.revision, 'revision');
        const compactRevision = this.meta('compact_revision');
        const retain = this.options.retainRevisions;
        if (w.revision - compactRevision >= retain + Math.ceil(retain * COMPACT_SLACK_FRACTION)) {
          this.compactTo(w.revision - retain + 1);
        }
        return { value, revision: w.revision };
      })
      .immediate());
    if (changed) this.announce();
    return result;
  }

  /** Runs a write; SQLite's "database or disk is full" becomes RESOURCE_EXHAUSTED naming the file (nothing was written). */
  private diskFullAs<T>(run: () => T): T {
    try {
      return run();
    } catch (err) {
      if ((err as { code?: string }).code !== 'SQLITE_FULL') throw err;
      throw new ResourceExhaustedError(`the disk holding the store ${this.file} is full; nothing was written: free space there`);
    }
  }

  private compactTo(revision: number): void {
    if (revision <= this.meta('compact_revision')) return;
    this.stmts.eventsCompact.run(revision);
    this.stmts.metaSet.run(revision, 'compact_revision');
  }

  private meta(name: 'revision' | 'compact_revision'): number {
    return this.stmts.metaGet.get(name)!.value;
  }

  /** Wakes the watches of every store open on this file in this process. */
  private announce(): void {
    for (const store of openStores.get(this.file) ?? []) store.scheduleWake();
  }

  /** Wakes this store's watches once after the current burst of writes. */
  private scheduleWake(): void {
    if (this.wakeScheduled || this.closed) return;
    this.wakeScheduled = true;
    queueMicrotask(() => {
      this.wakeScheduled = false;
      if (this.closed) return;
      for (const watcher of this.watchers) this.fill(watcher);
    });
  }

  /** Notices commits by other processes. */
  private poll(): void {
    if (this.closed) return;
    const version = this.readDataVersion();
    if (version === this.dataVersion) return;
    this.dataVersion = version;
    for (const watcher of this.watchers) this.fill(watcher);
  }

  private readDataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  /**
   * Reads the next batch of a watch into its queue, unless the consumer has not taken the
   * last one yet (it will call back when it has).
   */
  private fill(watcher: Watcher): void {
    if (this.closed || watcher.queue.ended || watcher.queue.pending > 0) return;
    try {
      const batch = this.db.transaction(() => this.readLog(watcher))();
      watcher.queue.push(batch);
    } catch (err) {
      watcher.queue.fail(err as Error);
    }
  }

  /** The events after the watch's cursor, up to CHUNK_REVISIONS revisions of the log. */
  private readLog(watcher: Watcher): WatchEvent[] {
    const head = this.meta('revision');
    const oldest = this.meta('compact_revision');
    if (watcher.cursor + 1 < oldest) throw new CompactedError(watcher.cursor + 1, oldest);
    while (watcher.cursor < head) {
      const upTo = Math.min(head, watcher.cursor + CHUNK_REVISIONS);
      const rows =
        watcher.end === undefined
          ? this.stmts.eventsRangeOpen.all(watcher.cursor, upTo, watcher.prefix)
          : this.stmts.eventsRange.all(watcher.cursor, upTo, watcher.prefix, watcher.end);
      watcher.cursor = upTo;
      if (rows.length > 0) return rows.map(toWatchEvent);
    }
    return [];
  }

  private unwatch(watcher: Watcher): void {
    this.watchers.delete(watcher);
    if (this.watchers.size === 0) {
      this.poller?.cancel();
      this.poller = undefined;
    }
  }

  /** Deletes expired leases and their keys, one revision per lease. */
  private sweep(): void {
    if (this.closed) return;
    try {
      const now = this.options.clock.now();
      for (const { id } of this.stmts.leasesExpired.all(now)) {
        if ((this.renewedInMemory.get(id) ?? 0) > now) continue;
        this.renewedInMemory.delete(id);
        this.write((w) => {
          // Another process may have renewed or swept it since the read above.
          const lease = this.stmts.leaseGet.get(id);
          if (lease && lease.expires_at <= w.now) w.revokeLease(id);
        });
      }
    } catch (err) {
      // Busy (another process held the lock past busy_timeout): the next sweep retries.
      this.options.log.warn({ err }, 'lease sweep failed; retrying on the next tick');
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`the sqlite store ${this.file} is closed`);
  }
}
