// Model retention through a real coordinator (README "Models and datasets"): `keep N` removes
// the older versions no alias points at and nothing uses, at once, on each later push, and on
// the sweep once a version stops being used; a deployment's version (and a rollout's old and
// new) is never removed; a blob goes only when no other version has the same bytes; bad input
// is refused and changes nothing; only developers and admins of the tenant may set it.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import type { Artifact, Deployment } from '../../shared/proto.js';
import { CoordinatorClient } from '../../shared/client.js';
import { eventually, until } from '../helpers/eventually.js';
import { callUnary, method } from '../helpers/raw-grpc.js';
import { workloadCluster, type WorkloadCluster } from '../helpers/workload-cluster.js';

async function push(c: WorkloadCluster, name: string, content: string): Promise<number> {
  const body = Buffer.from(content);
  return (await c.client.push('model', { name, format: 'onnx', sizeBytes: body.length }, Readable.from([body]))).version;
}

const numbers = (a: Artifact) => a.versions.map((v) => v.version);
const blobPath = (c: WorkloadCluster, digest: string) => {
  const hex = digest.slice('sha256:'.length);
  return path.join(c.dir, 'blobs', 'sha256', hex.slice(0, 2), hex);
};

function cluster(t: TestContext): Promise<WorkloadCluster> {
  return workloadCluster(t, { retentionSweepMs: 200 });
}

test('keep N removes the older unaliased versions at once and on each push; aliased ones count toward N unless --keep-aliased', async (t) => {
  const c = await cluster(t);
  for (let i = 1; i <= 6; i++) await push(c, 'm', `bytes of version ${i}`);
  await c.client.setAlias('model', 'm', 'production', 2);
  const digests = new Map((await c.client.getArtifact('model', 'm')).versions.map((v) => [v.version, v.digest]));

  const set = await c.client.setRetention('m', { keep: 2, keepAliased: false });
  assert.deepEqual(numbers(set), [2, 5, 6], 'the two newest, and the aliased version besides');
  assert.deepEqual(set.retention, { keep: 2, keepAliased: false });
  for (const v of [1, 3, 4]) assert.equal(existsSync(blobPath(c, digests.get(v)!)), false, `version ${v}'s blob is deleted`);
  for (const v of [2, 5, 6]) assert.equal(existsSync(blobPath(c, digests.get(v)!)), true, `version ${v}'s blob stays`);

  // A push past N removes the oldest unaliased version; the aliased one stays.
  assert.equal(await push(c, 'm', 'bytes of version 7'), 7);
  assert.deepEqual(numbers(await c.client.getArtifact('model', 'm')), [2, 6, 7]);

  // Moving the alias away from version 2 makes it removable: it goes at once.
  assert.deepEqual(numbers(await c.client.setAlias('model', 'm', 'production', 7)), [2, 6, 7], 'the alias move answers before retention runs');
  assert.deepEqual(numbers(await c.client.getArtifact('model', 'm')), [6, 7]);

  // With --keep-aliased the aliased version does not count: two unaliased besides it.
  assert.deepEqual(numbers(await c.client.setRetention('m', { keep: 2, keepAliased: true })), [6, 7]);
  assert.equal(await push(c, 'm', 'bytes of version 8'), 8);
  assert.deepEqual(numbers(await c.client.getArtifact('model', 'm')), [6, 7, 8], '8 and 6 are the two unaliased, 7 is aliased');
  assert.equal(await push(c, 'm', 'bytes of version 9'), 9);
  assert.deepEqual(numbers(await c.client.getArtifact('model', 'm')), [7, 8, 9]);

  // Each removal is an event naming the version and why.
  const removed = await eventually('removal events', 5_000, async () => {
    const events = (await c.api.events('model/m')).filter((e) => e.type === 'VersionRemoved');
    return events.length >= 6 ? events : undefined;
  });
  assert.ok(removed.some((e) => /^version 3 removed: retention keeps the 2 newest version\(s\); no alias points at it and nothing uses it$/.test(e.message)), removed.map((e) => e.message).join('\n'));

  // --off keeps every version from then on.
  const off = await c.client.setRetention('m', 'off');
  assert.equal(off.retention, null);
  await push(c, 'm', 'bytes of version 10');
  await push(c, 'm', 'bytes of version 11');
  assert.deepEqual(numbers(await c.client.getArtifact('model', 'm')), [7, 8, 9, 10, 11]);
});

