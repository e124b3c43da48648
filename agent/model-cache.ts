// The agent's model cache under <data-dir>/cache: the blobs (model and dataset versions, named
// by their sha256 digest) that allocations on this host mount. It owns
//  - fetching: one download per digest however many allocations wait for it, at most
//    --max-concurrent-downloads at once; the source (agent/delivery/piece-fetcher.ts) writes
//    verified pieces into partial/<hex> at their offsets and checkpoints them (fdatasync, then
//    the bitfield recorded in SQLite), so a download that is cut off, by kill -9 included,
//    resumes with the pieces it has instead of from zero; the whole digest is checked before
//    anything is published;
//  - publishing: nothing is visible before its digest is verified; a file is then renamed to
//    blobs/<hex>, a directory's tar is unpacked into tmp/<hex> and renamed to blobs/<hex>/;
//  - integrity: an entry is checked again when an allocation takes it, and a damaged one is
//    fetched again;
//  - the byte budget (--cache-max-bytes): entries nobody holds go least recently used first;
//    an entry in use is never evicted;
//  - prefetches: each one asked for is recorded until it finishes or fails for good, and
//    resumePrefetches() (called whenever the session reaches a leader) takes up the rest, so a
//    prefetch cut by a restart or a lost leader finishes without anyone asking again.
// Leases (reference counts) live in memory, since they belong to this process; the index lives
// in the agent's SQLite (cache-index.ts) and survives restarts.
import { Slots } from './slots.js';
import { syncDirectory } from '../shared/durable-files.js';
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, existsSync, lstatSync, mkdirSync, readdirSync, rmSync, type Dirent } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { status as Status } from '@grpc/grpc-js';
import type Database from 'better-sqlite3';
import { systemClock, type Clock } from '../shared/clock.js';
import { FailedPreconditionError, InvalidArgumentError, MlfleetError, ResourceExhaustedError, UnavailableError } from '../shared/errors.js';
import { KeyedMutex } from '../shared/keyed-mutex.js';
import { silentLogger, type Logger } from '../shared/log.js';
import { Bitfield, pieceBytesFor, pieceCount } from '../shared/pieces.js';
import { openDirect } from './delivery/direct-io.js';
import { PrefixHasher } from './delivery/prefix-hasher.js';
import { unpackTar } from '../shared/tar.js';
import { CacheIndex, type IndexedEntry, type Manifest, type PartialDownload } from './cache-index.js';

/** Which pieces of a blob are on disk, cut at which piece size. */
export interface PieceProgress {
  pieceBytes: number;
  bitfield: Bitfield;
}

/** One blob for a BlobSource to bring into its partial file. */
export interface PullRequest {
  /** "sha256:<hex>" */
  digest: string;
  sizeBytes: number;
  /** partial/<hex>, open for reading and writing, `sizeBytes` long: pieces go at their offsets. */
  handle: FileHandle;
  /** The same file opened for O_DIRECT writes, where its file system takes them (agent/delivery/direct-io.ts). */
  direct?: FileHandle;
  /** The pieces recorded at the last checkpoint (verified and durable), if any. */
  resume: PieceProgress | undefined;
  /** Each time a piece is verified and written (not yet durable): peers may be served it. */
  onProgress(progress: PieceProgress): void;
  /** Pieces verified and made durable (fdatasync): recorded, so a restart resumes with them. */
  onCheckpoint(progress: PieceProgress): void;
  signal: AbortSignal;
}

/** Where the cache gets bytes: in the agent, the piece fetcher (agent/delivery/piece-fetcher.ts). */
export interface BlobSource {
  /**
   * Fetches every piece the partial file lacks, verifying each against the piece manifest;
   * resolves once all are written and durable (a last onCheckpoint with every piece). A source
   * that says `hashesWhole` resolves with the SHA-256 (hex) of the whole file, which it took
   * from the pieces (or undefined when it could not: the cache then hashes the file); any
   * other, with nothing, and the cache hashes the file as it grows.
   */
  pull(request: PullRequest): Promise<string | undefined | void>;
  readonly hashesWhole?: boolean;
}

/** What heldPieces() answers: pieces a peer may be served, and how to read them. */
export interface HeldPieces {
  sizeBytes: number;
  pieceBytes: number;
  /** A copy: the pieces verified and written at the time of the call. */
  bitfield: Bitfield;
  /** The file holding them (partial/<hex>, or blobs/<hex> once published), opened with `flags`; the caller closes it. */
  open(flags: number): Promise<FileHandle>;
}

