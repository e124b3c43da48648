// The whole-digest check of a download, overlapped with it: a worker thread reads the partial
// file back and hashes its contiguous prefix of written pieces as that prefix grows, so that
// when the last piece lands only the tail is left to hash, and the agent's event loop hashes
// nothing.
import { Worker } from 'node:worker_threads';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const { createHash } = require('node:crypto');
const fd = fs.openSync(workerData.file, 'r');
const hash = createHash('sha256');
const buffer = Buffer.allocUnsafe(1 << 20);
let at = 0;
let target = 0;
let finishAt = -1;
parentPort.on('message', (message) => {
  if (message.finish !== undefined) finishAt = message.finish;
  target = Math.max(target, message.advance ?? 0, message.finish ?? 0);
  while (at < target) {
    const n = fs.readSync(fd, buffer, 0, Math.min(buffer.length, target - at), at);
    if (n === 0) throw new Error('the partial file ended at ' + at + ' bytes, before ' + target);
    hash.update(buffer.subarray(0, n));
    at += n;
  }
  if (finishAt >= 0 && at >= finishAt) {
    fs.closeSync(fd);
    parentPort.postMessage({ hex: hash.digest('hex') });
  }
});
`;

export class PrefixHasher {
  private readonly worker: Worker;
  private readonly result: Promise<string>;
  private advanced = 0;

  /** Hashes `file` from its start; nothing is read before advance(). */
  constructor(file: string) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { file } });
    this.result = new Promise<string>((resolve, reject) => {
      this.worker.once('message', ({ hex }: { hex: string }) => resolve(hex));
      this.worker.once('error', reject);
      this.worker.once('exit', () => reject(new Error('the hashing worker stopped')));
    });
    this.result.catch(() => undefined); // observed by finish(); a closed hasher is not an error
  }

  /** The first `bytes` of the file are final: hash them when the worker gets to them. */
  advance(bytes: number): void {
    if (bytes <= this.advanced) return;
    this.advanced = bytes;
    this.worker.postMessage({ advance: bytes });
  }

  /** The SHA-256 (hex) of the first `sizeBytes`, once every one is final. */
  async finish(sizeBytes: number): Promise<string> {
    this.worker.postMessage({ finish: sizeBytes });
    try {
      return await this.result;
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
