// The client side of a resumable push (docs/delivery.md "Uploads"): BeginPush over gRPC, the
// bytes by HTTP PUT from where the coordinator stands (streamed, nothing held whole), then
// CommitPush. The PUT goes through node:http, whose write callback says when a chunk has left
// for the kernel: a file's bytes are read into a few MiB buffers used again and again (a
// createReadStream's fresh MiB per read cost 0.77 CPU-s per GiB on the bench machine, reused
// buffers 0.13), which undici's streamed bodies cannot tell it is safe to do. An interrupted
// push (Ctrl-C, kill -9, a dropped connection) run again with the same upload key resumes from
// the bytes the coordinator kept. Used by `mlfleetctl models push` / `datasets push`.
// With the S3 blob store the ticket carries presigned part URLs instead (pushParts): the parts go
// straight to the bucket, a few at once, and their ETags to CommitPush. The ETags of parts sent
// are kept in a small file per upload key (uploadStateDir()), so that a push run again sends
// only the parts the bucket lacks, even where the server cannot list them (parts_done).
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
// undici only for the bucket's parts, loaded then: it takes ~110 ms to load, a sixth of every
// mlfleetctl command's start.
import type { Dispatcher } from 'undici';
import type { ArtifactKind } from './artifact-ref.js';
import { AUTHORIZATION } from './auth.js';
import { UPLOAD_OFFSET_HEADER } from './blob-http.js';
import type { CoordinatorClient } from './client.js';
import { FailedPreconditionError, UnauthenticatedError, NotFoundError, InvalidArgumentError, UnavailableError } from './errors.js';
import type { ArtifactVersion, PushHeader, PushTicket } from './proto.js';
import type { TlsMaterial } from './tls.js';

/** PUTs that end early (a dropped connection) are tried again from the coordinator's offset this many times. */
const MAX_PUT_ATTEMPTS = 5;
/** Parts PUT to the bucket at once (memory: one part buffer each, plus the one being read). */
export const PARTS_IN_FLIGHT = 3;
/** The largest part the client will hold (S3 parts of a blob are its piece size: 8 or 16 MiB, more only past 80 GiB). */
const MAX_PART_BYTES = 512 * 1024 * 1024;
/** A PUT's reads of a file: this size, into at most PUT_BUFFERS buffers on their way to the socket. */
const PUT_READ_BYTES = 1024 * 1024;
const PUT_BUFFERS = 3;
/** A PUT with no bytes moving (either way) for this long fails, and the push resumes. */
const PUT_IDLE_MS = 60_000;

export interface ResumableUpload {
  client: CoordinatorClient;
  kind: ArtifactKind;
  header: PushHeader;
  /** From uploadKey(): the same content pushed again finds its unfinished upload. */
  uploadKey: string;
  /** A fresh stream of the content's bytes from `start`. */
  open(start: number): Readable | AsyncIterable<Buffer>;
  /** The content is this regular file: a PUT to the coordinator reads it itself, into reused buffers. */
  file?: string;
  token: string | undefined;
  /** The client's TLS material (its CA verifies the coordinator; its certificate is shown when it has one). */
  tls?: TlsMaterial | undefined;
  signal?: AbortSignal;
  /** Bytes the coordinator holds so far (sent and acknowledged, or in flight). */
  onProgress?(bytes: number): void;
  /** Called once when the coordinator (or the bucket) already held `offset` bytes of this content. */
  onResume?(offset: number, where: 'coordinator' | 'bucket'): void;
  /** A coordinator without DeliveryService (an older release): the push goes this way instead. */
  fallback?(): Promise<ArtifactVersion>;
  /** Where the ETags of parts sent to the bucket are kept (default uploadStateDir()). */
  stateDir?: string;
  /** A part was stored in the bucket (S3 uploads): index, bytes. */
  onPartSent?(index: number, bytes: number): void;
}

/** Where the ETags of unfinished pushes to a bucket are kept: $XDG_CACHE_HOME/mlfleet/uploads, else ~/.cache/mlfleet/uploads. */
export function uploadStateDir(): string {
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(cache, 'mlfleet', 'uploads');
}

