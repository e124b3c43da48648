// A clock tests drive by hand: time moves only when advance() is called, and timers due by
// then run in order.
import type { Clock, Timer } from '../../shared/clock.js';

interface Scheduled {
  at: number;
  fn: () => void;
  every: number | undefined;
  cancelled: boolean;
}

export class FakeClock implements Clock {
  private current: number;
  private timers: Scheduled[] = [];

  constructor(start = 1_700_000_000_000) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    return this.schedule(fn, ms, undefined);
  }

  setInterval(fn: () => void, ms: number): Timer {
    return this.schedule(fn, ms, Math.max(1, ms));
  }

  /** Moves time forward by `ms`, running every timer that falls due on the way. */
  advance(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      const due = this.timers.filter((t) => !t.cancelled && t.at <= target).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.current = due.at;
      if (due.every !== undefined) due.at += due.every;
      else due.cancelled = true;
      due.fn();
    }
    this.timers = this.timers.filter((t) => !t.cancelled);
    this.current = target;
  }

  private schedule(fn: () => void, ms: number, every: number | undefined): Timer {
    const entry: Scheduled = { at: this.current + Math.max(0, ms), fn, every, cancelled: false };
    this.timers.push(entry);
    return { cancel: () => void (entry.cancelled = true) };
  }
}
