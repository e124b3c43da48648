// The gateway's gRPC inference service (inference.GRPCInferenceService) over real gRPC against a
// real gateway and replicas on loopback, for what the REST side decides and gRPC must follow:
// a deployment scaled to zero holds the call until a replica is ready, the canary split sends a
// call where a REST request would go, an admin names a tenant as in REST, the port speaks TLS
// with the gateway's certificate, and --gateway-grpc-listen's default and "off".
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Gateway, type GatewayOptions } from '../../agent/gateway/gateway.js';
import { silentLogger } from '../../shared/log.js';
import { loadTls } from '../../shared/tls.js';
import { mintGatewayToken, tokenTable } from '../helpers/gateway-tokens.js';
import { oipClient } from '../helpers/oip-grpc-client.js';
import { REPO_ROOT } from '../helpers/processes.js';
import { modelRoute, type EndpointInput } from '../helpers/routes.js';

/** An OIP replica whose one output "y" is [mark]: an answer says which replica gave it. */
async function replica(t: TestContext, mark: number): Promise<string> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ model_name: 'm', model_version: '1', outputs: [{ name: 'y', datatype: 'FP32', shape: [1], data: [mark] }] }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function gateway(t: TestContext, extra: Partial<GatewayOptions> = {}) {
  const user = mintGatewayToken('consumer', 'acme');
  const g = await Gateway.start({ listen: '127.0.0.1:0', grpcListen: '127.0.0.1:0', node: 'here', credential: () => undefined, log: silentLogger(), ...extra });
  t.after(() => g.close());
  g.setTokens(tokenTable(user));
  return { g, token: user.token };
}

function client(t: TestContext, address: string, token: string, credentials?: grpc.ChannelCredentials) {
  const call = oipClient(t, address, credentials);
  const infer = async () => {
    const { reply } = await call('ModelInfer', { model_name: 'm', inputs: [{ name: 'x', datatype: 'FP32', shape: [1], contents: { fp32_contents: [0] } }] }, { token, deadlineMs: 10_000 });
    return reply.outputs[0].contents.fp32_contents[0] as number;
  };
  return { infer, live: () => call('ServerLive', {}, { deadlineMs: 5_000 }) };
}

const route = (endpoints: EndpointInput[], fields = {}) => modelRoute('acme', 'm', endpoints, fields);

test('a gRPC call for a deployment scaled to zero is held until a routing table gives it a ready replica, then answered by it', async (t) => {
  const { g, token } = await gateway(t);
  g.setRoutes({ revision: 1, models: [route([], { holds: true })] });
  const { infer } = client(t, g.grpcAddress!, token);
  const pending = infer();
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(g.held('acme', 'm'), 1, 'the call is held, not refused');
  g.setRoutes({ revision: 2, models: [route([{ id: 'a1', address: await replica(t, 7) }], { holds: true })] });
  assert.equal(await pending, 7);
  assert.equal(g.held('acme', 'm'), 0);
});

test('the canary split sends a gRPC call to the canary or the stable replicas as it would a REST request', async (t) => {
  const [stable, canary] = [await replica(t, 1), await replica(t, 2)];
  const endpoints = [{ id: 's', address: stable }, { id: 'c', address: canary, canary: true, version: 2 }];
  for (const [draw, expected] of [[0.1, 2], [0.9, 1]] as const) {
    const { g, token } = await gateway(t, { random: () => draw });
    g.setRoutes({ revision: 1, models: [route(endpoints, { canaryPercent: 25 })] });
    const { infer } = client(t, g.grpcAddress!, token);
    for (let i = 0; i < 4; i++) assert.equal(await infer(), expected, `draw ${draw} with a 25% canary`);
  }
});

test('with the gateway\'s TLS certificate the gRPC port speaks TLS only', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-oip-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const made = spawnSync('bash', [path.join(REPO_ROOT, 'scripts', 'make-certs.sh'), dir, 'agent'], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  const tls = loadTls({ cert: path.join(dir, 'agent.pem'), key: path.join(dir, 'agent-key.pem'), ca: path.join(dir, 'ca.pem') }, 'client')!;
  const { g, token } = await gateway(t, { tls });
  g.setRoutes({ revision: 1, models: [route([{ id: 'a1', address: await replica(t, 5) }])] });
  const secure = client(t, g.grpcAddress!, token, grpc.credentials.createSsl(tls.ca!));
  assert.equal(await secure.infer(), 5);
  const plain = client(t, g.grpcAddress!, token);
  await assert.rejects(plain.live(), (err: grpc.ServiceError) => err.code === grpc.status.UNAVAILABLE);
});

