// A loop's "wait until something changed": one waiter at a time, woken by the next wake(). A
// wake() with nobody waiting is not kept, so a loop checks its condition before it waits.

export class Wakeup {
  private resolve: (() => void) | undefined;

  /** Resolves at the next wake(). */
  wait(): Promise<void> {
    return new Promise((resolve) => (this.resolve = resolve));
  }

  /** Wakes the waiter, if there is one. */
  wake(): void {
    const resolve = this.resolve;
    this.resolve = undefined;
    resolve?.();
  }
}
