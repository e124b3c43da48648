// The agent's piece fetcher against real HTTP servers (test/helpers/blob-range-server.ts) and
// a real child process: a pull killed with SIGKILL resumes from the pieces it recorded, a peer
// that sends a corrupt piece costs one re-fetch from another source, and each kind of source
// gets the credentials it takes (bearer + grant for peers, nothing for presigned S3 URLs).
import assert from 'node:assert/strict';
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { CacheIndex } from '../../agent/cache-index.js';
import { DeliveryCounters } from '../../agent/delivery/counters.js';
import { HashPool } from '../../agent/delivery/hash-pool.js';
import { PieceFetcher, type Location } from '../../agent/delivery/piece-fetcher.js';
import { LocalState } from '../../agent/local-state.js';
import { ModelCache } from '../../agent/model-cache.js';
import { PIECES_HEADER, PIECE_BYTES_HEADER } from '../../shared/blob-http.js';
import { createLogger } from '../../shared/log.js';
import { Bitfield, MiB, pieceCount } from '../../shared/pieces.js';
import { manifestOf, startRangeServer } from '../helpers/blob-range-server.js';
import { spawnDaemon, tempDir } from '../helpers/processes.js';

const TOKEN = 'node-credential-of-this-agent';
const GRANT = 'grant-for-this-digest';

/** A file of `sizeBytes` random bytes and its digest, written a MiB at a time. */
async function randomBlob(t: TestContext, sizeBytes: number): Promise<{ file: string; digest: string }> {
  const file = path.join(tempDir(t), 'blob.bin');
  const hash = createHash('sha256');
  const fd = openSync(file, 'w');
  const chunk = Buffer.allocUnsafe(MiB);
  for (let at = 0; at < sizeBytes; at += MiB) {
    const part = chunk.subarray(0, Math.min(MiB, sizeBytes - at));
    randomFillSync(part);
    hash.update(part);
    writeSync(fd, part);
  }
  closeSync(fd);
  return { file, digest: `sha256:${hash.digest('hex')}` };
}

interface Puller {
  cache: ModelCache;
  fetcher: PieceFetcher;
  counters: DeliveryCounters;
  state: LocalState;
  /** What the fetcher logged. */
  logged: { msg: string; piecesReadBack?: number }[];
}

function openPuller(t: TestContext, dataDir: string, location: Location, options: { stallMs?: number; pollMs?: number; maxInFlight?: number } = {}): Puller {
  const counters = new DeliveryCounters();
  const hashPool = new HashPool();
  const logged: Puller['logged'] = [];
  const log = createLogger({ level: 'debug', destination: { write: (line: string) => void logged.push(JSON.parse(line) as Puller['logged'][number]) } });
  const fetcher = new PieceFetcher({ locate: async () => location, token: () => TOKEN, counters, hashPool, log, ...options });
  const state = LocalState.open(dataDir);
  const cache = ModelCache.open({ dir: path.join(dataDir, 'cache'), db: state.database, maxBytes: 1024 ** 3, source: fetcher });
  t.after(async () => {
    await cache.close();
    await fetcher.close();
    await hashPool.close();
    state.close();
  });
  return { cache, fetcher, counters, state, logged };
}

/** The whole digest came with the pieces (recorded ones read back from the file), not from hashing the file again. */
function assertWholeDigestTaken(logged: Puller['logged']): void {
  assert.equal(logged.some((line) => line.msg.startsWith('the whole digest could not follow')), false, JSON.stringify(logged.filter((line) => line.msg.startsWith('the whole digest'))));
  assert.equal(logged.filter((line) => line.msg === 'whole digest taken with the pieces').length, 1);
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  return (await fs.readFile(a)).equals(await fs.readFile(b));
}

