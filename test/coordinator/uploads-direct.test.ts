// The leader's direct uploads to the S3 bucket (coordinator/delivery/uploads.ts, with a real
// S3DirectAccess on s3rver): the same caller and upload key find their upload again with fresh
// part URLs; other content under the key, expiry, the sweep and stepping down abort it in the
// bucket; HTTP PUTs cannot reach it; a coordinator commit of it is refused with the reason.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openBlobStore } from '../../coordinator/blobs/open-blob-store.js';
import type { S3BlobStore } from '../../coordinator/blobs/s3-blob-store.js';
import { S3DirectAccess, type DirectUpload } from '../../coordinator/blobs/s3-direct.js';
import { Uploads } from '../../coordinator/delivery/uploads.js';
import type { ValidPushHeader } from '../../coordinator/api/artifact-service.js';
import type { Principal } from '../../coordinator/auth/token-registry.js';
import { InvalidArgumentError, NotFoundError, ResourceExhaustedError } from '../../shared/errors.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { until } from '../helpers/eventually.js';
import { startS3 } from '../helpers/s3rver.js';

const MiB = 1024 * 1024;
const alice: Principal = { tokenId: 'tok-alice', role: 'developer', tenant: 'default', node: '' };
const bob: Principal = { tokenId: 'tok-bob', role: 'developer', tenant: 'default', node: '' };
const header = (name: string, sizeBytes = 20 * MiB) => ({ name, format: 'onnx', directory: false, sizeBytes, digest: '', metadata: null }) as unknown as ValidPushHeader;

/** A real S3DirectAccess that also records the uploads it was asked to abort. */
class RecordingDirect extends S3DirectAccess {
  readonly aborted: string[] = [];
  override async abortDirectUpload(upload: DirectUpload): Promise<void> {
    this.aborted.push(upload.uploadId);
    await super.abortDirectUpload(upload);
  }
}

test('direct uploads to the bucket', async (t) => {
  const s3 = await startS3(t);
  const bucket = await s3.newBucket(t);
  const store = (await openBlobStore(s3.spec(bucket), '/nonexistent')) as S3BlobStore;
  t.after(() => store.close());
  const direct = new RecordingDirect(store);
  const clock = new FakeClock();
  const uploads = new Uploads(store, clock, { maxPerCaller: 2 }, direct);
  t.after(() => uploads.close());

  const first = await uploads.beginDirect(alice, 'model', header('m'), 'key-1');
  assert.equal(first.ticket.partUrls.length, 3);
  assert.equal(first.ticket.partBytes, 8 * MiB);
  assert.equal(uploads.expiresAtMs(first.upload), clock.now() + 60 * 60_000);

  // Resumed: the same upload, with fresh URLs (s3rver cannot list parts: none done).
  clock.advance(1_000);
  const again = await uploads.beginDirect(alice, 'model', header('m'), 'key-1');
  assert.equal(again.upload.id, first.upload.id);
  assert.equal(again.upload.direct.uploadId, first.upload.direct.uploadId);
  assert.deepEqual(again.ticket.partsDone ?? [], []);
  assert.equal(uploads.expiresAtMs(again.upload), clock.now() + 60 * 60_000, 'begun again, it lives another hour');

  // Another caller's key of the same name is another upload; HTTP routes cannot see direct ones.
  const bobs = await uploads.beginDirect(bob, 'model', header('m'), 'key-1');
  assert.notEqual(bobs.upload.id, first.upload.id);
  assert.throws(() => uploads.get(first.upload.id, alice), NotFoundError);
  assert.throws(() => uploads.takeDirect(first.upload.id, bob, 3), NotFoundError);
  assert.throws(() => uploads.takeDirect(first.upload.id, alice, 2), /has 3 parts but 2 ETags were sent/);
  assert.equal(uploads.size, 2, 'a miscounted commit takes nothing');
  await assert.rejects(uploads.take(first.upload.id, alice), InvalidArgumentError);

  // Other content under the same key: the old upload is aborted in the bucket.
  const other = await uploads.beginDirect(alice, 'model', header('m', 6 * MiB), 'key-1');
  assert.notEqual(other.upload.id, first.upload.id);
  assert.equal(other.ticket.partUrls.length, 1);
  assert.deepEqual(direct.aborted, [first.upload.direct.uploadId]);

  // The per-caller bound counts direct uploads.
  await uploads.beginDirect(alice, 'model', header('n'), 'key-2');
  await assert.rejects(uploads.beginDirect(alice, 'model', header('o'), 'key-3'), ResourceExhaustedError);

  // Expiry: the leader's sweep aborts them, by its timer.
  uploads.startSweeping(60_000);
  clock.advance(60 * 60_000 + 60_000);
  await until('the timer to sweep the expired uploads and abort them in the bucket', () => uploads.size === 0 && direct.aborted.length === 4);
  assert.throws(() => uploads.takeDirect(other.upload.id, alice, 1), NotFoundError);

  // Stepping down aborts what is left.
  const last = await uploads.beginDirect(alice, 'model', header('p'), 'key-4');
  await uploads.close();
  assert.equal(direct.aborted.at(-1), last.upload.direct.uploadId);
  assert.equal(uploads.size, 0);
});
