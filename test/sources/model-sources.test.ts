// Model sources end to end against s3rver (a real S3-protocol server in its own process) and a
// real coordinator with scripted agents: a new object becomes a version and rolls the
// deployment following the alias; an object still being written waits until stable; a restart
// (or a lost record) imports nothing twice; a bucket that disappears is an error until it returns;
// bad specs change nothing.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import { DeleteBucketCommand, DeleteObjectCommand, CreateBucketCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { CoordinatorClient } from '../../shared/client.js';
import { keys } from '../../shared/keys.js';
import type { Deployment } from '../../shared/proto.js';
import type { SourceRecord } from '../../coordinator/sources/source-record.js';
import { startLeader } from '../helpers/coordinator.js';
import { eventually, until } from '../helpers/eventually.js';
import { startS3, S3RVER_CREDENTIALS, type TestS3 } from '../helpers/s3rver.js';
import { workloadCluster } from '../helpers/workload-cluster.js';
import { tempDir } from '../helpers/processes.js';
import { metricValue } from '../helpers/metrics.js';

const credentials = new Map([['s3rver', S3RVER_CREDENTIALS]]);
const sha = (body: string) => `sha256:${createHash('sha256').update(body).digest('hex')}`;

function sourceUrl(s3: TestS3, bucket: string, prefix = 'models/'): string {
  return `s3://${bucket}/${prefix}?endpoint=${encodeURIComponent(s3.endpoint)}&region=us-east-1`;
}

const spec = (s3: TestS3, bucket: string, extra: Record<string, unknown> = {}) => ({
  name: 'drop',
  model: 'm',
  url: sourceUrl(s3, bucket),
  alias: '',
  everyMs: 60_000,
  layout: 'files',
  credentials: 's3rver',
  ...extra,
});

async function put(s3: S3Client, bucket: string, key: string, body: string): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

/** Syncs until something is imported (an object first seen needs a second poll to be stable). */
async function syncUntilImported(client: CoordinatorClient, name: string, polls = 3) {
  for (let i = 0; i < polls; i++) {
    const answer = await client.syncSource(name);
    if (answer.imported.length > 0) return answer;
  }
  throw new Error(`nothing imported in ${polls} polls`);
}

function clientOf(t: TestContext, address: string, token: string): CoordinatorClient {
  const client = new CoordinatorClient([address], { token });
  t.after(() => client.close());
  return client;
}

test('a new object under the prefix becomes a version with its provenance, moves the alias, and the deployment following it rolls', async (t) => {
  const s3 = await startS3(t);
  const bucket = await s3.newBucket(t);
  const bucketClient = s3.client(t);
  const c = await workloadCluster(t, { sourceCredentials: credentials });
  await put(bucketClient, bucket, 'models/model-2026-12-01.onnx', 'version one');
  await c.client.createSource(spec(s3, bucket, { alias: 'production' }));
  const first = await syncUntilImported(c.client, 'drop');
  assert.deepEqual(first.imported.map((i) => [i.key, i.version, i.digest]), [['models/model-2026-12-01.onnx', 1, sha('version one')]]);
  let model = await c.client.getArtifact('model', 'm');
  assert.equal(model.aliases['production'], 1);
  const labels = model.versions[0]!.metadata!.labels;
  assert.equal(labels['source'], 'drop');
  assert.equal(labels['source.key'], 'models/model-2026-12-01.onnx');
  assert.match(labels['source.etag']!, /^"?[0-9a-f]+"?$/);
  assert.equal(model.versions[0]!.format, 'onnx');

  const a = await c.agent('node-a');
  await c.call('DeploymentService', 'ApplyDeployment', { spec: { name: 'web', model: 'm@production', image: 'mlfleet/runtime:0.1.0', replicas: 1, resources: { cpuMillis: 500, memoryBytes: 2 ** 28 } } });
  await until('one replica', () => a.desired.length === 1);
  a.reportAll('ready');
  await eventually('available', 5_000, async () => ((await c.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'web' })).status === 'available' ? true : undefined));
  const old = new Set(a.desired.map((x) => x.id));

  // The training pipeline drops the next model; a deeper folder's object is no version.
  await put(bucketClient, bucket, 'models/model-2026-12-02.onnx', 'version two');
  await put(bucketClient, bucket, 'models/old/ignored.onnx', 'not a version');
  const second = await syncUntilImported(c.client, 'drop');
  assert.deepEqual(second.imported.map((i) => [i.key, i.version]), [['models/model-2026-12-02.onnx', 2]]);
  model = await c.client.getArtifact('model', 'm');
  assert.equal(model.aliases['production'], 2);
  await until('a replica of version 2', () => a.desired.some((x) => !old.has(x.id) && a.run(x).model?.version === 2), 10_000);
  const source = await c.client.getSource('drop');
  assert.equal(source.status!.state, 'ok');
  assert.equal(source.status!.imported, 2);
  assert.equal(source.status!.lastImportedVersion, 2);
  const seen = await c.api.events('source/drop');
  assert.equal(seen.filter((e) => e.type === 'SourceImported').length, 2);
  assert.equal(await metricValue(c.httpAddress, 'mlfleet_coordinator_source_imported_bytes_total', 'source="drop"'), 'version one'.length + 'version two'.length);
});

