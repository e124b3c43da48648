// SHA-256 of pieces in a worker thread, so hashing 8 MiB pieces does not hold the agent's event
// loop, which also runs its session and inference gateway; and, in the same pass over a piece's
// buffer, the download's whole digest (see WholeDigest), so that no byte is read back from disk
// only to be hashed a second time. A piece lies in a SharedArrayBuffer (the piece fetcher's
// buffers), which the worker reads where it is, neither copied nor moved: the fetcher writes the
// piece to its file meanwhile. One worker: it keeps each download's whole-digest state and takes
// the messages in order, which is what lets a piece enter that digest from its buffer (a second
// worker would cost another V8 isolate, several MiB, and the ordering). It starts when pieces
// arrive and stops after a while without any, so an idle agent holds none; its heap is kept
// small (it holds hash states and, while reading back, one 1 MiB buffer; piece buffers are
// outside the heap).
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { UnavailableError } from '../../shared/errors.js';
import { DigestOrder, type ReadBack } from './digest-order.js';

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const { createHash } = require('node:crypto');
// Both hashes take a piece a slice at a time, so the slice is still in the CPU cache for the second.
const SLICE = 256 * 1024;
const streams = new Map();
let readBuffer;
function piece(m) {
  const bytes = new Uint8Array(m.buffer, m.offset, m.length);
  const stream = m.stream === undefined ? undefined : streams.get(m.stream);
  const own = createHash('sha256');
  const whole = stream && m.expected && stream.at === m.piece ? stream.hash.copy() : undefined;
  for (let at = 0; at < m.length; at += SLICE) {
    const slice = bytes.subarray(at, Math.min(m.length, at + SLICE));
    own.update(slice);
    if (whole) whole.update(slice);
  }
  const hash = own.digest();
  let fed = false;
  if (whole && Buffer.compare(hash, m.expected) === 0) {
    stream.hash = whole;
    stream.at += 1;
    fed = true;
  }
  parentPort.postMessage({ id: m.id, hash, fed });
}
function read(m) {
  const stream = streams.get(m.stream);
  if (!stream) throw new Error('no whole digest is open for this download');
  if (stream.at !== m.from) throw new Error('read back from piece ' + m.from + ' while piece ' + stream.at + ' is next');
  readBuffer ??= Buffer.allocUnsafe(1 << 20);
  for (let at = m.start; at < m.end; ) {
    const n = fs.readSync(m.fd, readBuffer, 0, Math.min(readBuffer.length, m.end - at), at);
    if (n === 0) throw new Error('the partial file ended at ' + at + ' bytes, before ' + m.end);
    stream.hash.update(readBuffer.subarray(0, n));
    at += n;
  }
  stream.at = m.to;
  parentPort.postMessage({ id: m.id });
}
parentPort.on('message', (m) => {
  try {
    if (m.op === 'piece') return piece(m);
    if (m.op === 'open') streams.set(m.stream, { hash: createHash('sha256'), at: 0 });
    else if (m.op === 'read') return read(m);
    else if (m.op === 'finish') {
      const stream = streams.get(m.stream);
      streams.delete(m.stream);
      if (!stream) throw new Error('no whole digest is open for this download');
      return parentPort.postMessage({ id: m.id, hex: stream.hash.digest('hex') });
    } else if (m.op === 'close') streams.delete(m.stream);
    parentPort.postMessage({ id: m.id });
  } catch (err) {
    if (m.op === 'read') streams.delete(m.stream);
    parentPort.postMessage({ id: m.id, error: String(err && err.message || err) });
  }
});
`;

interface Reply {
  id: number;
  hash?: Uint8Array;
  fed?: boolean;
  hex?: string;
  error?: string;
}

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
    const worker = new Worker(WORKER_SOURCE, { eval: true, resourceLimits: WORKER_LIMITS });
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

  private send(message: Record<string, unknown>, running = this.running ?? this.start()): Promise<Reply> {
    clearTimeout(this.idleTimer);
    const id = this.ids++;
    return new Promise<Reply>((resolve, reject) => {
      running.jobs.set(id, { resolve, reject });
      if (running.jobs.size === 1) running.worker.ref();
      running.worker.postMessage({ ...message, id });
    });
  }

  /**
   * The SHA-256 of `bytes`, which must not change until this resolves (they may be read). In a
   * SharedArrayBuffer the worker hashes them where they lie; other bytes, or any once the pool
   * is closed, are hashed here. With `into`, the piece also enters that whole digest if it is
   * the next piece in order and its hash is `into.expected` (see WholeDigest.hash, which is how
   * to ask for that).
   */
  async hash(bytes: Buffer, into?: { stream: number; worker: Worker; piece: number; expected: Buffer }): Promise<Hashed> {
    if (this.closed || !(bytes.buffer instanceof SharedArrayBuffer)) return { hash: createHash('sha256').update(bytes).digest(), fed: false };
    const running = this.running ?? this.start();
    // A whole digest lives in the worker that opened it; another worker (the first stopped) cannot take the piece into it.
    const whole = into && into.worker === running.worker ? { stream: into.stream, piece: into.piece, expected: new Uint8Array(into.expected) } : {};
    const reply = await this.send({ op: 'piece', buffer: bytes.buffer, offset: bytes.byteOffset, length: bytes.length, ...whole }, running);
    if (reply.error !== undefined) throw new UnavailableError(`hashing a piece failed: ${reply.error}`);
    return { hash: Buffer.from(reply.hash!), fed: reply.fed === true };
  }

  /** @internal For WholeDigest. */
  async openStream(): Promise<{ stream: number; worker: Worker } | undefined> {
    if (this.closed) return undefined;
    const running = this.running ?? this.start();
    const stream = this.streams++;
    this.openStreams += 1;
    try {
      await this.send({ op: 'open', stream }, running);
    } catch (err) {
      this.openStreams -= 1;
      throw err;
    }
    return { stream, worker: running.worker };
  }

  /** @internal For WholeDigest: reads bytes [start, end) of `fd` into the stream, pieces [from, to). */
  async readStream(opened: { stream: number; worker: Worker }, fd: number, range: ReadBack, start: number, end: number): Promise<void> {
    const running = this.running;
    if (!running || running.worker !== opened.worker) throw new UnavailableError('the hashing worker stopped');
    const reply = await this.send({ op: 'read', stream: opened.stream, fd, from: range.from, to: range.to, start, end }, running);
    if (reply.error !== undefined) throw new UnavailableError(`reading pieces back for the whole digest failed: ${reply.error}`);
  }

  /** @internal For WholeDigest: the stream's SHA-256 (hex), and the stream is gone; `finish: false` only drops it. */
  async endStream(opened: { stream: number; worker: Worker }, finish: boolean): Promise<string | undefined> {
    this.openStreams -= 1;
    const running = this.running;
    try {
      if (!running || running.worker !== opened.worker) {
        if (finish) throw new UnavailableError('the hashing worker stopped');
        return undefined;
      }
      const reply = await this.send({ op: finish ? 'finish' : 'close', stream: opened.stream }, running);
      if (reply.error !== undefined) throw new UnavailableError(`the whole digest failed: ${reply.error}`);
      return reply.hex;
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

/**
 * A download's whole digest (SHA-256 of the file), taken from its pieces as they are verified:
 * from the piece's buffer when it is the next in order, else read back from the file once the
 * pieces before it are in (DigestOrder decides). Anything amiss (the worker stopped, a read
 * failed) makes finish() answer undefined, and the caller hashes the file instead: slower,
 * never wrong.
 */
export class WholeDigest {
  private readonly order: DigestOrder;
  private readonly opened: Promise<{ stream: number; worker: Worker } | undefined>;
  /** What `opened` resolved to: read-backs are sent synchronously with it, so they queue before any piece sent after them. */
  private stream: { stream: number; worker: Worker } | undefined;
  /** The last message to the worker about this digest that the next must follow (reads are sent in order). */
  private reads: Promise<void> = Promise.resolve();
  private ended = false;
  /** Pieces read back from the file rather than taken from their buffers (a resume's included). */
  piecesReadBack = 0;

  constructor(
    private readonly pool: HashPool,
    private readonly file: { fd: number; sizeBytes: number; pieceBytes: number; pieceCount: number },
  ) {
    this.order = new DigestOrder(file.pieceCount);
    this.opened = pool.openStream().then(
      (opened) => (this.stream = opened),
      (err: unknown) => {
        this.order.fail((err as Error).message);
        return undefined;
      },
    );
  }

  /** Pieces already verified on disk (a resume). Call once, before any hash(). */
  async resumed(held: (piece: number) => boolean): Promise<void> {
    await this.opened;
    this.readBack(this.order.resumed(held));
  }

  /**
   * Hashes a piece (see HashPool.hash), taking it into this whole digest when it is the next in
   * order and matches `expected`. A piece that matches but was not taken (`fed` false) must be
   * reported with written() once it is in the file, to be read back from there in its turn.
   */
  async hash(bytes: Buffer, piece: number, expected: Buffer): Promise<Hashed> {
    const opened = await this.opened;
    const hashed = await this.pool.hash(bytes, opened && !this.ended ? { ...opened, piece, expected } : undefined);
    // Taken: said at once, since what is read back next starts after it.
    if (hashed.fed && !this.ended) this.readBack(this.order.verified(piece, true));
    return hashed;
  }

  /** A verified piece that hash() did not take (`fed` false) is written in the file: it can be read back. */
  written(piece: number): void {
    if (!this.ended) this.readBack(this.order.verified(piece, false));
  }

  /** The SHA-256 (hex) of the whole file, once every piece is verified; undefined if it could not be followed. */
  async finish(): Promise<string | undefined> {
    const opened = await this.opened;
    await this.reads;
    if (this.ended || !opened) return undefined;
    this.ended = true;
    const complete = this.order.complete;
    const hex = await this.pool.endStream(opened, complete).catch(() => undefined);
    return complete ? hex : undefined;
  }

  /** Drops the digest (a pull that failed). */
  async close(): Promise<void> {
    const opened = await this.opened;
    if (this.ended || !opened) return;
    this.ended = true;
    await this.reads;
    await this.pool.endStream(opened, false).catch(() => undefined);
  }

  /** Why finish() answers undefined, if it does (for the log). */
  get failure(): string | undefined {
    return this.order.failure ?? (this.order.complete ? undefined : `${this.order.next} of ${this.file.pieceCount} pieces in the whole digest`);
  }

  private readBack(range: ReadBack | undefined): void {
    if (!range) return;
    this.piecesReadBack += range.to - range.from;
    const { fd, sizeBytes, pieceBytes } = this.file;
    const start = range.from * pieceBytes;
    const end = Math.min(range.to * pieceBytes, sizeBytes);
    // Sent now, so that it is in the worker's queue before any piece sent after this point.
    const sent = this.stream ? this.pool.readStream(this.stream, fd, range, start, end) : Promise.reject(new Error('no whole digest is open'));
    sent.catch(() => undefined);
    this.reads = this.reads.then(() => sent).catch((err: unknown) => {
      this.order.fail((err as Error).message);
    });
  }
}
