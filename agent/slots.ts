// At most N holders at once; the others wait in order (or until their signal aborts, which takes
// them out of the line). A slot given back goes straight to the first waiter. Used by the model
// cache (downloads at once) and the piece buffers (working buffers at once).
export class Slots {
  private free: number;
  private readonly queue: (() => void)[] = [];

  constructor(size: number) {
    this.free = size;
  }

  /** Takes a slot, waiting for one; rejects with the signal's reason once it aborts. */
  async acquire(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    if (this.free > 0) {
      this.free -= 1;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const take = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const at = this.queue.indexOf(take);
        if (at >= 0) this.queue.splice(at, 1);
        reject(signal.reason);
      };
      this.queue.push(take);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Gives a slot back: to the first waiter, else to the free ones. */
  release(): void {
    const next = this.queue.shift();
    if (next) next();
    else this.free += 1;
  }

  async run<T>(signal: AbortSignal, work: () => Promise<T>): Promise<T> {
    await this.acquire(signal);
    try {
      return await work();
    } finally {
      this.release();
    }
  }
}
