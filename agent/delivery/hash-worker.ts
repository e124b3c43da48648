// The hashing worker of HashPool (hash-pool.ts): each piece's SHA-256 and, in the same pass over
// its buffer, the download's whole digest. A piece reaches it already written to the file. The
// worker keeps each download's DigestOrder itself: a piece that matches but is not the next in
// order waits on disk, and the piece before it, when it comes, lets the worker read it back at
// once, before its next message. Were the writes or the reads reported by the agent's event
// loop, they would lag behind pieces already sent; each of those would miss its turn and be read
// back too, and so on to the end of the download (seen: 127 of 128 pieces read back).
// A piece sent with `hold` stays in its buffer instead (the fetcher keeps the buffer as it is
// until the worker lets it go): its turn takes it from there, not from the disk. Among peers,
// where pieces arrive out of order, that spares the disk a read of most of the blob.
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { DigestOrder, type ReadBack } from './digest-order.js';
import { alignedBuffer, readAtSync } from './direct-io.js';

/** Both hashes take a piece a slice at a time, so the slice is still in the CPU cache for the second. */
const SLICE = 256 * 1024;
const READ_BYTES = 1 << 20;

export type HashMessage = { id: number } & (
  | { op: 'piece'; buffer: SharedArrayBuffer; offset: number; length: number; stream?: number; piece?: number; expected?: Uint8Array; hold?: boolean }
  | { op: 'open'; stream: number; fd: number; directFd?: number; sizeBytes: number; pieceBytes: number; pieceCount: number }
  | { op: 'resumed'; stream: number; pieces: number[] }
  | { op: 'finish' | 'close'; stream: number }
);

export interface HashReply {
  id: number;
  hash?: Uint8Array;
  fed?: boolean;
  /** The piece matched, is not next, and its buffer is kept for its turn (it was sent with `hold`). */
  held?: boolean;
  /** Pieces held earlier whose buffers the worker no longer needs (taken in their turn, or the stream ended). */
  released?: number[];
  /** finish: the whole digest, when every piece is in it. */
  hex?: string;
  /** finish: pieces read back from the file, and why there is no digest if there is none. */
  piecesReadBack?: number;
  failure?: string;
  error?: string;
}

interface Stream {
  hash: Hash;
  order: DigestOrder;
  fd: number;
  /** The same file opened O_DIRECT: pieces read back past the page cache, as they were written. */
  directFd: number | undefined;
  sizeBytes: number;
  pieceBytes: number;
  piecesReadBack: number;
  /** Pieces verified out of order and kept in their buffers (sent with `hold`), by piece. */
  held: Map<number, Uint8Array>;
}

const streams = new Map<number, Stream>();
let readBuffer: Buffer | undefined;

function piece(m: Extract<HashMessage, { op: 'piece' }>): HashReply {
  const bytes = new Uint8Array(m.buffer, m.offset, m.length);
  const stream = m.stream === undefined ? undefined : streams.get(m.stream);
  const own = createHash('sha256');
  const whole = stream && m.expected && stream.order.failure === undefined && stream.order.next === m.piece ? stream.hash.copy() : undefined;
  for (let at = 0; at < m.length; at += SLICE) {
    const slice = bytes.subarray(at, Math.min(m.length, at + SLICE));
    own.update(slice);
    whole?.update(slice);
  }
  const hash = own.digest();
  let fed = false;
  let held = false;
  const released: number[] = [];
  if (stream && m.expected && Buffer.compare(hash, m.expected) === 0) {
    if (whole) stream.hash = whole;
    fed = whole !== undefined;
    held = !fed && m.hold === true && stream.order.failure === undefined;
    if (held) stream.held.set(m.piece!, bytes);
    readBack(stream, stream.order.verified(m.piece!, fed), released);
    // The digest failed (the file cannot be followed): nothing is worth holding.
    if (stream.order.failure !== undefined) released.push(...releaseAll(stream));
    // Taken in its turn at once, or let go: the fetcher may have its buffer back.
    if (held && released.includes(m.piece!)) held = false;
  }
  return { id: m.id, hash, fed, held, released };
}

/**
 * Pieces [from, to) into the whole digest: each from its held buffer, or else from the file.
 * Held pieces taken are added to `released`; a failed read leaves the digest failed.
 */
function readBack(stream: Stream, range: ReadBack | undefined, released: number[]): void {
  if (!range) return;
  for (let piece = range.from; piece < range.to; piece += 1) {
    const bytes = stream.held.get(piece);
    if (bytes) {
      stream.held.delete(piece);
      released.push(piece);
      if (stream.order.failure === undefined) stream.hash.update(bytes);
      continue;
    }
    if (stream.order.failure !== undefined) continue;
    const start = piece * stream.pieceBytes;
    const end = Math.min(start + stream.pieceBytes, stream.sizeBytes);
    try {
      readBuffer ??= alignedBuffer(READ_BYTES);
      for (let at = start; at < end; ) {
        const { bytesRead: n, refused } = readAtSync(stream, readBuffer, Math.min(readBuffer.length, end - at), at);
        if (refused) stream.directFd = undefined;
        if (n === 0) throw new Error(`the partial file ended at ${at} bytes, before ${end}`);
        stream.hash.update(readBuffer.subarray(0, n));
        at += n;
      }
      stream.piecesReadBack += 1;
    } catch (err) {
      stream.order.fail(`reading piece ${piece} back: ${(err as Error).message}`);
    }
  }
}

/** Lets go of every buffer the stream holds (it ended, or its digest failed). */
function releaseAll(stream: Stream): number[] {
  const released = [...stream.held.keys()];
  stream.held.clear();
  return released;
}

function handle(m: HashMessage): HashReply {
  if (m.op === 'piece') return piece(m);
  if (m.op === 'open') {
    streams.set(m.stream, { hash: createHash('sha256'), order: new DigestOrder(m.pieceCount), fd: m.fd, directFd: m.directFd, sizeBytes: m.sizeBytes, pieceBytes: m.pieceBytes, piecesReadBack: 0, held: new Map() });
    return { id: m.id };
  }
  const stream = streams.get(m.stream);
  if (!stream) throw new Error('no whole digest is open for this download');
  if (m.op === 'resumed') {
    const held = new Set(m.pieces);
    const released: number[] = [];
    readBack(stream, stream.order.resumed((p) => held.has(p)), released);
    return { id: m.id, released };
  }
  streams.delete(m.stream);
  const released = releaseAll(stream);
  if (m.op === 'finish') {
    const { order, piecesReadBack } = stream;
    if (order.complete) return { id: m.id, hex: stream.hash.digest('hex'), piecesReadBack, released };
    return { id: m.id, piecesReadBack, released, failure: order.failure ?? `${order.next} of ${order.pieceCount} pieces in the whole digest` };
  }
  return { id: m.id, released };
}

parentPort!.on('message', (m: HashMessage) => {
  let reply: HashReply;
  try {
    reply = handle(m);
  } catch (err) {
    reply = { id: m.id, error: (err as Error).message };
  }
  parentPort!.postMessage(reply);
});
