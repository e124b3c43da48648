// The client SDK (`import { connect } from 'mlfleet'`) against a real cluster: a coordinator
// in this process and a real agent process on the process driver, whose replicas are the onnx
// model server run as a plain process. Models go up and come back byte for byte, a deployment
// is created, becomes ready, answers an inference through the agent's gateway and scales; a job
// runs, is waited for, and its logs read back.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect, NotFoundError, UnauthenticatedError, type Fleet } from '../../shared/sdk/index.js';
import { startLeader } from '../helpers/coordinator.js';
import { eventually } from '../helpers/eventually.js';
import { linear } from '../helpers/inference.js';
import { CLI, runScript } from '../helpers/mlfleetctl.js';
import { startAgent, tempDir } from '../helpers/processes.js';

const MiB = 2 ** 20;
/** The onnx stack's model server, run by the process driver as a plain process. */
const ONNX_SERVER = fileURLToPath(new URL('../../agent/stacks/onnx/server.js', import.meta.url));

async function fleetWithAgent(t: test.TestContext): Promise<{ fleet: Fleet; gateway: string; dir: string; address: string; admin: string }> {
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 200 } });
  const agent = await startAgent(t, 'sdk-host', [coordinator.address], dir, ['--join-token', join]);
  const gateway = (await agent.waitForMessage('agent started')).gateway as string;
  const fleet = await connect({ coordinator: coordinator.address, token: admin, gateway });
  t.after(() => fleet.close());
  return { fleet, gateway, dir, address: coordinator.address, admin };
}

test('models: put a file, bytes and a stream, with an alias; get by name, version and alias, list, and download byte for byte', async (t) => {
  const { fleet, dir } = await fleetWithAgent(t);
  const file = path.join(dir, 'linear.onnx');
  await writeFile(file, linear(3));
  const v1 = await fleet.models.put('linear', file, { metadata: { type: 'regression', accuracy: 0.9, labels: { team: 'ml' } }, alias: 'production' });
  assert.equal(v1.name, 'linear');
  assert.equal(v1.version, 1);
  assert.equal(v1.format, 'onnx');
  assert.equal(v1.metadata.type, 'regression');
  assert.equal(v1.metadata.accuracy, 0.9);
  const v2 = await fleet.models.put('linear', linear(5), { format: 'onnx' });
  assert.equal(v2.version, 2);

  const artifact = await fleet.models.get('linear');
  assert.deepEqual(artifact.versions.map((v) => v.version), [1, 2]);
  assert.deepEqual(artifact.aliases, { production: 1 });
  assert.equal((await fleet.models.get('linear', { alias: 'production' })).digest, v1.digest);
  assert.equal((await fleet.models.get('linear', { version: 2 })).digest, v2.digest);
  assert.deepEqual((await fleet.models.list()).map((a) => [a.name, a.latestVersion, a.versions, a.aliases]), [['linear', 2, 2, { production: 1 }]]);

  const pulled = await fleet.models.download('linear@production', path.join(dir, 'out.onnx'));
  assert.equal(pulled.path, path.join(dir, 'out.onnx'));
  assert.deepEqual(await readFile(pulled.path), await readFile(file));

  const streamed = await fleet.models.put('linear', Readable.from([linear(3)]), { sizeBytes: linear(3).length, format: 'onnx' });
  assert.equal(streamed.version, 3);
  assert.equal(streamed.digest, v1.digest, 'the same bytes, streamed');
  await assert.rejects(fleet.models.put('linear', Readable.from([linear(3)])), /needs options\.sizeBytes/);

  await fleet.datasets.put('reviews', Buffer.from('a,b\n1,2\n'), { format: 'csv' });
  assert.deepEqual((await fleet.datasets.list()).map((a) => a.name), ['reviews']);
  assert.deepEqual((await fleet.models.list()).map((a) => a.name), ['linear'], 'datasets and models are apart');

  await assert.rejects(fleet.models.get('absent'), NotFoundError);
  await assert.rejects(fleet.models.get('linear', { version: 9 }), NotFoundError);
  await assert.rejects(fleet.models.put('linear', path.join(dir, 'missing.onnx')), /no such file or directory/);
});

