// The blob store on the local filesystem (the default, under <data-dir>/blobs). An upload goes
// to tmp/<random> and is hashed as it is written; commit fsyncs it and renames it to
// sha256/<first two hex>/<hex>. The rename is atomic because tmp/ and sha256/ share the
// filesystem, so a blob is either absent or complete, never half there. The disk writes begin
// while the upload goes on (a datasync in the background every WRITEBACK_BYTES), so that the
// commit's fsync finds little left to write: for 1 GiB that fsync took ~0.7 s on the bench
// machine, a sixth of the push, and ~20 ms this way. The root belongs to
// one store at a time: whatever is in tmp/ when a store opens was left by a crash and goes.
import { syncDirectory, writeAll } from '../../shared/durable-files.js';
import { randomBytes } from 'node:crypto';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { FailedPreconditionError, NotFoundError, ResourceExhaustedError } from '../../shared/errors.js';
import { HashingBlobWriter } from './hashing-writer.js';
import { checkOffset, hexOf, type BlobReader, type BlobStore, type BlobWriter, type CreateOptions, type Digest } from './blob-store.js';

export interface FsBlobStoreOptions {
  /** The store's directory; tmp/ and sha256/ are made under it. */
  root: string;
  /**
   * Opens a new temporary file for writing. A test seam: the default creates `file` and
   * refuses to reuse one that exists.
   */
  openTemp?: (file: string) => Promise<FileHandle>;
  /** Bytes an upload writes between background writebacks (see above). Default WRITEBACK_BYTES. */
  writebackBytes?: number;
}

/** An upload's bytes are sent to the disk in the background every this many bytes written. */
const WRITEBACK_BYTES = 64 * 1024 * 1024;

/** Errors that mean the filesystem, or the quota on it, is full. */
const OUT_OF_SPACE = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

export class FsBlobStore implements BlobStore {
  readonly kind = 'fs' as const;
  private readonly writers = new Set<FsBlobWriter>();
  private closed = false;

  private constructor(
    readonly root: string,
    private readonly openTemp: (file: string) => Promise<FileHandle>,
    /** @internal */
    readonly writebackBytes: number,
  ) {}

  static async create(options: FsBlobStoreOptions): Promise<FsBlobStore> {
    const root = path.resolve(options.root);
    const store = new FsBlobStore(root, options.openTemp ?? ((file) => fs.open(file, 'wx', 0o600)), options.writebackBytes ?? WRITEBACK_BYTES);
    await fs.mkdir(path.join(root, 'sha256'), { recursive: true, mode: 0o700 });
    // The uploads of a process that crashed: never visible, never to be finished.
    await fs.rm(store.tmpDir, { recursive: true, force: true });
    await fs.mkdir(store.tmpDir, { mode: 0o700 });
    return store;
  }

  get tmpDir(): string {
    return path.join(this.root, 'tmp');
  }

  /** Where a blob lives; a fan-out by the first byte keeps directories small. */
  pathOf(digest: Digest): string {
    const hex = hexOf(digest);
    return path.join(this.root, 'sha256', hex.slice(0, 2), hex);
  }

  async create(options: CreateOptions = {}): Promise<BlobWriter> {
    if (this.closed) throw new FailedPreconditionError('the blob store is closed');
    const temp = path.join(this.tmpDir, randomBytes(12).toString('hex'));
    let handle: FileHandle;
    try {
      handle = await this.openTemp(temp);
    } catch (err) {
      throw this.mapError(err);
    }
    const writer = new FsBlobWriter(this, temp, handle, () => this.writers.delete(writer), options.digestOfBytes);
    this.writers.add(writer);
    return writer;
  }

