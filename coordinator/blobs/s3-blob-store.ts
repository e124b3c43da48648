// The blob store on S3-compatible object storage (`--blob-store s3://bucket?…`). An object's
// key must be known when its upload starts, and a blob's key (its digest) is only known at
// the end, so:
// - a blob smaller than one part is buffered, hashed, and put straight under sha256/<hex>;
// - a larger one is a multipart upload to tmp/<random>, hashed part by part, completed only
//   once its digest is known and matches, then copied server-side to sha256/<hex> and the
//   temporary object deleted. Until then nothing under sha256/ exists, and a failed or
//   aborted upload is aborted, never completed.
// Temporary objects and multipart uploads that a crash left behind are swept when a store
// opens, once older than a day: several coordinators may share a bucket, and a younger one
// may be another coordinator's upload in progress.
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  FailedPreconditionError,
  InvalidArgumentError,
  MlfleetError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
} from '../../shared/errors.js';
import { silentLogger, type Logger } from '../../shared/log.js';
import { formatBytes } from '../../shared/units.js';
import { checkOffset, hexOf, streamReader, type BlobReader, type BlobStore, type BlobWriter, type CreateOptions, type Digest } from './blob-store.js';
import { HashingBlobWriter } from './hashing-writer.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** S3's floor for every part but the last. */
const MIN_PART_BYTES = 5 * MiB;
const MAX_PARTS = 10_000;
/** Part sizes double after every this many parts, so big blobs fit in 10,000 parts. */
const PARTS_PER_SIZE = 2_000;
/** The largest object CopyObject copies in one request; beyond it, a multipart copy. */
const MAX_SINGLE_COPY_BYTES = 5 * GiB;
const COPY_PART_BYTES = 1 * GiB;
const DAY_MS = 24 * 60 * 60 * 1000;
const FIRST_BUFFER_BYTES = 64 * 1024;

export interface S3BlobStoreOptions {
  /** The store owns the client and destroys it on close. */
  client: S3Client;
  bucket: string;
  /** Keys start with this ('' or ending in '/'). */
  prefix?: string;
  /** Where the bucket is, for messages: the endpoint URL, or '' for AWS. */
  endpoint?: string;
  /** The first parts' size, and the largest blob put in one request. Default 8 MiB, at least 5 MiB. */
  partSizeBytes?: number;
  /** Parts uploaded at once per blob; memory per upload is (this + 1) × part size. Default 4. */
  partConcurrency?: number;
  /** Temporary data older than this is swept at open. Default one day. */
  staleAfterMs?: number;
  now?: () => number;
  log?: Logger;
}

interface CompiledOptions {
  bucket: string;
  prefix: string;
  where: string;
  partSizeBytes: number;
  partConcurrency: number;
}

function compile(options: S3BlobStoreOptions): CompiledOptions {
  const prefix = options.prefix ?? '';
  if (prefix !== '' && !prefix.endsWith('/')) throw new InvalidArgumentError(`the blob store prefix ${JSON.stringify(prefix)} must end with '/'`);
  const partSizeBytes = options.partSizeBytes ?? 8 * MiB;
  if (!(partSizeBytes >= MIN_PART_BYTES)) throw new InvalidArgumentError(`the blob store's part size must be at least ${formatBytes(MIN_PART_BYTES)} (S3's minimum)`);
  const partConcurrency = options.partConcurrency ?? 4;
  if (!(partConcurrency >= 1)) throw new InvalidArgumentError('the blob store needs at least one part in flight');
  const where = `bucket ${options.bucket}${options.endpoint ? ` at ${options.endpoint}` : ''}`;
  return { bucket: options.bucket, prefix, where, partSizeBytes, partConcurrency };
}

export class S3BlobStore implements BlobStore {
  readonly kind = 's3' as const;
  private readonly writers = new Set<S3BlobWriter>();
  private closed = false;

  private constructor(
    readonly client: S3Client,
    readonly options: CompiledOptions,
    private readonly log: Logger,
  ) {}

  /** Checks that the bucket answers, then sweeps what crashed uploads left. */
  static async create(options: S3BlobStoreOptions): Promise<S3BlobStore> {
    try {
      const store = new S3BlobStore(options.client, compile(options), (options.log ?? silentLogger()).child({ component: 'blob-store' }));
      await store.checkBucket();
      await store.sweep((options.now ?? Date.now)() - (options.staleAfterMs ?? DAY_MS));
      return store;
    } catch (err) {
      options.client.destroy();
      throw err;
    }
  }

  keyOf(digest: Digest): string {
    return `${this.options.prefix}sha256/${hexOf(digest)}`;
  }

  get tmpPrefix(): string {
    return `${this.options.prefix}tmp/`;
  }

