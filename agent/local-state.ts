// The agent's own SQLite database under --data-dir: its identity, the last desired allocation
// set the coordinator sent, and which allocations this host has started (and how those that
// ended, ended), so serving goes on, and is re-adopted rather than started twice, while the
// control plane is away or the agent restarts (DESIGN principles 4 and 7).
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Allocation, AllocationStatus } from '../shared/proto.js';

export interface DesiredSet {
  revision: number;
  /** Allocations as the coordinator sent them. */
  allocations: Allocation[];
}

/** What this host remembers of one allocation it has worked on. */
export interface RunRecord {
  allocationId: string;
  /** When its task was started (or adopted); 0: it never had one. */
  startedAtMs: number;
  /** Its terminal status once it ended (failed, completed): ended allocations never run again. */
  final: AllocationStatus | undefined;
}

export class LocalState {
  private constructor(private readonly db: Database.Database) {}

  /**
   * Opens <dataDir>/agent.db. The node credential lives here: the data dir is made 0700 and the
   * database with its WAL files 0600, also when an older agent left them looser.
   */
  static open(dataDir: string): LocalState {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    chmodSync(dataDir, 0o700);
    const file = path.join(dataDir, 'agent.db');
    const files = [file, `${file}-wal`, `${file}-shm`];
    // Created 0600 from the first byte: SQLite creates files with the process's umask.
    const umask = process.umask(0o077);
    let db: Database.Database;
    try {
      db = new Database(file);
      db.pragma('journal_mode = WAL');
      db.pragma('busy_timeout = 5000');
    } finally {
      process.umask(umask);
    }
    // SQLite gives the WAL files the database's mode when it makes them again.
    for (const f of files) if (existsSync(f)) chmodSync(f, 0o600);
    db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS desired (id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL, allocations TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS runs (allocation_id TEXT PRIMARY KEY, started_at_ms INTEGER NOT NULL DEFAULT 0, final TEXT);
    `);
    return new LocalState(db);
  }

  /** The handle itself, for components that keep their own tables here (the model cache). */
  get database(): Database.Database {
    return this.db;
  }

  getMeta(key: string): string | undefined {
    const row = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value;
  }

  setMeta(key: string, value: string): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  deleteMeta(key: string): void {
    this.db.prepare('DELETE FROM meta WHERE key = ?').run(key);
  }

  desired(): DesiredSet {
    const row = this.db.prepare('SELECT revision, allocations FROM desired WHERE id = 1').get() as
      | { revision: number; allocations: string }
      | undefined;
    return row ? { revision: row.revision, allocations: JSON.parse(row.allocations) as Allocation[] } : { revision: 0, allocations: [] };
  }

  /** Keeps the newest desired set only; an older revision (a late duplicate) is ignored. */
  saveDesired(set: DesiredSet): boolean {
    const result = this.db
      .prepare(
        `INSERT INTO desired (id, revision, allocations) VALUES (1, @revision, @allocations)
         ON CONFLICT(id) DO UPDATE SET revision = excluded.revision, allocations = excluded.allocations
         WHERE excluded.revision >= desired.revision`,
      )
      .run({ revision: set.revision, allocations: JSON.stringify(set.allocations) });
    return result.changes > 0;
  }

  /** Every allocation this host has started or seen end, by id. */
  runs(): Map<string, RunRecord> {
    const rows = this.db.prepare('SELECT allocation_id, started_at_ms, final FROM runs').all() as {
      allocation_id: string;
      started_at_ms: number;
      final: string | null;
    }[];
    return new Map(
      rows.map((row) => [
        row.allocation_id,
        { allocationId: row.allocation_id, startedAtMs: row.started_at_ms, final: row.final ? (JSON.parse(row.final) as AllocationStatus) : undefined },
      ]),
    );
  }

  /** Its task exists now: from here on the allocation is never started again on this host. */
  recordStarted(allocationId: string, atMs: number): void {
    this.db
      .prepare(
        `INSERT INTO runs (allocation_id, started_at_ms) VALUES (?, ?)
         ON CONFLICT(allocation_id) DO UPDATE SET started_at_ms = excluded.started_at_ms WHERE runs.started_at_ms = 0`,
      )
      .run(allocationId, atMs);
  }

  recordFinal(status: AllocationStatus): void {
    this.db
      .prepare('INSERT INTO runs (allocation_id, final) VALUES (?, ?) ON CONFLICT(allocation_id) DO UPDATE SET final = excluded.final')
      .run(status.id, JSON.stringify(status));
  }

  /** The allocation left the desired set and its task is gone: nothing is left to remember. */
  forgetRun(allocationId: string): void {
    this.db.prepare('DELETE FROM runs WHERE allocation_id = ?').run(allocationId);
  }

  close(): void {
    this.db.close();
  }
}
