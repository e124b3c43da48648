// Pieces: how a blob is cut for delivery (docs/delivery.md). Every blob is a run of fixed-size
// pieces (8 MiB, doubled for blobs so large that they would have more than MAX_PIECES), the last
// one shorter. Its piece manifest holds the SHA-256 of each piece; the leader computes it from
// bytes it verified against the blob's digest, so a piece that matches its hash is a piece of
// that blob whoever sent it. Pure: no I/O here.
import { createHash, type Hash } from 'node:crypto';
import { InvalidArgumentError } from './errors.js';

export const MiB = 1024 * 1024;
/** The piece size of every blob up to MAX_PIECES × 8 MiB (78 GiB). */
export const PIECE_BYTES = 8 * MiB;
/** Past this many pieces the piece size doubles (and S3 allows 10,000 parts). */
export const MAX_PIECES = 10_000;
export const PIECE_HASH_BYTES = 32;

export interface PieceManifest {
  /** sha256:<hex> of the whole blob. */
  digest: string;
  sizeBytes: number;
  pieceBytes: number;
  /** PIECE_HASH_BYTES per piece, in order. */
  hashes: Buffer;
}

/** The piece size for a blob of `sizeBytes`. */
export function pieceBytesFor(sizeBytes: number): number {
  let pieceBytes = PIECE_BYTES;
  while (Math.ceil(sizeBytes / pieceBytes) > MAX_PIECES) pieceBytes *= 2;
  return pieceBytes;
}

export function pieceCount(sizeBytes: number, pieceBytes: number): number {
  return Math.ceil(sizeBytes / pieceBytes);
}

/** Piece `index`'s bytes: [start, end). */
export function pieceRange(index: number, sizeBytes: number, pieceBytes: number): { start: number; end: number } {
  const start = index * pieceBytes;
  if (!Number.isSafeInteger(index) || index < 0 || start >= sizeBytes) {
    throw new InvalidArgumentError(`piece ${index} is outside a blob of ${sizeBytes} bytes cut in pieces of ${pieceBytes}`);
  }
  return { start, end: Math.min(start + pieceBytes, sizeBytes) };
}

/** The expected SHA-256 of piece `index`. */
export function pieceHash(manifest: PieceManifest, index: number): Buffer {
  return manifest.hashes.subarray(index * PIECE_HASH_BYTES, (index + 1) * PIECE_HASH_BYTES);
}

/** Whether `bytes` are piece `index` of the manifest's blob. */
export function pieceMatches(manifest: PieceManifest, index: number, bytes: Buffer): boolean {
  const { start, end } = pieceRange(index, manifest.sizeBytes, manifest.pieceBytes);
  if (bytes.length !== end - start) return false;
  return createHash('sha256').update(bytes).digest().equals(pieceHash(manifest, index));
}

/** A manifest received from elsewhere is consistent in itself: a hash for every piece. */
export function checkManifest(manifest: PieceManifest): void {
  const { sizeBytes, pieceBytes, hashes } = manifest;
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new InvalidArgumentError(`a blob size must be a whole number of bytes, not ${sizeBytes}`);
  if (!Number.isSafeInteger(pieceBytes) || pieceBytes < MiB || pieceBytes % MiB !== 0) {
    throw new InvalidArgumentError(`a piece size must be a whole number of MiB, not ${pieceBytes} bytes`);
  }
  const expected = pieceCount(sizeBytes, pieceBytes) * PIECE_HASH_BYTES;
  if (hashes.length !== expected) {
    throw new InvalidArgumentError(`the piece manifest of ${manifest.digest} has ${hashes.length} bytes of hashes; ${expected} were expected`);
  }
}

/**
 * Hashes a blob's bytes as they stream past, in order, into the whole digest and the piece
 * hashes at once (a push, a coordinator computing the manifest of a blob stored before pieces).
 */
export class StreamingPieceHasher {
  private readonly whole: Hash | undefined;
  private piece: Hash = createHash('sha256');
  private inPiece = 0;
  private readonly hashes: Buffer[] = [];
  private total = 0;

  /** `whole: false`: piece hashes only (the caller hashes the whole digest elsewhere); finish() then gives digest ''. */
  constructor(
    readonly pieceBytes: number,
    options: { whole?: boolean } = {},
  ) {
    this.whole = options.whole === false ? undefined : createHash('sha256');
  }