test('a version a deployment uses is never removed, through a rollout, and goes on the sweep once nothing uses it', async (t) => {
  const c = await cluster(t);
  await push(c, 'm', 'one');
  await c.client.setAlias('model', 'm', 'production', 1);
  const a = await c.agent('node-a');
  await c.call('DeploymentService', 'ApplyDeployment', {
    spec: { name: 'web', model: 'm:1', image: 'mlfleet/runtime:0.1.0', replicas: 1, resources: { cpuMillis: 100, memoryBytes: 2 ** 26 } },
  });
  await until('placed', () => a.desired.length === 1);
  a.reportAll('ready');
  // The alias moves away: version 1 is used only by the deployment pinned to it.
  await push(c, 'm', 'two');
  await push(c, 'm', 'three');
  await c.client.setAlias('model', 'm', 'production', 3);
  assert.deepEqual(numbers(await c.client.setRetention('m', { keep: 1, keepAliased: false })), [1, 3], 'version 1 is in use; 2 goes');

  // Roll the deployment to version 3: while the old replica is live, version 1 stays.
  await c.call('DeploymentService', 'ApplyDeployment', {
    spec: { name: 'web', model: 'm:3', image: 'mlfleet/runtime:0.1.0', replicas: 1, resources: { cpuMillis: 100, memoryBytes: 2 ** 26 } },
  });
  await until('the new replica placed next to the old', () => a.desired.length === 2);
  await new Promise((resolve) => setTimeout(resolve, 600)); // three sweeps
  assert.deepEqual(numbers(await c.client.getArtifact('model', 'm')), [1, 3], 'the version rolled back from stays while its replica lives');

  // The new replica is ready, the old one stops: the sweep removes version 1.
  a.reportAll('ready', (x) => a.run(x).model?.version === 3);
  await until('old replica stopped', () => a.desired.length === 1);
  const after = await eventually('version 1 removed by the sweep', 5_000, async () => {
    const m = await c.client.getArtifact('model', 'm');
    return numbers(m).includes(1) ? undefined : m;
  });
  assert.deepEqual(numbers(after), [3]);
  assert.equal((await c.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'web' })).resolvedVersion, 3);
});

test('a blob goes only when no other version has the same bytes', async (t) => {
  const c = await cluster(t);
  await push(c, 'm', 'same bytes');
  await push(c, 'other', 'same bytes');
  await push(c, 'm', 'newer bytes');
  const old = (await c.client.getArtifact('model', 'm')).versions[0]!;
  assert.deepEqual(numbers(await c.client.setRetention('m', { keep: 1, keepAliased: false })), [2]);
  assert.equal(existsSync(blobPath(c, old.digest)), true, 'model "other" still has those bytes');
  assert.equal((await c.client.resolve('model', 'other')).digest, old.digest);

  // The same bytes twice in one model: removing the older version keeps the blob of the newer.
  await push(c, 'twice', 'repeated bytes');
  await push(c, 'twice', 'repeated bytes');
  const twice = await c.client.setRetention('twice', { keep: 1, keepAliased: false });
  assert.deepEqual(numbers(twice), [2]);
  assert.equal(existsSync(blobPath(c, twice.versions[0]!.digest)), true);
  const pulled = await c.client.download('model', { ref: 'twice' });
  const chunks: Buffer[] = [];
  for await (const chunk of pulled.chunks) chunks.push(chunk);
  assert.equal(Buffer.concat(chunks).toString(), 'repeated bytes');
});

