// Peers that misbehave while an agent serves them pieces (agent/delivery/peer-routes.ts on a
// real gateway, over real loopback sockets): one that stops reading holds no more than socket
// buffers of the agent's memory and sends nothing more; one that goes away mid-transfer frees
// its file handle and its share of the upload cap; many at once share the one cap, which holds
// over wall time. A piece kept in memory is sent from there, and stays pinned only while sent.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { DeliveryCounters } from '../../agent/delivery/counters.js';
import { PeerRoutes } from '../../agent/delivery/peer-routes.js';
import { PieceMemory } from '../../agent/delivery/piece-memory.js';
import { UploadLimiter } from '../../agent/delivery/upload-limiter.js';
import { Gateway } from '../../agent/gateway/gateway.js';
import { GRANT_HEADER, generateGrantKeys, loadGrantKeys, signGrant } from '../../shared/blob-http.js';
import { systemClock } from '../../shared/clock.js';
import { silentLogger } from '../../shared/log.js';
import { Bitfield, MiB } from '../../shared/pieces.js';
import { eventually } from '../helpers/eventually.js';
import { mintGatewayToken, tokenTable } from '../helpers/gateway-tokens.js';
import { tempDir } from '../helpers/processes.js';

const SIZE = 64 * MiB;
const PIECE = 8 * MiB;
/** 100 MB/s. */
const MBPS = 800;

async function serving(t: TestContext, memory?: PieceMemory) {
  const dir = tempDir(t, 'mlfleet-peer-faults-');
  const bytes = randomBytes(SIZE);
  const file = path.join(dir, 'blob');
  writeFileSync(file, bytes);
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  const keys = loadGrantKeys(generateGrantKeys().privateKeyDer);
  const peer = mintGatewayToken('node', '', { node: 'peer' });
  const counters = new DeliveryCounters();
  const opened = { count: 0 };
  const held = {
    sizeBytes: SIZE,
    pieceBytes: PIECE,
    bitfield: Bitfield.full(SIZE / PIECE),
    open: (flags: number) => {
      opened.count += 1;
      return open(file, flags);
    },
  };
  const gateway = await Gateway.start({
    listen: '127.0.0.1:0',
    node: 'here',
    credential: () => undefined,
    log: silentLogger(),
    peers: new PeerRoutes({ holder: { heldPieces: (d) => (d === digest ? held : undefined) }, grantKey: () => keys.publicKeyDer, limiter: new UploadLimiter(MBPS, systemClock), counters, ...(memory ? { memory } : {}), clock: systemClock, log: silentLogger() }),
  });
  t.after(() => gateway.close());
  gateway.setTokens(tokenTable(peer));
  const [host, port] = gateway.address.split(':') as [string, string];
  const headers = (range: string) => ({ authorization: `Bearer ${peer.token}`, [GRANT_HEADER]: signGrant(keys, { node: 'peer', digest, expiresAtMs: Date.now() + 60_000 }), range });
  /** A request whose answer the caller reads (or does not). */
  const request = (range: string) =>
    new Promise<http.IncomingMessage & { req: http.ClientRequest }>((resolve, reject) => {
      const req = http.get({ host, port: Number(port), path: `/v1/blobs/${digest}`, headers: headers(range), agent: false }, (res) => resolve(Object.assign(res, { req })));
      req.on('error', reject);
    });
  const read = async (range: string) => {
    const res = await request(range);
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    return { status: res.statusCode, body: Buffer.concat(chunks) };
  };
  return { bytes, digest, counters, request, read, opened };
}

const openFiles = () => readdirSync('/proc/self/fd').length;

test('a peer that stops reading gets no more than socket buffers; when it goes away its file and its share of the cap are freed', async (t) => {
  const s = await serving(t);
  const filesBefore = openFiles();
  const stalled = await s.request(`bytes=0-${SIZE - 1}`);
  assert.equal(stalled.statusCode, 206);
  stalled.pause();
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  const sentWhileStalled = s.counters.peerSentBytes;
  assert.ok(sentWhileStalled < 24 * MiB, `a stalled peer was sent ${sentWhileStalled} bytes`);
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.ok(s.counters.peerSentBytes - sentWhileStalled <= 2 * MiB, 'nothing more goes while it does not read');

  stalled.req.destroy();
  await eventually('the blob file closed', 5_000, async () => (openFiles() <= filesBefore ? true : undefined));
  // The next peer is served in full, at the cap, as if the stalled one had never been.
  const started = Date.now();
  const next = await s.read(`bytes=${8 * MiB}-${24 * MiB - 1}`);
  assert.equal(next.status, 206);
  assert.ok(next.body.equals(s.bytes.subarray(8 * MiB, 24 * MiB)));
  assert.ok(Date.now() - started < 3_000, `16 MiB at 100 MB/s took ${Date.now() - started} ms`);
});

test('eight peers at once share the one cap: 64 MiB at 100 MB/s takes over half a second, and every byte arrives right', async (t) => {
  const s = await serving(t);
  const started = Date.now();
  const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => s.read(`bytes=${i * PIECE}-${(i + 1) * PIECE - 1}`)));
  const elapsedMs = Date.now() - started;
  answers.forEach((a, i) => {
    assert.equal(a.status, 206);
    assert.ok(a.body.equals(s.bytes.subarray(i * PIECE, (i + 1) * PIECE)), `piece ${i}`);
  });
  // The bucket starts full (a quarter second of the rate): the rest waits for tokens.
  const floorMs = ((SIZE - 25_000_000) / 100_000_000) * 1000;
  assert.ok(elapsedMs >= floorMs * 0.95, `64 MiB went in ${elapsedMs} ms, faster than the cap allows (${floorMs.toFixed(0)} ms)`);
  assert.equal(s.counters.peerSentBytes, SIZE);
});

test('a piece kept in memory is sent from there, not the file; a range across two pieces comes from the file; a peer that goes away unpins it', async (t) => {
  const memory = new PieceMemory({ working: 4, kept: 1 });
  const s = await serving(t, memory);
  const slot = memory.reserve(Buffer.from(s.bytes.subarray(PIECE, 2 * PIECE)))!;
  slot.publish(s.digest, 1);
  slot.unpin();
  const within = await s.read(`bytes=${PIECE + 100}-${2 * PIECE - 1}`);
  assert.equal(within.status, 206);
  assert.ok(within.body.equals(s.bytes.subarray(PIECE + 100, 2 * PIECE)));
  assert.equal(s.opened.count, 0, 'the file was not opened');
  const across = await s.read(`bytes=${PIECE - 10}-${PIECE + 10}`);
  assert.ok(across.body.equals(s.bytes.subarray(PIECE - 10, PIECE + 11)));
  assert.ok(s.opened.count > 0, 'a range across pieces is read from the file');
  // A peer that stops reading and goes away: the piece is unpinned, so room can be made.
  const stalled = await s.request(`bytes=${PIECE}-${2 * PIECE - 1}`);
  stalled.pause();
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(memory.reserve(Buffer.alloc(16)), undefined, 'piece 1 is pinned while it is sent: it cannot make room');
  stalled.req.destroy();
  await eventually('the piece is unpinned once the peer has gone', 5_000, async () => {
    const room = memory.reserve(Buffer.alloc(16));
    room?.discard();
    return room;
  });
});
