// The one Watch both backends hand out: a queue of event batches the backend pushes into and
// the consumer drains with `for await`. It owns the ending rules so that both backends end the
// same way: close(), the caller's signal or leaving the loop ends iteration at once (batches
// still queued are dropped); a failure (CompactedError, a canceled watch) is thrown after the
// batches queued before it.
import { Wakeup } from '../wakeup.js';
import type { Watch, WatchEvent } from './store.js';

export interface WatchQueueHooks {
  /** Releases the backend's side (stream, registration). Called exactly once. */
  release(): void;
  /** The consumer took the last queued batch: a pull-based backend may read more now. */
  drained?(): void;
}

export class WatchQueue implements Watch {
  private readonly batches: WatchEvent[][] = [];
  private failure: Error | undefined;
  private closed = false;
  private released = false;
  private readonly wakeup = new Wakeup();
  private readonly removeAbortListener: () => void;

  constructor(
    private readonly hooks: WatchQueueHooks,
    signal?: AbortSignal,
  ) {
    const onAbort = () => this.close();
    signal?.addEventListener('abort', onAbort, { once: true });
    this.removeAbortListener = () => signal?.removeEventListener('abort', onAbort);
    if (signal?.aborted) this.close();
  }

  /** True once the backend must stop feeding this queue (closed or failed). */
  get ended(): boolean {
    return this.released;
  }

  /** Batches pushed but not yet taken by the consumer. */
  get pending(): number {
    return this.batches.length;
  }

  push(batch: WatchEvent[]): void {
    if (this.released || batch.length === 0) return;
    this.batches.push(batch);
    this.notify();
  }

  /** Ends the watch with an error the consumer sees after the batches queued before it. */
  fail(error: Error): void {
    if (this.released) return;
    this.failure = error;
    this.release();
    this.notify();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.batches.length = 0;
    this.release();
    this.notify();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<WatchEvent[]> {
    try {
      for (;;) {
        if (this.closed) return;
        const batch = this.batches.shift();
        if (batch) {
          if (this.batches.length === 0) this.hooks.drained?.();
          yield batch;
          continue;
        }
        if (this.failure) throw this.failure;
        if (this.released) return;
        await this.wakeup.wait();
      }
    } finally {
      this.close();
    }
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.removeAbortListener();
    this.hooks.release();
  }

  private notify(): void {
    this.wakeup.wake();
  }
}
