// The coordinator's piece hasher for uploads (shared/worker-piece-hasher.ts): the pieces of a
// stream hashed in a worker thread, however the bytes are cut; buffers it was handed come back
// for the sender to fill again; bytes that do not start their buffer are copied, so the
// sender's buffer stays its own.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { WorkerPieceHasher } from '../../shared/worker-piece-hasher.js';

const PIECE = 64 * 1024;

function expectedHashes(bytes: Buffer): Buffer {
  const hashes: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += PIECE) hashes.push(createHash('sha256').update(bytes.subarray(at, at + PIECE)).digest());
  return Buffer.concat(hashes);
}

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    assert.ok(Date.now() < deadline, 'timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('pieces are hashed in the worker, and the buffers handed over come back to be filled again', async (t) => {
  const hasher = new WorkerPieceHasher(PIECE);
  t.after(() => hasher.close());
  const content = randomBytes(5 * PIECE + 1234);
  // Handed over in 100,000-byte views that start their own 128 KiB buffers, as the upload's staging does.
  for (let at = 0; at < content.length; at += 100_000) {
    const part = content.subarray(at, at + 100_000);
    const staging = hasher.take(part.length) ?? Buffer.allocUnsafeSlow(128 * 1024);
    part.copy(staging);
    hasher.update(staging.subarray(0, part.length));
    assert.equal(staging.length, 0, 'the buffer was transferred, not copied');
  }
  await until(() => hasher.take(100_000) !== undefined);
  assert.equal(hasher.take(200 * 1024), undefined, 'no buffer given back is that large');

  const { sizeBytes, hashes } = await hasher.finish();
  assert.equal(sizeBytes, content.length);
  assert.ok(hashes.equals(expectedHashes(content)));
});

test('bytes in the middle of a buffer are copied: the rest of the buffer stays the caller\'s', async (t) => {
  const hasher = new WorkerPieceHasher(PIECE);
  t.after(() => hasher.close());
  const whole = randomBytes(3 * PIECE);
  const kept = Buffer.from(whole);
  hasher.update(whole.subarray(10, 2 * PIECE));
  assert.equal(whole.length, 3 * PIECE);
  assert.ok(whole.equals(kept));
  const { sizeBytes, hashes } = await hasher.finish();
  assert.equal(sizeBytes, 2 * PIECE - 10);
  assert.ok(hashes.equals(expectedHashes(kept.subarray(10, 2 * PIECE))));
});

test('asked for the whole digest, the worker takes it too; otherwise it says none', async (t) => {
  const content = randomBytes(2 * PIECE + 77);
  const whole = new WorkerPieceHasher(PIECE, { whole: true });
  const pieces = new WorkerPieceHasher(PIECE);
  t.after(() => Promise.all([whole.close(), pieces.close()]));
  for (const hasher of [whole, pieces]) for (let at = 0; at < content.length; at += 50_000) hasher.update(Buffer.from(content.subarray(at, at + 50_000)));
  const [withWhole, withoutWhole] = await Promise.all([whole.finish(), pieces.finish()]);
  assert.equal(withWhole.digest, `sha256:${createHash('sha256').update(content).digest('hex')}`);
  assert.ok(withWhole.hashes.equals(expectedHashes(content)));
  assert.equal(withoutWhole.digest, '');
  assert.ok(withoutWhole.hashes.equals(withWhole.hashes));
});
