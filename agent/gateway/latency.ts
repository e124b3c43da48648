// Latency of the requests one gateway sent to one replica since the last heartbeat: a bounded
// sample (the newest MAX_SAMPLES) for the percentiles, and exact counts.
const MAX_SAMPLES = 1024;

export class LatencyWindow {
  private samples: number[] = [];
  private next = 0;
  private count = 0;
  private errors = 0;

  add(ms: number, failed: boolean): void {
    this.count += 1;
    if (failed) {
      this.errors += 1;
      return;
    }
    if (this.samples.length < MAX_SAMPLES) this.samples.push(ms);
    else this.samples[this.next++ % MAX_SAMPLES] = ms;
  }

  /** The window's figures, and a fresh window; undefined when nothing was measured. */
  take(): { count: number; errors: number; p50Ms: number; p99Ms: number } | undefined {
    if (this.count === 0) return undefined;
    const sorted = [...this.samples].sort((a, b) => a - b);
    const at = (q: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
    const result = { count: this.count, errors: this.errors, p50Ms: Number(at(0.5).toFixed(3)), p99Ms: Number(at(0.99).toFixed(3)) };
    this.samples = [];
    this.next = 0;
    this.count = 0;
    this.errors = 0;
    return result;
  }
}
