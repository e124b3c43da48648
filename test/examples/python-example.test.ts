// The Python example (scripts/examples/python/mlfleet_example.py, standard library only) run
// with Debian's python3 against a real cluster: a coordinator serving the REST API and a real
// agent process on the process driver, whose replica is the onnx model server run as a plain
// process. The script pushes the model over REST, deploys it, waits for it and infers through
// the agent's gateway; its output must be what the model computes.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CoordinatorClient } from '../../shared/client.js';
import { startLeader } from '../helpers/coordinator.js';
import { linear } from '../helpers/inference.js';
import { startAgent, tempDir } from '../helpers/processes.js';

const run = promisify(execFile);
const ROOT = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const EXAMPLE = path.join(ROOT, 'scripts', 'examples', 'python', 'mlfleet_example.py');
const ONNX_SERVER = path.join(ROOT, 'dist', 'agent', 'stacks', 'onnx', 'server.js');
const INPUT = JSON.stringify([{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 1, 1] }]);

test('the Python example pushes a model over REST, deploys it and infers through the gateway with python3', async (t) => {
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 200 } });
  const agent = await startAgent(t, 'python-host', [coordinator.address], dir, ['--join-token', join]);
  const gateway = (await agent.waitForMessage('agent started')).gateway as string;
  const model = path.join(dir, 'linear.onnx');
  await writeFile(model, linear(7));

  const args = [EXAMPLE, '--api', `http://${coordinator.httpAddress}`, '--gateway', gateway, '--model', 'linear', '--file', model, '--input', INPUT, '--timeout', '90'];
  // This host runs replicas with the process driver: the onnx server as a plain process.
  args.push('--image', 'unused-by-the-process-driver', '--command', JSON.stringify([process.execPath, ONNX_SERVER]), '--env', 'MLFLEET_MODEL_NAME=linear');
  const { stdout, stderr } = await run('python3', args, { env: { ...process.env, MLFLEET_TOKEN: admin }, timeout: 150_000 });
  assert.deepEqual(JSON.parse(stdout), { model: 'linear', version: '1', outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 1], data: [7] }] });
  assert.match(stderr, /^pushed linear:1 \(sha256:[0-9a-f]{64}\)\ndeployment linear ready: 1\/1 replicas\n$/);

  // What the script did is what the coordinator holds.
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => client.close());
  assert.equal((await client.getDeployment('linear')).resolvedVersion, 1);

  // A refusal from the API ends the script with exit 1 and the API's code and message.
  const refused = await run('python3', [EXAMPLE, '--api', `http://${coordinator.httpAddress}`, '--model', 'linear', '--file', model, '--input', INPUT], { env: { ...process.env, MLFLEET_TOKEN: 'not-a-token' } }).then(
    () => assert.fail('a bad token was accepted'),
    (err: { code: number; stderr: string }) => err,
  );
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^mlfleet_example: 401 UNAUTHENTICATED: /);
});