test('an object still being written (its size and ETag changing between polls) is imported only once stable, with its final bytes', async (t) => {
  const s3 = await startS3(t);
  const bucket = await s3.newBucket(t);
  const bucketClient = s3.client(t);
  const { coordinator, admin } = await startLeader(t, { sourceCredentials: credentials });
  const client = clientOf(t, coordinator.address, admin);
  await client.createSource(spec(s3, bucket));
  await client.syncSource('drop');
  await put(bucketClient, bucket, 'models/big.onnx', 'part');
  assert.deepEqual((await client.syncSource('drop')).imported, []);
  await put(bucketClient, bucket, 'models/big.onnx', 'part and more');
  const changed = await client.syncSource('drop');
  assert.deepEqual(changed.imported, [], 'changed since the last poll: not stable');
  assert.deepEqual(changed.source!.status!.waiting, ['models/big.onnx']);
  const stable = await client.syncSource('drop');
  assert.deepEqual(stable.imported.map((i) => [i.key, i.digest]), [['models/big.onnx', sha('part and more')]]);
  assert.deepEqual((await client.syncSource('drop')).imported, []);
});

test('a restart imports nothing twice, even when the source record lost what it imported', async (t) => {
  const s3 = await startS3(t);
  const bucket = await s3.newBucket(t);
  const bucketClient = s3.client(t);
  const dir = tempDir(t);
  const first = await startLeader(t, { dataDir: dir, id: 'one', sourceCredentials: credentials });
  const client = clientOf(t, first.coordinator.address, first.admin);
  await put(bucketClient, bucket, 'models/a.onnx', 'model a');
  await client.createSource(spec(s3, bucket, { alias: 'production' }));
  await syncUntilImported(client, 'drop');
  await first.coordinator.close();

  const second = await startLeader(t, { dataDir: dir, id: 'two', sourceCredentials: credentials });
  // As if the leader had died between writing the version and the source's record.
  const kv = await second.coordinator.store.get(keys.source('default', 'drop'));
  const record = JSON.parse(kv!.value) as SourceRecord;
  assert.deepEqual(Object.keys(record.imported), ['models/a.onnx']);
  await second.coordinator.store.put(keys.source('default', 'drop'), JSON.stringify({ ...record, imported: {} }));
  const again = clientOf(t, second.coordinator.address, second.admin);
  for (let i = 0; i < 3; i++) assert.deepEqual((await again.syncSource('drop')).imported, []);
  assert.equal((await again.getArtifact('model', 'm')).versions.length, 1);
  await put(bucketClient, bucket, 'models/b.onnx', 'model b');
  assert.deepEqual((await syncUntilImported(again, 'drop')).imported.map((i) => [i.key, i.version]), [['models/b.onnx', 2]]);
});

test('an import refused midway (by the tenant storage quota) is the source error; what came before stays, and the rest follows once there is room', async (t) => {
  const s3 = await startS3(t);
  const bucket = await s3.newBucket(t);
  const bucketClient = s3.client(t);
  const { coordinator, admin } = await startLeader(t, { sourceCredentials: credentials });
  const client = clientOf(t, coordinator.address, admin);
  await client.setTenantQuota({ name: 'default', quota: { storageBytes: 100 } });
  await client.createSource(spec(s3, bucket));
  await client.syncSource('drop');
  await put(bucketClient, bucket, 'models/a.onnx', 'small');
  await new Promise((resolve) => setTimeout(resolve, 1_100)); // a later LastModified: imported after a
  await put(bucketClient, bucket, 'models/b.onnx', 'x'.repeat(200));
  await client.syncSource('drop');
  const refused = await client.syncSource('drop');
  assert.deepEqual(refused.imported.map((i) => i.key), ['models/a.onnx']);
  assert.equal(refused.source!.status!.state, 'error');
  assert.match(refused.source!.status!.message, /storage quota/);
  assert.equal(refused.source!.status!.imported, 1);
  await client.setTenantQuota({ name: 'default', quota: {}, clear: ['storage'] });
  const rest = await client.syncSource('drop');
  assert.deepEqual(rest.imported.map((i) => [i.key, i.version]), [['models/b.onnx', 2]]);
  assert.equal(rest.source!.status!.state, 'ok');
  assert.equal((await client.getArtifact('model', 'm')).versions.length, 2);
});

