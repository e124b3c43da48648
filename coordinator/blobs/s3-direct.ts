// Bytes that go between hosts and the S3 bucket without passing through the coordinator
// (docs/delivery.md, Uploads and the s3 source). The leader signs short-lived URLs with its own
// S3 credentials, so hosts and clients never hold them:
// - a presigned GetObject of sha256/<hex>, which an agent GETs with a Range header, piece by
//   piece;
// - a direct multipart upload to tmp/<random>: one presigned UploadPart URL per part; the client
//   PUTs the parts and hands back their ETags. The leader then completes the upload and reads
//   the object back once, hashing it in order into the whole digest and the piece manifest. Only
//   bytes whose digest the leader computed itself are copied under sha256/: a content-addressed
//   store shared by tenants never takes a client's word for a digest.
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListPartsCommand,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, NotFoundError } from '../../shared/errors.js';
import { encodeManifest, pieceBytesFor, pieceCount, pieceRange, StreamingPieceHasher, type PieceManifest } from '../../shared/pieces.js';
import { formatBytes } from '../../shared/units.js';
import { describeMismatch, hexOf, type Digest } from './blob-store.js';
import { isMissing, statusOf, type S3BlobStore } from './s3-blob-store.js';

const MiB = 1024 * 1024;
const TiB = 1024 * 1024 * MiB;
/** S3's floor for every part but the last. */
export const MIN_PART_BYTES = 5 * MiB;
export const MAX_PARTS = 10_000;
/** S3's largest object. */
export const MAX_DIRECT_UPLOAD_BYTES = 5 * TiB;
/** SigV4 presigned URLs live at most a week. */
const MAX_URL_SECONDS = 7 * 24 * 60 * 60;

export const DEFAULT_READ_URL_SECONDS = 15 * 60;
export const DEFAULT_PART_URL_SECONDS = 60 * 60;
/** Ranged GETs in flight while the leader reads an upload back. */
const DEFAULT_READ_BACK_CONCURRENCY = 4;

export interface S3DirectOptions {
  /** How long part URLs live. Default one hour. */
  partUrlSeconds?: number;
  /** Pieces fetched at once when an upload is read back (memory: this × piece size). Default 4. */
  readBackConcurrency?: number;
  now?: () => number;
}

/** What the leader keeps of an unfinished direct upload (in memory, beside the push). */
export interface DirectUpload {
  /** S3's multipart upload id. */
  uploadId: string;
  /** The temporary object, under the store's tmp/. */
  key: string;
  sizeBytes: number;
  /** Part i holds bytes [i × partBytes, min((i + 1) × partBytes, sizeBytes)). */
  partBytes: number;
  partCount: number;
}

export interface DirectUploadTicket extends DirectUpload {
  /** Presigned UploadPart URLs, part i (0-based) at index i: `PUT` its bytes, keep the ETag. */
  partUrls: string[];
  expiresAtMs: number;
  /**
   * Parts (0-based) the bucket already holds, with their ETags, from ListParts; undefined when
   * the server cannot list parts (s3rver), and the client then sends every part it lacks an
   * ETag for again.
   */
  partsDone?: Array<{ index: number; etag: string }>;
}

export interface VerifiedBlob {
  digest: Digest;
  sizeBytes: number;
  manifest: PieceManifest;
}

export class S3DirectAccess {
  private readonly partUrlSeconds: number;
  private readonly readBackConcurrency: number;
  private readonly now: () => number;

  constructor(
    readonly store: S3BlobStore,
    options: S3DirectOptions = {},
  ) {
    this.partUrlSeconds = checkSeconds(options.partUrlSeconds ?? DEFAULT_PART_URL_SECONDS, 'part URLs');
    this.readBackConcurrency = options.readBackConcurrency ?? DEFAULT_READ_BACK_CONCURRENCY;
    if (!Number.isSafeInteger(this.readBackConcurrency) || this.readBackConcurrency < 1) {
      throw new InvalidArgumentError('reading an upload back needs at least one request in flight');
    }
    this.now = options.now ?? Date.now;
  }

