// Fault: kill -9 of the leader while a gateway holds requests for a deployment scaled to zero.
// Two coordinator processes on a real etcd, one agent process on real Docker with the onnx
// stack. The leader is killed just after the requests arrive (the wake may or may not have
// reached it); the gateway keeps every held request, tells the new leader, and all are
// answered. Reported: requests to answers, kill to the first answer.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { compileDeploymentSpec } from '../../shared/workload-spec.js';
import { startCoordinatorPair } from '../helpers/coordinator-pair.js';
import { removeContainersAfter } from '../helpers/docker-fleet.js';
import { eventually } from '../helpers/eventually.js';
import { ensureOnnxImage } from '../helpers/images.js';
import { asleep, infer, linear } from '../helpers/inference.js';
import { startAgent } from '../helpers/processes.js';

const REQUESTS = 10;

test('a leader killed with SIGKILL during a wake-up loses no held request', async (t) => {
  await ensureOnnxImage();
  const pair = await startCoordinatorPair(t);
  const { client, tokens, coordinators, dir } = pair;
  const agent = await startAgent(t, 'host-a', coordinators.map((c) => c.grpc), dir, ['--driver', 'docker', '--join-token', tokens.join]);
  removeContainersAfter(t, 'host-a');
  const gateway = (await agent.waitForMessage('agent started')).gateway as string;
  const model = linear(5);
  await client.push('model', { name: 'linear', format: 'onnx', sizeBytes: model.length }, Readable.from([model]));
  await eventually('host-a is known', 20_000, async () => ((await client.listNodes()).nodes.some((n) => n.name === 'host-a') ? true : undefined), { retryErrors: true });
  await client.prefetchModel('host-a', 'linear:1');
  await client.applyDeployment(
    compileDeploymentSpec({ name: 'linear', model: 'linear', stack: 'onnx', minReplicas: 0, maxReplicas: 1, scaleToZeroAfterMs: 1_000, resources: { cpuMillis: 100, memoryBytes: 256 * 2 ** 20 } }),
  );
  await eventually('the first replica answers', 90_000, async () => ((await infer(gateway, 'linear', tokens.admin)).status === 200 ? true : undefined));
  await asleep(client, 'linear');

  const { leader } = await pair.roles();
  const held = Array.from({ length: REQUESTS }, () => infer(gateway, 'linear', tokens.admin));
  await new Promise((resolve) => setTimeout(resolve, 50));
  leader.child.kill('SIGKILL');
  const killedAt = Date.now();
  const answers = await Promise.all(held);
  assert.deepEqual(
    answers.map((a) => a.status),
    answers.map(() => 200),
    JSON.stringify(answers.filter((a) => a.status !== 200).map((a) => a.body)),
  );
  assert.ok(answers.every((a) => a.body.outputs?.[0]?.data?.[0] === 5));
  t.diagnostic(`kill -9 to the last answer: ${((Date.now() - killedAt) / 1000).toFixed(2)} s; slowest request ${Math.max(...answers.map((a) => a.ms))} ms`);
});
