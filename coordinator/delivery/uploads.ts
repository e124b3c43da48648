// The leader's unfinished resumable uploads (docs/delivery.md "Uploads"): begun by
// DeliveryService.BeginPush, fed by PUT /v1/uploads/<id> from where they stand, published by
// CommitPush. They live in memory only (a new leader starts them over); one without bytes for
// an hour is dropped with its temporary data. The bytes are hashed as they arrive, whole and
// per piece, in a worker thread, so CommitPush reads nothing back.
// With the S3 blob store an upload is instead a direct multipart upload to the bucket
// (coordinator/blobs/s3-direct.ts): the leader keeps its S3 upload id beside the push's header
// and key, signs fresh part URLs when the same key comes again, and aborts it when it expires or
// the leader steps down. No byte of it passes here.
import { randomBytes } from 'node:crypto';
import type { Clock, Timer } from '../../shared/clock.js';
import { ConflictError, FailedPreconditionError, InvalidArgumentError, NotFoundError, ResourceExhaustedError } from '../../shared/errors.js';
import { pieceBytesFor, type PieceManifest } from '../../shared/pieces.js';
import { WorkerPieceHasher } from '../../shared/worker-piece-hasher.js';
import type { BlobStore, BlobWriter } from '../blobs/blob-store.js';
import type { DirectUpload, DirectUploadTicket, S3DirectAccess } from '../blobs/s3-direct.js';
import type { ValidPushHeader } from '../api/artifact-service.js';
import type { Principal } from '../auth/token-registry.js';
import type { ArtifactKind } from '../registry/artifact-record.js';

/** An upload with no bytes for this long is dropped. */
export const UPLOAD_EXPIRY_MS = 60 * 60 * 1000;
/** Unfinished uploads one caller (token) may hold at once. */
export const MAX_UPLOADS_PER_CALLER = 8;
/** How often the leader drops expired uploads (and aborts expired direct ones in the bucket). */
export const SWEEP_EVERY_MS = 60_000;
/** Bytes gathered from a PUT before they are written and hashed. */
const WRITE_BYTES = 1 << 20;
/** A staging buffer: a write's MiB and the network read that took it past the MiB. */
const STAGING_BYTES = WRITE_BYTES + 256 * 1024;

interface UploadSession {
  readonly id: string;
  /** The token that began it: only it may PUT, HEAD or commit (anyone else: not found). */
  readonly principal: Principal;
  readonly kind: ArtifactKind;
  readonly header: ValidPushHeader;
  readonly uploadKey: string;
  lastActivityMs: number;
  /** A PUT (or the commit) is using it now. */
  busy: boolean;
}

/** An upload to the bucket: the client PUTs its parts to presigned URLs, CommitPush sends their ETags. */
export interface DirectUploadSession extends UploadSession {
  readonly via: 's3';
  readonly direct: DirectUpload;
}

/** An upload whose bytes come to the coordinator (PUT /v1/uploads/<id>). */
export interface Upload extends UploadSession {
  readonly via: 'coordinator';
  readonly blob: BlobWriter;
  /** Piece hashes and the whole digest, in a worker thread. */
  readonly hasher: WorkerPieceHasher;
  /** The whole digest, once every byte is in (take()); the blob writer commits under it. */
  digest?: string;
  /** Bytes held: the next PUT starts here. */
  offset: number;
}

export type AnyUpload = Upload | DirectUploadSession;

/** A PUT's bytes run past the size BeginPush declared (HTTP 413). */
export class TooLargeError extends InvalidArgumentError {}

/** A PUT at another offset than where the upload stands, or while another PUT runs (HTTP 409). */
export class OffsetMismatchError extends ConflictError {
  constructor(readonly offset: number, message: string) {
    super(message);
  }
}

export class Uploads {
  private readonly uploads = new Map<string, AnyUpload>();
  private sweeper: Timer | undefined;

  /**
   * With `direct` (the S3 blob store), every upload is a direct one to the bucket
   * (beginDirect/takeDirect); without it, every upload comes here (begin/write/take).
   */
  constructor(
    private readonly blobs: BlobStore,
    private readonly clock: Clock,
    private readonly limits: { maxPerCaller?: number; expiryMs?: number } = {},
    readonly direct?: S3DirectAccess,
  ) {}

  /**
   * The caller's unfinished upload with `uploadKey` (of the same kind and header), or a new one.
   * An upload under the same key for other content is dropped first.
   */
  async begin(principal: Principal, kind: ArtifactKind, header: ValidPushHeader, uploadKey: string): Promise<Upload> {
    const found = await this.findByKey(principal, kind, header, uploadKey);
    if (found) {
      if (found.via === 'coordinator') return found;
      await this.drop(found);
    }
    this.checkRoom(principal);
    const upload: Upload = {
      via: 'coordinator',
      id: randomBytes(16).toString('hex'),
      principal,
      kind,
      header,
      uploadKey,
      // Both hashes in a worker: the blob writer is told the whole digest at commit (take()).
      blob: await this.blobs.create({ digestOfBytes: () => upload.digest }),
      hasher: new WorkerPieceHasher(pieceBytesFor(header.sizeBytes), { whole: true }),
      offset: 0,
      lastActivityMs: this.clock.now(),
      busy: false,
    };
    this.uploads.set(upload.id, upload);
    return upload;
  }