  /**
   * A URL that GETs blob `digest` (any Range, no credentials) until `expiresAtMs`.
   * NotFoundError when the store does not hold it: a URL to nothing helps nobody.
   */
  async presignBlobGet(digest: Digest, expiresInSeconds = DEFAULT_READ_URL_SECONDS): Promise<{ url: string; expiresAtMs: number }> {
    const seconds = checkSeconds(expiresInSeconds, 'blob URLs');
    const key = this.store.keyOf(digest);
    if (!(await this.store.exists(key).catch((err: unknown) => Promise.reject(this.store.mapError(err, `look up ${digest}`))))) {
      throw new NotFoundError(`blob ${digest} is not stored`);
    }
    const expiresAtMs = this.now() + seconds * 1000;
    const url = await getSignedUrl(this.store.client, new GetObjectCommand({ Bucket: this.store.options.bucket, Key: key }), { expiresIn: seconds });
    return { url, expiresAtMs };
  }

  /** Starts a multipart upload of `sizeBytes` to a fresh temporary key, and signs its part URLs. */
  async beginDirectUpload(request: { sizeBytes: number; partBytes?: number }): Promise<DirectUploadTicket> {
    const { sizeBytes } = request;
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new InvalidArgumentError(`a blob size must be a whole number of bytes, not ${sizeBytes}`);
    if (sizeBytes > MAX_DIRECT_UPLOAD_BYTES) {
      throw new InvalidArgumentError(`a blob of ${formatBytes(sizeBytes)} is larger than S3's largest object, ${formatBytes(MAX_DIRECT_UPLOAD_BYTES)}`);
    }
    const partBytes = request.partBytes ?? pieceBytesFor(sizeBytes);
    if (!Number.isSafeInteger(partBytes) || partBytes < MIN_PART_BYTES) {
      throw new InvalidArgumentError(`a part must be at least ${formatBytes(MIN_PART_BYTES)} (S3's minimum), not ${partBytes} bytes`);
    }
    const partCount = Math.max(1, pieceCount(sizeBytes, partBytes));
    if (partCount > MAX_PARTS) throw new InvalidArgumentError(`${formatBytes(sizeBytes)} in parts of ${formatBytes(partBytes)} is ${partCount} parts; S3 takes at most ${MAX_PARTS}`);
    const key = `${this.store.tmpPrefix}${randomBytes(12).toString('hex')}`;
    let uploadId: string | undefined;
    try {
      ({ UploadId: uploadId } = await this.store.client.send(new CreateMultipartUploadCommand({ Bucket: this.store.options.bucket, Key: key })));
    } catch (err) {
      throw this.store.mapError(err, 'start an upload');
    }
    if (!uploadId) throw this.store.mapError(new Error('the server answered without an upload id'), 'start an upload');
    const upload: DirectUpload = { uploadId, key, sizeBytes, partBytes, partCount };
    return { ...upload, ...(await this.signParts(upload)) };
  }

  /**
   * Fresh part URLs for an upload being resumed, and the parts the bucket already holds where
   * the server can say (ListParts).
   */
  async presignParts(upload: DirectUpload): Promise<DirectUploadTicket> {
    return { ...upload, ...(await this.signParts(upload)), partsDone: await this.listParts(upload) };
  }