test('deployments: create on the process driver, wait until ready, infer through the gateway, scale and delete', async (t) => {
  const { fleet, dir, gateway, address, admin } = await fleetWithAgent(t);
  await writeFile(path.join(dir, 'linear.onnx'), linear(7));
  await fleet.models.put('linear', path.join(dir, 'linear.onnx'), { alias: 'production' });

  const created = await fleet.deployments.create({
    name: 'linear',
    model: 'linear@production',
    image: 'unused-by-the-process-driver',
    command: [process.execPath, ONNX_SERVER],
    env: { MLFLEET_MODEL_NAME: 'linear' },
    resources: { cpuMillis: 200, memoryBytes: 256 * MiB },
  });
  assert.equal(created.name, 'linear');
  assert.equal(created.replicas, 1);
  const ready = await fleet.deployments.wait('linear', { timeoutMs: 90_000 });
  assert.equal(ready.resolvedVersion, 1);
  assert.equal(ready.readyReplicas, 1);
  assert.deepEqual((await fleet.deployments.list()).map((d) => d.name), ['linear']);

  const input = [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 1, 1] }];
  // The gateway learns the route from the coordinator shortly after the replica is ready.
  const answer = await eventually('the gateway routes to the replica', 20_000, async () => fleet.infer('linear', input).catch(() => undefined));
  assert.equal(answer.model_name, 'linear');
  assert.deepEqual(answer.outputs[0]!.data, [7]);
  const byAlias = await fleet.infer('linear@production', { inputs: input });
  assert.deepEqual(byAlias.outputs[0]!.data, [7]);
  await assert.rejects(fleet.infer('nothing-deployed', input), NotFoundError);

  // mlfleetctl infer runs on the same code: the same answer, and the gateway's refusal in its words.
  const body = path.join(dir, 'input.json');
  await writeFile(body, JSON.stringify({ inputs: input }));
  const ctl = (ref: string) => runScript(t, CLI, ['--coordinator', address, '-o', 'json', 'infer', ref, '--input', body, '--gateway', gateway], { MLFLEET_TOKEN: admin });
  const printed = await ctl('linear@production');
  assert.equal(printed.code, 0, printed.stderr);
  assert.deepEqual(JSON.parse(printed.stdout), byAlias);
  const missing = await ctl('nothing-deployed');
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /the gateway answered 404: /);

  const scaled = await fleet.deployments.scale('linear', 0);
  assert.equal(scaled.replicas, 0);
  await fleet.deployments.wait('linear', { timeoutMs: 60_000, until: (d) => d.allocations.length === 0 });
  await fleet.deployments.delete('linear');
  await assert.rejects(fleet.deployments.get('linear'), NotFoundError);
});

test('jobs: run on the process driver, wait for the end, read the logs; a failing job ends failed', async (t) => {
  const { fleet } = await fleetWithAgent(t);
  const script = "for (let i = 1; i <= 3; i++) console.log('epoch ' + i); console.log('done')";
  const job = await fleet.jobs.run({ name: 'train', image: 'unused', command: [process.execPath, '-e', script] });
  assert.equal(job.name, 'train');
  const ended = await fleet.jobs.wait('train', { pollMs: 200 });
  assert.equal(ended.status, 'succeeded');
  let text = '';
  for await (const chunk of fleet.jobs.logs('train')) text += chunk;
  assert.equal(text, 'epoch 1\nepoch 2\nepoch 3\ndone\n');
  assert.deepEqual((await fleet.jobs.list()).map((j) => j.name), ['train']);

  // Following: the chunks come while the job runs, and the loop ends when it does.
  await fleet.jobs.run({ name: 'slow', image: 'unused', command: [process.execPath, '-e', "console.log('start'); setTimeout(() => console.log('end'), 1500)"] });
  await eventually("slow's worker runs", 30_000, async () => ((await fleet.jobs.get('slow')).allocations[0]?.status === 'running' ? true : undefined));
  let followed = '';
  for await (const chunk of fleet.jobs.logs('slow', { follow: true })) followed += chunk;
  assert.equal(followed, 'start\nend\n');

  await fleet.jobs.run({ name: 'broken', image: 'unused', command: [process.execPath, '-e', 'process.exit(3)'] });
  assert.equal((await fleet.jobs.wait('broken', { pollMs: 200 })).status, 'failed');
  await assert.rejects(fleet.jobs.wait('absent'), NotFoundError);
});

test('connect refuses a wrong token before any operation, with the error class the coordinator means', async (t) => {
  const { coordinator } = await startLeader(t);
  await assert.rejects(connect({ coordinator: coordinator.address, token: 'not-a-token' }), UnauthenticatedError);
  await assert.rejects(connect({ coordinator: '' }), /no coordinator address given/);
});
