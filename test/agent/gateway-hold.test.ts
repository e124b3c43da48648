// The gateway holding requests for an autoscaled deployment with no ready replica
// (ModelRoute.holds, no endpoints), over real HTTP against real gateways and a real replica on
// loopback: held requests are answered once a table gives the deployment a ready endpoint; the
// queue is bounded and timed; authentication, tenant isolation and size limits come first;
// a client that goes away leaves the queue; and the load reports say what is held.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { Gateway } from '../../agent/gateway/gateway.js';
import { modelRoute, type ModelRoute } from '../helpers/routes.js';
import type { GatewayLoad__Output as GatewayLoad } from '../../shared/gen/mlfleet/v1/GatewayLoad.js';
import { silentLogger } from '../../shared/log.js';
import { mintGatewayToken, tokenTable } from '../helpers/gateway-tokens.js';
import { until } from '../helpers/eventually.js';

async function replica(t: TestContext): Promise<{ address: string; hits: () => number }> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits += 1;
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ body }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, hits: () => hits };
}

/** The route of acme's autoscaled deployment "web" serving model "m": no endpoint (scaled to zero), or one. */
function route(address?: string, extra: Partial<ModelRoute> = {}): ModelRoute {
  return modelRoute('acme', 'm', address ? [{ id: 'a1', address }] : [], { deployment: 'web', holds: true, ...extra });
}

async function gateway(t: TestContext, options: { queueSize?: number; queueTimeoutMs?: number } = {}) {
  const users = { acme: mintGatewayToken('consumer', 'acme'), globex: mintGatewayToken('consumer', 'globex') };
  const loads: GatewayLoad[] = [];
  const g = await Gateway.start({ listen: '127.0.0.1:0', node: 'here', credential: () => undefined, log: silentLogger(), reportLoad: (l) => loads.push(l), ...options });
  t.after(() => g.close());
  g.setTokens(tokenTable(...Object.values(users)));
  g.setRoutes({ revision: 1, models: [route()] });
  return { g, users, loads };
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
  headers: http.IncomingHttpHeaders;
}

function infer(g: Gateway, token: string, init: { body?: string; headers?: Record<string, string>; path?: string; agent?: http.Agent } = {}): { answer: Promise<Answer>; request: http.ClientRequest } {
  const [host, port] = g.address.split(':') as [string, string];
  let request!: http.ClientRequest;
  const answer = new Promise<Answer>((resolve, reject) => {
    request = http.request(
      { host, port: Number(port), path: init.path ?? '/v2/models/m/infer', method: 'POST', agent: init.agent ?? false, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...init.headers } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text || '{}') as Record<string, unknown>, headers: res.headers }));
      },
    );
    request.on('error', reject);
    request.end(init.body ?? JSON.stringify({ inputs: [] }));
  });
  return { answer, request };
}

/** The latest figures reported for acme/web. */
function latest(loads: GatewayLoad[]) {
  return loads.flatMap((l) => l.deployments).filter((d) => d.tenant === 'acme' && d.deployment === 'web').at(-1);
}

test('a held request is answered once a table gives the deployment a ready replica; the leader is woken at once', async (t) => {
  const { g, users, loads } = await gateway(t);
  const r = await replica(t);
  const pending = infer(g, users.acme.token, { body: '{"inputs":[1]}' });
  await until('the request held and the leader woken', () => latest(loads)?.wake === true && latest(loads)?.waiting === 1);
  assert.equal(latest(loads)!.inFlight, 1);
  g.setRoutes({ revision: 2, models: [route(r.address)] });
  const answer = await pending.answer;
  assert.equal(answer.status, 200);
  assert.deepEqual(answer.body, { body: '{"inputs":[1]}' });
  assert.equal(r.hits(), 1);
});