test('a bucket that disappears makes the source report an error and an event, and it recovers when the bucket returns', async (t) => {
  const s3 = await startS3(t);
  const bucket = await s3.newBucket(t);
  const bucketClient = s3.client(t);
  const c = await workloadCluster(t, { sourceCredentials: credentials });
  await put(bucketClient, bucket, 'models/a.onnx', 'model a');
  await c.client.createSource(spec(s3, bucket));
  await syncUntilImported(c.client, 'drop');
  await bucketClient.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'models/a.onnx' }));
  await bucketClient.send(new DeleteBucketCommand({ Bucket: bucket }));
  const failed = await c.client.syncSource('drop');
  assert.equal(failed.source!.status!.state, 'error');
  assert.match(failed.source!.status!.message, /NoSuchBucket/);
  assert.equal((await c.client.syncSource('drop')).source!.status!.state, 'error');
  await bucketClient.send(new CreateBucketCommand({ Bucket: bucket }));
  const back = await c.client.syncSource('drop');
  assert.equal(back.source!.status!.state, 'ok');
  assert.match(back.source!.status!.lastError, /NoSuchBucket/);
  const seen = await c.api.events('source/drop');
  assert.equal(seen.filter((e) => e.type === 'SourceError').length, 1, 'one event per failure, not per poll');
  assert.equal(seen.filter((e) => e.type === 'SourceRecovered').length, 1);
  // An endpoint nobody answers on is an error too, never a crash.
  await c.client.createSource(spec(s3, bucket, { name: 'nowhere', url: 's3://nobucket/p/?endpoint=http%3A%2F%2F127.0.0.1%3A9&region=us-east-1' }));
  const nowhere = await c.client.syncSource('nowhere');
  assert.equal(nowhere.source!.status!.state, 'error');
  assert.match(nowhere.source!.status!.message, /ECONNREFUSED|connect/i);
});

test('bad sources get a clear error and store nothing; consumers may list but not create', async (t) => {
  const s3 = await startS3(t);
  const bucket = await s3.newBucket(t);
  const { coordinator, admin } = await startLeader(t, { sourceCredentials: credentials });
  const client = clientOf(t, coordinator.address, admin);
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ url: 'http://bucket/x' }, /url: the source URL must start with s3:\/\//],
    [{ url: `s3://${bucket}/x?endpoint=ftp%3A%2F%2Fh` }, /must be http:\/\/ or https:\/\//],
    [{ url: `s3://${bucket}/x?accessKeyId=A` }, /credentials are named with --credentials/],
    [{ everyMs: 5_000 }, /everyMs: must be at least 10s/],
    [{ layout: 'tree' }, /layout: must be files or version-dirs/],
    [{ credentials: 'nope' }, /credentials "nope" are not known to the coordinator/],
    [{ name: 'Bad Name' }, /name: must be/],
    [{ model: '' }, /model: must be a model name/],
  ];
  for (const [extra, message] of bad) await assert.rejects(client.createSource(spec(s3, bucket, extra)), message, JSON.stringify(extra));
  assert.deepEqual((await client.listSources()).sources, []);
  await client.createSource(spec(s3, bucket));
  await assert.rejects(client.createSource(spec(s3, bucket)), /already exists/);
  await assert.rejects(client.getSource('missing'), /source "missing" not found/);
  const token = await client.createToken({ tenant: 'default', role: 'consumer' });
  const consumer = clientOf(t, coordinator.address, token.token);
  assert.equal((await consumer.listSources()).sources.length, 1);
  await assert.rejects(consumer.createSource(spec(s3, bucket, { name: 'mine' })), /PERMISSION_DENIED|not allowed|permission/i);
  await assert.rejects(consumer.syncSource('drop'), /PERMISSION_DENIED|not allowed|permission/i);
  await client.deleteSource('drop');
  assert.deepEqual((await client.listSources()).sources, []);
});