  async create(options: CreateOptions = {}): Promise<BlobWriter> {
    if (this.closed) throw new FailedPreconditionError('the blob store is closed');
    const writer = new S3BlobWriter(this, () => this.writers.delete(writer), options.digestOfBytes);
    this.writers.add(writer);
    return writer;
  }

  async stat(digest: Digest): Promise<{ sizeBytes: number } | undefined> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key: this.keyOf(digest) }));
      return { sizeBytes: head.ContentLength ?? 0 };
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw this.mapError(err, `look up ${digest}`);
    }
  }

  async read(digest: Digest, offset = 0): Promise<Readable> {
    const key = this.keyOf(digest);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidArgumentError(`offset ${offset} is not a byte position`);
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: key, Range: offset > 0 ? `bytes=${offset}-` : undefined }));
      return response.Body as Readable;
    } catch (err) {
      if (isMissing(err)) throw new NotFoundError(`blob ${digest} is not stored`);
      if (statusOf(err) !== 416) throw this.mapError(err, `read ${digest}`);
    }
    // S3 refuses a range that starts at the end; reading there is valid and reads nothing.
    const stat = await this.stat(digest);
    if (!stat) throw new NotFoundError(`blob ${digest} is not stored`);
    checkOffset(digest, offset, stat.sizeBytes);
    return Readable.from([]);
  }

  /** The object's body copied into the caller's buffers (the SDK allocates its own as it streams). */
  async openReader(digest: Digest, offset = 0): Promise<BlobReader> {
    return streamReader(await this.read(digest, offset));
  }

  async delete(digest: Digest): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.keyOf(digest) }));
      await this.client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.piecesKeyOf(digest) }));
    } catch (err) {
      throw this.mapError(err, `delete ${digest}`);
    }
  }

  /** Where a blob's piece manifest lives: pieces/<hex>, beside sha256/. */
  piecesKeyOf(digest: Digest): string {
    return `${this.options.prefix}pieces/${hexOf(digest)}`;
  }

  async readPieces(digest: Digest): Promise<Buffer | undefined> {
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: this.piecesKeyOf(digest) }));
      return Buffer.from(await response.Body!.transformToByteArray());
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw this.mapError(err, `read the piece manifest of ${digest}`);
    }
  }

  async writePieces(digest: Digest, manifest: Buffer): Promise<void> {
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.options.bucket, Key: this.piecesKeyOf(digest), Body: manifest, ContentLength: manifest.length }));
    } catch (err) {
      throw this.mapError(err, `save the piece manifest of ${digest}`);
    }
  }

  /** Aborts uploads still in progress and closes the client's connections; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.writers].map((writer) => writer.abort()));
    this.client.destroy();
  }

  async exists(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key: key }));
      return true;
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  /** Copies `source` to `target` inside the bucket, in parts when S3 demands it. */
  async copy(source: string, target: string, sizeBytes: number): Promise<void> {
    const { bucket } = this.options;
    const copySource = `${bucket}/${source.split('/').map(encodeURIComponent).join('/')}`;
    if (sizeBytes <= MAX_SINGLE_COPY_BYTES) {
      await this.client.send(new CopyObjectCommand({ Bucket: bucket, Key: target, CopySource: copySource }));
      return;
    }
    const { UploadId } = await this.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: target }));
    try {
      const ranges: { PartNumber: number; start: number; end: number }[] = [];
      for (let start = 0; start < sizeBytes; start += COPY_PART_BYTES) {
        ranges.push({ PartNumber: ranges.length + 1, start, end: Math.min(start + COPY_PART_BYTES, sizeBytes) - 1 });
      }
      const parts: CompletedPart[] = [];
      const next = async (): Promise<void> => {
        for (let range = ranges.shift(); range; range = ranges.shift()) {
          const result = await this.client.send(
            new UploadPartCopyCommand({ Bucket: bucket, Key: target, UploadId, PartNumber: range.PartNumber, CopySource: copySource, CopySourceRange: `bytes=${range.start}-${range.end}` }),
          );
          parts.push({ PartNumber: range.PartNumber, ETag: result.CopyPartResult?.ETag });
        }
      };
      await Promise.all(Array.from({ length: this.options.partConcurrency }, next));
      parts.sort((a, b) => a.PartNumber! - b.PartNumber!);
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: target, UploadId, MultipartUpload: { Parts: parts } }));
    } catch (err) {
      await this.abortUpload(target, UploadId!);
      throw err;
    }
  }

  /** Best effort: an upload left unaborted costs storage until the sweep or a lifecycle rule. */
  async abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.options.bucket, Key: key, UploadId: uploadId }));
    } catch (err) {
      this.log.warn({ err, key }, 'could not abort a multipart upload; its parts stay until the bucket is swept');
    }
  }

  async deleteKey(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: key }));
    } catch (err) {
      this.log.warn({ err, key }, 'could not delete a temporary object; the next sweep will');
    }
  }

  /** Object storage failures in the store's terms: full → RESOURCE_EXHAUSTED, else UNAVAILABLE. */
  mapError(err: unknown, doing: string): unknown {
    if (MlfleetError.is(err)) return err;
    const name = (err as { name?: string }).name ?? '';
    const message = (err as Error).message ?? String(err);
    if (['XMinioStorageFull', 'QuotaExceeded', 'EntityTooLarge', 'InsufficientStorage'].includes(name) || statusOf(err) === 507) {
      return new ResourceExhaustedError(`the coordinator's blob store (${this.options.where}) is out of space: ${name || 'HTTP 507'}: ${message}`);
    }
    if (name === 'NoSuchBucket') return new FailedPreconditionError(`the blob store's ${this.options.where} does not exist`);
    if (name === 'AccessDenied' || statusOf(err) === 403) {
      return new FailedPreconditionError(`the coordinator's credentials may not ${doing} in the blob store's ${this.options.where}: ${message}`);
    }
    return new UnavailableError(`the blob store's ${this.options.where} failed to ${doing}: ${message}`);
  }

  private async checkBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.options.bucket }));
    } catch (err) {
      const status = statusOf(err);
      if (status === 404 || (err as { name?: string }).name === 'NotFound' || (err as { name?: string }).name === 'NoSuchBucket') {
        throw new InvalidArgumentError(`the blob store's ${this.options.where} does not exist; create it, or fix --blob-store`);
      }
      if (status === 403 || status === 401) {
        throw new InvalidArgumentError(`the blob store's ${this.options.where} refused the coordinator's credentials (HTTP ${status}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY`);
      }
      throw new UnavailableError(`cannot reach the blob store's ${this.options.where}: ${(err as Error).message}`);
    }
  }

  /**
   * Deletes temporary objects and aborts multipart uploads started before `before`. Best
   * effort: credentials that may not list the bucket, or a server that cannot list uploads,
   * leave the job to the bucket's lifecycle rules (AbortIncompleteMultipartUpload).
   */
  private async sweep(before: number): Promise<void> {
    const { bucket } = this.options;
    try {
      let token: string | undefined;
      do {
        const page = await this.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: this.tmpPrefix, ContinuationToken: token }));
        for (const object of page.Contents ?? []) {
          if (object.Key && (object.LastModified?.getTime() ?? 0) < before) await this.deleteKey(object.Key);
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      this.log.warn({ err }, 'could not list temporary objects to sweep; leaving them to the bucket lifecycle rules');
    }
    try {
      let keyMarker: string | undefined;
      let uploadIdMarker: string | undefined;
      do {
        const page = await this.client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: this.tmpPrefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }));
        for (const upload of page.Uploads ?? []) {
          if (upload.Key && upload.UploadId && (upload.Initiated?.getTime() ?? 0) < before) await this.abortUpload(upload.Key, upload.UploadId);
        }
        [keyMarker, uploadIdMarker] = page.IsTruncated ? [page.NextKeyMarker, page.NextUploadIdMarker] : [undefined, undefined];
      } while (keyMarker);
    } catch (err) {
      this.log.info({ err }, 'could not list unfinished multipart uploads; leaving them to the bucket lifecycle rules');
    }
  }
}