  /**
   * Completes the upload from the parts' ETags (index i: part i; an empty one is taken from
   * ListParts where the server lists parts), reads the object back to compute its digest and
   * pieces, and publishes it under sha256/<hex> with its piece manifest. InvalidArgumentError,
   * storing nothing, when the size or a declared digest does not match.
   */
  async completeDirectUpload(upload: DirectUpload, etags: readonly string[], expected: { digest?: Digest; sizeBytes: number }): Promise<VerifiedBlob> {
    if (expected.digest !== undefined) hexOf(expected.digest); // a malformed digest: the usual words
    if (etags.length !== upload.partCount) {
      throw new InvalidArgumentError(`the upload has ${upload.partCount} parts but ${etags.length} ETags were sent`);
    }
    if (expected.sizeBytes !== upload.sizeBytes) {
      await this.abortDirectUpload(upload);
      throw new InvalidArgumentError(`the push declared ${expected.sizeBytes} bytes but its upload was begun for ${upload.sizeBytes}; nothing was stored`);
    }
    const parts = await this.completedParts(upload, etags);
    const { client, options } = this.store;
    try {
      await client.send(new CompleteMultipartUploadCommand({ Bucket: options.bucket, Key: upload.key, UploadId: upload.uploadId, MultipartUpload: { Parts: parts } }));
    } catch (err) {
      const name = (err as { name?: string }).name ?? '';
      // The client's parts are wrong (an ETag that is no part, a part too small): it may send them again.
      if (['InvalidPart', 'InvalidPartOrder', 'EntityTooSmall', 'NoSuchUpload'].includes(name) || statusOf(err) === 400) {
        throw new InvalidArgumentError(`the upload's parts do not complete it (${name || `HTTP ${statusOf(err)}`}): ${(err as Error).message}`);
      }
      throw this.store.mapError(err, 'complete an upload');
    }
    // From here the temporary object exists, and whatever happens it goes.
    try {
      const head = await client.send(new HeadObjectCommand({ Bucket: options.bucket, Key: upload.key })).catch((err: unknown) => Promise.reject(this.store.mapError(err, 'look up an upload')));
      const storedBytes = head.ContentLength ?? 0;
      if (storedBytes !== expected.sizeBytes) {
        throw new InvalidArgumentError(`the uploaded parts hold ${storedBytes} bytes but the push declared ${expected.sizeBytes} bytes; nothing was stored`);
      }
      const manifest = await readBackManifest(this.store, upload.key, storedBytes, this.readBackConcurrency);
      const mismatch = describeMismatch(manifest, expected);
      if (mismatch) throw new InvalidArgumentError(mismatch);
      const target = this.store.keyOf(manifest.digest);
      try {
        if (!(await this.store.exists(target))) await this.store.copy(upload.key, target, storedBytes);
      } catch (err) {
        throw this.store.mapError(err, 'store an upload');
      }
      await this.store.writePieces(manifest.digest, encodeManifest(manifest));
      return { digest: manifest.digest, sizeBytes: storedBytes, manifest };
    } finally {
      await this.store.deleteKey(upload.key);
    }
  }

  /** Drops an unfinished upload: its parts are aborted, never completed. Best effort, idempotent. */
  async abortDirectUpload(upload: DirectUpload): Promise<void> {
    await this.store.abortUpload(upload.key, upload.uploadId);
  }

  private async signParts(upload: DirectUpload): Promise<{ partUrls: string[]; expiresAtMs: number }> {
    const expiresAtMs = this.now() + this.partUrlSeconds * 1000;
    const { client, options } = this.store;
    const partUrls = await Promise.all(
      Array.from({ length: upload.partCount }, (_, index) =>
        getSignedUrl(client, new UploadPartCommand({ Bucket: options.bucket, Key: upload.key, UploadId: upload.uploadId, PartNumber: index + 1 }), {
          expiresIn: this.partUrlSeconds,
        }),
      ),
    );
    return { partUrls, expiresAtMs };
  }

