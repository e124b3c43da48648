// A lease kept alive: grants a lease on any Store and renews it every TTL/3 (what etcd's Go
// client does) until revoked. `lost` aborts when the lease can no longer be trusted: a
// keep-alive found it gone, or no keep-alive has succeeded for a whole TTL (the store may well
// have expired it by then, so whoever holds leadership through it must stop). The store's
// own keep-alive helpers are not used, so this one loop, on the injected clock, is the only
// thing that decides.
import { sleep, systemClock, type Clock, type Timer } from '../clock.js';
import { silentLogger, type Logger } from '../log.js';
import { LeaseNotFoundError, type Store } from './store.js';

export interface LeaseOptions {
  clock?: Clock;
  log?: Logger;
  /** Called after each successful renewal with the time since the one before was sent (for metrics). */
  onRenewed?: (gapMs: number) => void;
}

export class Lease {
  private readonly stopping = new AbortController();
  private readonly lostController = new AbortController();
  private readonly loop: Promise<void>;
  private watchdog: Timer | undefined;
  private revoking: Promise<void> | undefined;

  /** Grants a lease of (at least) `ttlMs` and starts keeping it alive. */
  static async create(store: Store, ttlMs: number, options: LeaseOptions = {}): Promise<Lease> {
    const clock = options.clock ?? systemClock;
    const requestedAt = clock.now();
    const grant = await store.leaseGrant(ttlMs);
    const log = (options.log ?? silentLogger()).child({ component: 'lease', lease: grant.id });
    return new Lease(store, grant.id, grant.ttlMs, requestedAt, clock, log, options.onRenewed);
  }

  private constructor(
    private readonly store: Store,
    /** The store's lease id, to attach keys with `{lease: id}`. */
    readonly id: string,
    /** The TTL the store granted (etcd rounds up to whole seconds and its minimum). */
    readonly ttlMs: number,
    requestedAt: number,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly onRenewed: ((gapMs: number) => void) | undefined,
  ) {
    // The store started counting no earlier than the grant request: measure from there.
    this.armWatchdog(requestedAt);
    this.loop = this.keepAlive(requestedAt);
  }

  /** Aborts, with the reason, once the lease is gone or must be presumed gone. */
  get lost(): AbortSignal {
    return this.lostController.signal;
  }

  /** Stops the keep-alives and revokes the lease, deleting its keys. Idempotent. */
  revoke(): Promise<void> {
    this.revoking ??= (async () => {
      this.stopping.abort();
      this.watchdog?.cancel();
      await this.loop;
      await this.store.leaseRevoke(this.id);
    })();
    return this.revoking;
  }

  private async keepAlive(renewedAt: number): Promise<void> {
    const interval = Math.max(1, Math.floor(this.ttlMs / 3));
    let delay = interval;
    while (!this.stopping.signal.aborted && !this.lost.aborted) {
      try {
        await sleep(this.clock, delay, this.stopping.signal);
      } catch {
        return; // revoked
      }
      const sentAt = this.clock.now();
      try {
        await this.store.leaseKeepAlive(this.id);
        if (this.stopping.signal.aborted) return; // revoked or lost while the call was out
        // How long the lease went unconfirmed: from the renewal before to this one's answer.
        this.onRenewed?.(this.clock.now() - renewedAt);
        renewedAt = sentAt;
        this.armWatchdog(renewedAt);
        delay = interval;
      } catch (err) {
        if (this.stopping.signal.aborted) return;
        if (err instanceof LeaseNotFoundError) {
          this.markLost(err);
          return;
        }
        this.log.warn({ err: (err as Error).message, sinceRenewalMs: this.clock.now() - renewedAt }, 'lease keep-alive failed; retrying');
        // Retry sooner than usual: there is less of the TTL left.
        delay = Math.max(1, Math.floor(interval / 2));
      }
    }
  }

  /**
   * Declares the lease lost one TTL after its last renewal. A timer rather than a check after
   * each keep-alive, because a keep-alive to an unreachable store can hang past the TTL.
   */
  private armWatchdog(renewedAt: number): void {
    this.watchdog?.cancel();
    const remaining = Math.max(0, renewedAt + this.ttlMs - this.clock.now());
    this.watchdog = this.clock.setTimeout(() => {
      this.markLost(new Error(`lease ${this.id}: no keep-alive succeeded for ${this.ttlMs} ms (its TTL); presuming it expired`));
    }, remaining);
  }

  private markLost(reason: Error): void {
    if (this.lost.aborted || this.stopping.signal.aborted) return;
    this.watchdog?.cancel();
    this.log.warn({ reason: reason.message }, 'lease lost');
    this.lostController.abort(reason);
    // Wake the loop from its sleep so it ends now rather than at the next tick.
    this.stopping.abort();
  }
}