/** What an allocation (or a prefetch command) names: a version's content. */
export interface CacheBlob {
  /** "sha256:<hex>" */
  digest: string;
  sizeBytes: number;
  /** The blob is a tar of a directory, to be unpacked. */
  directory: boolean;
}

/** An entry held for a workload: it is not evicted until released. */
export interface CacheLease {
  readonly digest: string;
  /** The file, or the unpacked directory. */
  readonly path: string;
  /** Idempotent. */
  release(): void;
}

/** One line of the cache report in the agent's session (the proto's CacheEntry). */
export interface CacheEntryReport {
  digest: string;
  sizeBytes: number;
  inUse: boolean;
}

export interface ModelCacheOptions {
  /** The cache's directory; blobs/, partial/ and tmp/ are made under it. */
  dir: string;
  /** The agent's database (LocalState.database); the index keeps its tables there. */
  db: Database.Database;
  maxBytes: number;
  source: BlobSource;
  clock?: Clock;
  log?: Logger;
  /** Blobs whose bytes are fetched at once (--max-concurrent-downloads); others wait their turn. Default 4. */
  maxConcurrentDownloads?: number;
  /**
   * Digests that tasks still running on this host use (from the saved desired set): kept out of
   * eviction from the moment the cache opens until releaseKept(), by when the reconciler has
   * leased what its adopted tasks use.
   */
  keep?: Iterable<string>;
}

/** The bytes fetched are not the content the digest names. */
export class CorruptBlobError extends MlfleetError {
  constructor(message: string) {
    super('CORRUPT_BLOB', Status.DATA_LOSS, message);
  }
}

const DIGEST = /^sha256:([0-9a-f]{64})$/;
/** Unfinished prefetches remembered at most; one more is still fetched, just not remembered. */
const MAX_PREFETCH_INTENTS = 256;
const READ_CHUNK_BYTES = 1024 * 1024;
export const DEFAULT_MAX_CONCURRENT_DOWNLOADS = 4;

/** One digest being made present (verified, or fetched and published), shared by its waiters. */
interface Flight {
  readonly blob: CacheBlob;
  readonly controller: AbortController;
  promise: Promise<void>;
  waiters: number;
  settled: boolean;
  /** While bytes are being fetched, the budget reserves the blob's whole size for it. */
  downloading: boolean;
  /** The pieces verified and written so far, while fetching. */
  progress: PieceProgress | undefined;
}

export class ModelCache {
  private readonly index: CacheIndex;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly downloads: Slots;
  /** Everything that touches a digest's files runs under its key, one thing at a time. */
  private readonly files = new KeyedMutex();
  private readonly flights = new Map<string, Flight>();
  /** Leases handed out, by hex. */
  private readonly leases = new Map<string, number>();
  /** Acquires under way, by hex: they protect the entry from eviction before it is leased. */
  private readonly pins = new Map<string, number>();
  /** Pins taken at open for `keep`, until releaseKept(). */
  private readonly kept: string[] = [];
  private readonly listeners = new Set<() => void>();
  /** Background work (flights, deletions) that close() waits for. */
  private readonly work = new Set<Promise<void>>();
  private overBudgetWarned = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  private constructor(
    readonly dir: string,
    readonly maxBytes: number,
    private readonly source: BlobSource,
    db: Database.Database,
    options: ModelCacheOptions,
  ) {
    this.index = new CacheIndex(db);
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? silentLogger();
    const slots = options.maxConcurrentDownloads ?? DEFAULT_MAX_CONCURRENT_DOWNLOADS;
    if (!Number.isSafeInteger(slots) || slots < 1) throw new InvalidArgumentError(`at most N downloads at once needs N >= 1, not ${slots}`);
    this.downloads = new Slots(slots);
  }

  /**
   * Opens the cache and brings the index and the disk into agreement. Synchronous, because the
   * agent's first hello reports the cache; it only lists and stats (no hashing: entries are
   * verified when they are next acquired).
   */
  static open(options: ModelCacheOptions): ModelCache {
    if (!Number.isSafeInteger(options.maxBytes) || options.maxBytes < 0) {
      throw new InvalidArgumentError(`the cache budget must be a whole number of bytes, not ${options.maxBytes}`);
    }
    const cache = new ModelCache(path.resolve(options.dir), options.maxBytes, options.source, options.db, options);
    for (const digest of new Set(options.keep ?? [])) {
      const hex = hexOf(digest);
      cache.kept.push(hex);
      bump(cache.pins, hex, +1);
    }
    cache.reconcile();
    cache.enforceBudget();
    return cache;
  }

  /** Ends the protection `keep` gave at open (the reconciler holds leases for what is in use now). */
  releaseKept(): void {
    for (const hex of this.kept.splice(0)) bump(this.pins, hex, -1);
    this.enforceBudget();
  }