  update(chunk: Buffer): void {
    this.whole?.update(chunk);
    this.total += chunk.length;
    let at = 0;
    while (at < chunk.length) {
      const take = Math.min(this.pieceBytes - this.inPiece, chunk.length - at);
      this.piece.update(at === 0 && take === chunk.length ? chunk : chunk.subarray(at, at + take));
      this.inPiece += take;
      at += take;
      if (this.inPiece === this.pieceBytes) this.closePiece();
    }
  }

  get bytes(): number {
    return this.total;
  }

  /** The manifest of everything seen; the hasher is spent. */
  finish(): PieceManifest {
    if (this.inPiece > 0) this.closePiece();
    return { digest: this.whole ? `sha256:${this.whole.digest('hex')}` : '', sizeBytes: this.total, pieceBytes: this.pieceBytes, hashes: Buffer.concat(this.hashes) };
  }

  private closePiece(): void {
    this.hashes.push(this.piece.digest());
    this.piece = createHash('sha256');
    this.inPiece = 0;
  }
}

// ---- the manifest on disk (a sidecar beside the blob) ----------------------------------------

const MAGIC = Buffer.from('MLFPIECE1\n');

/** The manifest as bytes: a magic line, a JSON line ({digest, sizeBytes, pieceBytes}), the hashes. */
export function encodeManifest(manifest: PieceManifest): Buffer {
  const head = Buffer.from(`${JSON.stringify({ digest: manifest.digest, sizeBytes: manifest.sizeBytes, pieceBytes: manifest.pieceBytes })}\n`);
  return Buffer.concat([MAGIC, head, manifest.hashes]);
}

/** The manifest encodeManifest wrote; InvalidArgumentError for anything else. */
export function decodeManifest(bytes: Buffer): PieceManifest {
  if (!bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw new InvalidArgumentError('not a piece manifest');
  const newline = bytes.indexOf(0x0a, MAGIC.length);
  if (newline < 0) throw new InvalidArgumentError('a piece manifest without its header line');
  let head: { digest?: unknown; sizeBytes?: unknown; pieceBytes?: unknown };
  try {
    head = JSON.parse(bytes.subarray(MAGIC.length, newline).toString('utf8')) as typeof head;
  } catch {
    throw new InvalidArgumentError('a piece manifest whose header is not JSON');
  }
  if (typeof head.digest !== 'string' || typeof head.sizeBytes !== 'number' || typeof head.pieceBytes !== 'number') {
    throw new InvalidArgumentError('a piece manifest whose header lacks digest, sizeBytes or pieceBytes');
  }
  const manifest = { digest: head.digest, sizeBytes: head.sizeBytes, pieceBytes: head.pieceBytes, hashes: Buffer.from(bytes.subarray(newline + 1)) };
  checkManifest(manifest);
  return manifest;
}

// ---- which pieces one holds -------------------------------------------------------------------

/** A set of piece indexes as a bitfield: bit (i % 8), most significant first, of byte i / 8. */
export class Bitfield {
  readonly bytes: Uint8Array;
  private held = 0;

  constructor(
    readonly size: number,
    bytes?: Uint8Array,
  ) {
    const length = Math.ceil(size / 8);
    if (bytes && bytes.length !== length) throw new InvalidArgumentError(`a bitfield of ${size} pieces is ${length} bytes, not ${bytes.length}`);
    this.bytes = bytes ? Uint8Array.from(bytes) : new Uint8Array(length);
    if (bytes) {
      // Bits past `size` in the last byte mean nothing: cleared, so count() and equality hold.
      if (size % 8 !== 0) this.bytes[length - 1]! &= 0xff << (8 - (size % 8));
      for (let i = 0; i < size; i += 1) if (this.has(i)) this.held += 1;
    }
  }

  has(index: number): boolean {
    return index >= 0 && index < this.size && (this.bytes[index >> 3]! & (0x80 >> (index & 7))) !== 0;
  }

  set(index: number): void {
    if (index < 0 || index >= this.size) throw new InvalidArgumentError(`piece ${index} is outside a bitfield of ${this.size}`);
    if (this.has(index)) return;
    this.bytes[index >> 3]! |= 0x80 >> (index & 7);
    this.held += 1;
  }

  count(): number {
    return this.held;
  }

  complete(): boolean {
    return this.held === this.size;
  }

  static full(size: number): Bitfield {
    const field = new Bitfield(size);
    for (let i = 0; i < size; i += 1) field.set(i);
    return field;
  }
}
