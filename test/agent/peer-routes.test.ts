// The peer routes (agent/delivery/peer-routes.ts) on a real gateway, with real tokens in its
// TokenBook and real Ed25519 grants, over a real file: who may fetch (only a node credential
// with that node's grant for that digest), what is served (the bitfield; ranges inside held
// pieces; the whole blob only once complete), sharing off, and what is counted.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { DeliveryCounters } from '../../agent/delivery/counters.js';
import { PeerRoutes, type HeldPieces } from '../../agent/delivery/peer-routes.js';
import { UploadLimiter } from '../../agent/delivery/upload-limiter.js';
import { Gateway } from '../../agent/gateway/gateway.js';
import { GRANT_HEADER, PIECES_HEADER, PIECE_BYTES_HEADER, generateGrantKeys, loadGrantKeys, signGrant } from '../../shared/blob-http.js';
import { systemClock } from '../../shared/clock.js';
import { silentLogger } from '../../shared/log.js';
import { Bitfield } from '../../shared/pieces.js';
import { mintGatewayToken, tokenTable } from '../helpers/gateway-tokens.js';
import { tempDir } from '../helpers/processes.js';

const PIECE = 64 * 1024;
/** Five pieces, the last one short. */
const SIZE = 4 * PIECE + 1000;

interface Setup {
  base: string;
  counters: DeliveryCounters;
  digest: string;
  bytes: Buffer;
  held: HeldPieces;
  tokens: { peer: string; other: string; consumer: string; admin: string; join: string };
  grant(options?: { node?: string; digest?: string; expiresAtMs?: number; foreign?: boolean }): string;
}

async function setup(t: TestContext, options: { held?: number[]; sharing?: boolean; onPeerPieces?: (digest: string, node: string, headers: Record<string, string>) => void } = {}): Promise<Setup> {
  const dir = tempDir(t, 'mlfleet-peer-routes-');
  const bytes = randomBytes(SIZE);
  const file = path.join(dir, 'blob');
  writeFileSync(file, bytes);
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  const bitfield = new Bitfield(5);
  for (const i of options.held ?? [0, 1, 2, 3, 4]) bitfield.set(i);
  const held: HeldPieces = { sizeBytes: SIZE, pieceBytes: PIECE, bitfield, open: (flags: number) => open(file, flags) };
  const keys = loadGrantKeys(generateGrantKeys().privateKeyDer);
  const foreign = loadGrantKeys(generateGrantKeys().privateKeyDer);
  const counters = new DeliveryCounters();
  const minted = {
    peer: mintGatewayToken('node', '', { node: 'peer' }),
    other: mintGatewayToken('node', '', { node: 'other' }),
    consumer: mintGatewayToken('consumer', 'acme'),
    admin: mintGatewayToken('admin', 'acme'),
    join: mintGatewayToken('join', ''),
  };
  const peers = new PeerRoutes({
    holder: { heldPieces: (d) => (d === digest ? held : undefined) },
    grantKey: () => keys.publicKeyDer,
    limiter: options.sharing === false ? undefined : new UploadLimiter(10_000, systemClock),
    counters,
    ...(options.onPeerPieces ? { onPeerPieces: options.onPeerPieces } : {}),
    clock: systemClock,
    log: silentLogger(),
  });
  const gateway = await Gateway.start({ listen: '127.0.0.1:0', node: 'here', credential: () => undefined, log: silentLogger(), peers });
  t.after(() => gateway.close());
  gateway.setTokens(tokenTable(...Object.values(minted)));
  return {
    base: `http://${gateway.address}`,
    counters,
    digest,
    bytes,
    held,
    tokens: { peer: minted.peer.token, other: minted.other.token, consumer: minted.consumer.token, admin: minted.admin.token, join: minted.join.token },
    grant: (g = {}) => signGrant(g.foreign ? foreign : keys, { node: g.node ?? 'peer', digest: g.digest ?? digest, expiresAtMs: g.expiresAtMs ?? Date.now() + 60_000 }),
  };
}

