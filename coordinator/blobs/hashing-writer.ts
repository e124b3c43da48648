// The part of a BlobWriter that does not depend on where bytes go: the sha256 computed as
// they arrive (or told at commit by a caller that hashes them itself: CreateOptions), writes applied strictly in call order, the open → committing → committed
// (or aborted / failed) life, the expected-digest check, and clean-up on every failure path.
// A backend supplies how bytes are appended, published under their digest, and discarded.
import { createHash, type Hash } from 'node:crypto';
import { FailedPreconditionError, InvalidArgumentError } from '../../shared/errors.js';
import { describeMismatch, type BlobWriter, type CreateOptions, type Digest } from './blob-store.js';

type WriterState = 'open' | 'committing' | 'committed' | 'aborted' | 'failed';

export abstract class HashingBlobWriter implements BlobWriter {
  /** Undefined when the caller hashes the bytes (digestOfBytes). */
  private readonly hash: Hash | undefined;
  protected state: WriterState = 'open';
  private written = 0;
  /** Writes run one after another, in call order, so the hash and the stored bytes agree. */
  private tail: Promise<void> = Promise.resolve();
  /** The first failure; later writes and the commit report it. */
  protected failure: unknown;
  private committing: Promise<unknown> | undefined;
  private aborting: Promise<void> | undefined;

  constructor(
    private readonly forget: () => void,
    private readonly digestOfBytes?: CreateOptions['digestOfBytes'],
  ) {
    this.hash = digestOfBytes ? undefined : createHash('sha256');
  }

  /** Stores the next bytes (after every earlier append has finished). */
  protected abstract append(chunk: Buffer): Promise<void>;
  /** Makes the complete, verified bytes the blob `digest` (nothing to do when it exists). */
  protected abstract publish(digest: Digest, sizeBytes: number): Promise<void>;
  /** Drops everything stored so far; must not throw for data that is already gone. */
  protected abstract discard(): Promise<void>;
  /** A backend error as the typed error callers should see (a full disk → RESOURCE_EXHAUSTED). */
  protected abstract mapError(err: unknown): unknown;

  get bytesWritten(): number {
    return this.written;
  }

  write(chunk: Buffer): Promise<void> {
    if (this.state !== 'open') return Promise.reject(this.failure ?? new FailedPreconditionError(`cannot write to an upload that is ${this.state}`));
    this.hash?.update(chunk);
    this.written += chunk.length;
    const write = this.tail.then(async () => {
      this.throwIfFailed();
      try {
        await this.append(chunk);
      } catch (err) {
        throw this.fail(this.mapError(err));
      }
    });
    this.tail = write.catch(() => {});
    return write;
  }

  commit(expected: { digest?: Digest; sizeBytes?: number } = {}): Promise<{ digest: Digest; sizeBytes: number }> {
    if (this.state !== 'open') return Promise.reject(this.failure ?? new FailedPreconditionError(`cannot commit an upload that is ${this.state}`));
    this.state = 'committing';
    const committing = this.finish(expected);
    this.committing = committing.catch(() => {});
    return committing;
  }

  abort(): Promise<void> {
    // A commit under way decides the outcome itself, and cleans up when it fails.
    if (this.committing) return this.committing.then(() => {});
    if (this.state === 'open') this.state = 'aborted';
    // Every caller, the first or a repeat, returns once the data is gone.
    return (this.aborting ??= (async () => {
      await this.tail;
      await this.discard();
      this.forget();
    })());
  }

  /** Records the first failure and returns it. */
  protected fail(err: unknown): unknown {
    if (this.failure === undefined) {
      this.failure = err;
      if (this.state === 'open') this.state = 'failed';
    }
    return this.failure;
  }

  protected throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  private async finish(expected: { digest?: Digest; sizeBytes?: number }): Promise<{ digest: Digest; sizeBytes: number }> {
    try {
      await this.tail;
      this.throwIfFailed();
      const digest = this.hash ? `sha256:${this.hash.digest('hex')}` : this.digestOfBytes?.();
      if (digest === undefined) throw new FailedPreconditionError('the bytes written were not all hashed; push again');
      const sizeBytes = this.written;
      const mismatch = describeMismatch({ digest, sizeBytes }, expected);
      if (mismatch) throw new InvalidArgumentError(mismatch);
      await this.publish(digest, sizeBytes);
      this.state = 'committed';
      return { digest, sizeBytes };
    } catch (err) {
      const failure = this.fail(this.mapError(err));
      this.state = 'failed';
      await this.discard();
      throw failure;
    } finally {
      this.forget();
    }
  }
}