/**
 * The upload key of a push: a hash of what identifies the content and where it goes, so that
 * the same push run again resumes, and anything else starts afresh.
 */
export function uploadKey(parts: { path: string; sizeBytes: number; mtimeMs: number; coordinator: string; kind: string; name: string; digest?: string }): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 48);
}

/** Pushes the content resumably; resolves with the version made (or the part, for a job's output). */
export async function pushResumable(upload: ResumableUpload): Promise<ArtifactVersion> {
  const { client, header } = upload;
  const size = Number(header.sizeBytes);
  let ticket;
  try {
    ticket = await client.beginPush(upload.kind, header, upload.uploadKey, { signal: upload.signal });
  } catch (err) {
    if (upload.fallback && isUnimplemented(err)) return upload.fallback();
    throw err;
  }
  if (ticket.partUrls.length > 0) return pushParts(upload, ticket);
  if (!ticket.url) throw new FailedPreconditionError('the coordinator gave no upload URL');
  let offset = Number(ticket.offset);
  if (offset > 0) upload.onResume?.(offset, 'coordinator');
  upload.onProgress?.(offset);
  for (let attempt = 1; offset < size; attempt++) {
    try {
      offset = await putFrom(upload, new URL(ticket.url), offset, size);
    } catch (err) {
      if (upload.signal?.aborted || !(err instanceof ResumeFrom) || attempt >= MAX_PUT_ATTEMPTS) throw err instanceof ResumeFrom ? err.cause : err;
      offset = err.offset;
      // Another PUT (an earlier run's, cut) may still hold the upload: give it a moment to end.
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
  }
  return client.commitPush(ticket.uploadId, { signal: upload.signal });
}

/** What a push to the bucket keeps between runs: the ETags of the parts it sent, by index. */
interface PartsState {
  uploadId: string;
  etags: Record<string, string>;
}

function readState(file: string, uploadId: string): Map<number, string> {
  try {
    const state = JSON.parse(readFileSync(file, 'utf8')) as PartsState;
    // Another upload under this key (the earlier one expired or was refused): its ETags name nothing now.
    if (state.uploadId !== uploadId || typeof state.etags !== 'object' || state.etags === null) return new Map();
    return new Map(Object.entries(state.etags).filter(([i, etag]) => /^\d+$/.test(i) && typeof etag === 'string').map(([i, etag]) => [Number(i), etag]));
  } catch {
    return new Map();
  }
}

function writeState(file: string, uploadId: string, etags: Map<number, string>): void {
  const state: PartsState = { uploadId, etags: Object.fromEntries([...etags].map(([i, etag]) => [String(i), etag])) };
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(temporary, JSON.stringify(state), { mode: 0o600 });
  renameSync(temporary, file);
}

/**
 * The parts of a direct upload to the bucket: read in order from one stream of the content,
 * PUT `PARTS_IN_FLIGHT` at once to their presigned URLs (no credentials of ours go there), each
 * ETag recorded as its part is stored; parts the bucket holds (parts_done, or an ETag kept by an
 * earlier run) are skipped. Then CommitPush with every ETag.
 */
async function pushParts(upload: ResumableUpload, ticket: PushTicket): Promise<ArtifactVersion> {
  const size = Number(upload.header.sizeBytes);
  const partBytes = Number(ticket.partBytes);
  const count = ticket.partUrls.length;
  if (!Number.isSafeInteger(partBytes) || partBytes <= 0 || partBytes > MAX_PART_BYTES || Math.ceil(size / partBytes) !== Math.max(1, count) || (size === 0 && count !== 1)) {
    throw new FailedPreconditionError(`the coordinator's ticket has ${count} parts of ${partBytes} bytes for ${size} bytes`);
  }
  const partSize = (i: number) => Math.min(partBytes, size - i * partBytes);
  const file = path.join(upload.stateDir ?? uploadStateDir(), `${upload.uploadKey || ticket.uploadId}.json`);
  const etags = upload.uploadKey ? readState(file, ticket.uploadId) : new Map<number, string>();
  // The bucket holds these; an empty ETag is taken from its part list at commit.
  for (const index of ticket.partsDone) if (index < count && !etags.has(index)) etags.set(index, '');
  for (const index of [...etags.keys()]) if (index >= count) etags.delete(index);
  let held = [...etags.keys()].reduce((sum, i) => sum + partSize(i), 0);
  if (held > 0) upload.onResume?.(held, 'bucket');
  upload.onProgress?.(held);
  const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !etags.has(i));
  if (missing.length > 0) {
    const { Agent } = await import('undici');
    const dispatcher = new Agent({ bodyTimeout: 60_000, headersTimeout: 60_000, connections: PARTS_IN_FLIGHT });
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    const source = upload.open(missing[0]! * partBytes);
    try {
      const parts = readParts(source, missing[0]!, count, partSize);
      for await (const { index, bytes } of parts) {
        if (failure !== undefined) break;
        if (etags.has(index)) continue;
        const sending: Promise<void> = putPart(dispatcher, upload, ticket.partUrls[index]!, index, bytes)
          .then((etag) => {
            etags.set(index, etag);
            if (upload.uploadKey) writeState(file, ticket.uploadId, etags);
            held += bytes.length;
            upload.onProgress?.(held);
            upload.onPartSent?.(index, bytes.length);
          })
          .catch((err: unknown) => {
            failure ??= err;
          })
          .finally(() => inFlight.delete(sending));
        inFlight.add(sending);
        if (inFlight.size >= PARTS_IN_FLIGHT) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
    } finally {
      if ('destroy' in source && typeof source.destroy === 'function') source.destroy();
      await Promise.all(inFlight);
      await dispatcher.close().catch(() => undefined);
    }
    if (failure !== undefined) throw failure;
  }
  const ordered = Array.from({ length: count }, (_, i) => etags.get(i) ?? '');
  try {
    const version = await upload.client.commitPush(ticket.uploadId, { signal: upload.signal }, ordered);
    rmSync(file, { force: true });
    return version;
  } catch (err) {
    // The leader took the upload and refused it (or it is gone): its ETags are of no more use.
    if (err instanceof InvalidArgumentError || err instanceof NotFoundError) rmSync(file, { force: true });
    throw err;
  }
}

/** Part after part of the content from part `first`, each gathered whole into one buffer. */
async function* readParts(source: Readable | AsyncIterable<Buffer>, first: number, count: number, partSize: (i: number) => number): AsyncIterable<{ index: number; bytes: Buffer }> {
  let index = first;
  let bytes = Buffer.allocUnsafe(partSize(index));
  let filled = 0;
  for await (const chunk of source as AsyncIterable<Buffer>) {
    let at = 0;
    while (at < chunk.length) {
      if (index >= count) throw new InvalidArgumentError('the content grew past the size declared while it was pushed; push again');
      const n = Math.min(chunk.length - at, bytes.length - filled);
      chunk.copy(bytes, filled, at, at + n);
      filled += n;
      at += n;
      if (filled === bytes.length) {
        yield { index, bytes };
        index += 1;
        if (index < count) bytes = Buffer.allocUnsafe(partSize(index));
        filled = 0;
      }
    }
  }
  if (index < count && !(index === count - 1 && bytes.length === 0)) throw new InvalidArgumentError('the content shrank while it was pushed; push again');
  if (index === count - 1) yield { index, bytes };
}

/** PUTs one part to its presigned URL (tried again when the connection drops); its ETag. */
async function putPart(dispatcher: Dispatcher, upload: ResumableUpload, url: string, index: number, bytes: Buffer): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    let answer: Dispatcher.ResponseData;
    try {
      const { request } = await import('undici');
      answer = await request(url, { method: 'PUT', body: bytes, headers: { 'content-length': String(bytes.length) }, dispatcher, signal: upload.signal });
    } catch (err) {
      if (upload.signal?.aborted || attempt >= MAX_PUT_ATTEMPTS) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      continue;
    }
    const text = await answer.body.text();
    const etag = answer.headers.etag;
    if (answer.statusCode === 200 && typeof etag === 'string' && etag) return etag;
    if (answer.statusCode >= 500 && attempt < MAX_PUT_ATTEMPTS) {
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      continue;
    }
    if (answer.statusCode === 403) throw new FailedPreconditionError(`the bucket refused part ${index} (its URL may have expired): run the push again for fresh URLs. ${text.trim().slice(0, 300)}`);
    throw new FailedPreconditionError(`the bucket answered HTTP ${answer.statusCode} to part ${index}${etag ? '' : ' (no ETag)'}: ${text.trim().slice(0, 300)}`);
  }
}

