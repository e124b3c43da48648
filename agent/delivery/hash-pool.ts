// SHA-256 of pieces in worker threads, so hashing 8 MiB pieces does not hold the agent's event
// loop, which also runs its session and inference gateway. A piece's buffer is transferred to
// the worker and back, not copied. Workers (each a V8 isolate: several MiB of memory) start
// when pieces arrive and stop after a while without any, so an idle agent holds none. One per
// core but one (the event loop and the whole-digest check take the others), at most two.
import { createHash } from 'node:crypto';
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { UnavailableError } from '../../shared/errors.js';

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
parentPort.on('message', ({ id, buffer, length }) => {
  const hash = createHash('sha256').update(new Uint8Array(buffer, 0, length)).digest();
  parentPort.postMessage({ id, buffer, hash }, [buffer]);
});
`;

interface Job {
  resolve: (result: { bytes: Buffer; hash: Buffer }) => void;
  reject: (err: unknown) => void;
  length: number;
}

interface Slot {
  worker: Worker;
  jobs: Map<number, Job>;
}

/** Workers stop after this long without a piece. */
const IDLE_MS = 10_000;

export class HashPool {
  private slots: Slot[] = [];
  private next = 0;
  private ids = 0;
  private closed = false;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(private readonly size = Math.max(1, Math.min(2, os.availableParallelism() - 1))) {}

  private start(): void {
    for (let i = 0; i < this.size; i += 1) {
      const slot: Slot = { worker: new Worker(WORKER_SOURCE, { eval: true }), jobs: new Map() };
      slot.worker.unref();
      slot.worker.on('message', ({ id, buffer, hash }: { id: number; buffer: ArrayBuffer; hash: Uint8Array }) => {
        const job = slot.jobs.get(id);
        if (!job) return;
        slot.jobs.delete(id);
        job.resolve({ bytes: Buffer.from(buffer, 0, job.length), hash: Buffer.from(hash) });
      });
      slot.worker.on('error', (err) => this.failAll(slot, err));
      slot.worker.on('exit', () => {
        this.failAll(slot, new UnavailableError('a hashing worker stopped'));
        this.slots = this.slots.filter((s) => s !== slot);
      });
      this.slots.push(slot);
    }
  }

  /** Stops the workers once nothing is hashed for IDLE_MS; the next piece starts them again. */
  private settle(): void {
    if (this.slots.some((slot) => slot.jobs.size > 0)) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.slots.some((slot) => slot.jobs.size > 0)) return;
      const stopping = this.slots;
      this.slots = [];
      for (const slot of stopping) void slot.worker.terminate();
    }, IDLE_MS);
    this.idleTimer.unref();
  }

  /**
   * The SHA-256 of `bytes`, and the bytes back (the buffer travels to the worker: do not touch
   * `bytes` until this resolves). `bytes` must own its ArrayBuffer (Buffer.allocUnsafeSlow).
   */
  hash(bytes: Buffer): Promise<{ bytes: Buffer; hash: Buffer }> {
    if (this.closed || bytes.byteOffset !== 0) {
      // A closed pool, or a view into a shared buffer that cannot be transferred: hash here.
      return Promise.resolve({ bytes, hash: createHash('sha256').update(bytes).digest() });
    }
    clearTimeout(this.idleTimer);
    if (this.slots.length === 0) this.start();
    const slot = this.slots[this.next++ % this.slots.length]!;
    const id = this.ids++;
    return new Promise((resolve, reject) => {
      slot.jobs.set(id, { resolve, reject, length: bytes.length });
      if (slot.jobs.size === 1) slot.worker.ref();
      const arrayBuffer = bytes.buffer as ArrayBuffer;
      slot.worker.postMessage({ id, buffer: arrayBuffer, length: bytes.length }, [arrayBuffer]);
    }).finally(() => {
      if (slot.jobs.size === 0) slot.worker.unref();
      this.settle();
    }) as Promise<{ bytes: Buffer; hash: Buffer }>;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.idleTimer);
    const stopping = this.slots;
    this.slots = [];
    await Promise.all(stopping.map((slot) => slot.worker.terminate()));
  }

  private failAll(slot: Slot, err: unknown): void {
    for (const job of slot.jobs.values()) job.reject(err);
    slot.jobs.clear();
  }
}