test('a pull killed with SIGKILL resumes from the pieces it recorded, fetching only the others', async (t) => {
  const sizeBytes = 96 * MiB;
  const pieceBytes = 4 * MiB;
  const { file, digest } = await randomBlob(t, sizeBytes);
  const manifest = await manifestOf(file, pieceBytes);
  const seed = await startRangeServer(t, { file, digest, sizeBytes, pieceBytes, kind: 'coordinator', token: TOKEN });
  seed.bytesPerSecond = 4 * MiB; // per request: about 16 MiB/s with four pieces at once
  const location: Location = { digest, sizeBytes, pieceBytes, pieceHashes: manifest.hashes, sources: [{ kind: 'coordinator', url: seed.url }], grant: '', rank: 0, fetchers: 1, refreshAtMs: 0 };
  const locationFile = path.join(tempDir(t), 'location.json');
  await fs.writeFile(locationFile, JSON.stringify({ ...location, pieceHashes: manifest.hashes.toString('base64') }));

  const dataDir = tempDir(t);
  const child = spawnDaemon(t, 'piece-fetch-child', 'test/faults/piece-fetch-child.js', [dataDir, locationFile, TOKEN]);
  await child.waitFor((line) => line.msg === 'download checkpoint' && (line.pieces as number) >= 6, 30_000);
  await child.kill('SIGKILL');
  assert.equal(child.lines.some((line) => line.msg === 'download finished'), false, 'killed before it finished');
  const sentBefore = seed.sentBytes;
  seed.bytesPerSecond = 0;

  const puller = openPuller(t, dataDir, location);
  const recorded = new CacheIndex(puller.state.database).partial(digest)?.pieces;
  assert.ok(recorded, 'the killed pull recorded its pieces');
  assert.equal(recorded.pieceBytes, pieceBytes);
  const held = new Bitfield(pieceCount(sizeBytes, pieceBytes), recorded.bitfield).count();
  assert.ok(held >= 6 && held < 24, `${held} pieces recorded`);

  const lease = await puller.cache.acquire({ digest, sizeBytes, directory: false });
  const sentAfter = seed.sentBytes - sentBefore;
  assert.equal(sentAfter, sizeBytes - held * pieceBytes, 'exactly the pieces not recorded were fetched again');
  assert.ok(sentAfter < sizeBytes, 'never a full re-download');
  assert.equal(puller.counters.receivedBytes.coordinator, sentAfter);
  assert.equal(seed.refused, 0);
  assert.ok(await sameBytes(lease.path, file));
  assertWholeDigestTaken(puller.logged);
  assert.ok(puller.logged.find((line) => line.msg === 'whole digest taken with the pieces')!.piecesReadBack! >= held, 'the recorded pieces were read back');
  lease.release();
});

test('a peer that sends a corrupt piece: it is counted, fetched again from the seed, and the blob arrives whole', async (t) => {
  const sizeBytes = 24 * MiB;
  const pieceBytes = MiB;
  const { file, digest } = await randomBlob(t, sizeBytes);
  const manifest = await manifestOf(file, pieceBytes);
  const peer = await startRangeServer(t, { file, digest, sizeBytes, pieceBytes, kind: 'peer', token: TOKEN, grant: GRANT });
  peer.corrupt.add(3);
  const seed = await startRangeServer(t, { file, digest, sizeBytes, pieceBytes, kind: 'coordinator', token: TOKEN });
  const location: Location = {
    digest, sizeBytes, pieceBytes, pieceHashes: manifest.hashes, grant: GRANT, rank: 1, fetchers: 2, refreshAtMs: 0,
    sources: [{ kind: 'peer', url: peer.url, node: 'peer-a', complete: true }, { kind: 'coordinator', url: seed.url }],
  };
  // No stall fallback in this test: every piece but the corrupt one must come from the peer.
  const { cache, counters, logged } = openPuller(t, tempDir(t), location, { stallMs: 600_000 });
  const lease = await cache.acquire({ digest, sizeBytes, directory: false });

  assert.ok(await sameBytes(lease.path, file));
  assertWholeDigestTaken(logged);
  assert.equal(counters.corruptPieces.peer, 1);
  assert.equal(counters.toProto().corruptPieces, 1);
  assert.deepEqual(seed.ranges, [{ start: 3 * MiB, end: 4 * MiB }], 'the seed sent piece 3 only');
  assert.equal(counters.receivedBytes.coordinator, MiB);
  assert.equal(counters.receivedBytes.peer, sizeBytes, 'the peer sent every piece once, the bad copy included');
  assert.equal(peer.refused + seed.refused, 0, 'bearer and grant where they belong');
  lease.release();
});

