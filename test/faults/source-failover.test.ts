// Faults of model sources. (1) kill -9 of the leader, two coordinator processes on a real etcd
// with --source-credentials: the new leader imports what is new and nothing the old one did.
// (2) A bucket that accepts connections and never answers holds only its own source: another
// source syncs at once meanwhile, and the slow one ends in an error at its request timeout.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { test } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import { startLeader } from '../helpers/coordinator.js';
import { startCoordinatorPair } from '../helpers/coordinator-pair.js';
import { tempDir } from '../helpers/processes.js';
import { startS3, S3RVER_CREDENTIALS } from '../helpers/s3rver.js';

const FAILOVER_WITHIN_MS = 20_000;

test('after kill -9 of the leader, the new leader imports the new object and nothing the old one imported', async (t) => {
  const s3 = await startS3(t);
  const bucket = await s3.newBucket(t);
  const s3c = s3.client(t);
  const dir = tempDir(t);
  const credentialsFile = path.join(dir, 'source-credentials.json');
  writeFileSync(credentialsFile, JSON.stringify({ lab: { accessKeyId: S3RVER_CREDENTIALS.accessKeyId, secretAccessKey: S3RVER_CREDENTIALS.secretAccessKey } }), { mode: 0o600 });
  const pair = await startCoordinatorPair(t, { dir, args: ['--source-credentials', credentialsFile], deadlineMs: 10_000 });
  const { client } = pair;
  const from = `s3://${bucket}/drop/?endpoint=${encodeURIComponent(s3.endpoint)}&region=us-east-1`;
  await client.createSource({ name: 'drop', model: 'm', url: from, alias: 'production', everyMs: 10_000, layout: 'files', credentials: 'lab' });
  await s3c.send(new PutObjectCommand({ Bucket: bucket, Key: 'drop/one.onnx', Body: 'one' }));
  const syncUntil = async (c: CoordinatorClient, count: number) => {
    for (let i = 0; i < 4 && (await c.getArtifact('model', 'm').catch(() => undefined))?.versions.length !== count; i++) await c.syncSource('drop');
  };
  await syncUntil(client, 1);
  assert.equal((await client.getArtifact('model', 'm')).versions.length, 1);

  const { leader, follower } = await pair.roles();
  await s3c.send(new PutObjectCommand({ Bucket: bucket, Key: 'drop/two.onnx', Body: 'two' }));
  leader.child.kill('SIGKILL');
  const survivor = await pair.survivor(follower, FAILOVER_WITHIN_MS, 5_000);
  for (let i = 0; i < 20; i++) {
    if ((await survivor.getArtifact('model', 'm').catch(() => undefined))?.versions.length === 2) break;
    await survivor.syncSource('drop').catch(() => new Promise((resolve) => setTimeout(resolve, 250)));
  }
  for (let i = 0; i < 2; i++) await survivor.syncSource('drop');
  const model = await survivor.getArtifact('model', 'm');
  assert.deepEqual(model.versions.map((v) => [v.version, v.metadata!.labels['source.key']]), [[1, 'drop/one.onnx'], [2, 'drop/two.onnx']]);
  assert.equal(model.aliases['production'], 2);
  assert.equal((await survivor.getSource('drop')).status!.state, 'ok');
});

test('a bucket that never answers holds only its own source, and ends in an error at the request timeout', async (t) => {
  const s3 = await startS3(t);
  const bucket = await s3.newBucket(t);
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => silent.close(() => resolve()));
  });
  const silentPort = (silent.address() as net.AddressInfo).port;
  const { coordinator, admin } = await startLeader(t, { sourceCredentials: new Map([['lab', S3RVER_CREDENTIALS]]), sources: { requestTimeoutMs: 2_000 } });
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => client.close());
  const base = { model: 'm', alias: '', everyMs: 10_000, layout: 'files', credentials: 'lab' };
  await client.createSource({ ...base, name: 'slow', url: `s3://silent/p/?endpoint=${encodeURIComponent(`http://127.0.0.1:${silentPort}`)}&region=us-east-1` });
  await client.createSource({ ...base, name: 'fast', model: 'n', url: `s3://${bucket}/p/?endpoint=${encodeURIComponent(s3.endpoint)}&region=us-east-1` });
  const slowSync = client.syncSource('slow');
  await s3.client(t).send(new PutObjectCommand({ Bucket: bucket, Key: 'p/x.onnx', Body: 'x' }));
  const started = Date.now();
  await client.syncSource('fast');
  const fast = await client.syncSource('fast');
  assert.equal(fast.imported.length, 1);
  assert.ok(Date.now() - started < 1_500, `the fast source synced in ${Date.now() - started} ms while the slow one hung`);
  const slow = await slowSync;
  assert.equal(slow.source!.status!.state, 'error');
  assert.match(slow.source!.status!.message, /abort|timeout/i);
});
