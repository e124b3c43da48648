// Fault: kill -9 of the leader with model retention set, two coordinator processes on a real
// etcd. The retention and the deployment that pins an old version live in the store, so the new
// leader goes on applying the same retention: a push through it removes what the policy says
// and keeps the version the deployment uses; once the deployment is gone and the alias moves,
// the old versions go, their blobs with them. Reported: kill to the first push the new leader
// took, and that push's time including its retention.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import type { Artifact } from '../../shared/proto.js';
import { compileDeploymentSpec } from '../../shared/workload-spec.js';
import { startCoordinatorPair } from '../helpers/coordinator-pair.js';
import { until } from '../helpers/eventually.js';
import { FakeAgent } from '../helpers/fake-agent.js';

const FAILOVER_WITHIN_MS = 20_000;
const numbers = (a: Artifact) => a.versions.map((v) => v.version);

test('after kill -9 of the leader, the new leader applies the same retention and still keeps the version a deployment uses', async (t) => {
  const pair = await startCoordinatorPair(t, { args: ['--node-ttl', '30s'] });
  const { client, tokens, dir } = pair;
  const push = async (c: CoordinatorClient, text: string) => {
    const body = Buffer.from(text);
    return (await c.push('model', { name: 'm', format: 'onnx', sizeBytes: body.length }, Readable.from([body]))).version;
  };
  for (const text of ['one', 'two', 'three']) await push(client, text);
  await client.setAlias('model', 'm', 'production', 3);
  const digests = new Map((await client.getArtifact('model', 'm')).versions.map((v) => [v.version, v.digest]));

  const { leader, follower } = await pair.roles();
  const blob = (version: number) => {
    const hex = digests.get(version)!.slice('sha256:'.length);
    return path.join(dir, follower.name, 'blobs', 'sha256', hex.slice(0, 2), hex);
  };
  // The leader copies each pushed blob to its peer before recording the version.
  for (const v of [1, 3]) assert.equal(existsSync(blob(v)), true, `${follower.name} holds version ${v}'s blob`);
  const agent = await FakeAgent.start(t, 'node-a', leader.grpc, tokens.join);
  await client.applyDeployment(compileDeploymentSpec({ name: 'web', model: 'm:1', image: 'mlfleet/runtime:0.1.0', port: 8080, replicas: 1, resources: { cpuMillis: 100, memoryBytes: 2 ** 26 } }));
  await until('the replica placed', () => agent.desired.length === 1, 20_000);
  assert.deepEqual(numbers(await client.setRetention('m', { keep: 1, keepAliased: false })), [1, 3], 'version 1 in use, 3 aliased and newest; 2 goes');

  leader.child.kill('SIGKILL');
  const killedAt = Date.now();
  agent.close();
  const deadline = killedAt + FAILOVER_WITHIN_MS;
  const survivor = await pair.survivor(follower, FAILOVER_WITHIN_MS);
  let pushedAt = 0;
  let pushMs = 0;
  for (;;) {
    const started = Date.now();
    try {
      assert.equal(await push(survivor, 'four'), 4);
      pushedAt = Date.now();
      pushMs = pushedAt - started;
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  t.diagnostic(`kill to the first push the new leader took: ${pushedAt - killedAt} ms; that push, retention included: ${pushMs} ms`);
  assert.deepEqual(numbers(await survivor.getArtifact('model', 'm')), [1, 3, 4], 'the deployment still pins 1, the alias 3');
  assert.deepEqual((await survivor.getArtifact('model', 'm')).retention, { keep: 1, keepAliased: false });

  await survivor.deleteDeployment('web');
  const moved = await survivor.setAlias('model', 'm', 'production', 4);
  assert.deepEqual(numbers(moved), [1, 3, 4], 'the alias move answers with the record it wrote');
  const after = await survivor.getArtifact('model', 'm');
  assert.deepEqual(numbers(after), [4]);
  for (const v of [1, 3]) assert.equal(existsSync(blob(v)), false, `the new leader deleted version ${v}'s blob`);
});
