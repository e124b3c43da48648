// The model cache's index, kept in the agent's SQLite (<data-dir>/agent.db) so it outlives the
// process: which blobs the cache holds, how big, when each was last used (the eviction
// order), for a directory the manifest that tells a damaged tree from a whole one, and how far
// each unfinished download got, and which prefetches were asked for and not yet finished (so a
// restarted agent resumes them unasked). Reference counts are deliberately absent: a lease belongs to
// the process that took it and dies with it.
import type Database from 'better-sqlite3';

export type EntryKind = 'file' | 'directory';

/** One file of a directory entry, by its '/'-separated path relative to the entry. */
export interface ManifestFile {
  sizeBytes: number;
  /** Hex, without the "sha256:" prefix. */
  sha256: string;
}

export type Manifest = Record<string, ManifestFile>;

export interface IndexedEntry {
  /** "sha256:<hex>" */
  digest: string;
  /** The blob's bytes (for a directory, its tar's): what the budget counts. */
  sizeBytes: number;
  kind: EntryKind;
  /** Directories only. */
  manifest: Manifest | undefined;
  createdAt: number;
  lastUsedAt: number;
  /** Breaks ties between uses in the same millisecond, so the eviction order is total. */
  useSeq: number;
}

export interface PartialDownload {
  digest: string;
  /** Bytes of the blob known to be on disk (the recorded pieces'): what the budget counts. */
  syncedBytes: number;
  /**
   * The pieces written, fsync'ed and verified before they were recorded (bit i = piece i, as
   * shared/pieces.ts's Bitfield), cut at `pieceBytes`; undefined for a row written before
   * pieces (its bytes are fetched again).
   */
  pieces?: { pieceBytes: number; bitfield: Uint8Array } | undefined;
  updatedAt: number;
}

/** A prefetch the leader asked for that has not finished yet. */
export interface PrefetchIntent {
  digest: string;
  sizeBytes: number;
  directory: boolean;
  requestedAt: number;
}

interface PrefetchRow {
  digest: string;
  size_bytes: number;
  directory: number;
  requested_at: number;
}

interface EntryRow {
  digest: string;
  size_bytes: number;
  kind: EntryKind;
  manifest: string | null;
  created_at: number;
  last_used_at: number;
  use_seq: number;
}

