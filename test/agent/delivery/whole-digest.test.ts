// The whole digest taken with the pieces (agent/delivery/hash-pool.ts WholeDigest, hash-worker.ts): a real
// hashing worker and a real partial file, pieces arriving in and out of order, a resume, a
// corrupt piece; the answer is always the SHA-256 of the file, or undefined (never a wrong one).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test, { type TestContext } from 'node:test';
import { openDirect } from '../../../agent/delivery/direct-io.js';
import { HashPool, WholeDigest } from '../../../agent/delivery/hash-pool.js';

const PIECE = 64 * 1024;

/** `direct`: pieces are read back past the page cache, as the agent does (agent/delivery/direct-io.ts). */
async function setup(t: TestContext, pieces: number, tail = 1000, options: { direct?: boolean } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-whole-'));
  const bytes = randomBytes(pieces * PIECE - (pieces > 0 ? PIECE - tail : 0));
  const handle = await fs.open(path.join(dir, 'partial'), 'w+');
  await handle.truncate(bytes.length);
  const direct = options.direct ? await openDirect(path.join(dir, 'partial')) : undefined;
  if (options.direct) assert.ok(direct, 'this file system takes O_DIRECT');
  const pool = new HashPool();
  t.after(async () => {
    await pool.close();
    await direct?.close();
    await handle.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const pieceOf = (piece: number) => bytes.subarray(piece * PIECE, Math.min(bytes.length, (piece + 1) * PIECE));
  const expected = (piece: number) => createHash('sha256').update(pieceOf(piece)).digest();
  const whole = new WholeDigest(pool, { fd: handle.fd, ...(direct ? { directFd: direct.fd } : {}), sizeBytes: bytes.length, pieceBytes: PIECE, pieceCount: pieces });
  /**
   * As the fetcher does: a piece in a shared buffer (at `offset` in it), written; then hash()
   * hashes it. `hold`: it may stay in its buffer for its turn, and is then not written at all,
   * so that a digest that still comes out right took it from the buffer.
   */
  const place = async (piece: number, data = pieceOf(piece), offset = 0, hold = false) => {
    const buffer = Buffer.from(new SharedArrayBuffer(offset + PIECE), offset, data.length);
    data.copy(buffer);
    if (!hold) await handle.write(buffer, 0, buffer.length, piece * PIECE);
    return async () => {
      const hashed = await whole.hash(buffer, piece, expected(piece), hold);
      assert.ok(buffer.equals(data), 'hashed where it lies, not changed');
      return hashed;
    };
  };
  const arrive = async (piece: number, data = pieceOf(piece), offset = 0) => (await place(piece, data, offset))();
  const hold = async (piece: number) => (await place(piece, pieceOf(piece), 0, true))();
  const sha = createHash('sha256').update(bytes).digest('hex');
  return { whole, place, arrive, hold, sha, handle, pieceOf };
}

test('pieces in order: the digest is the file\'s, and no piece is read back', async (t) => {
  const { whole, arrive, sha } = await setup(t, 5);
  for (let piece = 0; piece < 5; piece += 1) assert.equal((await arrive(piece)).fed, true);
  assert.equal(await whole.finish(), sha);
  assert.equal(whole.piecesReadBack, 0);
});

for (const direct of [false, true]) {
  test(`pieces out of order and several at once: those ahead are read back${direct ? ' past the page cache' : ''}, the digest is the file's`, async (t) => {
    const { whole, arrive, sha } = await setup(t, 8, 1000, { direct });
    await Promise.all([arrive(2), arrive(1), arrive(3)]);
    await Promise.all([arrive(0), arrive(6), arrive(5)]);
    await Promise.all([arrive(4), arrive(7)]);
    assert.equal(await whole.finish(), sha);
    assert.ok(whole.piecesReadBack > 0);
  });
}

test('pieces in shared buffers are hashed where they lie, written meanwhile; a corrupt one stays out of the digest', async (t) => {
  const { whole, arrive, sha, pieceOf } = await setup(t, 6);
  assert.equal((await arrive(0)).fed, true);
  assert.equal((await arrive(1, pieceOf(1), 4096)).fed, true, 'a view into the middle of a shared buffer');
  await Promise.all([arrive(3), arrive(2)]);
  const bad = Buffer.from(pieceOf(4));
  bad[7] = bad[7]! ^ 1;
  const corrupt = await arrive(4, bad);
  assert.equal(corrupt.fed, false);
  await Promise.all([arrive(5), arrive(4)]);
  assert.equal(await whole.finish(), sha);
});

test('a piece sent while the one before it waits on disk is still taken from its buffer: the worker reads that one back first', async (t) => {
  const { whole, place, arrive, sha } = await setup(t, 6);
  assert.equal((await arrive(1)).fed, false, 'ahead of piece 0: left in the file, to be read back');
  // Piece 2 reaches the worker right behind piece 0, before anything the agent could send on hearing that piece 0 went in.
  const [zero, two] = [await place(0), await place(2)];
  const [first, second] = await Promise.all([zero(), two()]);
  assert.deepEqual([first.fed, second.fed], [true, true]);
  assert.equal((await arrive(4)).fed, false);
  const [three, five] = [await place(3), await place(5)];
  const [third, fifth] = await Promise.all([three(), five()]);
  assert.deepEqual([third.fed, fifth.fed], [true, true]);
  assert.equal(await whole.finish(), sha);
  assert.equal(whole.piecesReadBack, 2, 'pieces 1 and 4 only');
});

test('pieces held in their buffers are taken from there in their turn, never read back, and each is released once taken', async (t) => {
  const { whole, arrive, hold, sha, pieceOf } = await setup(t, 7);
  const released: number[] = [];
  // Pieces 2, 3 and 5 come ahead of their turn: held, and never written to the file.
  for (const piece of [2, 3, 5]) {
    const hashed = await hold(piece);
    assert.deepEqual([hashed.fed, hashed.held], [false, true]);
    released.push(...hashed.released);
  }
  assert.deepEqual(released, [], 'nothing is taken before its turn');
  assert.equal((await arrive(0)).fed, true);
  const one = await arrive(1);
  assert.equal(one.fed, true);
  assert.deepEqual(one.released.sort(), [2, 3], 'piece 1 lets 2 and 3 in, from their buffers');
  assert.deepEqual((await arrive(4)).released, [5]);
  await arrive(6);
  assert.equal(await whole.finish(), sha, 'the held pieces were never in the file: they came from their buffers');
  assert.equal(whole.piecesReadBack, 0);
  // A corrupt copy is never held.
  const other = await setup(t, 3);
  const bad = Buffer.from(pieceOf(0)).subarray(0, other.pieceOf(2).length);
  const corrupt = await (await other.place(2, bad, 0, true))();
  assert.deepEqual([corrupt.fed, corrupt.held], [false, false]);
});

test('a resume: recorded pieces are read back from the file, new ones come from their buffers', async (t) => {
  const { whole, arrive, sha, handle, pieceOf } = await setup(t, 6);
  const recorded = new Set([0, 1, 4]);
  for (const piece of recorded) await handle.write(pieceOf(piece), 0, pieceOf(piece).length, piece * PIECE);
  await whole.resumed((piece) => recorded.has(piece));
  assert.equal((await arrive(2)).fed, true);
  await arrive(5);
  await arrive(3);
  assert.equal(await whole.finish(), sha);
  assert.equal(whole.piecesReadBack, 4);
});

test('a corrupt copy does not enter the digest; the good copy that follows does', async (t) => {
  const { whole, arrive, sha } = await setup(t, 3);
  await arrive(0);
  const bad = await arrive(1, randomBytes(PIECE));
  assert.equal(bad.fed, false);
  assert.equal((await arrive(1)).fed, true);
  await arrive(2);
  assert.equal(await whole.finish(), sha);
});

test('a missing piece or a stopped worker gives no digest rather than a wrong one', async (t) => {
  const missing = await setup(t, 3);
  await missing.arrive(0);
  await missing.arrive(2);
  assert.equal(await missing.whole.finish(), undefined);

  const stopped = await setup(t, 2);
  await stopped.arrive(1);
  // The pool closes under it: the rest is hashed on the event loop, outside the digest.
  await (stopped.whole as unknown as { pool: HashPool }).pool.close();
  await stopped.arrive(0);
  assert.equal(await stopped.whole.finish(), undefined);
});
