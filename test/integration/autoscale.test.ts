// Scale to zero and wake-up on real Docker with the onnx stack: an in-process leader, one agent
// process (docker driver) whose gateway holds requests for a deployment with no replica while
// the leader's autoscaler starts one. A deployment at zero answers a request without error, 50
// concurrent requests to a sleeping deployment all succeed, and a request past the queue bound
// gets 503 with Retry-After.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import { compileDeploymentSpec } from '../../shared/workload-spec.js';
import { startLeader } from '../helpers/coordinator.js';
import { removeContainersAfter } from '../helpers/docker-fleet.js';
import { eventually } from '../helpers/eventually.js';
import { ensureOnnxImage } from '../helpers/images.js';
import { asleep, infer, linear } from '../helpers/inference.js';
import { startAgent, tempDir } from '../helpers/processes.js';

async function cluster(t: TestContext, agentFlags: string[]) {
  await ensureOnnxImage();
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 200 } });
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => client.close());
  const agent = await startAgent(t, 'host-a', [coordinator.address], dir, ['--driver', 'docker', '--join-token', join, ...agentFlags]);
  removeContainersAfter(t, 'host-a');
  const gateway = (await agent.waitForMessage('agent started')).gateway as string;
  await client.push('model', { name: 'linear', format: 'onnx', sizeBytes: linear(7).length }, Readable.from([linear(7)]));
  await eventually('host-a joined', 20_000, async () => ((await client.listNodes()).nodes.some((n) => n.name === 'host-a') ? true : undefined));
  await client.prefetchModel('host-a', 'linear:1');
  return { client, gateway, admin };
}

test('a deployment scaled to zero wakes for requests held by the gateway: one, then 50 at once, all answered', async (t) => {
  const { client, gateway, admin } = await cluster(t, []);
  await client.applyDeployment(
    compileDeploymentSpec({ name: 'linear', model: 'linear', stack: 'onnx', minReplicas: 0, maxReplicas: 2, targetConcurrency: 50, scaleToZeroAfterMs: 1_000, resources: { cpuMillis: 100, memoryBytes: 256 * 2 ** 20 } }),
  );
  // It starts at one replica, answers, then goes to zero after a second of quiet.
  await eventually('the first replica answers', 90_000, async () => ((await infer(gateway, 'linear', admin)).status === 200 ? true : undefined));
  const sleeping = await asleep(client, 'linear');
  assert.equal(sleeping.autoscaler?.desiredReplicas, 0);
  assert.match(sleeping.autoscaler?.lastDecision ?? '', /1 → 0/);

  const one = await infer(gateway, 'linear', admin);
  assert.equal(one.status, 200, JSON.stringify(one.body));
  assert.equal(one.body.outputs?.[0]?.data?.[0], 7);
  t.diagnostic(`wake to first answer: ${one.ms} ms`);

  await asleep(client, 'linear');
  const many = await Promise.all(Array.from({ length: 50 }, () => infer(gateway, 'linear', admin)));
  assert.deepEqual(
    many.map((a) => a.status),
    many.map(() => 200),
    JSON.stringify(many.filter((a) => a.status !== 200).map((a) => a.body)),
  );
  t.diagnostic(`50 at once from zero: slowest ${Math.max(...many.map((a) => a.ms))} ms`);
});

test('a request beyond the queue of a sleeping deployment gets 503 with Retry-After and a JSON error', async (t) => {
  const { client, gateway, admin } = await cluster(t, ['--gateway-queue-size', '2']);
  await client.applyDeployment(
    compileDeploymentSpec({ name: 'linear', model: 'linear', stack: 'onnx', minReplicas: 0, maxReplicas: 1, scaleToZeroAfterMs: 1_000, resources: { cpuMillis: 100, memoryBytes: 256 * 2 ** 20 } }),
  );
  await eventually('the first replica answers', 90_000, async () => ((await infer(gateway, 'linear', admin)).status === 200 ? true : undefined));
  await asleep(client, 'linear');
  const answers = await Promise.all(Array.from({ length: 6 }, () => infer(gateway, 'linear', admin)));
  const refused = answers.filter((a) => a.status === 503);
  assert.equal(answers.filter((a) => a.status === 200).length, 2, 'the two the queue holds are answered');
  assert.equal(refused.length, 4);
  for (const a of refused) {
    assert.ok(Number(a.retryAfter) >= 1, `Retry-After: ${a.retryAfter}`);
    assert.match(a.body.error ?? '', /linear/);
  }
});
