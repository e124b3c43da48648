// The byte progress bar of `push` and `pull` (cli-progress): done / total, rate and ETA, on
// stderr, and only where a person watches it — stderr is a terminal and the output is the
// table. Anywhere else (-o json, a pipe, a CI log) it is a no-op, so stdout and stderr carry
// only the result.
import { SingleBar } from 'cli-progress';
import type { Progress } from '../../shared/sdk/artifact-transfer.js';
import { formatBytes } from '../../shared/units.js';

const humanBytes = (bytes: number) => `${formatBytes(bytes)}B`;

export type { Progress };

export interface ProgressOptions {
  /** Whether the caller wants a bar at all (false for -o json and -o yaml). */
  enabled: boolean;
  /** Where the bar is drawn; default process.stderr. */
  stream?: NodeJS.WriteStream;
  /** Bytes already done when the bar starts (a resumed download). */
  start?: number;
  /** Injected clock for the rate (tests). */
  now?: () => number;
}

const NO_PROGRESS: Progress = { update: () => {}, stop: () => {} };

export function progressBar(label: string, total: number, options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stderr;
  if (!options.enabled || !stream.isTTY) return NO_PROGRESS;
  const now = options.now ?? Date.now;
  const start = options.start ?? 0;
  const startedAt = now();
  const bar = new SingleBar({
    stream,
    format: `${label} [{bar}] {percentage}% | {done}/{size} | {rate} | ETA {eta_formatted}`,
    barsize: 30,
    hideCursor: true,
    etaBuffer: 50,
    fps: 10,
  });
  const payload = (bytes: number) => {
    const seconds = (now() - startedAt) / 1000;
    const rate = seconds > 0 ? (bytes - start) / seconds : 0;
    return { done: humanBytes(bytes), size: humanBytes(total), rate: `${humanBytes(Math.round(rate))}/s` };
  };
  bar.start(Math.max(total, 1), Math.min(start, total), payload(start));
  let stopped = false;
  return {
    update(bytes) {
      if (!stopped) bar.update(Math.min(bytes, total), payload(bytes));
    },
    stop() {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}
