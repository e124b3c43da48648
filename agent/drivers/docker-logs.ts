// Reading a container's logs from the Docker API: the multiplexed stream (stdout and stderr in
// frames with an 8-byte header) split back into log entries, each with the timestamp Docker
// stamped it with. The docker driver uses the timestamps to join "what is kept" to "what comes
// next" without losing or repeating a line, which docker's own tail (in lines) cannot do.

/** One log entry: a line (or a piece of a very long one) as Docker stored it. */
export interface LogEntry {
  stream: 'stdout' | 'stderr';
  /** RFC 3339 with nanoseconds, fixed width, so entries order as strings ('' without timestamps). */
  timestamp: string;
  data: Buffer;
}

const HEADER_BYTES = 8;
const STREAMS = { 1: 'stdout', 2: 'stderr' } as const;

/**
 * Splits a multiplexed log stream (or a whole non-followed answer) into entries. With
 * `timestamps` the logs were asked for with timestamps=true, and each entry's "<timestamp> "
 * prefix is taken off the data. Docker writes every entry as one frame, so a frame is the unit.
 */
export async function* logEntries(source: Buffer | AsyncIterable<Buffer | string>, timestamps: boolean): AsyncGenerator<LogEntry> {
  let pending = Buffer.alloc(0);
  for await (const chunk of Buffer.isBuffer(source) ? [source] : source) {
    pending = pending.length === 0 ? Buffer.from(chunk) : Buffer.concat([pending, Buffer.from(chunk)]);
    let offset = 0;
    while (pending.length - offset >= HEADER_BYTES) {
      const size = pending.readUInt32BE(offset + 4);
      if (pending.length - offset < HEADER_BYTES + size) break;
      const kind = pending.readUInt8(offset);
      const payload = pending.subarray(offset + HEADER_BYTES, offset + HEADER_BYTES + size);
      offset += HEADER_BYTES + size;
      yield entry(kind === 2 ? STREAMS[2] : STREAMS[1], payload, timestamps);
    }
    pending = pending.subarray(offset);
  }
}

function entry(stream: LogEntry['stream'], payload: Buffer, timestamps: boolean): LogEntry {
  if (!timestamps) return { stream, timestamp: '', data: payload };
  const space = payload.indexOf(0x20);
  if (space < 0) return { stream, timestamp: '', data: payload };
  return { stream, timestamp: payload.subarray(0, space).toString('latin1'), data: payload.subarray(space + 1) };
}

/** Whole seconds since the epoch of an entry's timestamp, for the API's `since`. */
export function epochSeconds(timestamp: string): number {
  const ms = Date.parse(`${timestamp.slice(0, 19)}Z`);
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : 0;
}

/** The last `bytes` of `data` (all of it for 0). */
export function lastBytes(data: Buffer, bytes: number): Buffer {
  return bytes > 0 && data.length > bytes ? data.subarray(data.length - bytes) : data;
}
