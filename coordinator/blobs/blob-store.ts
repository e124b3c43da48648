// Content-addressed blob storage (DESIGN principle 6): bytes go in through a writer that
// hashes them as they stream and publishes them under their sha256 only when committed;
// identical content is stored once. Backends: the local filesystem (fs-blob-store.ts) and
// S3-compatible object storage (s3-blob-store.ts).
import type { Readable } from 'node:stream';
import { InvalidArgumentError } from '../../shared/errors.js';
import { formatBytes } from '../../shared/units.js';

/** "sha256:<64 hex>" */
export type Digest = string;

export interface CreateOptions {
  /** The SHA-256 of every byte written ("sha256:<hex>"), once all are; undefined until then. */
  digestOfBytes?: () => Digest | undefined;
}

export interface BlobWriter {
  /** Appends bytes, hashing them. A full disk rejects with ResourceExhaustedError. */
  write(chunk: Buffer): Promise<void>;
  readonly bytesWritten: number;
  /**
   * Finishes the upload. When `expected` names a digest or size that the bytes do not match,
   * throws InvalidArgumentError and keeps nothing. Otherwise publishes the blob under its
   * digest (a no-op when that content is already stored) and drops the temporary data.
   */
  commit(expected?: { digest?: Digest; sizeBytes?: number }): Promise<{ digest: Digest; sizeBytes: number }>;
  /** Drops everything written so far. Idempotent; safe after commit. */
  abort(): Promise<void>;
}

export interface BlobStore {
  readonly kind: 'fs' | 's3';
  /**
   * A writer for a new blob. With `digestOfBytes` the caller hashes what it writes (off the
   * event loop, say) and says the digest at commit; the writer then hashes nothing itself.
   */
  create(options?: CreateOptions): Promise<BlobWriter>;
  stat(digest: Digest): Promise<{ sizeBytes: number } | undefined>;
  /** The blob's bytes from `offset`; NotFoundError when it is not stored. */
  read(digest: Digest, offset?: number): Promise<Readable>;
  /**
   * The same bytes read into buffers the caller owns and reuses (downloads: nothing allocated
   * per chunk where the backend allows it); NotFoundError when it is not stored.
   */
  openReader(digest: Digest, offset?: number): Promise<BlobReader>;
  delete(digest: Digest): Promise<void>;
  /**
   * The blob's piece manifest as encodeManifest (shared/pieces.ts) wrote it, kept beside the
   * blob (pieces/<hex>); undefined when none was saved (a blob stored before pieces existed).
   */
  readPieces(digest: Digest): Promise<Buffer | undefined>;
  /** Saves the piece manifest of a stored blob; replaces one saved before. */
  writePieces(digest: Digest, manifest: Buffer): Promise<void>;
  close(): Promise<void>;
}

/** Sequential reads of one blob into the caller's buffers. */
export interface BlobReader {
  /** Fills `buffer[at, at + length)` with the next bytes; fewer only at the blob's end (0 past it). */
  read(buffer: Buffer, at: number, length: number): Promise<number>;
  /** Idempotent. */
  close(): Promise<void>;
}

/** A backend's stream read as a BlobReader: its chunks are copied into the caller's buffers. */
export function streamReader(stream: Readable): BlobReader {
  const chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let rest: Buffer = Buffer.alloc(0);
  return {
    async read(buffer, at, length) {
      let filled = 0;
      while (filled < length) {
        if (rest.length === 0) {
          const next = await chunks.next();
          if (next.done) break;
          rest = next.value;
        }
        const copied = rest.copy(buffer, at + filled, 0, Math.min(rest.length, length - filled));
        rest = rest.subarray(copied);
        filled += copied;
      }
      return filled;
    },
    async close() {
      stream.destroy();
    },
  };
}

export const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Why the bytes are not what the uploader declared, or undefined when they are. */
export function describeMismatch(actual: { digest: Digest; sizeBytes: number }, expected: { digest?: Digest; sizeBytes?: number }): string | undefined {
  if (expected.sizeBytes !== undefined && expected.sizeBytes !== actual.sizeBytes) {
    return `the content is ${actual.sizeBytes} bytes but the push declared ${expected.sizeBytes} bytes; nothing was stored`;
  }
  if (expected.digest !== undefined && expected.digest !== actual.digest) {
    return `the content's digest is ${actual.digest} but the push declared ${expected.digest}; nothing was stored`;
  }
  return undefined;
}

/** The hex of a well-formed digest; anything else is the caller's mistake. */
export function hexOf(digest: Digest): string {
  if (!DIGEST.test(digest)) throw new InvalidArgumentError(`${JSON.stringify(digest)} is not a digest; expected sha256:<64 lowercase hex>`);
  return digest.slice('sha256:'.length);
}

/** Reading from `offset` must start within the blob (at its end reads nothing). */
export function checkOffset(digest: Digest, offset: number, size: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > size) {
    throw new InvalidArgumentError(`offset ${offset} is outside blob ${digest}, which is ${size} bytes (${formatBytes(size)})`);
  }
}