  /**
   * The entry for `blob`, fetched first when the cache lacks it (or holds it damaged). Several
   * acquires of one digest share one download and one entry. Aborting `signal` gives up this
   * acquire; the download stops once nobody waits for it, keeping its progress for next time.
   */
  async acquire(blob: CacheBlob, signal?: AbortSignal): Promise<CacheLease> {
    this.assertOpen();
    const hex = hexOf(blob.digest);
    if (!Number.isSafeInteger(blob.sizeBytes) || blob.sizeBytes < 0) {
      throw new InvalidArgumentError(`the size of ${blob.digest} must be a whole number of bytes, not ${blob.sizeBytes}`);
    }
    signal?.throwIfAborted();
    bump(this.pins, hex, +1);
    try {
      await this.join(blob, hex, signal);
      this.assertOpen();
      const entry = this.index.get(blob.digest);
      // Cannot happen while pinned; said plainly in case it ever does.
      if (!entry) throw new UnavailableError(`${blob.digest} left the model cache while it was being acquired; try again`);
      return this.lease(entry, hex);
    } finally {
      bump(this.pins, hex, -1);
    }
  }

  /**
   * Fetches `blob` ahead of need (the coordinator's prefetch command), holding nothing. Until it
   * finishes, or fails in a way no retry can mend, it is remembered in the agent's database and
   * resumePrefetches() takes it up again.
   */
  async prefetch(blob: CacheBlob, signal?: AbortSignal): Promise<void> {
    this.assertOpen();
    hexOf(blob.digest); // a malformed digest is refused before it is remembered
    if (this.index.prefetchCount() < MAX_PREFETCH_INTENTS) {
      this.index.savePrefetch({ digest: blob.digest, sizeBytes: blob.sizeBytes, directory: blob.directory, requestedAt: this.clock.now() });
    } else {
      this.log.warn({ digest: blob.digest, limit: MAX_PREFETCH_INTENTS }, 'too many unfinished prefetches to remember another; this one is not resumed after a restart');
    }
    try {
      (await this.acquire(blob, signal)).release();
    } catch (err) {
      if (!isRetryable(err)) this.index.deletePrefetch(blob.digest);
      throw err;
    }
    this.index.deletePrefetch(blob.digest);
  }

  /**
   * Takes up every prefetch that was asked for and has not finished (cut by a restart, a lost
   * leader, a full disk), in the background; each failure is logged, and one that can be
   * retried stays for the next call. Returns once they have all settled.
   */
  async resumePrefetches(): Promise<void> {
    if (this.closed) return;
    const pending = this.index.prefetches().filter((intent) => !this.flights.has(hexOf(intent.digest)));
    if (pending.length === 0) return;
    this.log.info({ prefetches: pending.length }, 'resuming unfinished prefetches');
    await Promise.all(
      pending.map((intent) =>
        this.prefetch({ digest: intent.digest, sizeBytes: intent.sizeBytes, directory: intent.directory }).then(
          () => this.log.info({ digest: intent.digest }, 'resumed prefetch finished'),
          (err: unknown) => this.log.warn({ digest: intent.digest, err: (err as Error).message }, 'resumed prefetch failed'),
        ),
      ),
    );
  }

  /** Digests of prefetches asked for and not finished yet. */
  pendingPrefetches(): string[] {
    return this.index.prefetches().map((intent) => intent.digest);
  }

  /** What the cache holds, for the session's report: the scheduler prefers hosts that have a model. */
  entries(): CacheEntryReport[] {
    return this.index.all().map((entry) => ({
      digest: entry.digest,
      sizeBytes: entry.sizeBytes,
      inUse: (this.leases.get(hexOf(entry.digest)) ?? 0) > 0,
    }));
  }

  /** Called whenever entries() would answer differently; returns the disposer. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Stops downloads (their progress is kept for the next process) and waits for them and for
   * pending deletions. Leases stay valid: the files stay where they are. Idempotent.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    const reason = new UnavailableError('the model cache is closing');
    for (const flight of this.flights.values()) flight.controller.abort(reason);
    this.closing = (async () => {
      while (this.work.size > 0) await Promise.all([...this.work]);
      this.listeners.clear();
    })();
    return this.closing;
  }

  private assertOpen(): void {
    if (this.closed) throw new FailedPreconditionError('the model cache is closed');
  }

  // ---- acquiring -------------------------------------------------------------------------

  /** Waits until the digest is present and verified, joining the flight already under way. */
  private async join(blob: CacheBlob, hex: string, signal: AbortSignal | undefined): Promise<void> {
    const flight = this.flights.get(hex) ?? this.startFlight(blob, hex);
    flight.waiters += 1;
    try {
      await settledOrAborted(flight.promise, signal);
    } finally {
      flight.waiters -= 1;
      // Nobody wants these bytes any more; the last checkpoint keeps them for whoever asks next.
      if (flight.waiters === 0 && !flight.settled) {
        if (this.flights.get(hex) === flight) this.flights.delete(hex);
        flight.controller.abort(signal?.reason ?? new UnavailableError(`nobody waits for ${blob.digest} any more`));
      }
    }
  }