/** A PUT ended early; the upload stands at `offset` and may go on from there. */
class ResumeFrom extends Error {
  constructor(
    readonly offset: number,
    override readonly cause: unknown,
  ) {
    super('resume');
  }
}

/** Where a PUT's body comes from: chunks, each handed back once the socket has taken it. */
interface BodySource {
  /** The next chunk; undefined at the end. */
  next(): Promise<Buffer | undefined>;
  /** `chunk` has left for the kernel: its memory may be used again. */
  sent(chunk: Buffer): void;
  close(): Promise<void>;
}

/** The file's bytes from `offset` to `size`, read into PUT_BUFFERS buffers used in turn. */
async function fileBody(file: string, offset: number, size: number): Promise<BodySource> {
  const handle = await fs.open(file, 'r');
  const free: Buffer[] = Array.from({ length: PUT_BUFFERS }, () => Buffer.allocUnsafeSlow(PUT_READ_BYTES));
  let wake: (() => void) | undefined;
  let at = offset;
  return {
    async next() {
      if (at >= size) return undefined;
      while (free.length === 0) await new Promise<void>((resolve) => (wake = resolve));
      const buffer = free.pop()!;
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, size - at), at);
      if (bytesRead === 0) {
        free.push(buffer);
        throw new InvalidArgumentError(`the content shrank to ${at} bytes while it was pushed (${size} declared); push again`);
      }
      at += bytesRead;
      return buffer.subarray(0, bytesRead);
    },
    sent(chunk) {
      free.push(Buffer.from(chunk.buffer, 0, PUT_READ_BYTES));
      wake?.();
      wake = undefined;
    },
    close: () => handle.close(),
  };
}

