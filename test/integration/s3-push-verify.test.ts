// A direct push to the S3 bucket is published only when the object the parts make is the content
// the push declared: the leader reads it back after completing the multipart upload. Here a part
// is PUT with other bytes than the file's (through the protocol itself, as a broken or hostile
// client would): CommitPush refuses it, says why, and nothing is stored under sha256/ or tmp/.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { request } from 'undici';
import { CoordinatorClient } from '../../shared/client.js';
import { InvalidArgumentError } from '../../shared/errors.js';
import type { PushHeader } from '../../shared/proto.js';
import { bootstrapTokens, startCoordinator, tempDir } from '../helpers/processes.js';
import { keysIn, startS3 } from '../helpers/s3rver.js';

const MiB = 1024 * 1024;
const SIZE = 12 * MiB + 77;

async function putPart(url: string, bytes: Buffer): Promise<string> {
  const answer = await request(url, { method: 'PUT', body: bytes, headers: { 'content-length': String(bytes.length) } });
  await answer.body.dump();
  assert.equal(answer.statusCode, 200);
  return String(answer.headers.etag);
}

test('a direct push whose parts are not the declared content is refused at CommitPush and stores nothing', async (t) => {
  const dir = tempDir(t);
  const s3 = await startS3(t);
  const bucket = await s3.newBucket(t);
  const coordinator = await startCoordinator(t, 'c1', ['--store', `sqlite:${dir}/c.db`, '--data-dir', `${dir}/c1`, '--blob-store', s3.spec(bucket)]);
  const tokens = await bootstrapTokens([`${dir}/c1`]);
  const client = new CoordinatorClient([coordinator.grpc], { token: tokens.admin });
  t.after(() => client.close());

  const content = randomBytes(SIZE);
  const digest = `sha256:${createHash('sha256').update(content).digest('hex')}`;
  const header: PushHeader = { name: 'tampered', format: 'onnx', directory: false, sizeBytes: SIZE, digest, metadata: null };
  const ticket = await client.beginPush('model', header, 'tamper-key');
  assert.equal(ticket.url, '', 'no coordinator URL: the bytes go to the bucket');
  assert.equal(ticket.partUrls.length, 2);
  const partBytes = Number(ticket.partBytes);
  assert.equal(partBytes, 8 * MiB);
  assert.ok(Number(ticket.expiresAtMs) > Date.now());

  // Part 0 as the file has it, part 1 with other bytes of the same length.
  const etags = [await putPart(ticket.partUrls[0]!, content.subarray(0, partBytes)), await putPart(ticket.partUrls[1]!, randomBytes(SIZE - partBytes))];
  await assert.rejects(client.commitPush(ticket.uploadId, {}, etags), (err: Error) => {
    assert.ok(err instanceof InvalidArgumentError, `${err.name}: ${err.message}`);
    assert.match(err.message, /digest/);
    return true;
  });
  const keys = await keysIn(s3.client(t), bucket);
  assert.deepEqual(keys.filter((k) => k.startsWith('sha256/') || k.startsWith('tmp/') || k.startsWith('pieces/')), [], keys.join(', '));
  assert.equal((await client.listArtifacts('model')).artifacts.length, 0, 'no version was made');
  // The refused upload is gone: committing it again finds nothing.
  await assert.rejects(client.commitPush(ticket.uploadId, {}, etags), /not found/);

  // The same push done honestly goes through, under the digest declared.
  const again = await client.beginPush('model', header, 'tamper-key');
  assert.notEqual(again.uploadId, ticket.uploadId);
  const good = [await putPart(again.partUrls[0]!, content.subarray(0, partBytes)), await putPart(again.partUrls[1]!, content.subarray(partBytes))];
  const version = await client.commitPush(again.uploadId, {}, good);
  assert.equal(version.digest, digest);
  const after = await keysIn(s3.client(t), bucket);
  assert.ok(after.includes(`sha256/${digest.slice(7)}`), after.join(', '));
});