  private startFlight(blob: CacheBlob, hex: string): Flight {
    const flight: Flight = { blob, controller: new AbortController(), promise: Promise.resolve(), waiters: 0, settled: false, downloading: false, progress: undefined };
    flight.promise = this.files.run(hex, async () => {
      flight.controller.signal.throwIfAborted();
      try {
        await this.materialize(flight, hex);
      } catch (err) {
        // A download that filled the disk leaves nothing behind: its partial bytes would keep
        // the disk full for every other writer on the host until someone asked again.
        if (isDiskFull(err)) await this.discardPartial(blob.digest, hex).catch(() => undefined);
        throw this.explainDiskError(err);
      }
    });
    this.flights.set(hex, flight);
    this.track(
      flight.promise.finally(() => {
        flight.settled = true;
        if (this.flights.get(hex) === flight) this.flights.delete(hex);
      }),
    );
    return flight;
  }

  /** Runs under the digest's lock: makes a verified entry present, fetching it if need be. */
  private async materialize(flight: Flight, hex: string): Promise<void> {
    const { blob } = flight;
    const signal = flight.controller.signal;
    const existing = this.index.get(blob.digest);
    if (existing) {
      // Checking costs a full read of the entry, which is why it happens when an allocation
      // takes the entry (an allocation start, not a request) and not when it is already held:
      // it was checked when first taken, and a held entry could not be swapped under a running
      // workload anyway.
      if ((this.leases.get(hex) ?? 0) > 0) return;
      const damage = await this.inspect(existing, hex, signal);
      if (damage === undefined) return;
      this.log.warn({ digest: blob.digest, damage }, 'a cached entry is damaged; fetching it again');
      this.index.delete(blob.digest);
      this.emitChange();
      await removePath(this.blobPath(hex));
    }
    if (blob.sizeBytes > this.maxBytes) {
      this.log.warn({ digest: blob.digest, sizeBytes: blob.sizeBytes, maxBytes: this.maxBytes }, 'a blob larger than the whole cache budget is being fetched; raise --cache-max-bytes');
    }
    flight.downloading = true;
    try {
      // Room is made before fetching, not after, so the disk never holds the budget plus the
      // new blob; the price is that a download that then fails may have evicted for nothing.
      this.enforceBudget();
      await this.download(flight, hex, signal);
      await this.publish(blob, hex);
    } finally {
      flight.downloading = false;
    }
    this.enforceBudget();
  }

  private lease(entry: IndexedEntry, hex: string): CacheLease {
    const held = bump(this.leases, hex, +1);
    this.index.touch(entry.digest, this.clock.now());
    if (held === 1) this.emitChange();
    let released = false;
    return {
      digest: entry.digest,
      path: this.blobPath(hex),
      release: () => {
        if (released) return;
        released = true;
        const left = bump(this.leases, hex, -1);
        if (this.closed) return;
        // Last used is when the workload stopped using it, not when it started.
        this.index.touch(entry.digest, this.clock.now());
        if (left === 0) {
          this.emitChange();
          this.enforceBudget();
        }
      },
    };
  }

  // ---- downloading -----------------------------------------------------------------------

