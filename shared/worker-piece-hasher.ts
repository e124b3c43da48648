// Piece hashes of a stream computed in a worker thread (shared/piece-hash-worker.ts), so that a
// coordinator receiving an upload hashes the whole digest on its event loop and the pieces on
// another core, instead of both on one. Bytes are handed over after the caller is done with
// them: transferred when the buffer is theirs alone, else copied.
import { Worker } from 'node:worker_threads';
import { UnavailableError } from './errors.js';

export class WorkerPieceHasher {
  private readonly worker: Worker;
  private readonly failed: Promise<never>;
  private total = 0;

  constructor(readonly pieceBytes: number) {
    this.worker = new Worker(new URL('./piece-hash-worker.js', import.meta.url), { workerData: { pieceBytes } });
    this.worker.unref();
    this.failed = new Promise<never>((_, reject) => {
      this.worker.once('error', reject);
      this.worker.once('exit', () => reject(new UnavailableError('the piece hashing worker stopped')));
    });
    this.failed.catch(() => undefined);
  }

  get bytes(): number {
    return this.total;
  }

  /** Hands `bytes` over (the caller must not touch them again). */
  update(bytes: Buffer): void {
    this.total += bytes.length;
    const owned = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && !(bytes.buffer instanceof SharedArrayBuffer);
    const sent = owned ? bytes : Buffer.from(bytes);
    this.worker.postMessage({ bytes: sent }, [sent.buffer as ArrayBuffer]);
  }

  /** The piece hashes of everything sent (32 bytes per piece); the worker then stops. */
  async finish(): Promise<{ sizeBytes: number; hashes: Buffer }> {
    this.worker.ref();
    const answer = new Promise<{ sizeBytes: number; hashes: Uint8Array }>((resolve) => this.worker.once('message', resolve));
    this.worker.postMessage({ finish: true });
    try {
      const { sizeBytes, hashes } = await Promise.race([answer, this.failed]);
      return { sizeBytes, hashes: Buffer.from(hashes.buffer, hashes.byteOffset, hashes.byteLength) };
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
