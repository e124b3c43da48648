// The client side of a resumable push (docs/delivery.md "Uploads"): BeginPush over gRPC, the
// bytes by HTTP PUT from where the coordinator stands (undici, streamed, nothing held whole),
// then CommitPush. An interrupted push (Ctrl-C, kill -9, a dropped connection) run again with
// the same upload key resumes from the bytes the coordinator kept. Used by `mlfleetctl models
// push` / `datasets push`.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';
import type { ArtifactKind } from './artifact-ref.js';
import { AUTHORIZATION } from './auth.js';
import { UPLOAD_OFFSET_HEADER } from './blob-http.js';
import type { CoordinatorClient } from './client.js';
import { FailedPreconditionError, UnauthenticatedError, NotFoundError, InvalidArgumentError, UnavailableError } from './errors.js';
import type { ArtifactVersion, PushHeader } from './proto.js';
import type { TlsMaterial } from './tls.js';

/** PUTs that end early (a dropped connection) are tried again from the coordinator's offset this many times. */
const MAX_PUT_ATTEMPTS = 5;

export interface ResumableUpload {
  client: CoordinatorClient;
  kind: ArtifactKind;
  header: PushHeader;
  /** From uploadKey(): the same content pushed again finds its unfinished upload. */
  uploadKey: string;
  /** A fresh stream of the content's bytes from `start`. */
  open(start: number): Readable | AsyncIterable<Buffer>;
  token: string | undefined;
  /** The client's TLS material (its CA verifies the coordinator; its certificate is shown when it has one). */
  tls?: TlsMaterial | undefined;
  signal?: AbortSignal;
  /** Bytes the coordinator holds so far (sent and acknowledged, or in flight). */
  onProgress?(bytes: number): void;
  /** Called once when the coordinator already held `offset` bytes of this content. */
  onResume?(offset: number): void;
  /** A coordinator without DeliveryService (an older release): the push goes this way instead. */
  fallback?(): Promise<ArtifactVersion>;
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
  if (!ticket.url) throw new FailedPreconditionError('the coordinator gave no upload URL (an S3 upload needs a newer mlfleetctl)');
  let offset = Number(ticket.offset);
  if (offset > 0) upload.onResume?.(offset);
  upload.onProgress?.(offset);
  const dispatcher = new Agent({
    connect: upload.tls ? { ca: upload.tls.ca, cert: upload.tls.cert, key: upload.tls.key } : {},
    bodyTimeout: 60_000,
    headersTimeout: 60_000,
  });
  try {
    for (let attempt = 1; offset < size; attempt++) {
      try {
        offset = await putFrom(dispatcher, upload, ticket.url, offset, size);
      } catch (err) {
        if (upload.signal?.aborted || !(err instanceof ResumeFrom) || attempt >= MAX_PUT_ATTEMPTS) throw err instanceof ResumeFrom ? err.cause : err;
        offset = err.offset;
        // Another PUT (an earlier run's, cut) may still hold the upload: give it a moment to end.
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      }
    }
  } finally {
    await dispatcher.close().catch(() => undefined);
  }
  return client.commitPush(ticket.uploadId, { signal: upload.signal });
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

async function putFrom(dispatcher: Dispatcher, upload: ResumableUpload, url: string, offset: number, size: number): Promise<number> {
  let sent = offset;
  const source = upload.open(offset);
  async function* body(): AsyncIterable<Buffer> {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      if (sent + chunk.length > size) throw new InvalidArgumentError(`the content grew past the ${size} bytes declared while it was pushed; push again`);
      sent += chunk.length;
      upload.onProgress?.(sent);
      yield chunk;
    }
  }
  const headers: Record<string, string> = { [UPLOAD_OFFSET_HEADER]: String(offset), 'content-length': String(size - offset), 'content-type': 'application/octet-stream' };
  if (upload.token) headers[AUTHORIZATION] = `Bearer ${upload.token}`;
  let answer: Dispatcher.ResponseData;
  try {
    answer = await request(url, { method: 'PUT', body: Readable.from(body(), { objectMode: false }), headers, dispatcher, signal: upload.signal });
  } catch (err) {
    if ('destroy' in source && typeof source.destroy === 'function') source.destroy();
    if (upload.signal?.aborted) throw err;
    // The connection dropped: the coordinator kept what arrived; ask where it stands.
    throw new ResumeFrom(await headOffset(dispatcher, upload, url), err);
  }
  const text = await answer.body.text();
  const at = Number(answer.headers[UPLOAD_OFFSET_HEADER]);
  if (answer.statusCode === 204) return at;
  if (answer.statusCode === 409 && Number.isSafeInteger(at)) throw new ResumeFrom(at, new FailedPreconditionError(text.trim()));
  throw httpError(answer.statusCode, text);
}

async function headOffset(dispatcher: Dispatcher, upload: ResumableUpload, url: string): Promise<number> {
  const headers: Record<string, string> = {};
  if (upload.token) headers[AUTHORIZATION] = `Bearer ${upload.token}`;
  const answer = await request(url, { method: 'HEAD', headers, dispatcher, signal: upload.signal });
  await answer.body.dump();
  const at = Number(answer.headers[UPLOAD_OFFSET_HEADER]);
  if (answer.statusCode !== 200 || !Number.isSafeInteger(at)) throw httpError(answer.statusCode, '');
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
