// Pushing and pulling one artifact version, for the SDK's models/datasets.put and download and
// for `mlfleetctl models|datasets push|pull` alike: a path (a file, or a directory sent as its
// deterministic tar) goes up by the resumable HTTP upload, or by the gRPC Push on a coordinator
// without it; a version comes down over HTTP from where Locate says (the coordinator or the
// bucket), or over gRPC, into a `.partial` that is checked against the digest before it is
// moved into place. What to show while it runs (a bar, a resume notice) is the caller's.
import path from 'node:path';
import { Readable } from 'node:stream';
import type { ArtifactKind } from '../artifact-ref.js';
import { readBlobRange, seedSource } from '../blob-download.js';
import { isUnimplemented, pushResumable, uploadKey } from '../blob-upload.js';
import type { CoordinatorClient } from '../client.js';
import type { ArtifactVersion, PushHeader } from '../proto.js';
import type { TlsMaterial } from '../tls.js';
import { downloadVerified, NO_PROGRESS, placePulled, planPull, pushSource, type OpenDownload, type ProgressFactory } from './artifact-transfer.js';

/** What a transfer needs of the connection: the client, and the token and TLS for the HTTP byte paths. */
export interface Connection {
  client: CoordinatorClient;
  /** The coordinator address(es) as given: part of a resumable upload's key. */
  coordinator: string;
  token: string | undefined;
  tls: TlsMaterial | undefined;
}

/** What describes a version (models: what selection by criteria reads; datasets: labels only). */
export interface VersionMetadata {
  type?: string;
  inputFormat?: string;
  outputFormat?: string;
  /** A fraction between 0 and 1. */
  accuracy?: number;
  labels?: Record<string, string>;
}

export interface PushArtifactOptions {
  /** The content format (default: from the file extension, or saved_model.pb in a directory; 'other' for bytes). */
  format?: string;
  metadata?: VersionMetadata;
  /** Required for a stream: the header carries the exact size before the first byte. */
  sizeBytes?: number;
  signal?: AbortSignal;
  progress?: ProgressFactory;
  /** Bytes the coordinator holds so far. */
  onProgress?(bytes: number): void;
  /** The coordinator (or the bucket) already held `offset` bytes of this content. */
  onResume?(offset: number, where: 'coordinator' | 'bucket'): void;
  /** The coordinator has no resumable uploads: the bytes go by the gRPC Push, which a cancel undoes whole. */
  onStreamed?(): void;
}

/** What can be pushed: a path, bytes in memory, or a stream (with options.sizeBytes). */
export type PushContent = string | Uint8Array | Readable | AsyncIterable<Buffer>;

function header(name: string, format: string, sizeBytes: number, directory: boolean, digest: string, metadata: VersionMetadata = {}): PushHeader {
  return {
    name,
    format,
    directory,
    sizeBytes,
    digest,
    metadata: {
      type: metadata.type ?? '',
      inputFormat: metadata.inputFormat ?? '',
      outputFormat: metadata.outputFormat ?? '',
      accuracy: metadata.accuracy ?? 0,
      labels: metadata.labels ?? {},
    },
  };
}

/** Uploads `content` as the next version of `kind` NAME; resolves with that version. */
export async function pushArtifact(conn: Connection, kind: ArtifactKind, name: string, content: PushContent, options: PushArtifactOptions = {}): Promise<ArtifactVersion> {
  const { client } = conn;
  const { signal, onProgress } = options;
  const progress = options.progress ?? NO_PROGRESS;
  if (typeof content !== 'string') {
    // Bytes with no path to re-read from: the gRPC Push, in one pass.
    const bytes = content instanceof Uint8Array ? Buffer.from(content.buffer, content.byteOffset, content.byteLength) : undefined;
    const sizeBytes = bytes?.length ?? options.sizeBytes;
    if (sizeBytes === undefined) throw new TypeError(`pushing a stream as ${name} needs options.sizeBytes (the exact byte count)`);
    const body = bytes ? Readable.from([bytes]) : content;
    return client.push(kind, header(name, options.format ?? 'other', sizeBytes, false, '', options.metadata), body as Readable, { signal, onProgress });
  }
  const file = content;
  const source = await pushSource(kind, file, signal ?? new AbortController().signal, progress);
  const pushed = header(name, options.format ?? source.inferredFormat, source.sizeBytes, source.directory, source.digest, options.metadata);
  const bar = progress('pushing', source.sizeBytes);
  try {
    return await pushResumable({
      client,
      kind,
      header: pushed,
      uploadKey: uploadKey({ path: path.resolve(file), sizeBytes: source.sizeBytes, mtimeMs: source.mtimeMs, coordinator: conn.coordinator, kind, name, digest: source.digest }),
      open: (start) => source.openFrom(start),
      file: source.directory ? undefined : file,
      token: conn.token,
      tls: conn.tls,
      signal,
      onProgress: (bytes) => {
        bar.update(bytes);
        onProgress?.(bytes);
      },
      fallback: () => {
        options.onStreamed?.();
        return client.push(kind, pushed, source.open(), { signal, onProgress });
      },
      onResume: options.onResume,
    });
  } finally {
    bar.stop();
  }
}

export interface PullArtifactOptions {
  signal?: AbortSignal;
  progress?: ProgressFactory;
}

export interface Pulled {
  version: ArtifactVersion;
  /** Where the content is now: DEST, or DEST/NAME-vN.EXT when DEST is a directory and the content a file. */
  path: string;
  /** The byte an earlier, interrupted pull's `.partial` let this one start at (0: from the start). */
  resumedFrom: number;
}

/**
 * Downloads the version `ref` names (NAME, NAME:VERSION, NAME@ALIAS) to DEST, checked against
 * its sha256. The ref is resolved once and the bytes fetched by digest, so a ref that moves
 * meanwhile cannot mix two contents. Aborting keeps the `.partial` for the next pull.
 */
export async function pullArtifact(conn: Connection, kind: ArtifactKind, ref: string, dest: string, options: PullArtifactOptions = {}): Promise<Pulled> {
  const { client } = conn;
  const signal = options.signal ?? new AbortController().signal;
  const version = await client.resolve(kind, ref, { signal });
  const plan = await planPull(version, dest);
  const seed = await locateSeed(client, kind, version.digest);
  const open: OpenDownload = seed
    ? (offset, s) => readBlobRange({ url: seed.url, token: seed.withToken ? conn.token : undefined, tls: conn.tls, offset, sizeBytes: Number(version.sizeBytes), signal: s })
    : async (offset, s) => (await client.download(kind, { digest: version.digest, offset }, { signal: s })).chunks;
  const resumedFrom = await downloadVerified(plan, open, signal, options.progress ?? NO_PROGRESS);
  await placePulled(plan);
  return { version, path: plan.target, resumedFrom };
}

/** Where a digest is read over HTTP; undefined from a coordinator without DeliveryService.Locate. */
async function locateSeed(client: CoordinatorClient, kind: ArtifactKind, digest: string): Promise<{ url: string; withToken: boolean } | undefined> {
  try {
    return seedSource(await client.locate({ kind, digest }));
  } catch (err) {
    if (isUnimplemented(err)) return undefined;
    throw err;
  }
}
