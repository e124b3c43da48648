// Sending a range of a blob's file over HTTP in MiB reads, for the coordinator's blob routes and
// the agents' peer routes (docs/delivery.md): each MiB is read into a buffer taken from a pool
// shared by every response, so a process's memory does not grow with the number of GETs (they
// wait for a buffer instead) and no MiB is allocated afresh per read; one buffer goes to the
// socket while the next is read.
import type http from 'node:http';

/** Bytes per read and per write, unless the pool says otherwise (BufferPool.bufferBytes). */
export const SEND_BUFFER_BYTES = 1 << 20;
/** Buffers one response holds at once: one being written while the next is read. */
const BUFFERS_PER_RESPONSE = 2;

/** Where the bytes come from: each read continues where the last ended. */
export interface RangeReader {
  read(buffer: Buffer, offset: number, length: number): Promise<number>;
  /**
   * Bytes already in memory: the next `length` of them, sent where they lie, with no pooled
   * buffer and no copy. sendRange returns only once the socket is done with every one (or the
   * client has gone), so the caller may reuse the memory then.
   */
  view?(length: number): Buffer;
}

export interface SendOptions {
  /** Told of the bytes of each write once the socket took them. */
  onSent(bytes: number): void;
  /** Waited for before each read of `bytes` (a bandwidth cap); `signal` aborts once the client has gone. */
  beforeRead?(bytes: number, signal: AbortSignal): Promise<void>;
}

/**
 * Writes `length` bytes of the reader to `res` (whose head is written), each MiB in a pooled
 * buffer given back once written, then ends it. Returns early, quietly, when the client goes
 * away; throws when the reader ends short (the response is then cut, not ended).
 */
export async function sendRange(pool: BufferPool, reader: RangeReader, length: number, res: http.ServerResponse, options: SendOptions): Promise<void> {
  const held = new Set<Buffer>();
  const giveBack = (buffer: Buffer) => {
    if (held.delete(buffer) && !reader.view) pool.release(buffer);
  };
  /** The buffer a read is filling: it goes back once the read ends, never while the read may still write into it. */
  let reading: Buffer | undefined;
  const gone = new AbortController();
  const closed = () => gone.signal.aborted;
  const giveBackIdle = () => {
    for (const buffer of [...held]) if (buffer !== reading) giveBack(buffer);
  };
  const onClose = () => {
    gone.abort(new Error('the client went away'));
    giveBackIdle();
    pool.wakeAll();
  };
  res.once('close', onClose);
  if (res.destroyed) onClose();
  try {
    let left = length;
    while (left > 0 && !closed()) {
      while (held.size >= BUFFERS_PER_RESPONSE && !closed()) await once(res, 'drain-buffer');
      if (closed()) break;
      const want = Math.min(pool.bufferBytes, left);
      if (options.beforeRead) {
        try {
          await options.beforeRead(want, gone.signal);
        } catch (err) {
          if (closed()) break;
          throw err;
        }
      }
      const buffer = reader.view ? reader.view(want) : await pool.acquire(closed);
      if (!buffer) break;
      held.add(buffer);
      let n: number;
      reading = buffer;
      try {
        n = reader.view ? buffer.length : await reader.read(buffer, 0, want);
      } catch (err) {
        giveBack(buffer);
        throw err;
      } finally {
        reading = undefined;
      }
      if (closed()) {
        giveBack(buffer);
        break;
      }
      if (n === 0) {
        giveBack(buffer);
        throw new Error(`the blob's file ended ${left} bytes short of the range`);
      }
      left -= n;
      const flowing = res.write(buffer.subarray(0, n), () => {
        options.onSent(n);
        giveBack(buffer);
        res.emit('drain-buffer');
      });
      if (!flowing && !closed()) await once(res, 'drain');
    }
    if (!closed()) res.end();
    // Views are the caller's memory: every write must be done with it (or the socket gone) first.
    while (reader.view && held.size > 0 && !closed()) await once(res, 'drain-buffer');
  } finally {
    res.off('close', onClose);
    if (closed()) giveBackIdle();
  }
}

function once(emitter: NodeJS.EventEmitter, event: string): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      emitter.off(event, done);
      emitter.off('close', done);
      resolve();
    };
    emitter.on(event, done);
    emitter.on('close', done);
  });
}

/** Fixed MiB buffers shared by every response; a response waits for one when all are in use. */
export class BufferPool {
  private readonly free: Buffer[] = [];
  private readonly waiters: Array<() => void> = [];
  private made = 0;

  /** `allocate`: how a buffer is made (the agents' are page-aligned, for reads past the page cache). */
  constructor(
    private readonly count: number,
    private readonly allocate: (bytes: number) => Buffer = (bytes) => Buffer.allocUnsafeSlow(bytes),
    readonly bufferBytes = SEND_BUFFER_BYTES,
  ) {}

  /** A free buffer (made on first need, up to `count`), or undefined once `gone()` holds (the client went away). */
  async acquire(gone: () => boolean): Promise<Buffer | undefined> {
    for (;;) {
      if (gone()) return undefined;
      const buffer = this.free.pop();
      if (buffer) return buffer;
      if (this.made < this.count) {
        this.made += 1;
        return this.allocate(this.bufferBytes);
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  release(buffer: Buffer): void {
    this.free.push(buffer);
    this.waiters.shift()?.();
  }

  /** Wakes every waiter (one of them lost its client and must stop waiting). */
  wakeAll(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }
}
