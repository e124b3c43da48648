// A job's logs and its end, for the SDK's jobs.logs / jobs.wait and `mlfleetctl jobs logs`. A job
// with several workers (a gang's ranks, or partitions) has one log per worker: they are read at
// once and their lines interleave whole, each with `[rank N] ` (`[partition N] `) in front; a
// single worker's bytes come as they were kept.
import { setTimeout as delay } from 'node:timers/promises';
import type { CoordinatorClient } from '../client.js';
import { FailedPreconditionError } from '../errors.js';
import type { Job } from '../proto.js';
import { Wakeup } from '../wakeup.js';

/** The statuses a job ends in. */
export const JOB_ENDED = ['succeeded', 'failed', 'cancelled'] as const;

export interface JobLogsOptions {
  /** Keep reading new output until the workers end (or `signal` aborts). */
  follow?: boolean;
  /** Only the last this many bytes kept of each worker. */
  tailBytes?: number;
  /** Another tenant's job (admins). */
  tenant?: string;
  signal?: AbortSignal;
}

/** Re-cuts a byte stream into whole lines, each with `prefix` in front. */
export class LinePrefixer {
  private pending: Buffer = Buffer.alloc(0);
  constructor(private readonly prefix: Buffer) {}

  /** The complete lines in `chunk` (with what was pending), prefixed. */
  push(chunk: Buffer): Buffer {
    const data = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    const lines: Buffer[] = [];
    let start = 0;
    for (let newline = data.indexOf(0x0a, start); newline >= 0; newline = data.indexOf(0x0a, start)) {
      lines.push(this.prefix, data.subarray(start, newline + 1));
      start = newline + 1;
    }
    this.pending = Buffer.from(data.subarray(start));
    return Buffer.concat(lines);
  }

  /** The last line when it had no newline, finished with one. */
  end(): Buffer {
    if (this.pending.length === 0) return Buffer.alloc(0);
    const rest = Buffer.concat([this.prefix, this.pending, Buffer.from('\n')]);
    this.pending = Buffer.alloc(0);
    return rest;
  }
}

export interface LogSource {
  allocation: string;
  /** Put in front of every line ('': the bytes as they are). */
  prefix: string;
}

/** The placed workers of a job and the prefix each one's lines get. */
export function jobLogSources(job: Job): LogSource[] {
  const placed = job.allocations.filter((a) => a.node !== '').sort((a, b) => a.rank - b.rank);
  if (placed.length === 0) {
    throw new FailedPreconditionError(`job "${job.spec?.name ?? ''}" has no worker placed yet (${job.status}${job.message ? `: ${job.message}` : ''}); try again once it runs`);
  }
  const partitioned = (job.spec?.partitions ?? 0) > 0;
  const several = (job.spec?.workers ?? 1) > 1 || partitioned || placed.length > 1;
  const unit = partitioned ? 'partition' : 'rank';
  return placed.map((a) => ({ allocation: a.id, prefix: several ? `[${unit} ${a.rank}] ` : '' }));
}

/**
 * The logs of `sources`, read at once and yielded as they come; lines of several sources
 * interleave whole. One stream failing ends the others (a partial interleaving would mislead)
 * and the error is thrown; returning early (break) stops every stream.
 */
export async function* mergedLogs(client: CoordinatorClient, sources: readonly LogSource[], options: Omit<JobLogsOptions, 'tenant'> = {}): AsyncGenerator<Buffer> {
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  const queue: Buffer[] = [];
  const changed = new Wakeup();
  let failure: { error: unknown } | undefined;
  let running = sources.length;
  const readers = sources.map(async ({ allocation, prefix }) => {
    try {
      const lines = prefix ? new LinePrefixer(Buffer.from(prefix)) : undefined;
      for await (const chunk of client.logs({ allocation, tailBytes: options.tailBytes ?? 0, follow: options.follow ?? false }, { signal })) {
        queue.push(lines ? lines.push(chunk) : chunk);
        changed.wake();
      }
      if (lines) queue.push(lines.end());
    } catch (err) {
      failure ??= { error: err };
      stop.abort(err);
    } finally {
      running -= 1;
      changed.wake();
    }
  });
  try {
    for (;;) {
      while (queue.length > 0) {
        const chunk = queue.shift()!;
        if (chunk.length > 0) yield chunk;
      }
      if (failure) throw failure.error;
      if (running === 0) return;
      await changed.wait();
    }
  } finally {
    stop.abort();
    await Promise.all(readers);
  }
}

/** A job's logs (its current or last attempt), as mergedLogs yields them. */
export async function* jobLogs(client: CoordinatorClient, name: string, options: JobLogsOptions = {}): AsyncGenerator<Buffer> {
  const job = await client.getJob(name, options.tenant, { signal: options.signal });
  yield* mergedLogs(client, jobLogSources(job), options);
}

export interface WaitOptions {
  tenant?: string;
  signal?: AbortSignal;
  /** How often the job is looked at (default 1 s). */
  pollMs?: number;
}

/** Resolves with the job once it has ended (succeeded, failed or cancelled); `signal` stops the wait. */
export async function waitForJob(client: CoordinatorClient, name: string, options: WaitOptions = {}): Promise<Job> {
  for (;;) {
    const job = await client.getJob(name, options.tenant, { signal: options.signal });
    if ((JOB_ENDED as readonly string[]).includes(job.status)) return job;
    await delay(options.pollMs ?? 1000, undefined, { signal: options.signal });
  }
}
