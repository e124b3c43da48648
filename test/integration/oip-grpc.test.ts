// The Open Inference Protocol v2 over gRPC on a real gateway (an agent process on real Docker)
// in front of real onnx replicas of two tenants, called by a plain gRPC client that loads the
// protocol's own proto: every RPC, typed and raw contents answering what REST answers, selection,
// tokens enforced, another tenant's model not found (as a missing one is), and bad requests
// refused with INVALID_ARGUMENT or RESOURCE_EXHAUSTED while the gateway goes on serving.
//   ta/linear: the example linear model (private, takes at most 2 KiB of JSON);  tb/secret: tb's.
import assert from 'node:assert/strict';
import http from 'node:http';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { encodeModel } from '../../agent/stacks/onnx/onnx-model.js';
import { linearModel } from '../../scripts/onnx/example-models.js';
import { CoordinatorClient } from '../../shared/client.js';
import { compileDeploymentSpec } from '../../shared/workload-spec.js';
import { startLeader } from '../helpers/coordinator.js';
import { removeContainersAfter } from '../helpers/docker-fleet.js';
import { eventually } from '../helpers/eventually.js';
import { ensureOnnxImage } from '../helpers/images.js';
import { linear } from '../helpers/inference.js';
import { oipClient } from '../helpers/oip-grpc-client.js';
import { startAgent, tempDir } from '../helpers/processes.js';

async function refusedWith(promise: Promise<unknown>, code: grpc.status, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (err: grpc.ServiceError) => {
    assert.equal(err.code, code, `${grpc.status[code]} expected, got ${grpc.status[err.code]}: ${err.details}`);
    assert.match(err.details, pattern);
    return true;
  });
}

function rest(gateway: string, method: 'GET' | 'POST', path: string, token: string, body?: unknown): Promise<{ status: number; body: any }> {
  const [host, port] = gateway.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), path, method, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text || '{}') }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

const f32 = (values: number[]) => Buffer.from(new Float32Array(values).buffer);
const fromF32 = (raw: Buffer) => Array.from(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)));

