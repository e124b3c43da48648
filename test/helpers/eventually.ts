// Waiting in tests for something asynchronous to become true, with a deadline and a message
// that says what did not happen.
import { setTimeout as delay } from 'node:timers/promises';

export interface EventuallyOptions {
  intervalMs?: number;
  /** Keep polling when the probe throws (a call during a failover); the last error is reported. */
  retryErrors?: boolean;
}

/** Polls `probe` until it returns something other than undefined. */
export async function eventually<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, options: EventuallyOptions = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      if (!options.retryErrors) throw err;
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms${last ? `: ${(last as Error).message}` : ''}`);
    await delay(options.intervalMs ?? 20);
  }
}

/** Waits until `check()` holds. */
export function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<true> {
  return eventually(what, timeoutMs, async () => (check() ? true : undefined), { intervalMs: 25 });
}