test('--gateway-grpc-listen: by default the gateway\'s host at its port + 2 (port 0 stays 0), as given, or off', async () => {
  const { compileAgentOptions } = await import('../../agent/options.js');
  const base = ['--name', 'grpc-host', '--driver', 'process'];
  assert.equal((await compileAgentOptions(base)).gatewayGrpcListen, '127.0.0.1:7782');
  assert.equal((await compileAgentOptions([...base, '--gateway-listen', '0.0.0.0:9000'])).gatewayGrpcListen, '0.0.0.0:9002');
  assert.equal((await compileAgentOptions([...base, '--gateway-listen', '127.0.0.1:0'])).gatewayGrpcListen, '127.0.0.1:0');
  assert.equal((await compileAgentOptions([...base, '--gateway-grpc-listen', '127.0.0.1:8001'])).gatewayGrpcListen, '127.0.0.1:8001');
  assert.equal((await compileAgentOptions([...base, '--gateway-grpc-listen', 'off'])).gatewayGrpcListen, undefined);
  await assert.rejects(compileAgentOptions([...base, '--gateway-grpc-listen', 'nowhere']), /--gateway-grpc-listen/);
});

test('a held gRPC call whose deadline passes leaves the queue; a message past 64 MiB is RESOURCE_EXHAUSTED; the gateway goes on serving', async (t) => {
  const { g, token } = await gateway(t);
  g.setRoutes({ revision: 1, models: [route([], { holds: true }), modelRoute('acme', 'open', [{ id: 'o1', address: await replica(t, 9) }])] });
  const call = oipClient(t, g.grpcAddress!);
  const infer = async (model: string, raw: Buffer, shape: number[], deadlineMs: number) =>
    (await call('ModelInfer', { model_name: model, inputs: [{ name: 'x', datatype: 'UINT8', shape }], raw_input_contents: [raw] }, { token, deadlineMs })).reply;
  await assert.rejects(infer('m', Buffer.alloc(1), [1], 500), (err: grpc.ServiceError) => err.code === grpc.status.DEADLINE_EXCEEDED);
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(g.held('acme', 'm'), 0, 'the call that gave up is no longer held');
  const huge = Buffer.alloc(65 * 2 ** 20);
  await assert.rejects(infer('open', huge, [huge.length], 20_000), (err: grpc.ServiceError) => err.code === grpc.status.RESOURCE_EXHAUSTED);
  const answer = await infer('open', Buffer.from([1, 2]), [2], 5_000);
  assert.equal(answer.outputs[0].contents, null, 'raw in, raw out');
  assert.deepEqual(Array.from(new Float32Array(new Uint8Array(answer.raw_output_contents[0]).buffer)), [9]);
});

test('an admin names another tenant in mlfleet-tenant metadata, as in the REST header; for a consumer the name finds nothing of its own tenant', async (t) => {
  const [admin, consumer] = [mintGatewayToken('admin', 'acme'), mintGatewayToken('consumer', 'acme')];
  const { g } = await gateway(t);
  g.setTokens(tokenTable(admin, consumer));
  g.setRoutes({ revision: 1, models: [route([{ id: 'a1', address: await replica(t, 1) }]), modelRoute('globex', 'm', [{ id: 'g1', address: await replica(t, 2) }])] });
  const call = oipClient(t, g.grpcAddress!);
  const request = { model_name: 'm', inputs: [{ name: 'x', datatype: 'FP32', shape: [1], contents: { fp32_contents: [0] } }] };
  const answer = async (token: string, metadata: Record<string, string> = {}) => (await call('ModelInfer', request, { token, metadata })).reply.outputs[0].contents.fp32_contents[0];
  assert.equal(await answer(admin.token), 1);
  assert.equal(await answer(admin.token, { 'mlfleet-tenant': 'globex' }), 2);
  assert.equal(await answer(consumer.token), 1);
  await assert.rejects(answer(consumer.token, { 'mlfleet-tenant': 'globex' }), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
});
