// Small tools the store tests share: reading a watch a few events at a time, waiting for a
// condition, and a store whose keep-alives can be cut as by a network partition.
export { eventually } from '../helpers/eventually.js';
import { setTimeout as delay } from 'node:timers/promises';
import {
  StoreUnavailableError,
  type Compare,
  type KeyValue,
  type LeaseGrant,
  type Op,
  type RangeOptions,
  type RangeResult,
  type Store,
  type TxnResult,
  type Watch,
  type WatchEvent,
  type WatchOptions,
} from '../../shared/store/store.js';

/** Reads a watch in steps, keeping one iterator (so the watch stays open between steps). */
export class WatchReader {
  private readonly iterator: AsyncIterator<WatchEvent[]>;
  private pending: Promise<IteratorResult<WatchEvent[]>> | undefined;
  private buffered: WatchEvent[] = [];

  constructor(readonly watch: Watch) {
    this.iterator = watch[Symbol.asyncIterator]();
  }

  /** The next `count` events; fails if they do not all come within `timeoutMs`. */
  async take(count: number, timeoutMs = 5_000): Promise<WatchEvent[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.buffered.length < count) {
      this.pending ??= this.iterator.next();
      const next = await raceTimeout(this.pending, deadline - Date.now());
      if (next === 'timeout') {
        throw new Error(`expected ${count} events within ${timeoutMs} ms; got ${this.buffered.length}: ${JSON.stringify(this.buffered)}`);
      }
      this.pending = undefined;
      if (next.done) throw new Error(`the watch ended after ${this.buffered.length} of ${count} events`);
      this.buffered.push(...next.value);
    }
    return this.buffered.splice(0, count);
  }

  /** The error the watch fails with next. */
  async failure(timeoutMs = 5_000): Promise<unknown> {
    try {
      await this.take(Number.MAX_SAFE_INTEGER, timeoutMs);
    } catch (err) {
      return err;
    }
    throw new Error('the watch did not fail');
  }
}

async function raceTimeout<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  const timeout = new AbortController();
  try {
    return await Promise.race([promise, delay(Math.max(0, ms), 'timeout' as const, { signal: timeout.signal })]);
  } finally {
    timeout.abort();
  }
}

/** Resolves `promise`, or fails saying what did not happen within `ms`. */
export async function within<T>(what: string, ms: number, promise: Promise<T>): Promise<T> {
  const result = await raceTimeout(promise, ms);
  if (result === 'timeout') throw new Error(`${what} did not happen within ${ms} ms`);
  return result;
}

/** Resolves once `signal` has aborted (at once if it already has). */
export function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

/** Whether `promise` is still pending after `ms`. */
export async function stillPending(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return (await raceTimeout(promise.then(() => 'settled', () => 'settled'), ms)) === 'timeout';
}

/**
 * A client of a store that can be partitioned from it: once cut, its keep-alives fail as if
 * the store were unreachable, so its leases run out, while its other calls still go through
 * (to show what a deposed leader's late writes meet).
 */
export class PartitionableStore implements Store {
  private cut = false;

  constructor(private readonly inner: Store) {}

  get kind(): Store['kind'] {
    return this.inner.kind;
  }

  cutKeepAlives(): void {
    this.cut = true;
  }

  get(key: string): Promise<KeyValue | undefined> {
    return this.inner.get(key);
  }

  range(prefix: string, options?: RangeOptions): Promise<RangeResult> {
    return this.inner.range(prefix, options);
  }

  revision(): Promise<number> {
    return this.inner.revision();
  }

  txn(compares: Compare[], success: Op[], failure?: Op[]): Promise<TxnResult> {
    return this.inner.txn(compares, success, failure);
  }

  put(key: string, value: string, options?: { lease?: string }): Promise<number> {
    return this.inner.put(key, value, options);
  }

  delete(key: string): Promise<number> {
    return this.inner.delete(key);
  }

  watch(prefix: string, options?: WatchOptions): Watch {
    return this.inner.watch(prefix, options);
  }

  leaseGrant(ttlMs: number): Promise<LeaseGrant> {
    return this.inner.leaseGrant(ttlMs);
  }

  async leaseKeepAlive(id: string): Promise<void> {
    if (this.cut) throw new StoreUnavailableError('partitioned (test)');
    return this.inner.leaseKeepAlive(id);
  }

  leaseRevoke(id: string): Promise<void> {
    return this.inner.leaseRevoke(id);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