  /** Brings partial/<hex> to the blob's full, verified bytes, resuming with the pieces recorded. */
  private async download(flight: Flight, hex: string, signal: AbortSignal): Promise<void> {
    const { digest, sizeBytes } = flight.blob;
    const file = this.partialPath(hex);
    const exists = existsSync(file);
    // Only recorded pieces are trusted: after a power cut what was written past the last
    // fdatasync may hold anything. After a plain kill -9 it is fine, but the two cannot be told
    // apart. A record from before pieces (a byte prefix) starts over.
    const resume = exists ? recordedPieces(this.index.partial(digest), sizeBytes) : undefined;
    this.savePartial(digest, resume);
    flight.progress = resume && { pieceBytes: resume.pieceBytes, bitfield: copyOf(resume.bitfield) };

    const handle = await fs.open(file, exists ? 'r+' : 'wx+', 0o600); // read too: pieces verified out of order are read back for the whole digest
    const direct = await openDirect(file).catch(async (err: unknown) => {
      await handle.close();
      throw err;
    });
    // The whole digest comes from the source, taken with the pieces; or, from a source that
    // does not take it, is hashed here as the contiguous prefix of written pieces grows.
    const hasher = this.source.hashesWhole ? undefined : new PrefixHasher(file);
    const advance = (progress: PieceProgress) => {
      if (!hasher) return;
      let pieces = 0;
      while (pieces < progress.bitfield.size && progress.bitfield.has(pieces)) pieces += 1;
      hasher.advance(Math.min(pieces * progress.pieceBytes, sizeBytes));
    };
    let actual: string;
    try {
      await handle.truncate(sizeBytes);
      if (resume) advance(resume);
      const whole = await this.downloads.run(signal, async () => {
        this.log.info({ digest, sizeBytes, piecesHeld: resume?.bitfield.count() ?? 0 }, resume ? 'resuming a download' : 'downloading');
        return this.source.pull({
          digest,
          sizeBytes,
          handle,
          ...(direct ? { direct } : {}),
          resume,
          signal,
          onProgress: (progress) => {
            flight.progress = progress;
            advance(progress);
          },
          onCheckpoint: (progress) => {
            this.savePartial(digest, progress);
            this.log.debug({ digest, pieces: progress.bitfield.count() }, 'download checkpoint');
          },
        });
      });
      actual = `sha256:${hasher ? await hasher.finish(sizeBytes) : typeof whole === 'string' ? whole : await hashFile(file, signal)}`;
    } catch (err) {
      await hasher?.close();
      // Nothing worth resuming: leave no file behind (a digest nobody has, say).
      if (!(this.index.partial(digest)?.pieces?.bitfield.some((byte) => byte !== 0) ?? false)) {
        await handle.close().catch(() => undefined);
        await this.discardPartial(digest, hex);
      }
      throw signal.aborted ? signal.reason : err;
    } finally {
      await direct?.close().catch(() => undefined);
      await handle.close().catch(() => undefined);
    }

    // Every piece matched its hash; the whole digest is still checked before anything is
    // visible (the manifest came from the leader, the bytes from anyone). A mismatch is
    // confirmed by reading the file again before the bytes are thrown away.
    if (actual !== digest) actual = `sha256:${await hashFile(file, signal)}`;
    if (actual !== digest) {
      await this.discardPartial(digest, hex);
      throw new CorruptBlobError(`the bytes fetched for ${digest} hash to ${actual}; they were discarded and the next attempt fetches again from the start`);
    }
  }