test('a presigned S3 URL gets no credential, a peer\'s bitfield is read from /pieces, and bytes are counted by source', async (t) => {
  const sizeBytes = 16 * MiB + 12_345;
  const pieceBytes = MiB;
  const { file, digest } = await randomBlob(t, sizeBytes);
  const manifest = await manifestOf(file, pieceBytes);
  const count = pieceCount(sizeBytes, pieceBytes);
  const peer = await startRangeServer(t, { file, digest, sizeBytes, pieceBytes, kind: 'peer', token: TOKEN, grant: GRANT });
  peer.pieces = new Bitfield(count);
  for (let piece = 0; piece < count; piece += 2) peer.pieces.set(piece);
  const bucket = await startRangeServer(t, { file, digest, sizeBytes, pieceBytes, kind: 's3', query: '?X-Amz-Signature=0123abcd&X-Amz-Expires=300' });
  const location: Location = {
    digest, sizeBytes, pieceBytes, pieceHashes: manifest.hashes, grant: GRANT, rank: 0, fetchers: 1, refreshAtMs: 0,
    sources: [{ kind: 'peer', url: peer.url, node: 'peer-a', complete: false }, { kind: 's3', url: bucket.url }],
  };
  const { cache, counters } = openPuller(t, tempDir(t), location);
  const lease = await cache.acquire({ digest, sizeBytes, directory: false });

  assert.ok(await sameBytes(lease.path, file));
  assert.equal(peer.refused + bucket.refused, 0);
  for (const range of peer.ranges) assert.equal((range.start / pieceBytes) % 2, 0, 'the peer was asked only for pieces it holds');
  assert.equal(counters.receivedBytes.peer, peer.sentBytes);
  assert.equal(counters.receivedBytes.s3, bucket.sentBytes);
  assert.equal(counters.receivedBytes.peer + counters.receivedBytes.s3, sizeBytes, 'each piece came once');
  lease.release();
});

test('a presigned URL the bucket refuses (expired) makes the fetcher locate again at once and carry on with the fresh one', async (t) => {
  const sizeBytes = 6 * MiB;
  const pieceBytes = MiB;
  const { file, digest } = await randomBlob(t, sizeBytes);
  const manifest = await manifestOf(file, pieceBytes);
  const bucket = await startRangeServer(t, { file, digest, sizeBytes, pieceBytes, kind: 's3', query: '?X-Amz-Signature=fresh' });
  const base: Omit<Location, 'sources'> = { digest, sizeBytes, pieceBytes, pieceHashes: manifest.hashes, grant: '', rank: 0, fetchers: 1, refreshAtMs: 0 };
  const urls = [bucket.url.replace('fresh', 'expired'), bucket.url];
  let locates = 0;
  const counters = new DeliveryCounters();
  const hashPool = new HashPool();
  const fetcher = new PieceFetcher({
    locate: async () => ({ ...base, sources: [{ kind: 's3', url: urls[Math.min(locates++, 1)]! }] }),
    token: () => TOKEN,
    counters,
    hashPool,
  });
  const dataDir = tempDir(t);
  const state = LocalState.open(dataDir);
  const cache = ModelCache.open({ dir: path.join(dataDir, 'cache'), db: state.database, maxBytes: 1024 ** 3, source: fetcher });
  t.after(async () => {
    await cache.close();
    await fetcher.close();
    await hashPool.close();
    state.close();
  });
  const lease = await cache.acquire({ digest, sizeBytes, directory: false });
  assert.ok(await sameBytes(lease.path, file));
  assert.equal(locates, 2);
  assert.ok(bucket.refused >= 1, 'the expired URL was refused');
  assert.equal(counters.receivedBytes.s3, sizeBytes);
  lease.release();
});

test('a peer\'s bitfield is asked for again while the pull has nothing to fetch, and not while every slot is busy', async (t) => {
  const sizeBytes = 16 * MiB;
  const pieceBytes = MiB;
  const { file, digest } = await randomBlob(t, sizeBytes);
  const manifest = await manifestOf(file, pieceBytes);
  const count = pieceCount(sizeBytes, pieceBytes);
  const pollMs = 100;

  // Busy: alone with a slow seed, both slots always full for ~2 s; the peer listed holds nothing.
  {
    const peer = await startRangeServer(t, { file, digest, sizeBytes, pieceBytes, kind: 'peer', token: TOKEN, grant: GRANT });
    peer.pieces = new Bitfield(count);
    const seed = await startRangeServer(t, { file, digest, sizeBytes, pieceBytes, kind: 'coordinator', token: TOKEN });
    seed.bytesPerSecond = 8 * MiB;
    const location: Location = {
      digest, sizeBytes, pieceBytes, pieceHashes: manifest.hashes, grant: GRANT, rank: 0, fetchers: 1, refreshAtMs: 0,
      sources: [{ kind: 'peer', url: peer.url, node: 'peer-a', complete: false }, { kind: 'coordinator', url: seed.url }],
    };
    const { cache } = openPuller(t, tempDir(t), location, { pollMs, maxInFlight: 2 });
    const lease = await cache.acquire({ digest, sizeBytes, directory: false });
    assert.ok(await sameBytes(lease.path, file));
    lease.release();
    // Once when first listed; again only in the last moments, when fewer pieces are left than slots.
    assert.ok(peer.polls >= 1 && peer.polls <= 3, `asked ${peer.polls} times for its bitfield during a ~2 s pull with every slot busy (asked every ${pollMs} ms, it would be 10 or more)`);
  }

  // Starved: half the pieces are the peer's share, which it brings after a while: asked until then.
  {
    const peer = await startRangeServer(t, { file, digest, sizeBytes, pieceBytes, kind: 'peer', token: TOKEN, grant: GRANT });
    peer.pieces = new Bitfield(count);
    const seed = await startRangeServer(t, { file, digest, sizeBytes, pieceBytes, kind: 'coordinator', token: TOKEN });
    const location: Location = {
      digest, sizeBytes, pieceBytes, pieceHashes: manifest.hashes, grant: GRANT, rank: 0, fetchers: 2, refreshAtMs: 0,
      sources: [{ kind: 'peer', url: peer.url, node: 'peer-a', complete: false, rank: 1 }, { kind: 'coordinator', url: seed.url }],
    };
    const { cache } = openPuller(t, tempDir(t), location, { pollMs, stallMs: 60_000 });
    setTimeout(() => {
      const held = new Bitfield(count);
      for (let piece = 1; piece < count; piece += 2) held.set(piece);
      peer.pieces = held;
    }, 800).unref();
    const lease = await cache.acquire({ digest, sizeBytes, directory: false });
    assert.ok(await sameBytes(lease.path, file));
    lease.release();
    assert.ok(peer.polls >= 4, `asked only ${peer.polls} times while the pull waited for its pieces`);
    assert.deepEqual(peer.ranges.map((range) => range.start / pieceBytes).sort((a, b) => a - b), [1, 3, 5, 7, 9, 11, 13, 15], 'the peer\'s share came from the peer, once it said it held it');
    for (const range of seed.ranges) assert.equal((range.start / pieceBytes) % 2, 0, 'the seed sent only this agent\'s share');
  }
});

