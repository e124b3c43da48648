// Direct S3 reads and uploads through presigned URLs (coordinator/blobs/s3-direct.ts), against an
// s3rver in a child process, with real HTTP (undici) to the URLs and no credentials on that side.
// What s3rver 3.7 checks: a presigned URL's expiry (X-Amz-Date + X-Amz-Expires), and that its
// access key exists. What it does not: SigV4 signatures (a tampered signature is accepted),
// ListParts, and AbortMultipartUpload (both answer 405); the code below falls back where a
// server lacks them, and the cases say which branch s3rver takes.
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { openBlobStore } from '../../coordinator/blobs/open-blob-store.js';
import { S3BlobStore } from '../../coordinator/blobs/s3-blob-store.js';
import { S3DirectAccess, readBackManifest, type DirectUploadTicket } from '../../coordinator/blobs/s3-direct.js';
import { InvalidArgumentError, NotFoundError } from '../../shared/errors.js';
import { decodeManifest, pieceRange, StreamingPieceHasher, type PieceManifest } from '../../shared/pieces.js';
import { keysIn, startS3, type TestS3 } from '../helpers/s3rver.js';

const MiB = 1024 * 1024;
/** Three 8 MiB pieces, the last one short by a few bytes: parts, pieces and ranges all show. */
const SIZE = 2 * 8 * MiB + 3 * MiB + 5;

const digestOf = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const hexOf = (digest: string) => digest.slice('sha256:'.length);

/** Deterministic bytes that differ from block to block, so misplaced data shows. */
function pattern(size: number, seed = 1): Buffer {
  const bytes = Buffer.alloc(size);
  for (let i = 0; i + 4 <= size; i += 4) bytes.writeUInt32LE((Math.imul(i + 1, 2654435761) ^ seed) >>> 0, i);
  return bytes;
}

function manifestOf(bytes: Buffer, pieceBytes = 8 * MiB): PieceManifest {
  const hasher = new StreamingPieceHasher(pieceBytes);
  hasher.update(bytes);
  return hasher.finish();
}

interface Case {
  store: S3BlobStore;
  direct: S3DirectAccess;
  client: S3Client;
  bucket: string;
}

async function open(t: TestContext, s3: TestS3, options: ConstructorParameters<typeof S3DirectAccess>[1] = {}): Promise<Case> {
  const bucket = await s3.newBucket(t);
  const store = (await openBlobStore(s3.spec(bucket), '/nonexistent')) as S3BlobStore;
  t.after(() => store.close());
  return { store, direct: new S3DirectAccess(store, options), client: s3.client(t), bucket };
}

/** PUTs part `index` of `bytes` to its presigned URL, as a client with no S3 credentials does. */
async function putPart(ticket: DirectUploadTicket, bytes: Buffer, index: number): Promise<string> {
  const start = index * ticket.partBytes;
  const body = bytes.subarray(start, Math.min(start + ticket.partBytes, bytes.length));
  const response = await request(ticket.partUrls[index]!, { method: 'PUT', body, headers: { 'content-length': String(body.length) } });
  const text = await response.body.text();
  assert.equal(response.statusCode, 200, `part ${index}: ${text}`);
  const etag = response.headers.etag;
  assert.equal(typeof etag, 'string');
  return etag as string;
}

async function getRange(url: string, start: number, end: number): Promise<{ status: number; bytes: Buffer }> {
  const response = await request(url, { headers: { range: `bytes=${start}-${end - 1}` } });
  return { status: response.statusCode, bytes: Buffer.from(await response.body.arrayBuffer()) };
}

async function allKeys(client: S3Client, bucket: string): Promise<string[]> {
  return keysIn(client, bucket);
}

