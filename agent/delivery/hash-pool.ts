// SHA-256 of pieces in worker threads (min(2, cpus) of them), so hashing 8 MiB pieces does not
// hold the agent's event loop, which also runs its session and inference gateway. A piece's
// buffer is transferred to the worker and back, not copied.
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

export class HashPool {
  private readonly slots: Slot[] = [];
  private next = 0;
  private ids = 0;
  private closed = false;

  constructor(size = Math.min(2, os.availableParallelism())) {
    for (let i = 0; i < Math.max(1, size); i += 1) {
      const slot: Slot = { worker: new Worker(WORKER_SOURCE, { eval: true }), jobs: new Map() };
      slot.worker.unref();
      slot.worker.on('message', ({ id, buffer, hash }: { id: number; buffer: ArrayBuffer; hash: Uint8Array }) => {
        const job = slot.jobs.get(id);
        if (!job) return;
        slot.jobs.delete(id);
        job.resolve({ bytes: Buffer.from(buffer, 0, job.length), hash: Buffer.from(hash) });
      });
      slot.worker.on('error', (err) => this.failAll(slot, err));
      slot.worker.on('exit', () => this.failAll(slot, new UnavailableError('a hashing worker stopped')));
      this.slots.push(slot);
    }
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
    const slot = this.slots[this.next++ % this.slots.length]!;
    const id = this.ids++;
    return new Promise((resolve, reject) => {
      slot.jobs.set(id, { resolve, reject, length: bytes.length });
      if (slot.jobs.size === 1) slot.worker.ref();
      const arrayBuffer = bytes.buffer as ArrayBuffer;
      slot.worker.postMessage({ id, buffer: arrayBuffer, length: bytes.length }, [arrayBuffer]);
    }).finally(() => {
      if (slot.jobs.size === 0) slot.worker.unref();
    }) as Promise<{ bytes: Buffer; hash: Buffer }>;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.slots.map((slot) => slot.worker.terminate()));
  }

  private failAll(slot: Slot, err: unknown): void {
    for (const job of slot.jobs.values()) job.reject(err);
    slot.jobs.clear();
  }
}
