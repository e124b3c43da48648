// shared/pieces.ts and shared/blob-http.ts: piece arithmetic, manifests and their encoding,
// bitfields, byte ranges, and the leader's grants; and the leader's manifests over a real
// filesystem blob store (coordinator/delivery/manifests.ts).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { test } from 'node:test';
import { FsBlobStore } from '../../coordinator/blobs/fs-blob-store.js';
import { PieceManifests } from '../../coordinator/delivery/manifests.js';
import { generateGrantKeys, loadGrantKeys, parseBlobPath, parseRange, signGrant, verifyGrant } from '../../shared/blob-http.js';
import { InvalidArgumentError, PermissionDeniedError } from '../../shared/errors.js';
import {
  Bitfield,
  MAX_PIECES,
  PIECE_BYTES,
  StreamingPieceHasher,
  decodeManifest,
  encodeManifest,
  pieceBytesFor,
  pieceCount,
  pieceMatches,
  pieceRange,
} from '../../shared/pieces.js';
import { tempDir } from '../helpers/processes.js';

const MiB = 1024 * 1024;

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

test('piece sizes: 8 MiB until a blob would need more than 10,000 pieces, then doubled', () => {
  assert.equal(pieceBytesFor(0), PIECE_BYTES);
  assert.equal(pieceBytesFor(MAX_PIECES * PIECE_BYTES), PIECE_BYTES);
  assert.equal(pieceBytesFor(MAX_PIECES * PIECE_BYTES + 1), 2 * PIECE_BYTES);
  assert.equal(pieceCount(0, PIECE_BYTES), 0);
  assert.equal(pieceCount(PIECE_BYTES + 1, PIECE_BYTES), 2);
  assert.deepEqual(pieceRange(1, PIECE_BYTES + 5, PIECE_BYTES), { start: PIECE_BYTES, end: PIECE_BYTES + 5 });
  assert.throws(() => pieceRange(2, PIECE_BYTES + 5, PIECE_BYTES), InvalidArgumentError);
  assert.throws(() => pieceRange(-1, 10, PIECE_BYTES), InvalidArgumentError);
});

test('the streaming hasher gives the whole digest and each piece hash, however the bytes are cut', () => {
  const pieceBytes = MiB;
  const blob = randomBytes(3 * MiB + 12_345);
  for (const cut of [1000, 777_777, MiB, 5 * MiB]) {
    const hasher = new StreamingPieceHasher(pieceBytes);
    for (let at = 0; at < blob.length; at += cut) hasher.update(blob.subarray(at, at + cut));
    const manifest = hasher.finish();
    assert.equal(manifest.digest, sha256(blob));
    assert.equal(manifest.sizeBytes, blob.length);
    assert.equal(manifest.hashes.length, 4 * 32);
    for (let i = 0; i < 4; i += 1) {
      const { start, end } = pieceRange(i, blob.length, pieceBytes);
      assert.ok(pieceMatches(manifest, i, blob.subarray(start, end)), `piece ${i} with cuts of ${cut}`);
    }
    const damaged = Buffer.from(blob.subarray(0, pieceBytes));
    damaged[100] = damaged[100]! ^ 1;
    assert.equal(pieceMatches(manifest, 0, damaged), false);
    assert.equal(pieceMatches(manifest, 3, blob.subarray(3 * MiB)), true);
    assert.equal(pieceMatches(manifest, 3, blob.subarray(3 * MiB, -1)), false, 'a short piece never matches');
  }
});

test('a manifest survives its encoding, and anything else is refused', () => {
  const hasher = new StreamingPieceHasher(MiB);
  hasher.update(randomBytes(2 * MiB + 1));
  const manifest = hasher.finish();
  assert.deepEqual(decodeManifest(encodeManifest(manifest)), manifest);
  assert.throws(() => decodeManifest(Buffer.from('hello')), InvalidArgumentError);
  assert.throws(() => decodeManifest(encodeManifest(manifest).subarray(0, -1)), /hashes/);
  assert.throws(() => decodeManifest(encodeManifest({ ...manifest, pieceBytes: 1000 })), /whole number of MiB/);
});

test('bitfields: set, count, complete, and bytes that round-trip with stray bits cleared', () => {
  const field = new Bitfield(10);
  assert.equal(field.bytes.length, 2);
  field.set(0);
  field.set(9);
  field.set(9);
  assert.equal(field.count(), 2);
  assert.ok(field.has(0) && field.has(9) && !field.has(1) && !field.has(10) && !field.has(-1));
  assert.deepEqual([...field.bytes], [0x80, 0x40]);
  const copy = new Bitfield(10, Uint8Array.from([0x80, 0x7f]));
  assert.equal(copy.count(), 2, 'bits past the size mean nothing');
  assert.throws(() => new Bitfield(10, new Uint8Array(3)), InvalidArgumentError);
  assert.throws(() => field.set(10), InvalidArgumentError);
  assert.ok(Bitfield.full(10).complete());
  assert.ok(new Bitfield(0).complete());
});