  /** The parts S3 holds; undefined when the server does not list parts (s3rver answers 405). */
  private async listParts(upload: DirectUpload): Promise<Array<{ index: number; etag: string }> | undefined> {
    const done: Array<{ index: number; etag: string }> = [];
    try {
      let marker: string | undefined;
      do {
        const page = await this.store.client.send(
          new ListPartsCommand({ Bucket: this.store.options.bucket, Key: upload.key, UploadId: upload.uploadId, PartNumberMarker: marker }),
        );
        for (const part of page.Parts ?? []) {
          const index = (part.PartNumber ?? 0) - 1;
          const expectedBytes = index === upload.partCount - 1 ? upload.sizeBytes - index * upload.partBytes : upload.partBytes;
          // A part cut short (an interrupted PUT never stores one, but a wrong client might) is not done.
          if (index >= 0 && index < upload.partCount && part.ETag && part.Size === expectedBytes) done.push({ index, etag: part.ETag });
        }
        marker = page.IsTruncated ? page.NextPartNumberMarker : undefined;
      } while (marker);
    } catch (err) {
      const status = statusOf(err);
      if (status === 405 || status === 501 || (err as { name?: string }).name === 'NotImplemented' || (err as { name?: string }).name === 'MethodNotAllowed') return undefined;
      if ((err as { name?: string }).name === 'NoSuchUpload' || isMissing(err)) {
        throw new NotFoundError('the upload is gone from the bucket (aborted, or swept after a day); begin the push again');
      }
      throw this.store.mapError(err, 'list the parts of an upload');
    }
    return done.sort((a, b) => a.index - b.index);
  }

  private async completedParts(upload: DirectUpload, etags: readonly string[]): Promise<CompletedPart[]> {
    let listed: Map<number, string> | undefined;
    const parts: CompletedPart[] = [];
    for (let index = 0; index < upload.partCount; index += 1) {
      let etag = etags[index];
      if (typeof etag !== 'string' || etag.length > 1024) throw new InvalidArgumentError(`the ETag of part ${index} is not a string of at most 1024 characters`);
      if (etag === '') {
        listed ??= new Map((await this.listParts(upload))?.map((p) => [p.index, p.etag]) ?? []);
        etag = listed.get(index);
        if (!etag) throw new InvalidArgumentError(`part ${index} has no ETag, and the bucket does not hold it; upload it and send its ETag`);
      }
      parts.push({ PartNumber: index + 1, ETag: etag });
    }
    return parts;
  }
}

/**
 * The piece manifest (and whole digest) of object `key` of `sizeBytes`, from ranged GETs of its
 * pieces, `concurrency` at once, hashed in order. Also what computes the manifest of an S3 blob
 * stored before pieces existed (key = store.keyOf(digest)).
 */
export async function readBackManifest(store: S3BlobStore, key: string, sizeBytes: number, concurrency = DEFAULT_READ_BACK_CONCURRENCY): Promise<PieceManifest> {
  const pieceBytes = pieceBytesFor(sizeBytes);
  const hasher = new StreamingPieceHasher(pieceBytes);
  const count = pieceCount(sizeBytes, pieceBytes);
  const fetchPiece = async (index: number): Promise<Buffer> => {
    const { start, end } = pieceRange(index, sizeBytes, pieceBytes);
    try {
      const response = await store.client.send(new GetObjectCommand({ Bucket: store.options.bucket, Key: key, Range: `bytes=${start}-${end - 1}` }));
      const bytes = Buffer.from(await response.Body!.transformToByteArray());
      if (bytes.length !== end - start) throw new Error(`piece ${index} came back as ${bytes.length} bytes, not ${end - start}`);
      return bytes;
    } catch (err) {
      throw store.mapError(err, 'read an upload back');
    }
  };
  const inFlight: Array<Promise<Buffer>> = [];
  let next = 0;
  const fill = () => {
    while (next < count && inFlight.length < concurrency) {
      const fetching = fetchPiece(next++);
      fetching.catch(() => {}); // awaited in order below; a later failure must not go unhandled meanwhile
      inFlight.push(fetching);
    }
  };
  fill();
  while (inFlight.length > 0) {
    const bytes = await inFlight.shift()!;
    fill();
    hasher.update(bytes);
  }
  const manifest = hasher.finish();
  if (manifest.sizeBytes !== sizeBytes) throw store.mapError(new Error(`read ${manifest.sizeBytes} bytes of ${sizeBytes}`), 'read an upload back');
  return manifest;
}

function checkSeconds(seconds: number, what: string): number {
  if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > MAX_URL_SECONDS) {
    throw new InvalidArgumentError(`${what} must live between 1 second and a week, not ${seconds} seconds`);
  }
  return seconds;
}