  /**
   * The caller's unfinished direct upload with `uploadKey` (fresh part URLs, and the parts the
   * bucket holds where it can say), or a new multipart upload in the bucket.
   */
  async beginDirect(principal: Principal, kind: ArtifactKind, header: ValidPushHeader, uploadKey: string): Promise<{ upload: DirectUploadSession; ticket: DirectUploadTicket }> {
    const direct = this.direct;
    if (!direct) throw new FailedPreconditionError('this coordinator keeps blobs itself: uploads come to it');
    const found = await this.findByKey(principal, kind, header, uploadKey);
    if (found?.via === 's3') {
      try {
        return { upload: found, ticket: await direct.presignParts(found.direct) };
      } catch (err) {
        // Gone from the bucket (aborted, swept): a new upload below.
        if (!(err instanceof NotFoundError)) throw err;
        await this.drop(found);
      }
    } else if (found) {
      await this.drop(found);
    }
    this.checkRoom(principal);
    const ticket = await direct.beginDirectUpload({ sizeBytes: header.sizeBytes });
    const { uploadId, key, sizeBytes, partBytes, partCount } = ticket;
    const upload: DirectUploadSession = {
      via: 's3',
      id: randomBytes(16).toString('hex'),
      principal,
      kind,
      header,
      uploadKey,
      direct: { uploadId, key, sizeBytes, partBytes, partCount },
      lastActivityMs: this.clock.now(),
      busy: false,
    };
    this.uploads.set(upload.id, upload);
    return { upload, ticket };
  }

  /** When the upload will be dropped unless it is begun again or committed. */
  expiresAtMs(upload: AnyUpload): number {
    return upload.lastActivityMs + (this.limits.expiryMs ?? UPLOAD_EXPIRY_MS);
  }

  /**
   * Takes a direct upload out, for CommitPush (which then completes or aborts it), given one
   * ETag per part; the bucket says at completion whether the parts are whole.
   */
  takeDirect(id: string, principal: Principal, etagCount: number): DirectUploadSession {
    const upload = this.lookup(id, principal);
    if (upload.via !== 's3') throw new InvalidArgumentError('this upload went to the coordinator: commit it without part ETags');
    // A client that miscounted keeps its upload: nothing is taken.
    if (etagCount !== upload.direct.partCount) throw new InvalidArgumentError(`the upload has ${upload.direct.partCount} parts but ${etagCount} ETags were sent`);
    this.uploads.delete(id);
    return upload;
  }

  private async findByKey(principal: Principal, kind: ArtifactKind, header: ValidPushHeader, uploadKey: string): Promise<AnyUpload | undefined> {
    await this.sweep();
    if (!uploadKey) return undefined;
    for (const upload of this.uploads.values()) {
      if (upload.principal.tokenId !== principal.tokenId || upload.uploadKey !== uploadKey) continue;
      // A PUT of it may still be running (the client was killed and the coordinator has not
      // seen its connection close yet): the same upload, whose PUTs answer 409 until it ends.
      if (upload.kind === kind && sameHeader(upload.header, header)) {
        upload.lastActivityMs = this.clock.now();
        return upload;
      }
      if (!upload.busy) await this.drop(upload);
    }
    return undefined;
  }

  private checkRoom(principal: Principal): void {
    const mine = [...this.uploads.values()].filter((u) => u.principal.tokenId === principal.tokenId).length;
    const max = this.limits.maxPerCaller ?? MAX_UPLOADS_PER_CALLER;
    if (mine >= max) {
      throw new ResourceExhaustedError(`this token already has ${mine} unfinished uploads (at most ${max}); finish one, or wait an hour for them to expire`);
    }
  }

  /** The caller's upload `id`; NotFoundError (the same words) when it is not there or not theirs. */
  get(id: string, principal: Principal): Upload {
    const upload = this.lookup(id, principal);
    // Its bytes go to the bucket, never here.
    if (upload.via !== 'coordinator') throw new NotFoundError(`upload ${id.slice(0, 64)} not found; begin the push again`);
    return upload;
  }

  private lookup(id: string, principal: Principal): AnyUpload {
    const upload = this.uploads.get(id);
    if (!upload || upload.principal.tokenId !== principal.tokenId || this.expired(upload)) throw new NotFoundError(`upload ${id.slice(0, 64)} not found; begin the push again`);
    return upload;
  }

