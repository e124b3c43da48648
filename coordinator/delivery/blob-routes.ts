// The coordinator's blob routes on its --http-listen listener (docs/delivery.md): ranged GET and
// HEAD of /v1/blobs/<digest>, HEAD and PUT of /v1/uploads/<id>. Callers authenticate with the
// same bearer tokens as the gRPC API, checked by the same TokenRegistry (revoked and expired
// tokens included). A user token reads content of a version in its tenant (admins: any); a node
// credential what the leader says it may fetch; anything else is 404 in the words of a digest
// nobody has. Bytes are read into MiB buffers taken from one pool shared by every GET, so the
// coordinator's memory does not grow with the number of GETs (they wait for a buffer instead).
import type http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import type { Counter } from 'prom-client';
import { AUTHORIZATION } from '../../shared/auth.js';
import { BLOBS_PATH, UPLOADS_PATH, UPLOAD_OFFSET_HEADER, parseBlobPath, parseRange } from '../../shared/blob-http.js';
import { MlfleetError, NotFoundError, NotLeaderError } from '../../shared/errors.js';
import { BufferPool, sendRange } from '../../shared/blob-send.js';
import type { ExtraRoutes } from '../../shared/http-server.js';
import type { Logger } from '../../shared/log.js';
import type { Principal, TokenRegistry } from '../auth/token-registry.js';
import type { ArtifactRegistry } from '../registry/artifact-registry.js';
import { OffsetMismatchError, TooLargeError, type Uploads } from './uploads.js';

/** Buffers all GETs share: at most this many MiB of blob bytes are in the coordinator's hands. */
export const BLOB_BUFFERS = 32;
/** A GET whose client takes nothing for this long is closed. */
const STALLED_GET_MS = 30_000;

export interface BlobRoutesDeps {
  tokens: TokenRegistry;
  registry: ArtifactRegistry;
  /** The leader's unfinished uploads; throws NotLeaderError on a follower. */
  uploads(): Uploads;
  /** Whether a node may fetch a digest; throws NotLeaderError on a follower. */
  nodeMayFetch(node: string, digest: string): boolean;
  /** The coordinator has TLS: blob and upload routes refuse plain text. */
  tls: boolean;
  sentBytes: Counter;
  receivedBytes: Counter;
  log: Logger;
}

/** An HTTP answer other than success, with its status and words. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function blobRoutes(deps: BlobRoutesDeps): ExtraRoutes {
  const pool = new BufferPool(BLOB_BUFFERS);
  return async (req, res, secure) => {
    const pathname = (req.url ?? '/').split('?')[0] ?? '/';
    const blob = parseBlobPath(pathname);
    const uploadId = pathname.startsWith(UPLOADS_PATH) ? pathname.slice(UPLOADS_PATH.length) : undefined;
    if (!pathname.startsWith(BLOBS_PATH) && uploadId === undefined) return false;
    try {
      if (deps.tls && !secure) throw new HttpError(403, 'use https: this coordinator has TLS, and blob bytes never travel in plain text');
      if (pathname.startsWith(BLOBS_PATH)) {
        if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'GET or HEAD a blob', { allow: 'GET, HEAD' });
        const principal = authenticate(deps.tokens, req);
        if (!blob || blob.pieces) throw new HttpError(404, `no blob at ${pathname.slice(0, 200)}; the path is /v1/blobs/sha256:<64 hex>`);
        await serveBlob(deps, pool, principal, blob.digest, req, res);
      } else {
        if (req.method !== 'PUT' && req.method !== 'HEAD') throw new HttpError(405, 'PUT or HEAD an upload', { allow: 'PUT, HEAD' });
        const principal = authenticate(deps.tokens, req);
        await serveUpload(deps, principal, uploadId!, req, res);
      }
    } catch (err) {
      // A body not read (a refused PUT): see lingerThenClose. A GET has none, though Node marks
      // it complete only after its handler has begun.
      const unread = !req.complete && (req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0);
      answerError(res, err, deps.log, unread);
      if (unread) lingerThenClose(req);
    }
    return true;
  };
}

function authenticate(tokens: TokenRegistry, req: http.IncomingMessage): Principal {
  const metadata = new grpc.Metadata();
  const header = req.headers.authorization;
  if (header) metadata.set(AUTHORIZATION, header);
  return tokens.authenticate(metadata);
}

function notHeld(digest: string): NotFoundError {
  return new NotFoundError(`no model or dataset version has content ${digest}`);
}

async function serveBlob(deps: BlobRoutesDeps, pool: BufferPool, principal: Principal, digest: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const { registry } = deps;
  let sizeBytes: number | undefined;
  if (principal.role === 'node') {
    // Only the leader knows what a node may fetch (throws NotLeaderError elsewhere: 503).
    if (!deps.nodeMayFetch(principal.node, digest)) throw notHeld(digest);
    sizeBytes = (await registry.findByDigest('model', digest))?.version.sizeBytes ?? (await registry.findByDigest('dataset', digest))?.version.sizeBytes;
    // A part of a job's output dataset: no version names it yet, the store knows its size.
    sizeBytes ??= (await registry.blobs.stat(digest))?.sizeBytes;
  } else if (principal.role === 'admin' || principal.role === 'developer' || principal.role === 'consumer') {
    const tenant = principal.role === 'admin' ? undefined : principal.tenant;
    const found = (await registry.findByDigest('model', digest, tenant)) ?? (await registry.findByDigest('dataset', digest, tenant));
    sizeBytes = found?.version.sizeBytes;
  }
  if (sizeBytes === undefined) throw notHeld(digest);
  // Not held here (pushed through another coordinator that has since gone): from a peer first.
  await registry.fetchMissing?.(digest, sizeBytes);
  let range;
  try {
    range = parseRange(header(req, 'range'), sizeBytes);
  } catch (err) {
    throw new HttpError(416, (err as Error).message, { 'content-range': `bytes */${sizeBytes}` });
  }
  if (range === 'unsatisfiable') throw new HttpError(416, `the range ${header(req, 'range')} lies outside the blob's ${sizeBytes} bytes`, { 'content-range': `bytes */${sizeBytes}` });
  const { start, end } = range ?? { start: 0, end: sizeBytes };
  const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'content-length': end - start, 'accept-ranges': 'bytes', etag: `"${digest}"` };
  if (range) headers['content-range'] = `bytes ${start}-${end - 1}/${sizeBytes}`;
  if (req.method === 'HEAD') {
    res.writeHead(range ? 206 : 200, headers).end();
    return;
  }
  const reader = await registry.blobs.openReader(digest, start);
  // A reader that stops reading would hold its pooled buffers for ever: after a while without
  // any progress its connection is closed, and the buffers go back to the others.
  res.setTimeout(STALLED_GET_MS, () => res.destroy());
  res.writeHead(range ? 206 : 200, headers);
  try {
    await sendRange(pool, reader, end - start, res, { onSent: (n) => deps.sentBytes.inc(n) });
  } finally {
    await reader.close();
  }
}

