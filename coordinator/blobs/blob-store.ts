// Content-addressed blob storage (DESIGN principle 6): bytes go in through a writer that
// hashes them as they stream and publishes them under their sha256 only when committed;
// identical content is stored once. Backends: the local filesystem (fs-blob-store.ts) and
// S3-compatible object storage (s3-blob-store.ts).
import type { Readable } from 'node:stream';

/** "sha256:<64 hex>" */
export type Digest = string;

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
  create(): Promise<BlobWriter>;
  stat(digest: Digest): Promise<{ sizeBytes: number } | undefined>;
  /** The blob's bytes from `offset`; NotFoundError when it is not stored. */
  read(digest: Digest, offset?: number): Promise<Readable>;
  delete(digest: Digest): Promise<void>;
  close(): Promise<void>;
}

export const DIGEST = /^sha256:[0-9a-f]{64}$/;
