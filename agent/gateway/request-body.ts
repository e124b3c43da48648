// A request's body on its way through the gateway. Small bodies are held whole, so that they
// can be sent again to another replica when the first cannot be reached; larger ones stream
// through to the replica with backpressure and are never held: eight concurrent 60 MiB requests
// cost the gateway its socket buffers, not 480 MiB. Every body is bounded by what its
// deployment takes (`deploy --max-request-size`, 8 MiB unless set; TorchServe's default is
// 6.5 MB): a declared length over it is refused before a byte is read, a chunked body as soon as
// it passes it.
import type http from 'node:http';
import { Transform, type Readable } from 'node:stream';

/** What a deployment takes unless it says otherwise. */
export const DEFAULT_MAX_REQUEST_BYTES = 8 * 2 ** 20;
/** Bodies up to this size are held whole (and may be retried elsewhere); larger ones stream. */
export const WHOLE_REQUEST_BYTES = 1 << 20;

export type RequestBody =
  | { kind: 'whole'; data: Buffer }
  | {
      kind: 'stream';
      /** The declared length, when the client gave one. */
      length: number | undefined;
      /** Pulled by the replica's connection as it drains; fails with a 413 BodyError past the limit. It goes to one replica only. */
      chunks: Readable;
    };

export class BodyError extends Error {
  constructor(
    readonly status: 400 | 413,
    message: string,
  ) {
    super(message);
  }
}

export function tooLarge(limit: number): BodyError {
  return new BodyError(413, `the request body is over ${limit} bytes, the most this model's deployment takes (its owner can raise it with deploy --max-request-size)`);
}

/** The Content-Length the client declared; undefined for a chunked body; 400 for a malformed one. */
export function declaredLength(req: http.IncomingMessage): number | undefined {
  const text = req.headers['content-length'];
  if (text === undefined) return undefined;
  if (!/^\d{1,15}$/.test(text)) throw new BodyError(400, 'content-length must be a whole number of bytes');
  return Number(text);
}

/**
 * Takes the body as it should travel: whole when small, else a stream bounded by `limit`. A
 * body refused on the way is drained and dropped (never left paused), so the connection stays
 * usable for the caller's next request.
 */
export async function takeBody(req: http.IncomingMessage, limit: number): Promise<RequestBody> {
  const length = declaredLength(req);
  if (length !== undefined && length > limit) {
    req.resume();
    throw tooLarge(limit);
  }
  let head: Head = { chunks: [], size: 0, ended: false };
  if (length === undefined || length <= WHOLE_REQUEST_BYTES) {
    head = await readHead(req, limit);
    if (head.ended) return { kind: 'whole', data: head.chunks.length === 1 ? head.chunks[0]! : Buffer.concat(head.chunks) };
  }
  let taken = head.size;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      taken += chunk.length;
      if (taken > limit) done(tooLarge(limit));
      else done(null, chunk);
    },
  });
  stream.on('error', () => {
    req.unpipe(stream);
    req.resume();
  });
  for (const chunk of head.chunks) stream.push(chunk);
  req.pipe(stream);
  return { kind: 'stream', length, chunks: stream };
}

interface Head {
  chunks: Buffer[];
  size: number;
  ended: boolean;
}

/** Reads until the body ends or passes WHOLE_REQUEST_BYTES (then pauses it); 413 past `limit`. */
function readHead(req: http.IncomingMessage, limit: number): Promise<Head> {
  return new Promise((resolve, reject) => {
    const head: Head = { chunks: [], size: 0, ended: false };
    const stop = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      head.size += chunk.length;
      if (head.size > limit) {
        stop();
        req.resume();
        reject(tooLarge(limit));
        return;
      }
      head.chunks.push(chunk);
      if (head.size > WHOLE_REQUEST_BYTES) {
        stop();
        req.pause();
        resolve(head);
      }
    };
    const onEnd = () => {
      stop();
      resolve({ ...head, ended: true });
    };
    const onError = (err: Error) => {
      stop();
      reject(err);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}