async function get(s: Setup, suffix: string, headers: Record<string, string>, method = 'GET') {
  const res = await fetch(`${s.base}/v1/blobs/${suffix}`, { method, headers });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

const auth = (token: string, grant?: string): Record<string, string> => ({ authorization: `Bearer ${token}`, ...(grant ? { [GRANT_HEADER]: grant } : {}) });

test('only a node credential with its own grant for this digest is served; everyone else is refused and nothing is sent', async (t) => {
  const s = await setup(t);
  const other = `sha256:${'0'.repeat(64)}`;
  const refused: Array<[string, Record<string, string>, number]> = [
    ['no token', {}, 401],
    ['a token nobody issued', auth('mlf_nosuchtoken_secret', s.grant()), 401],
    ['a consumer token', auth(s.tokens.consumer, s.grant()), 403],
    ['an admin token', auth(s.tokens.admin, s.grant()), 403],
    ['a join token', auth(s.tokens.join, s.grant()), 403],
    ['no grant', auth(s.tokens.peer), 403],
    ['an expired grant', auth(s.tokens.peer, s.grant({ expiresAtMs: Date.now() - 1 })), 403],
    ["another node's grant", auth(s.tokens.other, s.grant()), 403],
    ['a grant for another digest', auth(s.tokens.peer, s.grant({ digest: other })), 403],
    ['a grant the leader did not sign', auth(s.tokens.peer, s.grant({ foreign: true })), 403],
    ['a garbled grant', auth(s.tokens.peer, 'not.a-grant'), 403],
  ];
  for (const [what, headers, status] of refused) {
    for (const suffix of [s.digest, `${s.digest}/pieces`]) {
      const res = await get(s, suffix, { ...headers, range: 'bytes=0-99' });
      assert.equal(res.status, status, `${what} on ${suffix}: ${res.body.toString()}`);
      assert.ok(!res.body.equals(s.bytes.subarray(0, 100)), `${what}: no blob bytes in the answer`);
    }
  }
  assert.equal(s.counters.peerSentBytes, 0);

  const pieces = await get(s, `${s.digest}/pieces`, auth(s.tokens.peer, s.grant()));
  assert.equal(pieces.status, 200);
  assert.equal(pieces.headers.get(PIECE_BYTES_HEADER), String(PIECE));
  assert.deepEqual([...pieces.body], [...s.held.bitfield.bytes]);
  // The other node with its own grant is served too.
  const theirs = await get(s, s.digest, { ...auth(s.tokens.other, s.grant({ node: 'other' })), range: 'bytes=0-99' });
  assert.equal(theirs.status, 206);
  assert.ok(theirs.body.equals(s.bytes.subarray(0, 100)));
  assert.equal(s.counters.peerSentBytes, 100);
  // A blob this agent holds nothing of (with a grant for it) is 404; so are other methods and paths.
  assert.equal((await get(s, `${other}/pieces`, auth(s.tokens.peer, s.grant({ digest: other })))).status, 404);
  assert.equal((await get(s, s.digest, auth(s.tokens.peer, s.grant()), 'DELETE')).status, 405);
  assert.equal((await get(s, 'sha256:nothex', auth(s.tokens.peer, s.grant()))).status, 404);
});

test('ranges are served inside held pieces only (206 with Content-Range), the whole blob only once complete, and the bytes sent are counted', async (t) => {
  const s = await setup(t, { held: [0, 1, 3] });
  const peer = (grant = s.grant()) => auth(s.tokens.peer, grant);
  const bitfield = await get(s, `${s.digest}/pieces`, peer());
  assert.deepEqual(new Bitfield(5, bitfield.body).bytes, s.held.bitfield.bytes);

  const two = await get(s, s.digest, { ...peer(), range: `bytes=0-${2 * PIECE - 1}` });
  assert.equal(two.status, 206);
  assert.equal(two.headers.get('content-range'), `bytes 0-${2 * PIECE - 1}/${SIZE}`);
  assert.ok(two.body.equals(s.bytes.subarray(0, 2 * PIECE)));
  const inside = await get(s, s.digest, { ...peer(), range: `bytes=${3 * PIECE + 10}-${3 * PIECE + 19}` });
  assert.equal(inside.status, 206);
  assert.ok(inside.body.equals(s.bytes.subarray(3 * PIECE + 10, 3 * PIECE + 20)));
  assert.equal(s.counters.peerSentBytes, 2 * PIECE + 10);

  for (const range of [`bytes=${PIECE}-${2 * PIECE}`, `bytes=${4 * PIECE}-`, 'bytes=-10', `bytes=${SIZE}-`]) {
    const res = await get(s, s.digest, { ...peer(), range });
    assert.equal(res.status, 416, range);
    assert.equal(res.headers.get('content-range'), `bytes */${SIZE}`);
  }
  assert.equal((await get(s, s.digest, peer())).status, 416, 'no Range while only some pieces are held');
  assert.equal((await get(s, s.digest, { ...peer(), range: 'pieces=1' })).status, 400);
  assert.equal(s.counters.peerSentBytes, 2 * PIECE + 10);

  // Once every piece is held: the whole blob, and ranges anywhere in it.
  for (const i of [2, 4]) s.held.bitfield.set(i);
  const whole = await get(s, s.digest, peer());
  assert.equal(whole.status, 200);
  assert.ok(whole.body.equals(s.bytes));
  const tail = await get(s, s.digest, { ...peer(), range: 'bytes=-10' });
  assert.equal(tail.status, 206);
  assert.ok(tail.body.equals(s.bytes.subarray(SIZE - 10)));
  assert.equal(s.counters.peerSentBytes, 2 * PIECE + 10 + SIZE + 10);
});

test('with sharing off (--peer-upload-mbps 0) nothing is served, even with a valid grant; a replica header does not make it a hop', async (t) => {
  const off = await setup(t, { sharing: false });
  const grant = auth(off.tokens.peer, off.grant());
  assert.equal((await get(off, `${off.digest}/pieces`, grant)).status, 404);
  assert.equal((await get(off, off.digest, { ...grant, range: 'bytes=0-9' })).status, 404);
  assert.equal(off.counters.peerSentBytes, 0);

  const on = await setup(t);
  const res = await get(on, on.digest, { ...auth(on.tokens.peer, on.grant()), range: 'bytes=0-9', 'mlfleet-replica': 'alloc-1' });
  assert.equal(res.status, 206);
  assert.ok(res.body.equals(on.bytes.subarray(0, 10)));
});

test("a peer's request may say which pieces it holds: passed on with its node, only once its credential and grant are checked", async (t) => {
  const told: Array<{ digest: string; node: string; headers: Record<string, string> }> = [];
  const s = await setup(t, { onPeerPieces: (digest, node, headers) => told.push({ digest, node, headers }) });
  const mine = Buffer.from([0b1010_0000]).toString('base64');
  const asking = { [PIECES_HEADER]: mine, [PIECE_BYTES_HEADER]: String(PIECE) };
  assert.equal((await get(s, `${s.digest}/pieces`, { authorization: `Bearer ${s.tokens.peer}`, [GRANT_HEADER]: s.grant(), ...asking })).status, 200);
  assert.equal((await get(s, s.digest, { authorization: `Bearer ${s.tokens.peer}`, [GRANT_HEADER]: s.grant(), range: 'bytes=0-9', ...asking })).status, 206);
  assert.deepEqual(told, [
    { digest: s.digest, node: 'peer', headers: asking },
    { digest: s.digest, node: 'peer', headers: asking },
  ]);
  // Refused requests tell nothing: another node's grant, no credential.
  assert.equal((await get(s, `${s.digest}/pieces`, { authorization: `Bearer ${s.tokens.other}`, [GRANT_HEADER]: s.grant(), ...asking })).status, 403);
  assert.equal((await get(s, `${s.digest}/pieces`, { ...asking })).status, 401);
  assert.equal(told.length, 2);
});
