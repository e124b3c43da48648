// Serving end to end on real Docker: an ONNX model pushed, deployed on the onnx stack on one
// host, called with `mlfleetctl infer` through the gateway of another host, answering what
// onnxruntime-node computes directly; then the alias the deployment follows moves to a new
// version and the deployment rolls to it while a load loop through the gateway sees no error.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { CoordinatorClient } from '../../shared/client.js';
import type { Deployment } from '../../shared/proto.js';
import { encodeModel } from '../../agent/stacks/onnx/onnx-model.js';
import { linearModel } from '../../scripts/onnx/example-models.js';
import { startLeader } from '../helpers/coordinator.js';
import { removeContainersAfter } from '../helpers/docker-fleet.js';
import { eventually } from '../helpers/eventually.js';
import { ensureOnnxImage } from '../helpers/images.js';
import { CLI, runScript } from '../helpers/mlfleetctl.js';
import { startAgent, tempDir } from '../helpers/processes.js';
import { WorkloadApi } from '../helpers/workload-api.js';

const INPUT = { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 3], data: [1, 2, 3, 4, 5, 6] }] };

/** The example linear model with other weights (version 2 computes something else). */
function linear(w: number[], b: number): Uint8Array {
  const spec = linearModel();
  return encodeModel({
    ...spec,
    initializers: [
      { name: 'W', type: 'FLOAT', dims: [3, 1], data: w },
      { name: 'b', type: 'FLOAT', dims: [1], data: [b] },
    ],
  });
}

async function direct(model: Uint8Array): Promise<number[]> {
  const session = await ort.InferenceSession.create(model);
  const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from(INPUT.inputs[0]!.data), [2, 3]) });
  return Array.from(out.y!.data as Float32Array);
}

interface Answer {
  status: number;
  body: { outputs?: Array<{ data: number[] }>; model_version?: string; error?: string };
}

function post(address: string, path: string, body: unknown, token: string): Promise<Answer> {
  const [host, port] = address.split(':') as [string, string];
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), authorization: `Bearer ${token}` };
    const req = http.request({ host, port: Number(port), path, method: 'POST', headers }, (res) => {
      let answer = '';
      res.on('data', (c: Buffer) => (answer += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(answer || '{}') as never }));
    });
    req.on('error', reject);
    req.end(text);
  });
}

test('push, deploy on the onnx stack, infer through another host\'s gateway, and roll to a new version with no failed request', async (t) => {
  await ensureOnnxImage();
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 200 } });
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  const api = new WorkloadApi(coordinator.address, admin);
  t.after(() => {
    api.close();
    client.close();
  });
  await startAgent(t, 'serving-host', [coordinator.address], dir, ['--driver', 'docker', '--join-token', join, '--labels', 'role=serve']);
  removeContainersAfter(t, 'serving-host');
  const edge = await startAgent(t, 'edge-host', [coordinator.address], dir, ['--driver', 'process', '--join-token', join]);
  const gateway = (await edge.waitForMessage('agent started')).gateway as string;
  assert.ok(gateway, 'the agent logs its gateway address');

  const v1 = linear([0.5, -1.25, 2], 0.75);
  const v2 = linear([1, 1, 1], -3);
  const metadata = { type: 'regression', inputFormat: 'tensor', outputFormat: 'tensor', accuracy: 0.9, labels: {}, sourceJob: '', sourceDatasets: [] };
  await client.push('model', { name: 'linear', format: 'onnx', sizeBytes: v1.length, metadata }, Readable.from([Buffer.from(v1)]));
  await client.setAlias('model', 'linear', 'production', 1);
  await api.call('DeploymentService', 'ApplyDeployment', {
    spec: { name: 'linear', model: 'linear@production', stack: 'onnx', replicas: 2, constraints: { role: 'serve' }, resources: { cpuMillis: 200, memoryBytes: 256 * 2 ** 20 } },
  });
  await eventually('deployment available', 90_000, async () => {
    const d = await api.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'linear' });
    return d.status === 'available' ? d : undefined;
  });
  await eventually("the edge host's gateway routes to it", 20_000, async () => ((await post(gateway, '/v2/models/linear/infer', INPUT, admin)).status === 200 ? true : undefined));

  // mlfleetctl infer through the edge host's gateway gives what onnxruntime computes directly.
  const input = path.join(dir, 'input.json');
  writeFileSync(input, JSON.stringify(INPUT));
  const inferred = await runScript(t, CLI, ['--coordinator', coordinator.address, '-o', 'json', 'infer', 'linear@production', '--input', input, '--gateway', gateway], { MLFLEET_TOKEN: admin });
  assert.equal(inferred.code, 0, inferred.stderr);
  const answer = JSON.parse(inferred.stdout) as { outputs: Array<{ name: string; data: number[] }>; model_version: string };
  assert.equal(answer.model_version, '1');
  assert.deepEqual(answer.outputs[0]!.data, await direct(v1));

  // A load loop through the gateway while the alias moves and the deployment rolls.
  let stop = false;
  const seen = { ok: 0, failed: [] as string[], versions: new Set<string>() };
  const loop = (async () => {
    while (!stop) {
      const r: Answer = await post(gateway, '/v2/models/linear/infer', INPUT, admin).catch((err: Error) => ({ status: 0, body: { error: err.message } }));
      if (r.status === 200) {
        seen.ok += 1;
        seen.versions.add(String(r.body.model_version));
      } else seen.failed.push(`${r.status} ${r.body.error ?? ''}`);
    }
  })();
  await client.push('model', { name: 'linear', format: 'onnx', sizeBytes: v2.length, metadata }, Readable.from([Buffer.from(v2)]));
  await client.setAlias('model', 'linear', 'production', 2);
  await eventually('rolled to version 2', 120_000, async () => {
    const d = await api.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'linear' });
    return d.resolvedVersion === 2 && d.status === 'available' && d.allocations.every((a) => a.generation === d.generation) ? true : undefined;
  });
  await eventually('only version 2 answers', 20_000, async () => {
    const r = await post(gateway, '/v2/models/linear/infer', INPUT, admin);
    return r.body.model_version === '2' ? true : undefined;
  });
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  stop = true;
  await loop;
  assert.deepEqual(seen.failed, [], `failed requests during the roll (of ${seen.ok + seen.failed.length})`);
  assert.ok(seen.ok > 20, `the loop made ${seen.ok} requests`);
  assert.deepEqual([...seen.versions].sort(), ['1', '2']);
  const after = await post(gateway, '/v2/models/linear/versions/2/infer', INPUT, admin);
  assert.deepEqual(after.body.outputs![0]!.data, await direct(v2));
});