test('OIP over gRPC on a real gateway: every RPC, typed and raw contents as REST answers, tokens enforced, another tenant\'s model not found, bad requests refused', async (t) => {
  await ensureOnnxImage();
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 200 } });
  const root = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => root.close());
  for (const name of ['ta', 'tb']) await root.createTenant({ name, description: '' });
  const token = async (tenant: string, role: 'developer' | 'consumer') => (await root.createToken({ tenant, role, description: `${tenant}-${role}` })).token;
  const [taDeveloper, taConsumer, tbDeveloper, tbConsumer] = [await token('ta', 'developer'), await token('ta', 'consumer'), await token('tb', 'developer'), await token('tb', 'consumer')];
  const agent = await startAgent(t, 'host-a', [coordinator.address], dir, ['--driver', 'docker', '--join-token', join]);
  removeContainersAfter(t, 'host-a');
  const started = await agent.waitForMessage('agent started');
  const gateway = started.gateway as string;
  const grpcAddress = started.gatewayGrpc as string;
  assert.match(grpcAddress, /^127\.0\.0\.1:\d+$/, 'the agent says where gRPC inference listens');

  const metadata = { type: 'regression', inputFormat: 'tensor', outputFormat: 'tensor', accuracy: 0.9, labels: {}, sourceJob: '', sourceDatasets: [] };
  const deploy = async (developer: string, name: string, bytes: Buffer, maxRequestBytes?: number) => {
    const client = new CoordinatorClient([coordinator.address], { token: developer });
    t.after(() => client.close());
    await client.push('model', { name, format: 'onnx', sizeBytes: bytes.length, metadata }, Readable.from([bytes]));
    await client.applyDeployment(compileDeploymentSpec({ name, model: name, stack: 'onnx', replicas: 1, resources: { cpuMillis: 100, memoryBytes: 256 * 2 ** 20 }, maxRequestBytes }));
    await eventually(`${name} available`, 90_000, async () => (await client.getDeployment(name)).status === 'available' || undefined);
  };
  await Promise.all([deploy(taDeveloper, 'linear', Buffer.from(encodeModel(linearModel())), 2048), deploy(tbDeveloper, 'secret', linear(3))]);
  await eventually('routes reached the gateway', 20_000, async () => (await rest(gateway, 'POST', '/v2/models/linear/infer', taConsumer, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 1, 1] }] })).status === 200 || undefined);

  const oip = oipClient(t, grpcAddress);
  const call = (method: string, request: object, token?: string, metadata?: Record<string, string>) => oip(method, request, { token, metadata });
  const x = [1, 2, 3, 4, 5, 6];

  // Health and metadata.
  assert.deepEqual((await call('ServerLive', {})).reply, { live: true });
  assert.deepEqual((await call('ServerReady', {})).reply, { ready: true });
  const server = (await call('ServerMetadata', {}, taConsumer)).reply;
  assert.equal(server.name, 'mlfleet-gateway');
  await refusedWith(call('ServerMetadata', {}), grpc.status.UNAUTHENTICATED, /no token/);
  assert.deepEqual((await call('ModelReady', { name: 'linear' }, taConsumer)).reply, { ready: true });
  assert.deepEqual((await call('ModelReady', { name: 'linear', version: '1' }, taConsumer)).reply, { ready: true });
  const meta = (await call('ModelMetadata', { name: 'linear' }, taConsumer)).reply as { name: string; versions: string[]; inputs: Array<{ name: string; datatype: string; shape: string[] }> };
  const restMeta = await rest(gateway, 'GET', '/v2/models/linear', taConsumer);
  assert.equal(meta.name, restMeta.body.name);
  assert.deepEqual(meta.versions, restMeta.body.versions);
  assert.deepEqual(meta.inputs.map((i) => ({ ...i, shape: i.shape.map(Number) })), restMeta.body.inputs);

  // Inference, typed and raw, against what REST answers for the same tensor.
  const restInfer = await rest(gateway, 'POST', '/v2/models/linear/infer', taConsumer, { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 3], data: x }] });
  assert.equal(restInfer.status, 200);
  const expected = restInfer.body.outputs[0].data as number[];
  assert.deepEqual(expected, [0.5 - 2.5 + 6 + 0.75, 2 - 6.25 + 12 + 0.75], 'the replica computed y = x·W + b');
  const typed = (await call('ModelInfer', { model_name: 'linear', id: 'req-7', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 3], contents: { fp32_contents: x } }] }, taConsumer)).reply as any;
  assert.equal(typed.model_name, 'linear');
  assert.equal(typed.id, 'req-7');
  assert.equal(typed.outputs[0].name, 'y');
  assert.equal(typed.outputs[0].datatype, 'FP32');
  assert.deepEqual(typed.outputs[0].shape, ['2', '1']);
  assert.deepEqual(typed.outputs[0].contents.fp32_contents, expected);
  assert.deepEqual(typed.raw_output_contents, []);
  const raw = (await call('ModelInfer', { model_name: 'linear', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 3] }], raw_input_contents: [f32(x)] }, taConsumer)).reply as any;
  assert.equal(raw.outputs[0].contents, null, 'raw inputs: outputs raw, no typed contents');
  assert.deepEqual(fromF32(raw.raw_output_contents[0]), expected);
  const versioned = (await call('ModelInfer', { model_name: 'linear', model_version: '1', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 3], contents: { fp32_contents: x } }] }, taConsumer)).reply as any;
  assert.deepEqual(versioned.outputs[0].contents.fp32_contents, expected);

  // Selection: no model_name, the criteria as metadata; the choice comes back as metadata.
  const selected = await call('ModelInfer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], contents: { fp32_contents: [0, 0, 0] } }] }, tbConsumer, { 'mlfleet-type': 'regression' });
  assert.deepEqual(selected.metadata.get('mlfleet-selected'), ['tb/secret'], 'tb\'s selection stays in tb');
  assert.deepEqual((selected.reply as any).outputs[0].contents.fp32_contents, [3]);

  // Tokens, and tenant isolation: another tenant's model reads as missing.
  const infer = (name: string, tok?: string) => call('ModelInfer', { model_name: name, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], contents: { fp32_contents: [1, 1, 1] } }] }, tok);
  await refusedWith(infer('linear'), grpc.status.UNAUTHENTICATED, /token/);
  await refusedWith(infer('linear', `mlf_0123456789abcdef_${'x'.repeat(43)}`), grpc.status.UNAUTHENTICATED, /token/);
  await refusedWith(infer('secret', taConsumer), grpc.status.NOT_FOUND, /secret/);
  await refusedWith(infer('missing', taConsumer), grpc.status.NOT_FOUND, /missing/);
  await refusedWith(infer('linear', tbConsumer), grpc.status.NOT_FOUND, /linear/);
  await refusedWith(call('ModelReady', { name: 'secret' }, taConsumer), grpc.status.NOT_FOUND, /secret/);
  await refusedWith(call('ModelMetadata', { name: 'secret' }, taConsumer), grpc.status.NOT_FOUND, /secret/);
  assert.deepEqual(((await infer('secret', tbConsumer)).reply as any).outputs[0].contents.fp32_contents, [3]);

  // Bad requests: refused with a reason, nothing crashes.
  const bad = (inputs: object[], rawContents?: Buffer[]) => call('ModelInfer', { model_name: 'linear', inputs, raw_input_contents: rawContents ?? [] }, taConsumer);
  await refusedWith(bad([{ name: 'x', datatype: 'FP32', shape: [1, 3], contents: { fp32_contents: [1, 2] } }]), grpc.status.INVALID_ARGUMENT, /2 values in contents.fp32_contents, but its shape says 3/);
  await refusedWith(bad([{ name: 'x', datatype: 'FP32', shape: [1, 3] }], [f32([1, 2])]), grpc.status.INVALID_ARGUMENT, /raw contents are 8 bytes/);
  await refusedWith(bad([{ name: 'x', datatype: 'FLOAT', shape: [1, 3], contents: { fp32_contents: [1, 2, 3] } }]), grpc.status.INVALID_ARGUMENT, /not an Open Inference Protocol datatype/);
  await refusedWith(bad([{ name: 'x', datatype: 'INT32', shape: [1, 3], contents: { int_contents: [1, 2, 3] } }]), grpc.status.INVALID_ARGUMENT, /INT32/);
  // Over the deployment's 2 KiB (counted as the JSON the replica receives), and past any deployment's size.
  await refusedWith(bad([{ name: 'x', datatype: 'FP32', shape: [1, 600], contents: { fp32_contents: new Array(600).fill(1.25) } }]), grpc.status.RESOURCE_EXHAUSTED, /2048 bytes/);
  await refusedWith(bad([{ name: 'x', datatype: 'FP32', shape: [1_000_000, 1_000_000] }], [f32([1])]), grpc.status.RESOURCE_EXHAUSTED, /elements/);
  assert.deepEqual(((await infer('linear', taConsumer)).reply as any).outputs[0].contents.fp32_contents, [0.5 - 1.25 + 2 + 0.75], 'the gateway still serves');
});