/** The chunks of a stream (a directory's tar), each its own memory. */
function streamBody(source: Readable | AsyncIterable<Buffer>): BodySource {
  const chunks = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  return {
    next: async () => {
      const { value, done } = await chunks.next();
      return done ? undefined : value;
    },
    sent: () => {},
    close: async () => {
      if ('destroy' in source && typeof source.destroy === 'function') source.destroy();
      else await chunks.return?.();
    },
  };
}

/** A request to the coordinator's HTTP listener, with the client's TLS material and token. */
function coordinatorRequest(upload: ResumableUpload, url: URL, method: string, headers: Record<string, string>): http.ClientRequest {
  if (upload.token) headers[AUTHORIZATION] = `Bearer ${upload.token}`;
  // Not `connection: close` (node:http's default without an agent): a server told so closes the
  // moment it has answered, and a refusal's answer is then reset by the bytes still on their
  // way. The caller closes the connection once it has the answer.
  headers.connection = 'keep-alive';
  const options: https.RequestOptions = { method, headers, signal: upload.signal, agent: false };
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FailedPreconditionError(`the coordinator gave an upload URL that is not http(s): ${url.protocol}`);
  const req = url.protocol === 'https:' ? https.request(url, { ...options, ca: upload.tls?.ca, cert: upload.tls?.cert, key: upload.tls?.key }) : http.request(url, options);
  req.setTimeout(PUT_IDLE_MS, () => req.destroy(new UnavailableError(`the coordinator's HTTP listener (${url.host}) moved no bytes for ${PUT_IDLE_MS / 1000} s`)));
  return req;
}

/**
 * The answer to `req` (sent already or being sent) and its text; rejects when the exchange fails
 * before an answer. An answer whose text is cut (a refusal whose connection closed under it)
 * counts, with what of the text arrived.
 */
function answerOf(req: http.ClientRequest): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    let answered: (() => void) | undefined;
    req.on('error', (err) => (answered ? answered() : reject(err))); // every error: a second would be thrown
    req.once('response', (res: http.IncomingMessage) => {
      const parts: Buffer[] = [];
      let length = 0;
      answered = () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(parts).toString('utf8') });
      res.on('data', (chunk: Buffer) => {
        // An answer's text is a line or two; past 64 KiB it is not read further.
        if (length < 65_536) parts.push(chunk);
        length += chunk.length;
      });
      res.once('end', answered);
      res.once('error', answered);
      res.once('close', answered);
    });
  });
}

