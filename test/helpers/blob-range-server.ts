// A blob served over HTTP as the coordinator, a peer or the bucket serve it (docs/delivery.md):
// GET /v1/blobs/<digest> with one Range, /pieces for a peer's bitfield. It checks the headers
// each kind of source requires, counts what it sent, and can be slowed down or made to send
// one piece corrupt. For the piece fetcher's tests and its benchmark; closed in t.after().
import { open, type FileHandle } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { GRANT_HEADER, PIECES_HEADER, PIECES_SUFFIX, parseRange } from '../../shared/blob-http.js';
import { Bitfield, StreamingPieceHasher, type PieceManifest } from '../../shared/pieces.js';
import { createReadStream } from 'node:fs';

export interface RangeServerOptions {
  file: string;
  digest: string;
  sizeBytes: number;
  pieceBytes: number;
  /** coordinator and peer: the bearer token required; s3: no authorization header at all. */
  kind: 'coordinator' | 'peer' | 's3';
  token?: string;
  /** Peers: the grant required. */
  grant?: string;
  /** s3: the query string the presigned URL carries (and that must come back). */
  query?: string;
}

export interface RangeServer {
  /** The blob's URL (s3: with its query). */
  url: string;
  /** Body bytes sent for ranges. */
  sentBytes: number;
  /** The range of each blob GET answered 206, in order of arrival. */
  ranges: { start: number; end: number }[];
  /** Requests refused for their headers. */
  refused: number;
  /** Bytes per second, 0: as fast as it goes. Can be changed while serving. */
  bytesPerSecond: number;
  /** Pieces whose bytes are sent with one bit flipped. */
  corrupt: Set<number>;
  /** Peers: the bitfield /pieces answers (undefined: 404). */
  pieces: Bitfield | undefined;
  /** Peers: /pieces requests answered. */
  polls: number;
  /** Peers: what each request said of the asking agent's pieces (its mlfleet-pieces header; '' when none). */
  told: string[];
}

export async function startRangeServer(t: TestContext, options: RangeServerOptions): Promise<RangeServer> {
  const handle: FileHandle = await open(options.file, 'r');
  const path = `/v1/blobs/${options.digest}`;
  const state: RangeServer = { url: '', sentBytes: 0, ranges: [], refused: 0, bytesPerSecond: 0, corrupt: new Set(), pieces: undefined, polls: 0, told: [] };
  const server = http.createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const auth = req.headers.authorization;
      const okHeaders =
        options.kind === 's3'
          ? auth === undefined && url.search === (options.query ?? '')
          : auth === `Bearer ${options.token}` && (options.kind !== 'peer' || req.headers[GRANT_HEADER] === options.grant);
      if (!okHeaders) {
        state.refused += 1;
        res.writeHead(401).end('refused');
        return;
      }
      if (options.kind === 'peer') state.told.push(String(req.headers[PIECES_HEADER] ?? ''));
      if (options.kind === 'peer' && url.pathname === `${path}${PIECES_SUFFIX}`) {
        state.polls += 1;
        if (!state.pieces) return void res.writeHead(404).end();
        res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.from(state.pieces.bytes));
        return;
      }
      if (url.pathname !== path) return void res.writeHead(404).end('no such blob');
      const range = parseRange(req.headers.range, options.sizeBytes);
      if (range === 'unsatisfiable' || range === undefined) return void res.writeHead(416).end();
      state.ranges.push(range);
      res.writeHead(206, { 'content-range': `bytes ${range.start}-${range.end - 1}/${options.sizeBytes}`, 'content-length': String(range.end - range.start) });
      const chunkBytes = 256 * 1024;
      const buffer = Buffer.allocUnsafe(chunkBytes);
      for (let at = range.start; at < range.end; ) {
        const n = Math.min(chunkBytes, range.end - at);
        const { bytesRead } = await handle.read(buffer, 0, n, at);
        const chunk = Buffer.from(buffer.subarray(0, bytesRead));
        const piece = Math.floor(at / options.pieceBytes);
        if (state.corrupt.has(piece) && at === piece * options.pieceBytes) chunk[0] = chunk[0]! ^ 0x01;
        if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
        if (res.destroyed) return;
        state.sentBytes += bytesRead;
        at += bytesRead;
        if (state.bytesPerSecond > 0) await sleep(Math.ceil((bytesRead / state.bytesPerSecond) * 1000));
      }
      res.end();
    })().catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await handle.close();
  });
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}${options.query ?? ''}`;
  return state;
}

/** The piece manifest of a file, as the leader computes it. */
export async function manifestOf(file: string, pieceBytes: number): Promise<PieceManifest> {
  const hasher = new StreamingPieceHasher(pieceBytes);
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) hasher.update(chunk as Buffer);
  return hasher.finish();
}
