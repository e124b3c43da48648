// The client side of a blob read over HTTP (docs/delivery.md): a ranged GET of
// /v1/blobs/<digest> from the coordinator (bearer token) or of a presigned bucket URL (no
// token), streamed through undici, from an offset (a resumed `models pull`). The caller hashes
// and writes the bytes as they come; nothing is held whole. undici is loaded on the first read:
// it takes ~110 ms to load, which every other mlfleetctl command would pay.
import type { Dispatcher } from 'undici';
import { AUTHORIZATION } from './auth.js';
import { FailedPreconditionError, NotFoundError, UnauthenticatedError, UnavailableError } from './errors.js';
import type { BlobLocation } from './proto.js';
import type { TlsMaterial } from './tls.js';

export interface BlobRead {
  url: string;
  /** Sent to the coordinator; never to a presigned URL (which carries its own signature). */
  token?: string | undefined;
  tls?: TlsMaterial | undefined;
  offset: number;
  sizeBytes: number;
  signal?: AbortSignal;
}

/** The source a user's pull reads from: the coordinator (or the bucket), never a peer agent. */
export function seedSource(location: BlobLocation): { url: string; withToken: boolean } | undefined {
  const source = location.sources.find((s) => s.kind === 'coordinator' || s.kind === 's3');
  return source ? { url: source.url, withToken: source.kind === 'coordinator' } : undefined;
}

/** The bytes [offset, size) of the blob at `url`; the dispatcher is closed when they end. */
export async function readBlobRange(read: BlobRead): Promise<AsyncIterable<Buffer>> {
  const { Agent, request } = await import('undici');
  const dispatcher: Dispatcher = new Agent({ connect: read.tls ? { ca: read.tls.ca, cert: read.tls.cert, key: read.tls.key } : {}, bodyTimeout: 60_000, headersTimeout: 60_000 });
  const headers: Record<string, string> = {};
  if (read.token) headers[AUTHORIZATION] = `Bearer ${read.token}`;
  if (read.offset > 0) headers.range = `bytes=${read.offset}-`;
  try {
    const answer = await request(read.url, { headers, dispatcher, signal: read.signal, highWaterMark: 1 << 20 });
    const expected = read.offset > 0 ? 206 : 200;
    if (answer.statusCode !== expected) {
      const text = (await answer.body.text()).trim() || `HTTP ${answer.statusCode}`;
      if (answer.statusCode === 401) throw new UnauthenticatedError(text);
      if (answer.statusCode === 404) throw new NotFoundError(text);
      if (answer.statusCode === 503) throw new UnavailableError(text);
      throw new FailedPreconditionError(`the blob read answered HTTP ${answer.statusCode}: ${text}`);
    }
    if (read.offset > 0 && !String(answer.headers['content-range'] ?? '').startsWith(`bytes ${read.offset}-`)) {
      throw new FailedPreconditionError(`asked for the bytes from ${read.offset} and got ${String(answer.headers['content-range'])}`);
    }
    return (async function* () {
      try {
        for await (const chunk of answer.body as AsyncIterable<Buffer>) yield chunk;
      } finally {
        await dispatcher.close().catch(() => undefined);
      }
    })();
  } catch (err) {
    await dispatcher.destroy().catch(() => undefined);
    throw err;
  }
}