interface PartialRow {
  digest: string;
  synced_bytes: number;
  piece_bytes: number | null;
  pieces: Buffer | null;
  updated_at: number;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS cache_entries (
    digest TEXT PRIMARY KEY,
    size_bytes INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('file', 'directory')),
    manifest TEXT,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    use_seq INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS cache_partials (
    digest TEXT PRIMARY KEY,
    synced_bytes INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    piece_bytes INTEGER,
    pieces BLOB
  );
  CREATE TABLE IF NOT EXISTS cache_prefetches (
    digest TEXT PRIMARY KEY,
    size_bytes INTEGER NOT NULL,
    directory INTEGER NOT NULL,
    requested_at INTEGER NOT NULL
  );
`;

const NEXT_SEQ = '(SELECT COALESCE(MAX(use_seq), 0) + 1 FROM cache_entries)';

export class CacheIndex {
  private readonly statements;

  constructor(private readonly db: Database.Database) {
    db.exec(SCHEMA);
    // agent.db files from before pieces: their partials table lacks the piece columns.
    const columns = new Set((db.prepare('PRAGMA table_info(cache_partials)').all() as { name: string }[]).map((column) => column.name));
    if (!columns.has('piece_bytes')) db.exec('ALTER TABLE cache_partials ADD COLUMN piece_bytes INTEGER');
    if (!columns.has('pieces')) db.exec('ALTER TABLE cache_partials ADD COLUMN pieces BLOB');
    this.statements = {
      get: db.prepare('SELECT * FROM cache_entries WHERE digest = ?'),
      all: db.prepare('SELECT * FROM cache_entries ORDER BY last_used_at, use_seq'),
      insert: db.prepare(
        `INSERT INTO cache_entries (digest, size_bytes, kind, manifest, created_at, last_used_at, use_seq)
         VALUES (@digest, @sizeBytes, @kind, @manifest, @now, @now, ${NEXT_SEQ})
         ON CONFLICT(digest) DO UPDATE SET size_bytes = excluded.size_bytes, kind = excluded.kind,
           manifest = excluded.manifest, created_at = excluded.created_at,
           last_used_at = excluded.last_used_at, use_seq = excluded.use_seq`,
      ),
      touch: db.prepare(`UPDATE cache_entries SET last_used_at = @now, use_seq = ${NEXT_SEQ} WHERE digest = @digest`),
      delete: db.prepare('DELETE FROM cache_entries WHERE digest = ?'),
      partial: db.prepare('SELECT * FROM cache_partials WHERE digest = ?'),
      partials: db.prepare('SELECT * FROM cache_partials ORDER BY updated_at'),
      savePartial: db.prepare(
        `INSERT INTO cache_partials (digest, synced_bytes, updated_at, piece_bytes, pieces)
         VALUES (@digest, @syncedBytes, @updatedAt, @pieceBytes, @pieces)
         ON CONFLICT(digest) DO UPDATE SET synced_bytes = excluded.synced_bytes, updated_at = excluded.updated_at,
           piece_bytes = excluded.piece_bytes, pieces = excluded.pieces`,
      ),
      deletePartial: db.prepare('DELETE FROM cache_partials WHERE digest = ?'),
      prefetches: db.prepare('SELECT * FROM cache_prefetches ORDER BY requested_at, digest'),
      prefetchCount: db.prepare('SELECT COUNT(*) AS n FROM cache_prefetches'),
      savePrefetch: db.prepare(
        `INSERT INTO cache_prefetches (digest, size_bytes, directory, requested_at) VALUES (@digest, @sizeBytes, @directory, @requestedAt)
         ON CONFLICT(digest) DO UPDATE SET size_bytes = excluded.size_bytes, directory = excluded.directory`,
      ),
      deletePrefetch: db.prepare('DELETE FROM cache_prefetches WHERE digest = ?'),
    };
  }

  get(digest: string): IndexedEntry | undefined {
    const row = this.statements.get.get(digest) as EntryRow | undefined;
    return row && toEntry(row);
  }

  /** Every entry, least recently used first. */
  all(): IndexedEntry[] {
    return (this.statements.all.all() as EntryRow[]).map(toEntry);
  }

  /** Records a published entry; its download is finished, so its progress row goes with it. */
  publish(entry: { digest: string; sizeBytes: number; kind: EntryKind; manifest: Manifest | undefined }, now: number): void {
    this.db.transaction(() => {
      this.statements.insert.run({
        digest: entry.digest,
        sizeBytes: entry.sizeBytes,
        kind: entry.kind,
        manifest: entry.manifest ? JSON.stringify(entry.manifest) : null,
        now,
      });
      this.statements.deletePartial.run(entry.digest);
    })();
  }

  touch(digest: string, now: number): void {
    this.statements.touch.run({ digest, now });
  }

  delete(digest: string): void {
    this.statements.delete.run(digest);
  }

  partial(digest: string): PartialDownload | undefined {
    const row = this.statements.partial.get(digest) as PartialRow | undefined;
    return row && toPartial(row);
  }

  /** Unfinished downloads, least recently advanced first. */
  partials(): PartialDownload[] {
    return (this.statements.partials.all() as PartialRow[]).map(toPartial);
  }

  savePartial(partial: PartialDownload): void {
    this.statements.savePartial.run({
      digest: partial.digest,
      syncedBytes: partial.syncedBytes,
      updatedAt: partial.updatedAt,
      pieceBytes: partial.pieces?.pieceBytes ?? null,
      pieces: partial.pieces ? Buffer.from(partial.pieces.bitfield) : null,
    });
  }

  deletePartial(digest: string): void {
    this.statements.deletePartial.run(digest);
  }

  /** Unfinished prefetches, oldest first. */
  prefetches(): PrefetchIntent[] {
    return (this.statements.prefetches.all() as PrefetchRow[]).map((row) => ({
      digest: row.digest,
      sizeBytes: row.size_bytes,
      directory: row.directory !== 0,
      requestedAt: row.requested_at,
    }));
  }

  prefetchCount(): number {
    return (this.statements.prefetchCount.get() as { n: number }).n;
  }

  savePrefetch(intent: PrefetchIntent): void {
    this.statements.savePrefetch.run({ ...intent, directory: intent.directory ? 1 : 0 });
  }

  deletePrefetch(digest: string): void {
    this.statements.deletePrefetch.run(digest);
  }
}

function toEntry(row: EntryRow): IndexedEntry {
  return {
    digest: row.digest,
    sizeBytes: row.size_bytes,
    kind: row.kind,
    manifest: row.manifest === null ? undefined : (JSON.parse(row.manifest) as Manifest),
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    useSeq: row.use_seq,
  };
}

function toPartial(row: PartialRow): PartialDownload {
  const pieces = row.piece_bytes !== null && row.pieces !== null ? { pieceBytes: row.piece_bytes, bitfield: new Uint8Array(row.pieces) } : undefined;
  return { digest: row.digest, syncedBytes: row.synced_bytes, pieces, updatedAt: row.updated_at };
}
