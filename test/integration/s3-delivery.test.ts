// With the S3 blob store the coordinator carries no blob bytes (issue 15), through real
// processes and a real S3-protocol server: `models push` sends the parts straight to the
// bucket through presigned URLs (the leader verifies the object before the version exists),
// an agent pulls the pieces from the bucket through a presigned URL with no S3 credentials of
// its own, a second agent pulls them from the first, and `models pull` reads the bucket too.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import { eventually } from '../helpers/eventually.js';
import { metricValue } from '../helpers/metrics.js';
import { CLI, runScript } from '../helpers/mlfleetctl.js';
import { bootstrapTokens, startAgent, startCoordinator, tempDir } from '../helpers/processes.js';
import { keysIn, startS3 } from '../helpers/s3rver.js';

const MiB = 1024 * 1024;
const SIZE = 20 * MiB + 4321;

async function coordinatorBlobBytes(httpAddress: string): Promise<{ sent: number; received: number }> {
  return { sent: await metricValue(httpAddress, 'mlfleet_coordinator_blob_sent_bytes_total'), received: await metricValue(httpAddress, 'mlfleet_coordinator_upload_received_bytes_total') };
}

interface Delivery {
  fromPeersBytes: number;
  fromCoordinatorBytes: number;
  fromS3Bytes: number;
}

test('with the S3 blob store, pushes, agents and pulls use the bucket and the coordinator carries no blob bytes', async (t) => {
  const dir = tempDir(t);
  const s3 = await startS3(t);
  const bucket = await s3.newBucket(t);
  const coordinator = await startCoordinator(t, 'c1', ['--store', `sqlite:${dir}/c.db`, '--data-dir', `${dir}/c1`, '--blob-store', s3.spec(bucket)]);
  const tokens = await bootstrapTokens([`${dir}/c1`]);
  const ctl = (...args: string[]) => runScript(t, CLI, ['--coordinator', coordinator.grpc, ...args], { MLFLEET_TOKEN: tokens.admin });
  const client = new CoordinatorClient([coordinator.grpc], { token: tokens.admin });
  t.after(() => client.close());

  const model = path.join(dir, 'model.onnx');
  writeFileSync(model, randomBytes(SIZE));
  const expected = `sha256:${createHash('sha256').update(readFileSync(model)).digest('hex')}`;
  const pushed = await ctl('-o', 'json', 'models', 'push', 'bucketed', model);
  assert.equal(pushed.code, 0, pushed.stderr);
  assert.equal((JSON.parse(pushed.stdout) as { digest: string }).digest, expected);
  const hex = expected.slice('sha256:'.length);
  const keys = await keysIn(s3.client(t), bucket);
  assert.ok(keys.includes(`sha256/${hex}`) && keys.includes(`pieces/${hex}`), keys.join(', '));
  assert.deepEqual(keys.filter((k) => k.startsWith('tmp/')), [], 'no temporary object is left');
  assert.deepEqual(await coordinatorBlobBytes(coordinator.http), { sent: 0, received: 0 }, 'the push went to the bucket, not through the coordinator');

  // The agents start without any S3 credential in their environment.
  const env = { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '' };
  for (const name of ['s3-a', 's3-b']) {
    await startAgent(t, name, [coordinator.grpc], dir, ['--join-token-file', tokens.joinFile, '--cache-max-bytes', '1Gi'], env);
  }
  await eventually('two ready nodes', 15_000, async () => ((await client.listNodes({ status: 'ready' })).nodes.length === 2 ? true : undefined));
  const delivered = async (name: string, check: (d: Delivery) => boolean) => {
    assert.equal((await ctl('nodes', 'prefetch', name, 'bucketed')).code, 0);
    return eventually(`${name} to cache the model and report where it came from`, 30_000, async () => {
      const node = await client.getNode(name);
      const figures = node.delivery as Delivery | null;
      return node.cache.some((e) => e.digest === expected) && figures && check(figures) ? figures : undefined;
    });
  };
  const a = await delivered('s3-a', (d) => d.fromS3Bytes === SIZE);
  assert.deepEqual([a.fromCoordinatorBytes, a.fromPeersBytes], [0, 0]);
  const b = await delivered('s3-b', (d) => d.fromPeersBytes + d.fromS3Bytes === SIZE);
  assert.equal(b.fromCoordinatorBytes, 0);
  assert.ok(b.fromPeersBytes > 0, 'the second agent took pieces from the first');

  // The CLI's pull reads the bucket as well.
  const pulled = path.join(dir, 'pulled.onnx');
  const pull = await ctl('models', 'pull', 'bucketed', pulled);
  assert.equal(pull.code, 0, pull.stderr);
  assert.ok(readFileSync(pulled).equals(readFileSync(model)));
  assert.equal((await coordinatorBlobBytes(coordinator.http)).sent, 0, 'no blob byte went through the coordinator');
});
