// The agent's piece buffers (docs/delivery.md, "Pulling into an agent's cache"), and the
// verified pieces kept in them for a while. A fetch takes a working buffer (at most WORKING_BUFFERS at
// once, all pulls together: a pull's memory is bounded and steady, with no new 8 MiB buffer per
// piece for the collector to chase). Among peers, a verified piece may then stay in its buffer
// (at most KEPT pieces): the hashing worker takes it from there in its turn in the whole digest,
// and peers asking for it are served from there, where both would otherwise read it back from the
// disk (pieces are written past the page cache: direct-io.ts). In the 16-agent fanout that was
// ~26 GiB of reads for 16 GiB delivered, and the disk, not the CPU, set the pace.
// A kept piece is pinned while the worker holds it or a peer is being sent it; unpinned ones go,
// oldest first, when room is needed, and a blob's go a while after its pull ends.
// Buffers are page-aligned shared memory (alignedBuffer): the worker reads a piece where it lies,
// and the file takes it direct.
import { Slots } from '../slots.js';
import { alignedBuffer } from './direct-io.js';

/** Working buffers, all pulls together: pieces in flight (and being written and hashed). */
export const WORKING_BUFFERS = 4;
/** Verified pieces kept in memory at most, all pulls together (with 8 MiB pieces, 96 MiB). */
export const KEPT_PIECES = 12;

interface Kept {
  key: string;
  /** The piece's bytes (its length), on a buffer of the pool. */
  bytes: Buffer;
  /** The worker holding it for the whole digest, and peers being sent it. */
  pins: number;
  /** Verified and named: peers may be sent it. */
  published: boolean;
}

/** A piece's place in memory between its fetch and its verification (PieceMemory.reserve). */
export interface KeptSlot {
  /** The piece matched its hash: peers may be sent it from here on. */
  publish(digest: string, piece: number): void;
  /** Drops one pin (the worker let go, or never took it). */
  unpin(): void;
  /** The piece was corrupt: its buffer goes back at once. */
  discard(): void;
}

export class PieceMemory {
  private readonly free = new Map<number, Buffer[]>();
  /** Working buffers out (the limit's slots). */
  private readonly working: Slots;
  /** Kept pieces by key; a Map's order is their age (publish moves one to the end). */
  private readonly kept = new Map<string, Kept>();
  /** Kept and not yet published (reserved): keyed by a counter. */
  private reservations = 0;
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly limits: { working: number; kept: number } = { working: WORKING_BUFFERS, kept: KEPT_PIECES },
    private readonly allocate: (size: number) => Buffer = alignedBuffer,
  ) {
    this.working = new Slots(limits.working);
  }

  /** Pieces kept now (for tests and the log). */
  get keptCount(): number {
    return this.kept.size;
  }

  /** A working buffer of `size` bytes; waits while every working buffer is out. */
  async take(size: number, signal: AbortSignal): Promise<Buffer> {
    await this.working.acquire(signal);
    return this.free.get(size)?.pop() ?? this.allocate(size);
  }

  /** A working buffer back, unkept. */
  give(buffer: Buffer): void {
    this.recycle(buffer);
    this.working.release();
  }

  /**
   * Turns the working buffer holding a piece (not yet verified) into a kept one, pinned once, so
   * that its working slot frees up for the next fetch; undefined when every kept piece is pinned
   * (then the buffer stays a working one, to give back).
   */
  reserve(bytes: Buffer): KeptSlot | undefined {
    if (this.kept.size >= this.limits.kept && !this.evictOne()) return undefined;
    const entry: Kept = { key: `reserved:${this.reservations++}`, bytes, pins: 1, published: false };
    this.kept.set(entry.key, entry);
    this.working.release();
    return {
      publish: (digest, piece) => {
        if (entry.published || !this.kept.has(entry.key)) return;
        this.kept.delete(entry.key);
        const key = keyOf(digest, piece);
        // A second copy of a piece (fetched twice): the older one goes, unless a peer is reading it.
        const older = this.kept.get(key);
        if (older && older.pins === 0) this.remove(older);
        entry.key = older && older.pins > 0 ? `${key}#${this.reservations++}` : key;
        entry.published = true;
        this.kept.set(entry.key, entry);
      },
      unpin: () => this.unpinEntry(entry),
      discard: () => {
        if (!this.kept.has(entry.key)) return;
        entry.pins = 0;
        this.remove(entry);
      },
    };
  }

  /** The bytes of a verified piece kept in memory, pinned until unpin(); undefined when not kept. */
  pin(digest: string, piece: number): { bytes: Buffer; unpin: () => void } | undefined {
    const entry = this.kept.get(keyOf(digest, piece));
    if (!entry?.published) return undefined;
    entry.pins += 1;
    let pinned = true;
    return {
      bytes: entry.bytes,
      unpin: () => {
        if (!pinned) return;
        pinned = false;
        this.unpinEntry(entry);
      },
    };
  }

  /** A blob's unpinned pieces go after `afterMs` (its pull ended; peers behind it may still ask a moment). */
  forget(digest: string, afterMs: number): void {
    clearTimeout(this.timers.get(digest));
    const timer = setTimeout(() => {
      this.timers.delete(digest);
      const prefix = `${digest}:`;
      for (const entry of [...this.kept.values()]) if (entry.published && entry.pins === 0 && entry.key.startsWith(prefix)) this.remove(entry);
    }, afterMs);
    timer.unref();
    this.timers.set(digest, timer);
  }

  private unpinEntry(entry: Kept): void {
    if (entry.pins === 0) return;
    entry.pins -= 1;
    // Never published (the pull stopped before it was verified): nobody will ask for it.
    if (entry.pins === 0 && !entry.published && this.kept.has(entry.key)) this.remove(entry);
  }

  /** Drops the oldest unpinned kept piece; false when every one is pinned. */
  private evictOne(): boolean {
    for (const entry of this.kept.values()) {
      if (entry.pins > 0) continue;
      this.remove(entry);
      return true;
    }
    return false;
  }

  private remove(entry: Kept): void {
    this.kept.delete(entry.key);
    this.recycle(entry.bytes);
  }

  /** A buffer no longer used: kept for the next take() while there are fewer spare than working buffers, else left to the collector. */
  private recycle(buffer: Buffer): void {
    const whole = Buffer.from(buffer.buffer, 0, buffer.buffer.byteLength);
    let spare = 0;
    for (const list of this.free.values()) spare += list.length;
    if (spare >= this.limits.working) return;
    const list = this.free.get(whole.length) ?? [];
    list.push(whole);
    this.free.set(whole.length, list);
  }
}

function keyOf(digest: string, piece: number): string {
  return `${digest}:${piece}`;
}