interface MultipartUpload {
  key: string;
  uploadId: string;
  parts: CompletedPart[];
  inFlight: Set<Promise<void>>;
}

class S3BlobWriter extends HashingBlobWriter {  /** The part being filled; parts are copied in, so callers may reuse their buffers. */
  private part: Buffer | undefined;
  private filled = 0;
  private partsStarted = 0;
  /** Part buffers whose upload finished, reused so memory stays at (concurrency + 1) parts. */
  private readonly spare: Buffer[] = [];
  private multipart: MultipartUpload | undefined;

  constructor(
    private readonly store: S3BlobStore,
    forget: () => void,
    digestOfBytes: CreateOptions['digestOfBytes'],
  ) {
    super(forget, digestOfBytes);
  }

  protected mapError(err: unknown): unknown {
    return this.store.mapError(err, 'store an upload');
  }

  private partSize(partNumber: number): number {
    return this.store.options.partSizeBytes * 2 ** Math.floor((partNumber - 1) / PARTS_PER_SIZE);
  }

  protected async append(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      const size = this.partSize(this.partsStarted + 1);
      if (!this.part) {
        // The first buffer starts small and grows: most blobs are far smaller than a part.
        this.part = this.partsStarted === 0 ? Buffer.allocUnsafe(Math.min(size, Math.max(FIRST_BUFFER_BYTES, chunk.length))) : this.takeBuffer(size);
      } else if (this.filled === this.part.length) {
        const grown = Buffer.allocUnsafe(Math.min(size, Math.max(this.part.length * 2, this.filled + chunk.length - offset)));
        this.part.copy(grown, 0, 0, this.filled);
        this.part = grown;
      }
      const copied = chunk.copy(this.part, this.filled, offset);
      this.filled += copied;
      offset += copied;
      if (this.filled === size) await this.sendPart();
    }
  }

  /** Starts uploading the full part, returning once fewer than `partConcurrency` are in flight. */
  private async sendPart(): Promise<void> {
    const buffer = this.part!;
    const length = this.filled;
    this.part = undefined;
    this.filled = 0;
    const partNumber = ++this.partsStarted;
    if (partNumber > MAX_PARTS) {
      let largest = 0;
      for (let n = 1; n <= MAX_PARTS; n++) largest += this.partSize(n);
      throw this.fail(new ResourceExhaustedError(`a blob in the blob store's ${this.store.options.where} can be at most ${formatBytes(largest)} (${MAX_PARTS} parts); raise the part size`));
    }
    const upload = (this.multipart ??= await this.startMultipart());
    const { bucket } = this.store.options;
    const body = buffer.subarray(0, length);
    const sending = this.store.client
      .send(new UploadPartCommand({ Bucket: bucket, Key: upload.key, UploadId: upload.uploadId, PartNumber: partNumber, Body: body, ContentLength: length, ContentMD5: md5(body) }))
      .then(
        (result) => {
          upload.parts.push({ PartNumber: partNumber, ETag: result.ETag });
          this.spare.push(buffer);
        },
        (err: unknown) => {
          this.fail(this.store.mapError(err, 'store an upload'));
        },
      )
      .finally(() => upload.inFlight.delete(sending));
    upload.inFlight.add(sending);
    while (upload.inFlight.size >= this.store.options.partConcurrency) await Promise.race(upload.inFlight);
    this.throwIfFailed();
  }

  private async startMultipart(): Promise<MultipartUpload> {
    const key = `${this.store.tmpPrefix}${randomBytes(12).toString('hex')}`;
    try {
      const { UploadId } = await this.store.client.send(new CreateMultipartUploadCommand({ Bucket: this.store.options.bucket, Key: key }));
      return { key, uploadId: UploadId!, parts: [], inFlight: new Set() };
    } catch (err) {
      throw this.fail(this.store.mapError(err, 'start an upload'));
    }
  }

  private takeBuffer(size: number): Buffer {
    // Spare buffers of an earlier, smaller part size are left to the garbage collector.
    for (let buffer = this.spare.pop(); buffer; buffer = this.spare.pop()) if (buffer.length === size) return buffer;
    return Buffer.allocUnsafe(size);
  }

  protected async publish(digest: Digest, sizeBytes: number): Promise<void> {
    const { client, options } = this.store;
      const target = this.store.keyOf(digest);
      if (!this.multipart) {
        // Smaller than a part: the bytes are all here, so they go straight to their key.
        if (!(await this.store.exists(target))) {
          const body = (this.part ?? Buffer.alloc(0)).subarray(0, this.filled);
          await client.send(new PutObjectCommand({ Bucket: options.bucket, Key: target, Body: body, ContentLength: body.length, ContentMD5: md5(body) }));
        }
      } else {
        if (this.filled > 0) await this.sendPart();
        const upload = this.multipart;
        await Promise.all(upload.inFlight);
        this.throwIfFailed();
        if (await this.store.exists(target)) {
          await this.discard(); // already stored: this copy is never completed
        } else {
          upload.parts.sort((a, b) => a.PartNumber! - b.PartNumber!);
          await client.send(new CompleteMultipartUploadCommand({ Bucket: options.bucket, Key: upload.key, UploadId: upload.uploadId, MultipartUpload: { Parts: upload.parts } }));
          this.multipart = undefined; // completed: from here the temporary object is what to clean
          try {
            await this.store.copy(upload.key, target, sizeBytes);
          } finally {
            await this.store.deleteKey(upload.key);
          }
        }
      }
    this.release();
  }

  /** Drops what was uploaded: an unfinished multipart upload is aborted, never completed. */
  protected async discard(): Promise<void> {
    const upload = this.multipart;
    this.multipart = undefined;
    if (upload) {
      await Promise.allSettled(upload.inFlight);
      await this.store.abortUpload(upload.key, upload.uploadId);
    }
    this.release();
  }

  private release(): void {
    this.part = undefined;
    this.spare.length = 0;
  }
}

function md5(bytes: Buffer): string {
  return createHash('md5').update(bytes).digest('base64');
}

export function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

export function isMissing(err: unknown): boolean {
  const name = (err as { name?: string }).name;
  return name === 'NotFound' || name === 'NoSuchKey' || (statusOf(err) === 404 && name !== 'NoSuchBucket');
}