test('direct S3 access through presigned URLs', async (t) => {
  const s3 = await startS3(t);

  await t.test('pieces are read with ranged GETs of a presigned URL, with no credentials', async (t) => {
    const { store, direct } = await open(t, s3);
    const bytes = pattern(SIZE, 7);
    const writer = await store.create();
    await writer.write(bytes);
    const digest = await writer.commit({ digest: digestOf(bytes), sizeBytes: SIZE }).then((r) => r.digest);
    const before = Date.now();
    const { url, expiresAtMs } = await direct.presignBlobGet(digest);
    assert.ok(expiresAtMs >= before + 15 * 60 * 1000 - 1000 && expiresAtMs <= Date.now() + 15 * 60 * 1000, 'reads live 15 minutes by default');
    const query = new URL(url).searchParams;
    assert.equal(query.get('X-Amz-Expires'), '900');
    assert.match(query.get('X-Amz-Signature') ?? '', /^[0-9a-f]{64}$/, 'signed (SigV4), so it carries a signature, not the secret');
    for (const index of [2, 0, 1]) {
      const { start, end } = pieceRange(index, SIZE, 8 * MiB);
      const got = await getRange(url, start, end);
      assert.equal(got.status, 206);
      assert.ok(got.bytes.equals(bytes.subarray(start, end)), `piece ${index}`);
    }
    // A blob stored before pieces existed: its manifest is computed from the same ranged reads.
    assert.deepEqual(await readBackManifest(store, store.keyOf(digest), SIZE), manifestOf(bytes));
    await assert.rejects(direct.presignBlobGet(`sha256:${'0'.repeat(64)}`), NotFoundError);
    await assert.rejects(direct.presignBlobGet(digest, 0), InvalidArgumentError);
    await assert.rejects(direct.presignBlobGet('sha256:nope'), InvalidArgumentError);
  });

  await t.test('an expired URL is refused by the server', async (t) => {
    const { store, direct } = await open(t, s3);
    const writer = await store.create();
    const bytes = pattern(1000);
    await writer.write(bytes);
    const { digest } = await writer.commit({});
    const { url } = await direct.presignBlobGet(digest, 1);
    assert.equal((await getRange(url, 0, 10)).status, 206);
    await sleep(2_200); // X-Amz-Date has whole seconds
    const expired = await getRange(url, 0, 10);
    assert.equal(expired.status, 403);
    assert.match(expired.bytes.toString(), /expired/);
  });

  await t.test('a multipart upload through part URLs publishes a verified blob and its manifest', async (t) => {
    const { store, direct, client, bucket } = await open(t, s3);
    const bytes = pattern(SIZE, 3);
    const ticket = await direct.beginDirectUpload({ sizeBytes: SIZE });
    assert.equal(ticket.partBytes, 8 * MiB);
    assert.equal(ticket.partCount, 3);
    assert.equal(ticket.partUrls.length, 3);
    assert.ok(ticket.key.startsWith('tmp/'));
    const etags = await Promise.all([0, 1, 2].map((i) => putPart(ticket, bytes, i)));
    assert.deepEqual(await allKeys(client, bucket), [], 'nothing is an object before the upload completes');
    const blob = await direct.completeDirectUpload(ticket, etags, { digest: digestOf(bytes), sizeBytes: SIZE });
    assert.equal(blob.digest, digestOf(bytes));
    assert.equal(blob.sizeBytes, SIZE);
    assert.deepEqual(blob.manifest, manifestOf(bytes));
    assert.deepEqual(decodeManifest((await store.readPieces(blob.digest))!), manifestOf(bytes));
    assert.deepEqual(await allKeys(client, bucket), [`pieces/${hexOf(blob.digest)}`, `sha256/${hexOf(blob.digest)}`]);
    const reader = await store.read(blob.digest);
    const chunks: Buffer[] = [];
    for await (const chunk of reader) chunks.push(chunk as Buffer);
    assert.ok(Buffer.concat(chunks).equals(bytes));

    // The same bytes again, with no declared digest: the digest is computed, the blob already there.
    const again = await direct.beginDirectUpload({ sizeBytes: SIZE });
    const etags2 = await Promise.all([0, 1, 2].map((i) => putPart(again, bytes, i)));
    assert.equal((await direct.completeDirectUpload(again, etags2, { sizeBytes: SIZE })).digest, blob.digest);
    assert.deepEqual(await allKeys(client, bucket), [`pieces/${hexOf(blob.digest)}`, `sha256/${hexOf(blob.digest)}`]);
  });

  await t.test('an empty blob and a one-part blob upload too', async (t) => {
    const { direct, client, bucket } = await open(t, s3);
    for (const size of [0, 1234]) {
      const bytes = pattern(size, 11);
      const ticket = await direct.beginDirectUpload({ sizeBytes: size });
      assert.equal(ticket.partCount, 1);
      const etag = await putPart(ticket, bytes, 0);
      const blob = await direct.completeDirectUpload(ticket, [etag], { digest: digestOf(bytes), sizeBytes: size });
      assert.deepEqual(blob.manifest, manifestOf(bytes));
    }
    assert.equal((await allKeys(client, bucket)).filter((k) => k.startsWith('tmp/')).length, 0);
  });

  await t.test('bytes that do not match the declared digest or size publish nothing', async (t) => {
    const { store, direct, client, bucket } = await open(t, s3);
    const declared = pattern(SIZE, 1);
    const sent = Buffer.from(declared);
    sent[8 * MiB + 17] = sent[8 * MiB + 17]! ^ 0xff; // one byte of the second piece
    const ticket = await direct.beginDirectUpload({ sizeBytes: SIZE });
    const etags = await Promise.all([0, 1, 2].map((i) => putPart(ticket, sent, i)));
    await assert.rejects(direct.completeDirectUpload(ticket, etags, { digest: digestOf(declared), sizeBytes: SIZE }), (err: Error) => {
      assert.ok(err instanceof InvalidArgumentError);
      assert.match(err.message, /digest is sha256:[0-9a-f]{64} but the push declared/);
      return true;
    });
    assert.deepEqual(await allKeys(client, bucket), [], 'nothing under sha256/ or pieces/, and tmp/ deleted');
    assert.equal(await store.stat(digestOf(sent)), undefined);

    // Parts that hold fewer bytes than the upload was begun for.
    const short = await direct.beginDirectUpload({ sizeBytes: SIZE });
    const shortEtags = await Promise.all([0, 1].map((i) => putPart(short, declared, i)));
    const last = await request(short.partUrls[2]!, { method: 'PUT', body: Buffer.from('x') });
    await last.body.dump();
    shortEtags.push(last.headers.etag as string);
    await assert.rejects(direct.completeDirectUpload(short, shortEtags, { sizeBytes: SIZE }), /hold 16777217 bytes but the push declared/);
    assert.deepEqual(await allKeys(client, bucket), []);
  });

  await t.test('bad requests are refused and change nothing', async (t) => {
    const { direct, client, bucket } = await open(t, s3);
    await assert.rejects(direct.beginDirectUpload({ sizeBytes: -1 }), InvalidArgumentError);
    await assert.rejects(direct.beginDirectUpload({ sizeBytes: 1.5 }), InvalidArgumentError);
    await assert.rejects(direct.beginDirectUpload({ sizeBytes: 10, partBytes: MiB }), /at least 5Mi/);
    await assert.rejects(direct.beginDirectUpload({ sizeBytes: 6 * 1024 ** 4 }), /larger than S3's largest object/);
    await assert.rejects(direct.beginDirectUpload({ sizeBytes: 20_000 * 5 * MiB, partBytes: 5 * MiB }), /at most 10000/);
    const ticket = await direct.beginDirectUpload({ sizeBytes: SIZE });
    await assert.rejects(direct.completeDirectUpload(ticket, ['a'], { sizeBytes: SIZE }), /3 parts but 1 ETags/);
    await assert.rejects(direct.completeDirectUpload(ticket, ['a', 'b', 'c'], { digest: 'md5:x', sizeBytes: SIZE }), /is not a digest/);
    assert.throws(() => new S3DirectAccess(direct.store, { partUrlSeconds: 8 * 24 * 3600 }), /a week/);
    assert.deepEqual(await allKeys(client, bucket), []);
  });

  // On S3 and MinIO the abort drops the parts; s3rver answers 405 and keeps them in its own
  // directory, so what this can check here is that nothing became an object and that the abort,
  // best effort, does not fail the caller twice over.
  await t.test('an aborted upload leaves no object, and aborting is idempotent', async (t) => {
    const { direct, client, bucket } = await open(t, s3);
    const bytes = pattern(SIZE, 5);
    const ticket = await direct.beginDirectUpload({ sizeBytes: SIZE });
    await putPart(ticket, bytes, 0);
    await direct.abortDirectUpload(ticket);
    await direct.abortDirectUpload(ticket); // idempotent
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    assert.deepEqual(page.Contents ?? [], []);
  });

  await t.test('a partly uploaded multipart resumes with fresh part URLs', async (t) => {
    const { direct, client, bucket } = await open(t, s3, { partUrlSeconds: 120 });
    const size = 4 * 8 * MiB + 100;
    const bytes = pattern(size, 9);
    const first = await direct.beginDirectUpload({ sizeBytes: size });
    assert.equal(first.partCount, 5);
    const k = 2;
    const etags: string[] = [];
    for (let i = 0; i <= k; i += 1) etags.push(await putPart(first, bytes, i));
    // The client comes back later; the leader still holds the upload, and signs again.
    const resumed = await direct.presignParts(first);
    assert.equal(resumed.uploadId, first.uploadId);
    assert.equal(resumed.partUrls.length, 5);
    if (resumed.partsDone !== undefined) {
      // A server with ListParts (S3, MinIO) says which parts it holds.
      assert.deepEqual(resumed.partsDone.map((p) => p.index), [0, 1, 2]);
    }
    for (let i = k + 1; i < 5; i += 1) etags.push(await putPart(resumed, bytes, i));
    if (resumed.partsDone === undefined) {
      // s3rver: an ETag the client lost cannot be looked up, so the commit is refused, and the upload stays.
      await assert.rejects(direct.completeDirectUpload(resumed, ['', ...etags.slice(1)], { sizeBytes: size }), /part 0 has no ETag/);
    } else {
      // The bucket lists parts: a lost ETag is taken from it.
      etags[0] = '';
    }
    const blob = await direct.completeDirectUpload(resumed, etags, { digest: digestOf(bytes), sizeBytes: size });
    assert.deepEqual(blob.manifest, manifestOf(bytes));
    assert.deepEqual(await allKeys(client, bucket), [`pieces/${hexOf(blob.digest)}`, `sha256/${hexOf(blob.digest)}`]);
  });
});
