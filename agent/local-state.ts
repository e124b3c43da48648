// The agent's own SQLite database under --data-dir: its identity and the last desired
// allocation set the coordinator sent, so serving goes on (and is re-adopted) while the
// control plane is away (DESIGN principles 4 and 7).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

export interface DesiredSet {
  revision: number;
  /** Allocations as the coordinator sent them (proto JSON); empty until the workloads issue. */
  allocations: unknown[];
}

export class LocalState {
  private constructor(private readonly db: Database.Database) {}

  static open(dataDir: string): LocalState {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const db = new Database(path.join(dataDir, 'agent.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS desired (id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL, allocations TEXT NOT NULL);
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
    return row ? { revision: row.revision, allocations: JSON.parse(row.allocations) as unknown[] } : { revision: 0, allocations: [] };
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

  close(): void {
    this.db.close();
  }
}