  async stat(digest: Digest): Promise<{ sizeBytes: number } | undefined> {
    try {
      return { sizeBytes: (await fs.stat(this.pathOf(digest))).size };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async read(digest: Digest, offset = 0): Promise<Readable> {
    const handle = await this.openAt(digest, offset);
    // The stream owns the handle from here and closes it when it ends or is destroyed.
    // 256 KiB reads: one gRPC message each (the default 64 KiB makes 4 times as many).
    return handle.createReadStream({ start: offset, autoClose: true, highWaterMark: 256 << 10 });
  }

  /**
   * The blob from `offset`, read into buffers the caller owns and reuses: a download then
   * allocates nothing per chunk, where a stream allocates a new buffer for every read (each
   * one more external memory for the garbage collector to chase).
   */
  async openReader(digest: Digest, offset = 0): Promise<BlobReader> {
    const handle = await this.openAt(digest, offset);
    let position = offset;
    let closed = false;
    return {
      async read(buffer, at, length) {
        let filled = 0;
        while (filled < length) {
          const { bytesRead } = await handle.read(buffer, at + filled, length - filled, position);
          if (bytesRead === 0) break;
          filled += bytesRead;
          position += bytesRead;
        }
        return filled;
      },
      async close() {
        if (closed) return;
        closed = true;
        await handle.close();
      },
    };
  }

  /** The blob's file, opened for reading, once `offset` is known to lie within it. */
  private async openAt(digest: Digest, offset: number): Promise<FileHandle> {
    let handle: FileHandle;
    try {
      handle = await fs.open(this.pathOf(digest), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`blob ${digest} is not stored`);
      throw err;
    }
    try {
      const { size } = await handle.stat();
      checkOffset(digest, offset, size);
    } catch (err) {
      await handle.close();
      throw err;
    }
    return handle;
  }

  async delete(digest: Digest): Promise<void> {
    await fs.rm(this.pathOf(digest), { force: true });
    await fs.rm(this.piecesPathOf(digest), { force: true });
  }

  /** Where a blob's piece manifest lives: pieces/, beside sha256/, never mistaken for a blob. */
  piecesPathOf(digest: Digest): string {
    const hex = hexOf(digest);
    return path.join(this.root, 'pieces', hex.slice(0, 2), hex);
  }

  async readPieces(digest: Digest): Promise<Buffer | undefined> {
    try {
      return await fs.readFile(this.piecesPathOf(digest));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Written to a temporary file and renamed: a reader sees the old manifest or the new one. */
  async writePieces(digest: Digest, manifest: Buffer): Promise<void> {
    const target = this.piecesPathOf(digest);
    const temp = path.join(this.tmpDir, `pieces-${randomBytes(12).toString('hex')}`);
    try {
      await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
      await fs.writeFile(temp, manifest, { mode: 0o600, flag: 'wx' });
      await fs.rename(temp, target);
    } catch (err) {
      await fs.rm(temp, { force: true });
      throw this.mapError(err);
    }
  }

  /** Aborts uploads still in progress; idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.writers].map((writer) => writer.abort()));
  }

  /** A full disk or quota becomes RESOURCE_EXHAUSTED naming the store and the limit hit. */
  mapError(err: unknown): unknown {
    const code = (err as NodeJS.ErrnoException).code;
    if (!code || !OUT_OF_SPACE.has(code)) return err;
    const limit = code === 'EDQUOT' ? 'its disk quota is used up' : code === 'EFBIG' ? 'the file is larger than the filesystem allows' : 'the disk is full';
    return new ResourceExhaustedError(`the coordinator's blob store at ${this.root} is out of disk space: ${limit} (${code}); free space there or move --data-dir / --blob-store`);
  }

  /** Publishes a finished temporary file under its digest, or drops it when already stored. */
  async publish(temp: string, digest: Digest): Promise<void> {
    const target = this.pathOf(digest);
    if (await exists(target)) {
      await fs.rm(temp, { force: true });
      return;
    }
    await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
    // Two uploads of the same content may race here; rename replaces atomically and both
    // files hold the same bytes, so either winning is right.
    await fs.rename(temp, target);
    await syncDirectory(path.dirname(target));
  }
}

class FsBlobWriter extends HashingBlobWriter {
  private handleClosed = false;
  /** Bytes appended since the last background writeback began. */
  private unsynced = 0;
  /** The background writeback under way; its failure fails the upload. */
  private writeback: Promise<void> | undefined;

  constructor(
    private readonly store: FsBlobStore,
    private readonly temp: string,
    private readonly handle: FileHandle,
    forget: () => void,
    digestOfBytes: CreateOptions['digestOfBytes'],
  ) {
    super(forget, digestOfBytes);
  }

  protected async append(chunk: Buffer): Promise<void> {
    try {
      await writeAll(this.handle, chunk);
    } catch (err) {
      // The temporary file goes at once: a full disk should not stay full until the commit.
      this.fail(this.store.mapError(err));
      await this.discard();
      throw this.failure;
    }
    this.unsynced += chunk.length;
    if (this.unsynced >= this.store.writebackBytes && !this.writeback && this.failure === undefined) this.startWriteback();
  }

  /**
   * Sends what is written so far to the disk while later appends go on. Its error is the
   * upload's: the kernel reports a failed writeback to one sync only, so the commit's fsync
   * could not be trusted to see it.
   */
  private startWriteback(): void {
    this.unsynced = 0;
    this.writeback = this.handle.datasync().then(
      () => {
        this.writeback = undefined;
      },
      (err: unknown) => {
        this.writeback = undefined;
        this.fail(this.store.mapError(err));
      },
    );
  }

  protected async publish(digest: Digest): Promise<void> {
    await this.writeback;
    this.throwIfFailed();
    await this.handle.chmod(0o444); // content-addressed bytes never change
    // Durable before visible: a crash after the rename must not expose a file of zeros.
    await this.handle.sync();
    await this.closeHandle();
    await this.store.publish(this.temp, digest);
  }

  protected mapError(err: unknown): unknown {
    return this.store.mapError(err);
  }

  protected async discard(): Promise<void> {
    await this.writeback;
    await this.closeHandle().catch(() => {});
    await fs.rm(this.temp, { force: true });
  }

  private async closeHandle(): Promise<void> {
    if (this.handleClosed) return;
    this.handleClosed = true;
    await this.handle.close();
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

