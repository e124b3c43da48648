// Piece hashes of a stream, and its whole digest when asked, computed in a worker thread
// (shared/piece-hash-worker.ts), so that a coordinator receiving an upload spends its event loop
// on the network and the disk: with both hashes there it held a 1 GiB push to ~400 MiB/s. Bytes are handed over after the caller is done with
// them: their buffer transferred when it starts with them, else copied. Hashed buffers come
// back (take()) for the caller to fill again: a fresh MiB per write cost the coordinator about
// 0.5 CPU-s per GiB pushed on the bench machine, where new memory is slow to touch.
import { Worker } from 'node:worker_threads';
import { UnavailableError } from './errors.js';

/** Given-back buffers kept at most (the caller holds one being written and one being filled). */
const KEPT_BUFFERS = 4;

export class WorkerPieceHasher {
  private readonly worker: Worker;
  private readonly failed: Promise<never>;
  private total = 0;
  /** Buffers the worker has hashed and given back, for take(). */
  private readonly returned: Buffer[] = [];

  /** `whole`: the worker also takes the SHA-256 of every byte (finish() says it); without, finish() gives digest ''. */
  constructor(
    readonly pieceBytes: number,
    options: { whole?: boolean } = {},
  ) {
    this.worker = new Worker(new URL('./piece-hash-worker.js', import.meta.url), { workerData: { pieceBytes, whole: options.whole === true } });
    this.worker.unref();
    this.failed = new Promise<never>((_, reject) => {
      this.worker.once('error', reject);
      this.worker.once('exit', () => reject(new UnavailableError('the piece hashing worker stopped')));
    });
    this.failed.catch(() => undefined);
    this.worker.on('message', (message: { used?: ArrayBuffer }) => {
      if (message.used && this.returned.length < KEPT_BUFFERS) this.returned.push(Buffer.from(message.used));
    });
  }

  /** A buffer of at least `bytes` that the worker has hashed and given back, if one is free. */
  take(bytes: number): Buffer | undefined {
    const at = this.returned.findIndex((buffer) => buffer.length >= bytes);
    return at < 0 ? undefined : this.returned.splice(at, 1)[0];
  }

  get bytes(): number {
    return this.total;
  }

  /** Hands `bytes` over: the caller must not touch them, nor the rest of their buffer, again. */
  update(bytes: Buffer): void {
    this.total += bytes.length;
    const owned = bytes.byteOffset === 0 && !(bytes.buffer instanceof SharedArrayBuffer);
    const sent = owned ? bytes : Buffer.from(bytes);
    this.worker.postMessage({ bytes: sent }, [sent.buffer as ArrayBuffer]);
  }

  /** The piece hashes of everything sent (32 bytes per piece) and, when asked for, its digest ("sha256:<hex>"); the worker then stops. */
  async finish(): Promise<{ sizeBytes: number; hashes: Buffer; digest: string }> {
    this.worker.ref();
    const answer = new Promise<{ sizeBytes: number; hashes: Uint8Array; digest: string }>((resolve) =>
      this.worker.on('message', (message: { sizeBytes?: number; hashes?: Uint8Array; digest?: string }) => {
        if (message.hashes) resolve(message as { sizeBytes: number; hashes: Uint8Array; digest: string });
      }),
    );
    this.worker.postMessage({ finish: true });
    try {
      const { sizeBytes, hashes, digest } = await Promise.race([answer, this.failed]);
      return { sizeBytes, hashes: Buffer.from(hashes.buffer, hashes.byteOffset, hashes.byteLength), digest };
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