  /**
   * The pieces of `digest` this agent can serve a peer: a finished file entry (all of them) or a
   * download in progress (those verified and written so far). Directory entries: undefined
   * (their tar was unpacked and is gone).
   */
  heldPieces(digest: string): HeldPieces | undefined {
    const match = DIGEST.exec(digest);
    if (!match || this.closed) return undefined;
    const hex = match[1]!;
    const entry = this.index.get(digest);
    if (entry) {
      if (entry.kind !== 'file') return undefined;
      const pieceBytes = pieceBytesFor(entry.sizeBytes);
      return { sizeBytes: entry.sizeBytes, pieceBytes, bitfield: Bitfield.full(pieceCount(entry.sizeBytes, pieceBytes)), open: (flags) => fs.open(this.blobPath(hex), flags) };
    }
    const flight = this.flights.get(hex);
    if (!flight?.progress || flight.blob.directory) return undefined;
    const { pieceBytes, bitfield } = flight.progress;
    return {
      sizeBytes: flight.blob.sizeBytes,
      pieceBytes,
      bitfield: copyOf(bitfield),
      // Published meanwhile: the same bytes under blobs/.
      open: (flags) => fs.open(this.partialPath(hex), flags).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
        return fs.open(this.blobPath(hex), flags);
      }),
    };
  }

  /** Makes a verified partial/<hex> visible as blobs/<hex>, then records it. */
  private async publish(blob: CacheBlob, hex: string): Promise<void> {
    const partial = this.partialPath(hex);
    const target = this.blobPath(hex);
    await removePath(target); // left by a crash, or a deletion that failed
    let manifest: Manifest | undefined;
    if (blob.directory) {
      const staging = path.join(this.tmpDir, hex);
      await removePath(staging);
      try {
        await unpackTar(createReadStream(partial), staging);
        manifest = await sealTree(staging);
      } catch (err) {
        await removePath(staging);
        if (!MlfleetError.is(err)) throw err; // I/O: the verified tar stays for the next attempt
        // The bytes are the right ones but not a tar a directory can come from: fetching
        // again cannot help.
        await this.discardPartial(blob.digest, hex);
        throw new InvalidArgumentError(`${blob.digest} was fetched as a directory but cannot be unpacked: ${err.message}`);
      }
      await fs.rename(staging, target);
    } else {
      await fs.rename(partial, target);
      // Content-addressed bytes never change. After the rename, so that a partial file a
      // failed publish leaves behind can still be opened for writing.
      await fs.chmod(target, 0o444);
    }
    await syncDirectory(this.blobsDir);
    this.index.publish({ digest: blob.digest, sizeBytes: blob.sizeBytes, kind: blob.directory ? 'directory' : 'file', manifest }, this.clock.now());
    // The tar goes only once the index knows the tree: a crash before leaves a complete
    // download that the next acquire verifies and unpacks without fetching a byte.
    if (blob.directory) await fs.rm(partial, { force: true });
    this.log.info({ digest: blob.digest, sizeBytes: blob.sizeBytes, directory: blob.directory }, 'cached');
    this.emitChange();
  }

  private savePartial(digest: string, progress: PieceProgress | undefined): void {
    const syncedBytes = progress ? Math.min(progress.bitfield.count() * progress.pieceBytes, this.flights.get(hexOf(digest))?.blob.sizeBytes ?? Infinity) : 0;
    const pieces = progress && { pieceBytes: progress.pieceBytes, bitfield: progress.bitfield.bytes };
    this.index.savePartial({ digest, syncedBytes, pieces, updatedAt: this.clock.now() });
  }

  private async discardPartial(digest: string, hex: string): Promise<void> {
    // The bytes first: on a full disk the index (in agent.db, on the same disk) may take no
    // write, and a record of a partial whose file is gone is harmless (a download resumes from
    // what is on disk, here nothing).
    await fs.rm(this.partialPath(hex), { force: true });
    this.index.deletePartial(digest);
  }

  // ---- integrity -------------------------------------------------------------------------

  /** What is wrong with a cached entry, or undefined when it is whole. */
  private async inspect(entry: IndexedEntry, hex: string, signal: AbortSignal): Promise<string | undefined> {
    const target = this.blobPath(hex);
    try {
      if (entry.kind === 'file') {
        const stat = await fs.lstat(target);
        if (!stat.isFile()) return 'it is no longer a regular file';
        if (stat.size !== entry.sizeBytes) return `it is ${stat.size} bytes, not ${entry.sizeBytes}`;
        const actual = await hashFile(target, signal);
        return actual === hex ? undefined : `its content hashes to sha256:${actual}`;
      }
      return await checkTree(target, entry.manifest ?? {}, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'its files are missing';
      throw err;
    }
  }

  /** A full disk says which disk and what to do, instead of a bare ENOSPC. */
  private explainDiskError(err: unknown): unknown {
    if (!isDiskFull(err)) return err;
    const code = (err as NodeJS.ErrnoException).code;
    return new ResourceExhaustedError(`the model cache at ${this.dir} is out of disk space (${code}); free space there or lower --cache-max-bytes below what the disk holds`);
  }

  // ---- the budget ------------------------------------------------------------------------

  /**
   * Evicts, least recently used first, until the cache fits its budget: entries nobody holds,
   * and unfinished downloads nobody is waiting for. Entries are dropped from the index at
   * once (so no acquire can take them); their files go in the background, under their lock.
   */
  private enforceBudget(): void {
    if (this.closed) return;
    let total = 0;
    const candidates: { at: number; seq: number; bytes: number; evict: () => void }[] = [];
    for (const flight of this.flights.values()) if (flight.downloading) total += flight.blob.sizeBytes;
    for (const partial of this.index.partials()) {
      const hex = hexOf(partial.digest);
      const flight = this.flights.get(hex);
      if (flight?.downloading) continue; // reserved above
      total += partial.syncedBytes;
      if (!flight) candidates.push({ at: partial.updatedAt, seq: 0, bytes: partial.syncedBytes, evict: () => this.evictPartial(partial, hex) });
    }
    for (const entry of this.index.all()) {
      const hex = hexOf(entry.digest);
      total += entry.sizeBytes;
      if ((this.leases.get(hex) ?? 0) + (this.pins.get(hex) ?? 0) === 0) {
        candidates.push({ at: entry.lastUsedAt, seq: entry.useSeq, bytes: entry.sizeBytes, evict: () => this.evictEntry(entry, hex) });
      }
    }
    if (total <= this.maxBytes) {
      this.overBudgetWarned = false;
      return;
    }
    candidates.sort((a, b) => a.at - b.at || a.seq - b.seq);
    for (const candidate of candidates) {
      if (total <= this.maxBytes) break;
      candidate.evict();
      total -= candidate.bytes;
    }
    if (total > this.maxBytes && !this.overBudgetWarned) {
      this.overBudgetWarned = true;
      this.log.warn({ totalBytes: total, maxBytes: this.maxBytes }, 'the model cache is over its budget and everything left is in use; it shrinks as workloads release their models');
    } else if (total <= this.maxBytes) {
      this.overBudgetWarned = false;
    }
  }

  private evictEntry(entry: IndexedEntry, hex: string): void {
    this.index.delete(entry.digest);
    this.log.info({ digest: entry.digest, sizeBytes: entry.sizeBytes }, 'evicted from the model cache');
    this.emitChange();
    this.track(this.files.run(hex, () => removePath(this.blobPath(hex))), `could not delete the evicted ${entry.digest}; it goes when the agent next starts`);
  }

  private evictPartial(partial: PartialDownload, hex: string): void {
    this.log.info({ digest: partial.digest, syncedBytes: partial.syncedBytes }, 'dropped an unfinished download to stay within the cache budget');
    this.track(this.files.run(hex, () => this.discardPartial(partial.digest, hex)), `could not delete the unfinished download of ${partial.digest}`);
  }

  // ---- opening ---------------------------------------------------------------------------

  /** Index rows without files go, files without index rows go; downloads stay for resuming. */
  private reconcile(): void {
    for (const dir of [this.blobsDir, this.partialDir, this.tmpDir]) mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Trees half unpacked when the last process died: their tar is still in partial/.
    for (const name of readdirSync(this.tmpDir)) rmSync(path.join(this.tmpDir, name), { recursive: true, force: true });

    const indexed = new Set<string>();
    for (const entry of this.index.all()) {
      const hex = hexOf(entry.digest);
      const stat = lstatSync(this.blobPath(hex), { throwIfNoEntry: false });
      if (!stat || (entry.kind === 'directory' ? !stat.isDirectory() : !stat.isFile())) {
        this.log.warn({ digest: entry.digest }, 'dropped a cache entry whose files are gone');
        this.index.delete(entry.digest);
        continue;
      }
      indexed.add(hex);
    }
    for (const name of readdirSync(this.blobsDir)) {
      if (indexed.has(name)) continue;
      this.log.warn({ name }, 'deleted a file in the cache that its index does not know');
      rmSync(path.join(this.blobsDir, name), { recursive: true, force: true });
    }

    const resumable = new Set<string>();
    for (const partial of this.index.partials()) {
      const hex = hexOf(partial.digest);
      if (indexed.has(hex) || !existsSync(this.partialPath(hex))) this.index.deletePartial(partial.digest);
      else resumable.add(hex);
    }
    for (const name of readdirSync(this.partialDir)) {
      if (!resumable.has(name)) rmSync(path.join(this.partialDir, name), { recursive: true, force: true });
    }
    if (resumable.size > 0) this.log.info({ downloads: resumable.size }, 'unfinished downloads will resume when next needed');
  }

  // ---- plumbing --------------------------------------------------------------------------

  private get blobsDir(): string {
    return path.join(this.dir, 'blobs');
  }

  private get partialDir(): string {
    return path.join(this.dir, 'partial');
  }

  private get tmpDir(): string {
    return path.join(this.dir, 'tmp');
  }

  private blobPath(hex: string): string {
    return path.join(this.blobsDir, hex);
  }

  private partialPath(hex: string): string {
    return path.join(this.partialDir, hex);
  }

  private emitChange(): void {
    for (const listener of this.listeners) {
      try {
        listener();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'a model cache listener failed');
      }
    }
  }

  /** Keeps `work` for close() to wait on; a failure is logged when `failure` says what it means. */
  private track(work: Promise<unknown>, failure?: string): void {
    const settled = work.then(
      () => undefined,
      (err: unknown) => {
        if (failure) this.log.warn({ err: (err as Error).message }, failure);
      },
    );
    this.work.add(settled);
    void settled.then(() => this.work.delete(settled));
  }
}

