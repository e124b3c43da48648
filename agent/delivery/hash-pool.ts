// SHA-256 of pieces in a worker thread, so hashing 8 MiB pieces does not hold the agent's event
// loop, which also runs its session and inference gateway; and, in the same pass over a piece's
// buffer, the download's whole digest (see WholeDigest), so that no byte is read back from disk
// only to be hashed a second time. A piece lies in a SharedArrayBuffer (the piece fetcher's
// buffers), which the worker reads where it is, neither copied nor moved. One worker
// (hash-worker.ts): it keeps each download's whole-digest state and takes the messages in
// order, which is what lets a piece enter that digest from its buffer (a second
// worker would cost another V8 isolate, several MiB, and the ordering). It starts when pieces
// arrive and stops after a while without any, so an idle agent holds none; its heap is kept
// small (it holds hash states and, while reading back, one 1 MiB buffer; piece buffers are
// outside the heap).
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { UnavailableError } from '../../shared/errors.js';
import type { HashMessage, HashReply as Reply } from './hash-worker.js';

interface Job {
  resolve: (reply: Reply) => void;
  reject: (err: unknown) => void;
}

interface Running {
  worker: Worker;
  jobs: Map<number, Job>;
}

/** What hash() answers: the piece's SHA-256, and whether it entered a whole digest. */
export interface Hashed {
  hash: Buffer;
  fed: boolean;
  /** The worker keeps the piece's buffer for its turn in the whole digest (it was asked to hold it): leave the buffer as it is until a `released` names the piece. */
  held: boolean;
  /** Pieces of the same whole digest whose held buffers the worker has let go. */
  released: number[];
}

/** The worker stops after this long without work (and with no whole digest open). */
const IDLE_MS = 10_000;
/** V8 heap limits of the worker: it holds hash states and small messages. */
const WORKER_LIMITS = { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 };

export class HashPool {
  private running: Running | undefined;
  private ids = 0;
  private streams = 0;
  private openStreams = 0;
  private closed = false;
  private idleTimer: NodeJS.Timeout | undefined;

  private start(): Running {
    const worker = new Worker(new URL('./hash-worker.js', import.meta.url), { resourceLimits: WORKER_LIMITS });
    const running: Running = { worker, jobs: new Map() };
    worker.unref();
    worker.on('message', (reply: Reply) => {
      const job = running.jobs.get(reply.id);
      if (!job) return;
      running.jobs.delete(reply.id);
      if (running.jobs.size === 0) worker.unref();
      job.resolve(reply);
      this.settle();
    });
    worker.on('error', (err) => this.failAll(running, err));
    worker.on('exit', () => {
      this.failAll(running, new UnavailableError('the hashing worker stopped'));
      if (this.running === running) this.running = undefined;
    });
    this.running = running;
    return running;
  }

  /** Stops the worker once nothing is hashed for IDLE_MS and no whole digest is open; the next piece starts it again. */
  private settle(): void {
    if ((this.running?.jobs.size ?? 0) > 0 || this.openStreams > 0) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      const running = this.running;
      if (!running || running.jobs.size > 0 || this.openStreams > 0) return;
      this.running = undefined;
      void running.worker.terminate();
    }, IDLE_MS);
    this.idleTimer.unref();
  }

  private send(message: DistributiveOmit<HashMessage, 'id'>, running = this.running ?? this.start()): Promise<Reply> {
    clearTimeout(this.idleTimer);
    const id = this.ids++;
    return new Promise<Reply>((resolve, reject) => {
      running.jobs.set(id, { resolve, reject });
      if (running.jobs.size === 1) running.worker.ref();
      running.worker.postMessage({ ...message, id } as HashMessage);
    });
  }

  /**
   * The SHA-256 of `bytes`, which must not change until this resolves (they may be read). In a
   * SharedArrayBuffer the worker hashes them where they lie; other bytes, or any once the pool
   * is closed, are hashed here. With `into`, the piece also enters that whole digest if it is
   * the next piece in order and its hash is `into.expected` (see WholeDigest.hash, which is how
   * to ask for that); with `into.hold`, a matching piece that is not next may stay in its buffer
   * for its turn (Hashed.held).
   */
  async hash(bytes: Buffer, into?: OpenStream & { piece: number; expected: Buffer; hold?: boolean }): Promise<Hashed> {
    if (this.closed || !(bytes.buffer instanceof SharedArrayBuffer)) return { hash: createHash('sha256').update(bytes).digest(), fed: false, held: false, released: [] };
    const running = this.running ?? this.start();
    // A whole digest lives in the worker that opened it; another worker (the first stopped) cannot take the piece into it.
    const whole = into && into.worker === running.worker ? { stream: into.stream, piece: into.piece, expected: new Uint8Array(into.expected), hold: into.hold === true } : {};
    const reply = await this.send({ op: 'piece', buffer: bytes.buffer, offset: bytes.byteOffset, length: bytes.length, ...whole }, running);
    if (reply.error !== undefined) throw new UnavailableError(`hashing a piece failed: ${reply.error}`);
    return { hash: Buffer.from(reply.hash!), fed: reply.fed === true, held: reply.held === true, released: reply.released ?? [] };
  }

  /** @internal For WholeDigest: a whole digest of the file, in the worker that is running now. */
  async openStream(file: WholeFile): Promise<OpenStream | undefined> {
    if (this.closed) return undefined;
    const running = this.running ?? this.start();
    const stream = this.streams++;
    this.openStreams += 1;
    try {
      await this.send({ op: 'open', stream, ...file }, running);
    } catch (err) {
      this.openStreams -= 1;
      throw err;
    }
    return { stream, worker: running.worker };
  }

  /** @internal For WholeDigest: pieces held at a resume, to take into the stream in their turn. */
  async resumed(opened: OpenStream, pieces: number[]): Promise<void> {
    const running = this.running;
    if (!running || running.worker !== opened.worker) throw new UnavailableError('the hashing worker stopped');
    const reply = await this.send({ op: 'resumed', stream: opened.stream, pieces }, running);
    if (reply.error !== undefined) throw new UnavailableError(`the whole digest failed: ${reply.error}`);
  }

  /** @internal For WholeDigest: the stream's end (`finish: false` only drops it). */
  async endStream(opened: OpenStream, finish: boolean): Promise<StreamEnd> {
    this.openStreams -= 1;
    const running = this.running;
    try {
      if (!running || running.worker !== opened.worker) {
        if (finish) throw new UnavailableError('the hashing worker stopped');
        return {};
      }
      const reply = await this.send({ op: finish ? 'finish' : 'close', stream: opened.stream }, running);
      if (reply.error !== undefined) throw new UnavailableError(`the whole digest failed: ${reply.error}`);
      return reply;
    } finally {
      this.settle();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.idleTimer);
    const running = this.running;
    this.running = undefined;
    if (running) await running.worker.terminate();
  }

  private failAll(running: Running, err: unknown): void {
    for (const job of running.jobs.values()) job.reject(err);
    running.jobs.clear();
  }
}