async function serveUpload(deps: BlobRoutesDeps, principal: Principal, id: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const uploads = deps.uploads();
  const upload = uploads.get(id, principal);
  if (req.method === 'HEAD') {
    res.writeHead(200, { [UPLOAD_OFFSET_HEADER]: String(upload.offset), 'upload-length': String(upload.header.sizeBytes), 'cache-control': 'no-store' }).end();
    return;
  }
  const text = header(req, UPLOAD_OFFSET_HEADER);
  const offset = Number(text);
  if (text === undefined || !/^\d+$/.test(text) || !Number.isSafeInteger(offset)) {
    throw new HttpError(400, `a PUT needs the header ${UPLOAD_OFFSET_HEADER}: the byte the body starts at (HEAD the upload for it)`, { [UPLOAD_OFFSET_HEADER]: String(upload.offset) });
  }
  const declared = Number(header(req, 'content-length') ?? NaN);
  if (Number.isFinite(declared) && offset === upload.offset && offset + declared > upload.header.sizeBytes) {
    throw new TooLargeError(`the push declared ${upload.header.sizeBytes} bytes; ${declared} bytes from ${offset} run past that`);
  }
  let reached: number;
  try {
    reached = await uploads.write(upload, offset, req, (bytes) => deps.receivedBytes.inc(bytes));
  } catch (err) {
    // Cut by the client: what arrived is kept, and nobody is left to answer.
    if (req.destroyed && !req.complete) return;
    throw err;
  }
  res.writeHead(204, { [UPLOAD_OFFSET_HEADER]: String(reached) }).end();
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value || undefined;
}

const STATUS_BY_CODE: Record<string, number> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  FAILED_PRECONDITION: 412,
  RESOURCE_EXHAUSTED: 429,
  NOT_LEADER: 503,
  UNAVAILABLE: 503,
};

/** What of a refused PUT's body is read and dropped, at most, before its connection closes. */
const LINGER_BYTES = 256 * 1024 * 1024;
const LINGER_MS = 2_000;

/**
 * A refused request whose body was not read: what is on its way is read and dropped for a
 * moment before the connection closes (as nginx's lingering close does), so that the close does
 * not reset the connection before the client has read the answer. A client that keeps sending
 * past LINGER_BYTES or LINGER_MS is cut off.
 */
function lingerThenClose(req: http.IncomingMessage): void {
  let dropped = 0;
  const close = () => {
    clearTimeout(timer);
    req.socket.destroy();
  };
  const timer = setTimeout(close, LINGER_MS);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > LINGER_BYTES) close();
  });
  req.once('close', () => clearTimeout(timer));
  req.resume();
}

function answerError(res: http.ServerResponse, err: unknown, log: Logger, unread: boolean): void {
  let status = 500;
  let headers: Record<string, string> = {};
  let message = 'internal error';
  if (err instanceof HttpError) {
    ({ status, headers, message } = err);
  } else if (err instanceof OffsetMismatchError) {
    status = 409;
    headers = { [UPLOAD_OFFSET_HEADER]: String(err.offset) };
    message = err.message;
  } else if (err instanceof TooLargeError) {
    status = 413;
    message = err.message;
  } else if (MlfleetError.is(err)) {
    status = STATUS_BY_CODE[err.code] ?? 500;
    message = err.message;
    if (err instanceof NotLeaderError && err.leader) headers = { 'mlfleet-leader': err.leader };
  } else {
    log.error({ err }, 'a blob route failed');
  }
  if (status === 401) headers['www-authenticate'] = 'Bearer';
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // The connection is not reused. With a body unread, `connection: close` would have Node close
  // it the moment the answer is written, and the bytes still arriving reset it under the answer:
  // lingerThenClose closes it instead.
  if (!unread) headers.connection = 'close';
  res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(`${message}\n`);
}
