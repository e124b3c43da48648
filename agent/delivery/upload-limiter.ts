// The cap on bytes this agent gives to peers (--peer-upload-mbps): one token bucket shared by
// every peer response. A sender reserves the bytes it is about to write and waits until the
// bucket has refilled past them, so concurrent responses share the rate in the order they
// asked, and a response never has more than one buffer in memory while it waits.
import { sleep, type Clock } from '../../shared/clock.js';
import { InvalidArgumentError } from '../../shared/errors.js';
import { MiB } from '../../shared/pieces.js';

/** Without a NIC speed from the inventory: 1 Gbit/s. */
export const FALLBACK_PEER_UPLOAD_MBPS = 1000;

/**
 * The --peer-upload-mbps in force: the flag when given (0: sharing off), else half the fastest
 * NIC the inventory found, else FALLBACK_PEER_UPLOAD_MBPS.
 */
export function peerUploadMbps(flag: number | undefined, nics: readonly { speedMbps: number }[]): number {
  if (flag !== undefined) return flag;
  const fastest = Math.max(0, ...nics.map((n) => n.speedMbps));
  return fastest > 0 ? Math.max(1, Math.floor(fastest / 2)) : FALLBACK_PEER_UPLOAD_MBPS;
}

/** Parses the flag's text: a whole number of megabits per second, 0 or more. */
export function parsePeerUploadMbps(text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value > 4_000_000) {
    throw new InvalidArgumentError(`peer upload rate must be a whole number of megabits per second (0 turns sharing off), not ${JSON.stringify(text.slice(0, 40))}`);
  }
  return value;
}

export class UploadLimiter {
  readonly bytesPerSecond: number;
  /** The most the bucket holds: what may go out at once after a quiet spell. */
  readonly burstBytes: number;
  private tokens: number;
  private last: number;

  constructor(
    mbps: number,
    private readonly clock: Clock,
  ) {
    if (!(mbps > 0) || !Number.isFinite(mbps)) throw new InvalidArgumentError(`an upload limiter needs a rate above 0 Mbit/s, not ${mbps}`);
    this.bytesPerSecond = (mbps * 1_000_000) / 8;
    // A quarter of a second of the rate, and never less than one read buffer.
    this.burstBytes = Math.max(MiB, Math.floor(this.bytesPerSecond / 4));
    this.tokens = this.burstBytes;
    this.last = clock.now();
  }

  /**
   * Takes `bytes` from the bucket now and says how many milliseconds to wait before sending
   * them (0: at once). The bucket may go below zero: later callers then wait behind this one.
   */
  reserve(bytes: number): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.burstBytes, this.tokens + ((now - this.last) * this.bytesPerSecond) / 1000);
    this.last = now;
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.bytesPerSecond);
  }

  /** Gives back bytes reserved and not sent (the peer went away while it waited). */
  refund(bytes: number): void {
    this.tokens = Math.min(this.burstBytes, this.tokens + bytes);
  }

  /** Resolves when `bytes` may be sent; rejects (and refunds) when the signal aborts first. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    const wait = this.reserve(bytes);
    if (wait === 0) return;
    try {
      await sleep(this.clock, wait, signal);
    } catch (err) {
      this.refund(bytes);
      throw err;
    }
  }
}