test("a peer's own request saying which pieces it holds is as good as a poll: the starved pull fetches them at once, and its requests say what it holds", async (t) => {
  const sizeBytes = 16 * MiB;
  const pieceBytes = MiB;
  const { file, digest } = await randomBlob(t, sizeBytes);
  const manifest = await manifestOf(file, pieceBytes);
  const count = pieceCount(sizeBytes, pieceBytes);
  // Half the pieces are the peer's share; polls and stalls would take a minute.
  const peer = await startRangeServer(t, { file, digest, sizeBytes, pieceBytes, kind: 'peer', token: TOKEN, grant: GRANT });
  peer.pieces = new Bitfield(count);
  const seed = await startRangeServer(t, { file, digest, sizeBytes, pieceBytes, kind: 'coordinator', token: TOKEN });
  const location: Location = {
    digest, sizeBytes, pieceBytes, pieceHashes: manifest.hashes, grant: GRANT, rank: 0, fetchers: 2, refreshAtMs: 0,
    sources: [{ kind: 'peer', url: peer.url, node: 'peer-a', complete: false, rank: 1 }, { kind: 'coordinator', url: seed.url }],
  };
  const { cache, fetcher } = openPuller(t, tempDir(t), location, { pollMs: 60_000, stallMs: 60_000 });
  const pulled = cache.acquire({ digest, sizeBytes, directory: false });
  await new Promise((resolve) => setTimeout(resolve, 800));
  const held = new Bitfield(count);
  for (let piece = 1; piece < count; piece += 2) held.set(piece);
  peer.pieces = held;
  // As PeerRoutes passes on a request of peer-a's to this agent (another node's name tells nothing).
  fetcher.learnPeerPieces(digest, 'peer-b', { [PIECES_HEADER]: Buffer.from(held.bytes).toString('base64'), [PIECE_BYTES_HEADER]: String(pieceBytes) });
  fetcher.learnPeerPieces(digest, 'peer-a', { [PIECES_HEADER]: Buffer.from(held.bytes).toString('base64'), [PIECE_BYTES_HEADER]: String(pieceBytes) });
  const lease = await Promise.race([pulled, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the pull did not learn of the peer\'s pieces')), 10_000))]);
  assert.ok(await sameBytes(lease.path, file));
  lease.release();
  assert.equal(peer.polls, 1, 'asked once, when first listed');
  assert.deepEqual(peer.ranges.map((range) => range.start / pieceBytes).sort((a, b) => a - b), [1, 3, 5, 7, 9, 11, 13, 15]);
  // Its requests for pieces said what it held by then: all of its own share, at least.
  const told = peer.told.filter((text) => text !== '').map((text) => new Bitfield(count, Buffer.from(text, 'base64')));
  assert.ok(told.length >= 8, `${told.length} requests said what the pull held`);
  for (const bitfield of told) for (let piece = 0; piece < count; piece += 2) assert.ok(bitfield.has(piece), `piece ${piece} held and said`);
});