function hexOf(digest: string): string {
  const match = DIGEST.exec(digest);
  if (!match) throw new InvalidArgumentError(`${JSON.stringify(digest)} is not a digest; expected sha256:<64 lowercase hex>`);
  return match[1]!;
}

function bump(counts: Map<string, number>, key: string, by: number): number {
  const next = (counts.get(key) ?? 0) + by;
  if (next <= 0) counts.delete(key);
  else counts.set(key, next);
  return Math.max(next, 0);
}

/** `promise`, or the signal's reason as soon as it aborts (the promise runs on regardless). */
function settledOrAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/**
 * Whether a failed fetch may succeed later (no leader, a closing cache, a full disk, a cut
 * stream) rather than never (bytes that are not the digest, a tar that cannot be unpacked, a
 * digest the coordinator does not have).
 */
function isRetryable(err: unknown): boolean {
  if (!MlfleetError.is(err)) return true;
  return !(err instanceof InvalidArgumentError || err instanceof CorruptBlobError || err.code === 'NOT_FOUND');
}

async function statOrUndefined(file: string): Promise<import('node:fs').Stats | undefined> {
  try {
    return await fs.stat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Feeds the first `length` bytes of the file into `hash`: the state a resumed download continues. */
async function hashPrefix(handle: FileHandle, length: number, hash: Hash, signal: AbortSignal): Promise<void> {
  const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, Math.max(length, 1)));
  let position = 0;
  while (position < length) {
    signal.throwIfAborted();
    const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, length - position), position);
    if (bytesRead === 0) throw new Error(`the unfinished download ended at ${position} bytes, before its checkpoint at ${length}`);
    hash.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
}

