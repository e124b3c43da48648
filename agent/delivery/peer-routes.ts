// The routes other agents fetch pieces from (docs/delivery.md "GET /v1/blobs/<digest>[/pieces]
// (agent, for peers)"), mounted on the inference gateway's listener, which the gateway hands
// every /v1/blobs/ request to after checking its bearer token against its TokenBook:
// - only a node credential, with the grant the leader gave that node for that digest
//   (Ed25519, checked with the key of the session's Welcome), is served; anything else is
//   401/403 and reads nothing;
// - `/pieces`: the bitfield of the pieces held verified, `mlfleet-piece-bytes` its piece size;
//   404 when nothing of the blob is held;
// - a blob's bytes: one Range inside held pieces (206), or the whole blob once complete (200);
//   416 otherwise. A range inside one piece still kept in memory (piece-memory.ts) is sent from
//   there, not read from the disk. Sent in MiB reads (buffers from one pool, shared/blob-send.ts) through the
//   agent's UploadLimiter and counted in its DeliveryCounters; a peer that takes nothing for
//   30 s is cut off, so that it holds no pooled buffer for long. With sharing off
//   (--peer-upload-mbps 0) nothing is served (404).
// - a request may say which pieces the asking peer holds (its own `mlfleet-pieces`): this
//   agent's pull of the same blob learns them as from a poll (onPeerPieces).
// These requests are neither proxied to replicas nor measured as inference.
import type http from 'node:http';
import type { FileHandle } from 'node:fs/promises';
import { GRANT_HEADER, PIECES_HEADER, PIECE_BYTES_HEADER, parseBlobPath, parseRange, verifyGrant } from '../../shared/blob-http.js';
import { BufferPool, sendRange, type RangeReader } from '../../shared/blob-send.js';
import type { Clock } from '../../shared/clock.js';
import { InvalidArgumentError, PermissionDeniedError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { Bitfield } from '../../shared/pieces.js';
import { AccessError, type Sender } from '../gateway/access.js';
import type { DeliveryCounters } from './counters.js';
import { alignedBuffer, PieceReader } from './direct-io.js';
import type { PieceMemory } from './piece-memory.js';
import type { UploadLimiter } from './upload-limiter.js';

/** What this agent holds of one blob (ModelCache.heldPieces): finished entries and downloads in progress. */
export interface HeldPieces {
  sizeBytes: number;
  pieceBytes: number;
  /** The pieces held verified, which stay where they are while the handle is open. */
  bitfield: Bitfield;
  /** The file, opened with `flags` (read-only, past the page cache or not). */
  open(flags: number): Promise<FileHandle>;
}

export interface PieceHolder {
  heldPieces(digest: string): HeldPieces | undefined;
}

export interface PeerRoutesOptions {
  holder: PieceHolder;
  /** The leader's grant key (Welcome.grant_public_key, SPKI DER); undefined before any welcome. */
  grantKey(): Buffer | undefined;
  /** Shared by every peer response; undefined: sharing is off (--peer-upload-mbps 0). */
  limiter: UploadLimiter | undefined;
  counters: DeliveryCounters;
  /** Verified pieces kept in memory (the piece fetcher's), sent from there when a range lies in one. */
  memory?: Pick<PieceMemory, 'pin'>;
  /**
   * Told of the pieces a peer fetching `digest` says it holds (its request's PIECES_HEADER and
   * PIECE_BYTES_HEADER): the piece fetcher's pull of the same blob learns them as from a poll.
   */
  onPeerPieces?(digest: string, node: string, headers: Record<string, string>): void;
  clock: Clock;
  log: Logger;
}

/** Buffers all peer responses share (each holds at most two): the most of blob bytes in this agent's hands for peers (16 MiB). */
const PEER_SEND_BUFFERS = 8;
/**
 * Bytes per read and per socket write to a peer. Each costs the agent's event loop a round of
 * stream machinery whatever its size: in the 16-agent fanout, 2 MiB rather than 1 MiB took
 * the agents from ~58 to ~49 CPU-s (4 MiB: no better).
 */
const PEER_SEND_BYTES = 2 * 1024 * 1024;

/** A peer whose response takes nothing for this long is cut off (its buffers go back to the pool). */
const STALLED_PEER_MS = 30_000;

/** Grants remembered as checked. */
const VERIFIED_GRANTS = 1024;

export class PeerRoutes {
  private readonly verified = new Map<string, { node: string; digest: string; expiresAtMs: number; key: Buffer }>();
  private readonly pool = new BufferPool(PEER_SEND_BUFFERS, alignedBuffer, PEER_SEND_BYTES);

  constructor(private readonly options: PeerRoutesOptions) {}

  /** Answers a request for a path under /v1/blobs/; errors are AccessErrors, which the gateway answers. */
  async handle(req: http.IncomingMessage, res: http.ServerResponse, sender: Sender, pathname: string): Promise<void> {
    const blob = parseBlobPath(pathname);
    if (!blob) throw new AccessError(404, `no such route: ${pathname.slice(0, 200)}; peers fetch /v1/blobs/sha256:<hex>[/pieces]`);
    if (req.method !== 'GET') {
      res.setHeader('allow', 'GET');
      throw new AccessError(405, `peers fetch blobs with GET, not ${req.method}`);
    }
    this.authorize(req, sender, blob.digest);
    this.learn(req, sender, blob.digest);
    if (!this.options.limiter) throw new AccessError(404, 'this agent shares no pieces with peers (--peer-upload-mbps 0)');
    const held = this.options.holder.heldPieces(blob.digest);
    if (!held || held.bitfield.count() === 0) throw new AccessError(404, `this agent holds no piece of ${blob.digest}`);
    if (blob.pieces) {
      const body = Buffer.from(held.bitfield.bytes);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, [PIECE_BYTES_HEADER]: String(held.pieceBytes) });
      res.end(body);
      return;
    }
    const range = this.rangeOf(req, res, held);
    await this.send(req, res, blob.digest, held, range);
  }

  /** Passes on the pieces an authorized peer says it holds (a bitfield of the blob's, or nothing). */
  private learn(req: http.IncomingMessage, sender: Sender, digest: string): void {
    const pieces = req.headers[PIECES_HEADER];
    const pieceBytes = req.headers[PIECE_BYTES_HEADER];
    const node = sender.anonymous ? undefined : sender.caller.node;
    if (!this.options.onPeerPieces || !node || typeof pieces !== 'string' || typeof pieceBytes !== 'string') return;
    // A bitfield of 10,000 pieces (the most a blob has before its pieces grow) is 1,668 characters.
    if (pieces.length > 4096) return;
    this.options.onPeerPieces(digest, node, { [PIECES_HEADER]: pieces, [PIECE_BYTES_HEADER]: pieceBytes });
  }

  /** A node credential and that node's grant for this digest; 401/403 otherwise. */
  private authorize(req: http.IncomingMessage, sender: Sender, digest: string): void {
    if (sender.anonymous) throw new AccessError(401, 'peer fetches need "authorization: Bearer <node credential>"');
    const { caller } = sender;
    if (caller.role !== 'node' || !caller.node) throw new AccessError(403, `a ${caller.role} token may not fetch from peers: only agents may, with their node credential and a grant`);
    const header = req.headers[GRANT_HEADER];
    const grant = Array.isArray(header) ? header[0] : header;
    const key = this.options.grantKey() ?? Buffer.alloc(0);
    const now = this.options.clock.now();
    // A grant checked once (its signature, under this key) is good for its node and digest until
    // it expires: the peers fetching a blob show the same grant many times a second.
    const known = grant === undefined ? undefined : this.verified.get(grant);
    if (known && known.key === key && known.node === caller.node && known.digest === digest && known.expiresAtMs > now) return;
    try {
      const checked = verifyGrant(key, grant, { node: caller.node, digest, nowMs: now });
      if (this.verified.size >= VERIFIED_GRANTS) this.verified.delete(this.verified.keys().next().value!);
      this.verified.set(grant!, { ...checked, key });
    } catch (err) {
      if (err instanceof PermissionDeniedError) throw new AccessError(403, err.message);
      throw err;
    }
  }

  /** The [start, end) to send, inside pieces held; 416 (with the blob's size) otherwise. */
  private rangeOf(req: http.IncomingMessage, res: http.ServerResponse, held: HeldPieces): { start: number; end: number; partial: boolean } {
    let range: ReturnType<typeof parseRange>;
    try {
      range = parseRange(req.headers.range, held.sizeBytes);
    } catch (err) {
      if (err instanceof InvalidArgumentError) throw new AccessError(400, err.message);
      throw err;
    }
    const unsatisfiable = (why: string) => {
      res.setHeader('content-range', `bytes */${held.sizeBytes}`);
      return new AccessError(416, why);
    };
    if (range === 'unsatisfiable') throw unsatisfiable(`the range is outside the blob's ${held.sizeBytes} bytes`);
    if (range === undefined) {
      if (!held.bitfield.complete()) throw unsatisfiable('this agent holds only some pieces of the blob: ask for a range inside them');
      return { start: 0, end: held.sizeBytes, partial: false };
    }
    const first = Math.floor(range.start / held.pieceBytes);
    const last = Math.floor((range.end - 1) / held.pieceBytes);
    for (let i = first; i <= last; i += 1) {
      if (!held.bitfield.has(i)) throw unsatisfiable(`this agent does not hold piece ${i} of the blob (GET its /pieces)`);
    }
    return { ...range, partial: true };
  }

  /** Writes [start, end) in MiB reads from the shared pool, each after the limiter allows it, one read ahead of the socket. */
  private async send(req: http.IncomingMessage, res: http.ServerResponse, digest: string, held: HeldPieces, range: { start: number; end: number; partial: boolean }): Promise<void> {
    const limiter = this.options.limiter!;
    const piece = Math.floor(range.start / held.pieceBytes);
    const kept = range.end - 1 < (piece + 1) * held.pieceBytes ? this.options.memory?.pin(digest, piece) : undefined;
    let file: RangeSource;
    try {
      file = kept ? new MemoryRange(kept.bytes, piece * held.pieceBytes) : await PieceReader.open((flags) => held.open(flags));
    } catch (err) {
      kept?.unpin();
      throw err;
    }
    try {
      const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream', 'content-length': range.end - range.start };
      if (range.partial) headers['content-range'] = `bytes ${range.start}-${range.end - 1}/${held.sizeBytes}`;
      headers[PIECES_HEADER] = Buffer.from(held.bitfield.bytes).toString('base64');
      headers[PIECE_BYTES_HEADER] = String(held.pieceBytes);
      res.setTimeout(STALLED_PEER_MS, () => res.destroy());
      res.writeHead(range.partial ? 206 : 200, headers);
      let at = range.start;
      const reader: RangeReader = {
        read: async (buffer: Buffer, offset: number, length: number) => {
          const bytesRead = await file.read(offset === 0 ? buffer : buffer.subarray(offset), length, at);
          at += bytesRead;
          return bytesRead;
        },
      };
      if (file.view) {
        const source = file.view.bind(file);
        reader.view = (length) => {
          const bytes = source(length, at);
          at += bytes.length;
          return bytes;
        };
      }
      await sendRange(this.pool, reader, range.end - range.start, res, {
        beforeRead: (bytes, signal) => limiter.take(bytes, signal),
        onSent: (bytes) => this.options.counters.sentToPeer(bytes),
      });
    } catch (err) {
      this.options.log.warn({ err: (err as Error).message, url: req.url }, 'sending pieces to a peer failed');
      res.destroy();
    } finally {
      kept?.unpin();
      await file.close();
    }
  }
}

/** Where a response's bytes are read from: the file, or a piece kept in memory (sent where it lies). */
interface RangeSource {
  read(buffer: Buffer, length: number, position: number): Promise<number>;
  view?(length: number, position: number): Buffer;
  close(): Promise<void>;
}

/** A kept piece's bytes, which start at `offset` in the blob. */
class MemoryRange implements RangeSource {
  constructor(
    private readonly bytes: Buffer,
    private readonly offset: number,
  ) {}

  async read(buffer: Buffer, length: number, position: number): Promise<number> {
    return this.view(length, position).copy(buffer, 0);
  }

  view(length: number, position: number): Buffer {
    const from = position - this.offset;
    return this.bytes.subarray(from, Math.min(this.bytes.length, from + length));
  }

  async close(): Promise<void> {}
}