test('a held request whose deployment is removed meanwhile is answered 404 at once, not at its timeout', async (t) => {
  const { g, users } = await gateway(t, { queueTimeoutMs: 60_000 });
  const pending = infer(g, users.acme.token);
  await until('held', () => heldCount(g) === 1);
  const asked = Date.now();
  g.setRoutes({ revision: 2, models: [] });
  const answer = await pending.answer;
  assert.equal(answer.status, 404);
  assert.match(String(answer.body.error), /acme\/web was removed/);
  assert.equal(answer.headers['retry-after'], undefined);
  assert.ok(Date.now() - asked < 5_000);
  assert.equal(heldCount(g), 0);
});

test('50 concurrent held requests all succeed once a replica is ready', async (t) => {
  const { g, users, loads } = await gateway(t);
  const r = await replica(t);
  const pending = Array.from({ length: 50 }, (_, i) => infer(g, users.acme.token, { body: `{"i":${i}}` }));
  await until('all 50 held', () => heldCount(g) === 50, 10_000);
  assert.equal(g.heldTotal(), 50, 'what /metrics reports as mlfleet_gateway_held_requests');
  assert.equal(latest(loads)?.wake, true);
  g.setRoutes({ revision: 2, models: [route(r.address)] });
  const answers = await Promise.all(pending.map((p) => p.answer));
  assert.deepEqual(answers.map((a) => a.status), Array(50).fill(200));
  assert.deepEqual(new Set(answers.map((a) => a.body.body)).size, 50);
  assert.equal(r.hits(), 50);
});

test('beyond the queue: 503 with Retry-After and a JSON error naming the deployment; nothing is held for it', async (t) => {
  const { g, users } = await gateway(t, { queueSize: 3 });
  const held = Array.from({ length: 3 }, () => infer(g, users.acme.token));
  await until('3 held', () => heldCount(g) === 3);
  const refused = await infer(g, users.acme.token).answer;
  assert.equal(refused.status, 503);
  assert.equal(refused.headers['retry-after'], '1');
  assert.equal(refused.body.error, 'deployment acme/web has no ready replica and 3 requests are already waiting; try again shortly');
  assert.equal(heldCount(g), 3);
  const r = await replica(t);
  g.setRoutes({ revision: 2, models: [route(r.address)] });
  assert.deepEqual((await Promise.all(held.map((p) => p.answer))).map((a) => a.status), [200, 200, 200]);
});

test('past the queue timeout: 503 with Retry-After and an error naming the deployment and the wait', async (t) => {
  const { g, users, loads } = await gateway(t, { queueTimeoutMs: 300 });
  const started = Date.now();
  const answer = await infer(g, users.acme.token).answer;
  assert.ok(Date.now() - started >= 290, 'held until the timeout');
  assert.equal(answer.status, 503);
  assert.equal(answer.headers['retry-after'], '1');
  assert.match(String(answer.body.error), /^deployment acme\/web has no ready replica after 0\.3 s of waiting/);
  assert.equal(heldCount(g), 0);
  await until('the load report says nothing is held or in flight', () => latest(loads)?.inFlight === 0 && latest(loads)?.waiting === 0, 5_000);
});

test("another tenant's token on a holding route is 404 as for a missing model, and is not held; a public one is held", async (t) => {
  const { g, users, loads } = await gateway(t);
  const other = await infer(g, users.globex.token).answer;
  const missing = await infer(g, users.globex.token, { path: '/v2/models/nothing/infer' }).answer;
  assert.equal(other.status, 404);
  assert.equal(other.body.error, String(missing.body.error).replace('"nothing"', '"m"'));
  assert.equal(heldCount(g), 0);
  assert.equal(loads.length, 0, 'no wake for a request that was not held');
  // Anonymous callers: 401 for a private holding route.
  const [host, port] = g.address.split(':') as [string, string];
  const anonymous = await new Promise<number>((resolve) => {
    http.request({ host, port: Number(port), path: '/v2/models/m/infer', method: 'POST' }, (res) => (res.resume(), resolve(res.statusCode ?? 0))).end('{}');
  });
  assert.equal(anonymous, 401);
  // Public: another tenant's request is held like the owner's.
  g.setRoutes({ revision: 2, models: [route(undefined, { public: true })] });
  const held = infer(g, users.globex.token);
  await until('held', () => heldCount(g) === 1);
  const r = await replica(t);
  const open = route(r.address, { public: true });
  open.endpoints[0]!.public = true;
  g.setRoutes({ revision: 3, models: [open] });
  assert.equal((await held.answer).status, 200);
});