test('ranges: one range, open-ended or a suffix; outside the blob unsatisfiable; several refused', () => {
  assert.equal(parseRange(undefined, 100), undefined);
  assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 10 });
  assert.deepEqual(parseRange('bytes=90-', 100), { start: 90, end: 100 });
  assert.deepEqual(parseRange('bytes=90-1000', 100), { start: 90, end: 100 });
  assert.deepEqual(parseRange('bytes=-10', 100), { start: 90, end: 100 });
  assert.equal(parseRange('bytes=100-', 100), 'unsatisfiable');
  assert.equal(parseRange('bytes=5-4', 100), 'unsatisfiable');
  assert.equal(parseRange('bytes=-0', 100), 'unsatisfiable');
  assert.throws(() => parseRange('bytes=0-1,5-6', 100), InvalidArgumentError);
  assert.throws(() => parseRange('items=0-1', 100), InvalidArgumentError);
  const digest = `sha256:${'a'.repeat(64)}`;
  assert.deepEqual(parseBlobPath(`/v1/blobs/${digest}`), { digest, pieces: false });
  assert.deepEqual(parseBlobPath(`/v1/blobs/${digest}/pieces`), { digest, pieces: true });
  assert.equal(parseBlobPath(`/v1/blobs/sha256:${'A'.repeat(64)}`), undefined);
  assert.equal(parseBlobPath('/v1/blobs/../etc/passwd'), undefined);
});

test('grants: signed by the leader, for one node and one digest, until they expire', () => {
  const pair = generateGrantKeys();
  const keys = loadGrantKeys(pair.privateKeyDer);
  assert.ok(keys.publicKeyDer.equals(pair.publicKeyDer));
  const digest = `sha256:${'b'.repeat(64)}`;
  const grant = signGrant(keys, { digest, node: 'n1', expiresAtMs: 2_000 });
  assert.deepEqual(verifyGrant(pair.publicKeyDer, grant, { node: 'n1', digest, nowMs: 1_000 }), { digest, node: 'n1', expiresAtMs: 2_000 });
  assert.throws(() => verifyGrant(pair.publicKeyDer, grant, { node: 'n2', digest, nowMs: 1_000 }), PermissionDeniedError);
  assert.throws(() => verifyGrant(pair.publicKeyDer, grant, { node: 'n1', digest: `sha256:${'c'.repeat(64)}`, nowMs: 1_000 }), PermissionDeniedError);
  assert.throws(() => verifyGrant(pair.publicKeyDer, grant, { node: 'n1', digest, nowMs: 2_000 }), /expired/);
  assert.throws(() => verifyGrant(pair.publicKeyDer, undefined, { node: 'n1', digest, nowMs: 1_000 }), PermissionDeniedError);
  const other = generateGrantKeys();
  assert.throws(() => verifyGrant(other.publicKeyDer, grant, { node: 'n1', digest, nowMs: 1_000 }), /not signed by the leader/);
  // A grant whose payload is changed (another node named) no longer matches its signature.
  const [, signature] = grant.split('.');
  const forged = `${Buffer.from(JSON.stringify({ d: digest, n: 'n2', e: 2_000 })).toString('base64url')}.${signature}`;
  assert.throws(() => verifyGrant(pair.publicKeyDer, forged, { node: 'n2', digest, nowMs: 1_000 }), /not signed by the leader/);
  assert.throws(() => verifyGrant(pair.publicKeyDer, 'x'.repeat(5000), { node: 'n1', digest, nowMs: 1_000 }), /too long/);
});

test('the leader computes, verifies and saves the manifest of a blob stored without one, and refuses a damaged blob', async (t) => {
  const dir = tempDir(t, 'manifests-');
  const store = await FsBlobStore.create({ root: dir });
  t.after(() => store.close());
  const blob = randomBytes(9 * MiB);
  const writer = await store.create();
  await writer.write(blob);
  const { digest } = await writer.commit();
  assert.equal(await store.readPieces(digest), undefined);

  const manifests = new PieceManifests(store);
  const manifest = await manifests.get(digest, blob.length);
  assert.equal(manifest.pieceBytes, PIECE_BYTES);
  assert.ok(pieceMatches(manifest, 1, blob.subarray(PIECE_BYTES)));
  assert.deepEqual(decodeManifest((await store.readPieces(digest))!), manifest, 'saved beside the blob');
  assert.deepEqual(await new PieceManifests(store).get(digest, blob.length), manifest, 'a new leader reads the saved one');

  // Damaged after it was stored: the manifest is not computed from bytes that are not the blob.
  const other = randomBytes(MiB);
  const second = await store.create();
  await second.write(other);
  const stored = await second.commit();
  await fs.chmod(store.pathOf(stored.digest), 0o600);
  await fs.writeFile(store.pathOf(stored.digest), randomBytes(MiB));
  await assert.rejects(new PieceManifests(store).get(stored.digest, MiB), /damaged/);
  assert.equal(await store.readPieces(stored.digest), undefined);

  await store.delete(digest);
  assert.equal(await store.readPieces(digest), undefined, 'the manifest goes with its blob');
});