/**
 * PUTs the content from `offset` (node:http: each chunk's buffer goes back to the source once
 * the socket has taken it); the offset the coordinator reached. A dropped connection is a
 * ResumeFrom with the coordinator's offset, asked by HEAD.
 */
async function putFrom(upload: ResumableUpload, url: URL, offset: number, size: number): Promise<number> {
  const body = upload.file ? await fileBody(upload.file, offset, size) : streamBody(upload.open(offset));
  const req = coordinatorRequest(upload, url, 'PUT', { [UPLOAD_OFFSET_HEADER]: String(offset), 'content-length': String(size - offset), 'content-type': 'application/octet-stream' });
  // An answer before the body is all sent (a refusal, another PUT running) ends the sending.
  let answeredEarly = false;
  req.once('response', () => (answeredEarly = true));
  const answer = answerOf(req);
  answer.catch(() => undefined); // awaited below, or the body's failure is the one reported
  let sent = offset;
  let failed: unknown;
  try {
    // The next chunk is read while the last one drains.
    let draining: Promise<void> | undefined;
    for (let chunk = await body.next(); chunk !== undefined; chunk = await body.next()) {
      await draining;
      if (req.destroyed || answeredEarly) break; // the answer, or the connection's failure, is seen below
      if (sent + chunk.length > size) throw new InvalidArgumentError(`the content grew past the ${size} bytes declared while it was pushed; push again`);
      sent += chunk.length;
      upload.onProgress?.(sent);
      const taken = chunk;
      draining = req.write(taken, () => body.sent(taken)) ? undefined : drained(req);
    }
    await draining;
    if (!answeredEarly && !req.destroyed) req.end();
  } catch (err) {
    failed = err;
    req.destroy();
  } finally {
    await body.close().catch(() => undefined);
  }
  if (failed !== undefined) throw failed;
  let result: Awaited<typeof answer>;
  try {
    result = await answer;
  } catch (err) {
    if (upload.signal?.aborted) throw err;
    // The connection dropped: the coordinator kept what arrived; ask where it stands.
    throw new ResumeFrom(await headOffset(upload, url), err);
  } finally {
    req.destroy(); // one request per connection (see coordinatorRequest)
  }
  const at = Number(result.headers[UPLOAD_OFFSET_HEADER]);
  if (result.status === 204) return at;
  if (result.status === 409 && Number.isSafeInteger(at)) throw new ResumeFrom(at, new FailedPreconditionError(result.text.trim()));
  throw httpError(result.status, result.text);
}

/** Resolves once `req` can take more, has been answered, or has ended (its failure is seen through its answer). */
function drained(req: http.ClientRequest): Promise<void> {
  return new Promise((resolve) => {
    const events = ['drain', 'response', 'close'];
    const done = () => {
      for (const event of events) req.off(event, done);
      resolve();
    };
    for (const event of events) req.on(event, done);
    if (req.destroyed) done();
  });
}

async function headOffset(upload: ResumableUpload, url: URL): Promise<number> {
  const req = coordinatorRequest(upload, url, 'HEAD', {});
  const answer = answerOf(req);
  req.end();
  const { status, headers } = await answer.finally(() => req.destroy());
  const at = Number(headers[UPLOAD_OFFSET_HEADER]);
  if (status !== 200 || !Number.isSafeInteger(at)) throw httpError(status, '');
  return at;
}

function httpError(status: number, text: string): Error {
  const message = text.trim() || `the coordinator answered HTTP ${status}`;
  if (status === 401) return new UnauthenticatedError(message);
  if (status === 404) return new NotFoundError(message);
  if (status === 400 || status === 413) return new InvalidArgumentError(message);
  if (status === 503) return new UnavailableError(message);
  return new FailedPreconditionError(message);
}

/** The coordinator does not serve this method (gRPC UNIMPLEMENTED, seen through fromGrpcError). */
export function isUnimplemented(err: unknown): boolean {
  return err instanceof Error && /does not implement the method/.test(err.message);
}