test('an oversized body on a holding route is 413 at once, without being held', async (t) => {
  const { g, users, loads } = await gateway(t);
  g.setRoutes({ revision: 2, models: [route(undefined, { maxRequestBytes: 100 })] });
  const answer = await infer(g, users.acme.token, { body: JSON.stringify({ inputs: 'x'.repeat(200) }) }).answer;
  assert.equal(answer.status, 413);
  assert.match(String(answer.body.error), /over 100 bytes/);
  assert.equal(heldCount(g), 0);
  assert.equal(loads.length, 0);
});

test('ready and metadata of a deployment scaled to zero say it is not ready, without holding', async (t) => {
  const { g, users } = await gateway(t);
  const [host, port] = g.address.split(':') as [string, string];
  for (const path of ['/v2/models/m/ready', '/v2/models/m']) {
    const status = await new Promise<number>((resolve) => {
      http.get({ host, port: Number(port), path, headers: { authorization: `Bearer ${users.acme.token}` } }, (res) => (res.resume(), resolve(res.statusCode ?? 0)));
    });
    assert.equal(status, 503, path);
  }
  assert.equal(heldCount(g), 0);
});

test('a client that goes away while held leaves the queue and frees its slot', async (t) => {
  const { g, users, loads } = await gateway(t, { queueSize: 1 });
  const first = infer(g, users.acme.token);
  first.answer.catch(() => undefined);
  await until('held', () => heldCount(g) === 1);
  first.request.destroy();
  await until('the slot freed', () => heldCount(g) === 0);
  await until('the report says none in flight', () => latest(loads)?.inFlight === 0, 5_000);
  const r = await replica(t);
  const second = infer(g, users.acme.token);
  await until('the second held', () => heldCount(g) === 1);
  g.setRoutes({ revision: 2, models: [route(r.address)] });
  assert.equal((await second.answer).status, 200);
  assert.equal(r.hits(), 1, 'the request that went away was never sent on');
});

/** Requests acme/web holds now. */
function heldCount(g: Gateway): number {
  return g.held('acme', 'web');
}

test('the agent takes --gateway-queue-size and --gateway-queue-timeout (defaults 100 and 30 s) and refuses bad ones naming the flag', async () => {
  const { compileAgentOptions } = await import('../../agent/options.js');
  const base = ['--name', 'holding-host', '--driver', 'process'];
  const defaults = await compileAgentOptions(base);
  assert.equal(defaults.gatewayQueueSize, 100);
  assert.equal(defaults.gatewayQueueTimeoutMs, 30_000);
  const given = await compileAgentOptions([...base, '--gateway-queue-size', '5', '--gateway-queue-timeout', '2m']);
  assert.equal(given.gatewayQueueSize, 5);
  assert.equal(given.gatewayQueueTimeoutMs, 120_000);
  await assert.rejects(compileAgentOptions([...base, '--gateway-queue-size', 'lots']), /--gateway-queue-size: gateway queue size must be a whole number from 0 to 100000, not "lots"/);
  await assert.rejects(compileAgentOptions([...base, '--gateway-queue-size', '-1']), /--gateway-queue-size: /);
  await assert.rejects(compileAgentOptions([...base, '--gateway-queue-timeout', 'soon']), /--gateway-queue-timeout: gateway queue timeout "soon" is not a duration/);
  await assert.rejects(compileAgentOptions([...base, '--gateway-queue-timeout', '0']), /--gateway-queue-timeout: gateway queue timeout must be from 1ms to 10m/);
});