/** A file whose whole digest is taken: its pieces are read back from `fd` when the order says. */
interface WholeFile {
  fd: number;
  /** The same file opened O_DIRECT, where the file system takes it. */
  directFd?: number;
  sizeBytes: number;
  pieceBytes: number;
  pieceCount: number;
}

/** What the worker says of a whole digest at its end (see HashReply). */
type StreamEnd = Pick<Reply, 'hex' | 'piecesReadBack' | 'failure' | 'released'>;

interface OpenStream {
  stream: number;
  worker: Worker;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/**
 * A download's whole digest (SHA-256 of the file), taken from its pieces as they are verified:
 * from the piece's buffer when it is the next in order, else read back from the file once the
 * pieces before it are in (the worker keeps the order: hash-worker.ts). Anything amiss (the
 * worker stopped, a read failed) makes finish() answer undefined, and the caller hashes the
 * file instead: slower, never wrong.
 */
export class WholeDigest {
  private readonly opened: Promise<OpenStream | undefined>;
  private ended = false;
  /** Why there is no digest, when the worker could not be reached. */
  private broken: string | undefined;
  /** Pieces read back from the file rather than taken from their buffers (a resume's included): known at finish(). */
  piecesReadBack = 0;
  /** Why finish() answered undefined, if it did (for the log). */
  failure: string | undefined;

  constructor(
    private readonly pool: HashPool,
    private readonly file: WholeFile,
  ) {
    this.opened = pool.openStream(file).catch((err: unknown) => {
      this.broken = (err as Error).message;
      return undefined;
    });
  }

  /** Pieces already verified on disk (a resume). Call once, and before any hash(). */
  async resumed(held: (piece: number) => boolean): Promise<void> {
    const opened = await this.opened;
    const pieces = [];
    for (let piece = 0; piece < this.file.pieceCount; piece += 1) if (held(piece)) pieces.push(piece);
    if (opened && pieces.length > 0) await this.pool.resumed(opened, pieces).catch((err: unknown) => this.break(err));
  }

  /**
   * Hashes a piece already written to the file (see HashPool.hash), taking it into this whole
   * digest when it matches `expected`: from its buffer when it is the next in order (`fed`);
   * else, with `hold`, from its buffer in its turn (the caller leaves the buffer alone until a
   * reply's `released` names the piece, or the digest ends), or else read back from the file.
   */
  async hash(bytes: Buffer, piece: number, expected: Buffer, hold = false): Promise<Hashed> {
    const opened = await this.opened;
    return this.pool.hash(bytes, opened && !this.ended ? { ...opened, piece, expected, hold } : undefined);
  }

  /** The SHA-256 (hex) of the whole file, once every piece is verified; undefined if it could not be followed. */
  async finish(): Promise<string | undefined> {
    const opened = await this.opened;
    if (this.ended || !opened) {
      this.failure = this.broken ?? 'the whole digest was not open';
      return undefined;
    }
    this.ended = true;
    const end = await this.pool.endStream(opened, true).catch((err: unknown): StreamEnd => ({ failure: (err as Error).message }));
    this.piecesReadBack = end.piecesReadBack ?? 0;
    this.failure = this.broken ?? end.failure;
    return this.broken === undefined ? end.hex : undefined;
  }

  /** Drops the digest (a pull that failed). */
  async close(): Promise<void> {
    const opened = await this.opened;
    if (this.ended || !opened) return;
    this.ended = true;
    await this.pool.endStream(opened, false).catch(() => undefined);
  }

  private break(err: unknown): void {
    this.broken ??= (err as Error).message;
  }
}