test('bad retention input is refused and changes nothing; only developers and admins of the tenant set it', async (t) => {
  const c = await cluster(t);
  await push(c, 'm', 'one');
  await push(c, 'm', 'two');
  const call = (request: Record<string, unknown>) => callUnary(c.address, method('ModelService.SetRetention'), request, c.admin);
  for (const [request, pattern] of [
    [{ name: 'm', keep: 0 }, /keep: must be 1\.\.10000/],
    [{ name: 'm', keep: 10_001 }, /keep: must be 1\.\.10000/],
    [{ name: 'm', keep: 1, off: true }, /off: clears the retention/],
    [{ name: 'm', off: true, keepAliased: true }, /off: clears the retention/],
    [{ name: 'Bad Name!', keep: 1 }, /name/],
  ] as const) {
    const answer = await call(request);
    assert.equal(answer.answer, 'INVALID_ARGUMENT', `${JSON.stringify(request)}: ${answer.details}`);
    assert.match(answer.details, pattern);
  }
  await assert.rejects(c.client.setRetention('missing', { keep: 1, keepAliased: false }), /model "missing" not found/);
  const unchanged = await c.client.getArtifact('model', 'm');
  assert.deepEqual(numbers(unchanged), [1, 2]);
  assert.equal(unchanged.retention, null);

  const token = async (role: string) => (await c.client.createToken({ tenant: 'default', role, description: role, ttlMs: 0 })).token;
  const consumer = new CoordinatorClient([c.address], { token: await token('consumer') });
  const developer = new CoordinatorClient([c.address], { token: await token('developer') });
  t.after(() => {
    consumer.close();
    developer.close();
  });
  await assert.rejects(consumer.setRetention('m', { keep: 1, keepAliased: false }), /permission|not allowed|may not/i);
  assert.deepEqual(numbers(await c.client.getArtifact('model', 'm')), [1, 2]);
  assert.deepEqual(numbers(await developer.setRetention('m', { keep: 1, keepAliased: false })), [2]);
  assert.deepEqual((await developer.getArtifact('model', 'm')).retention, { keep: 1, keepAliased: false });
});

test('a deploy racing a removal of the same version either keeps it or fails cleanly, never deploys a removed version', async (t) => {
  const c = await cluster(t);
  let deployed = 0;
  let refused = 0;
  // The removal starts 0..15 ms after the deploy, so that some rounds land it between the
  // deploy's resolution of version 1 and its write of the deployment.
  const rounds = 16;
  for (let round = 1; round <= rounds; round++) {
    const model = `race-${round}`;
    await push(c, model, `${model} old`);
    await push(c, model, `${model} new`);
    const spec = { name: `web-${round}`, model: `${model}:1`, image: 'mlfleet/runtime:0.1.0', replicas: 1, resources: { cpuMillis: 10, memoryBytes: 2 ** 20 } };
    const [deploy, retention] = await Promise.allSettled([
      c.call<Deployment>('DeploymentService', 'ApplyDeployment', { spec }),
      new Promise((resolve) => setTimeout(resolve, round - 1)).then(() => c.client.setRetention(model, { keep: 1, keepAliased: false })),
    ]);
    assert.equal(retention.status, 'fulfilled');
    const left = numbers(await c.client.getArtifact('model', model));
    if (deploy.status === 'fulfilled') {
      deployed += 1;
      assert.equal(deploy.value.resolvedVersion, 1);
      assert.deepEqual(left, [1, 2], `round ${round}: the deployed version stays`);
    } else {
      refused += 1;
      assert.match((deploy.reason as Error).message, /has no version 1/);
      assert.deepEqual(left, [2]);
    }
  }
  assert.equal(deployed + refused, rounds);
  t.diagnostic(`${deployed} deploys won, ${refused} refused`);
});
