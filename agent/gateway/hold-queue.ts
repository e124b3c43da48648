// Requests held for a deployment that has no ready replica (an autoscaled one scaled to zero, or
// still waking: ModelRoute.holds with no endpoints). One bounded queue per deployment
// (--gateway-queue-size, default 100) with a deadline per request (--gateway-queue-timeout,
// default 30 s). A routing table that gives the deployment a ready endpoint releases its held
// requests in arrival order; beyond the queue or past the deadline the request gets 503 with
// Retry-After; a client that goes away while held leaves the queue at once. While held, a
// request counts as in flight and waiting in the load meter (load-meter.ts), and the first of a
// deployment wakes it (an immediate report to the leader).
import type { Clock, Timer } from '../../shared/clock.js';
import type { ModelRoute__Output as ModelRoute } from '../../shared/gen/mlfleet/v1/ModelRoute.js';
import type { DeploymentMeter, LoadMeter } from './load-meter.js';

export const DEFAULT_QUEUE_SIZE = 100;
export const DEFAULT_QUEUE_TIMEOUT_MS = 30_000;
/** What a refused request is told to wait before trying again (seconds). */
export const RETRY_AFTER_S = 1;

/** A held request could not be forwarded: 503, Retry-After, and why. */
export class HoldError extends Error {
  readonly retryAfterS = RETRY_AFTER_S;

  /** 503 (try again: Retry-After is sent), or 404 when what was waited for is gone. */
  constructor(
    message: string,
    readonly status: 503 | 404 = 503,
  ) {
    super(message);
  }
}

interface Held {
  /** "tenant/deployment". */
  name: string;
  /** The route as this request's sender may use it, in a new table (perhaps with no endpoint yet); undefined when the table no longer has it. */
  find(routes: readonly ModelRoute[]): ModelRoute | undefined;
  resolve(route: ModelRoute): void;
  reject(err: Error): void;
  timer: Timer;
  done: boolean;
}

export interface HoldQueueOptions {
  clock: Clock;
  size?: number;
  timeoutMs?: number;
  /** Counts held requests (waiting) and wakes; undefined: no load is measured (the gateway bench's baseline). */
  meter: LoadMeter | undefined;
}

export class HoldQueues {
  private readonly queues = new Map<string, Held[]>();
  readonly size: number;
  readonly timeoutMs: number;

  constructor(private readonly options: HoldQueueOptions) {
    this.size = options.size ?? DEFAULT_QUEUE_SIZE;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_QUEUE_TIMEOUT_MS;
  }

  /** Requests held now, for every deployment. */
  total(): number {
    let n = 0;
    for (const queue of this.queues.values()) n += queue.length;
    return n;
  }

  /** Requests held now for the deployment ("tenant/name"). */
  waiting(name: string): number {
    return this.queues.get(name)?.length ?? 0;
  }

  /**
   * Holds a request until `find` gives a route with a ready endpoint in a table passed to
   * release(); rejects with HoldError when the queue is full or the wait passes the timeout, and
   * with `signal`'s reason when the client goes away. `name` is "tenant/deployment"; `meter`
   * its load meter (undefined when load is not measured).
   */
  hold(
    name: string,
    meter: DeploymentMeter | undefined,
    find: (routes: readonly ModelRoute[]) => ModelRoute | undefined,
    signal: AbortSignal,
  ): Promise<ModelRoute> {
    const key = name;
    let queue = this.queues.get(key);
    if ((queue?.length ?? 0) >= this.size) {
      return Promise.reject(new HoldError(`deployment ${name} has no ready replica and ${this.size} requests are already waiting; try again shortly`));
    }
    if (signal.aborted) return Promise.reject(signal.reason);
    if (!queue) {
      queue = [];
      this.queues.set(key, queue);
    }
    return new Promise<ModelRoute>((resolve, reject) => {
      const leave = () => {
        if (held.done) return false;
        held.done = true;
        held.timer.cancel();
        signal.removeEventListener('abort', onAbort);
        const q = this.queues.get(key);
        if (q) {
          const at = q.indexOf(held);
          if (at >= 0) q.splice(at, 1);
          if (q.length === 0) this.queues.delete(key);
        }
        if (meter) this.options.meter?.unhold(meter);
        return true;
      };
      const onAbort = () => {
        if (leave()) reject(signal.reason);
      };
      const held: Held = {
        name,
        find,
        resolve: (route) => leave() && resolve(route),
        reject: (err) => leave() && reject(err),
        timer: this.options.clock.setTimeout(() => {
          held.reject(new HoldError(`deployment ${name} has no ready replica after ${Math.round(this.timeoutMs / 100) / 10} s of waiting (--gateway-queue-timeout); it may still be starting: try again shortly`));
        }, this.timeoutMs),
        done: false,
      };
      queue.push(held);
      signal.addEventListener('abort', onAbort, { once: true });
      if (meter) this.options.meter?.hold(meter);
    });
  }

  /** A new routing table: held requests whose route now has a ready endpoint go on, oldest first. */
  release(routes: readonly ModelRoute[]): void {
    for (const queue of [...this.queues.values()]) {
      for (const held of [...queue]) {
        const route = held.find(routes);
        if (!route) held.reject(new HoldError(`the model is no longer served here (its deployment ${held.name} was removed while this request waited)`, 404));
        else if (route.endpoints.length > 0) held.resolve(route);
      }
    }
  }

  /** The gateway closes: every held request is answered 503. */
  close(): void {
    for (const queue of [...this.queues.values()]) {
      for (const held of [...queue]) held.reject(new HoldError('the gateway is shutting down; try again shortly'));
    }
  }
}