/** The recorded pieces of a partial, when the record has them and they fit the blob. */
function recordedPieces(partial: PartialDownload | undefined, sizeBytes: number): PieceProgress | undefined {
  if (!partial?.pieces) return undefined;
  const { pieceBytes, bitfield } = partial.pieces;
  if (!Number.isSafeInteger(pieceBytes) || pieceBytes <= 0) return undefined;
  try {
    return { pieceBytes, bitfield: new Bitfield(pieceCount(sizeBytes, pieceBytes), bitfield) };
  } catch {
    return undefined; // recorded for another size: start over
  }
}

function copyOf(bitfield: Bitfield): Bitfield {
  return new Bitfield(bitfield.size, bitfield.bytes);
}

/** The file's sha256, in hex. */
async function hashFile(file: string, signal: AbortSignal, sync = false): Promise<string> {
  const hash = createHash('sha256');
  const handle = await fs.open(file, 'r');
  try {
    await hashPrefix(handle, (await handle.stat()).size, hash, signal);
    if (sync) await handle.sync();
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

/**
 * Records every file of a freshly unpacked tree (size and sha256), makes it durable and
 * read-only: the manifest is how a later acquire tells a damaged tree from a whole one.
 */
async function sealTree(root: string): Promise<Manifest> {
  const manifest: Manifest = {};
  const never = new AbortController().signal;
  for (const [relative, absolute] of await listTree(root)) {
    const sha256 = await hashFile(absolute, never, true);
    const { size } = await fs.stat(absolute);
    await fs.chmod(absolute, 0o444);
    manifest[relative] = { sizeBytes: size, sha256 };
  }
  return manifest;
}

/** What is wrong with a tree against its manifest, or undefined when it matches. */
async function checkTree(root: string, manifest: Manifest, signal: AbortSignal): Promise<string | undefined> {
  const stat = await fs.lstat(root);
  if (!stat.isDirectory()) return 'it is no longer a directory';
  let files: Map<string, string>;
  try {
    files = await listTree(root);
  } catch (err) {
    if (err instanceof StrangeEntryError) return err.message;
    throw err;
  }
  for (const relative of Object.keys(manifest)) {
    if (!files.has(relative)) return `${relative} is missing`;
  }
  for (const [relative, absolute] of files) {
    const expected = manifest[relative];
    if (!expected) return `${relative} was added`;
    const { size } = await fs.stat(absolute);
    if (size !== expected.sizeBytes) return `${relative} is ${size} bytes, not ${expected.sizeBytes}`;
    if ((await hashFile(absolute, signal)) !== expected.sha256) return `${relative} has changed`;
  }
  return undefined;
}

class StrangeEntryError extends Error {}

/** Regular files under `root` by '/'-separated relative path, sorted; anything else is refused. */
async function listTree(root: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (absolute: string, relative: string): Promise<void> => {
    const children: Dirent[] = await fs.readdir(absolute, { withFileTypes: true });
    children.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const child of children) {
      const childRelative = relative ? `${relative}/${child.name}` : child.name;
      const childAbsolute = path.join(absolute, child.name);
      if (child.isDirectory()) await walk(childAbsolute, childRelative);
      else if (child.isFile()) files.set(childRelative, childAbsolute);
      else throw new StrangeEntryError(`${childRelative} is not a regular file`);
    }
  };
  await walk(root, '');
  return files;
}

async function removePath(target: string): Promise<void> {
  await fs.rm(target, { recursive: true, force: true });
}

/** The disk is full: a write of the cache's bytes, or of its index (agent.db, on the same disk: SQLITE_FULL), found no room. */
function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
}