  /**
   * Appends a PUT's bytes at `offset` (which must be where the upload stands). Bytes that
   * arrived are kept when the body ends early or fails; resolves with the offset reached.
   */
  async write(upload: Upload, offset: number, body: AsyncIterable<Buffer>, onBytes?: (bytes: number) => void): Promise<number> {
    if (upload.busy) throw new OffsetMismatchError(upload.offset, 'another PUT of this upload is running; HEAD it for its offset once that one ends');
    if (offset !== upload.offset) throw new OffsetMismatchError(upload.offset, `the upload stands at byte ${upload.offset}, not ${offset}; PUT from there`);
    upload.busy = true;
    // Small network reads are gathered into MiB writes (far fewer writes and hash calls); what
    // is gathered is written even when the body fails, so a cut PUT keeps every byte it brought.
    // One write may be on its way to the disk while the next MiB is read from the network.
    let staged: Buffer[] = [];
    let stagedBytes = 0;
    let writing: Promise<void> = Promise.resolve();
    const flush = async () => {
      await writing;
      if (stagedBytes === 0) return;
      // Gathered into a buffer the piece hasher gave back (or a new one), handed to it after the write.
      const into = upload.hasher.take(stagedBytes) ?? Buffer.allocUnsafeSlow(Math.max(stagedBytes, STAGING_BYTES));
      let at = 0;
      for (const chunk of staged) at += chunk.copy(into, at);
      const bytes = into.subarray(0, at);
      staged = [];
      stagedBytes = 0;
      const length = bytes.length;
      writing = upload.blob.write(bytes).then(() => {
        upload.hasher.update(bytes); // transferred: `bytes` is empty from here on
        upload.offset += length;
        upload.lastActivityMs = this.clock.now();
        onBytes?.(length);
      });
    };
    // Where the bytes received so far (written, being written, staged) end.
    let received = upload.offset;
    try {
      for await (const chunk of body) {
        if (received + chunk.length > upload.header.sizeBytes) {
          throw new TooLargeError(`the push declared ${upload.header.sizeBytes} bytes; these run past that (the upload stands at ${received})`);
        }
        received += chunk.length;
        staged.push(chunk);
        stagedBytes += chunk.length;
        if (stagedBytes >= WRITE_BYTES) await flush();
      }
      await flush();
      await writing;
      return upload.offset;
    } catch (err) {
      await flush().catch(() => undefined);
      await writing.catch(() => undefined);
      throw err;
    } finally {
      upload.busy = false;
    }
  }

  /**
   * Takes a complete upload out, for CommitPush (which then owns its blob writer):
   * FailedPreconditionError while bytes are missing (nothing changes).
   */
  async take(id: string, principal: Principal): Promise<{ upload: Upload; manifest: PieceManifest }> {
    const upload = this.lookup(id, principal);
    if (upload.via !== 'coordinator') throw new InvalidArgumentError("this upload went to the S3 bucket: commit it with its parts' ETags");
    if (upload.busy) throw new FailedPreconditionError('a PUT of this upload is still running; commit once it has ended');
    if (upload.offset !== upload.header.sizeBytes) {
      throw new FailedPreconditionError(`the upload holds ${upload.offset} of ${upload.header.sizeBytes} bytes; PUT the rest (from byte ${upload.offset}) before committing`);
    }
    this.uploads.delete(id);
    const { sizeBytes, hashes, digest } = await upload.hasher.finish();
    upload.digest = digest;
    return { upload, manifest: { digest: '', sizeBytes, pieceBytes: upload.hasher.pieceBytes, hashes } };
  }

  /** How many uploads are open (for tests and metrics). */
  get size(): number {
    return this.uploads.size;
  }

  /** Drops uploads an hour without bytes. */
  async sweep(): Promise<void> {
    for (const upload of [...this.uploads.values()]) if (this.expired(upload) && !upload.busy) await this.drop(upload);
  }

  /**
   * Sweeps every `everyMs` while the coordinator leads, so that an expired direct upload is
   * aborted in the bucket then, not at the next BeginPush. close() stops it.
   */
  startSweeping(everyMs = SWEEP_EVERY_MS): void {
    this.sweeper?.cancel();
    this.sweeper = this.clock.setInterval(() => void this.sweep().catch(() => undefined), everyMs);
  }

  /** Drops every upload (the coordinator stops leading or closes). */
  async close(): Promise<void> {
    this.sweeper?.cancel();
    this.sweeper = undefined;
    for (const upload of [...this.uploads.values()]) await this.drop(upload);
  }

  private expired(upload: AnyUpload): boolean {
    return this.clock.now() - upload.lastActivityMs > (this.limits.expiryMs ?? UPLOAD_EXPIRY_MS);
  }

  private async drop(upload: AnyUpload): Promise<void> {
    this.uploads.delete(upload.id);
    // Best effort for the bucket: a multipart upload left behind is swept by its lifecycle rule.
    if (upload.via === 's3') {
      await this.direct?.abortDirectUpload(upload.direct).catch(() => undefined);
    } else {
      await upload.hasher.close();
      await upload.blob.abort();
    }
  }
}

function sameHeader(a: ValidPushHeader, b: ValidPushHeader): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
