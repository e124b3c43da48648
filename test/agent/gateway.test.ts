// The agent's inference gateway against real HTTP replicas on loopback: local replicas first,
// then the least busy; a replica that cannot be reached is skipped for the next; versions and
// tenants select replicas; no replica → 503 with the protocol's error body; latency measured.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { Gateway } from '../../agent/gateway/gateway.js';
import type { ModelRoute__Output as ModelRoute } from '../../shared/gen/mlfleet/v1/ModelRoute.js';
import { silentLogger } from '../../shared/log.js';
import { freePort } from '../helpers/net.js';

interface Replica {
  address: string;
  hits: number;
}

/** A replica answering every request with its name (after `delayMs`). */
async function replica(t: TestContext, name: string, delayMs = 0): Promise<Replica> {
  const state = { address: '', hits: 0 };
  const server = http.createServer((req, res) => {
    state.hits += 1;
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () =>
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ replica: name, path: req.url, body }));
      }, delayMs),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  state.address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

async function gateway(t: TestContext): Promise<Gateway> {
  const g = await Gateway.start({ listen: '127.0.0.1:0', node: 'here', log: silentLogger() });
  t.after(() => g.close());
  return g;
}

function route(
  model: string,
  endpoints: Array<{ id: string; node: string; address: string; version?: number }>,
  tenant = 'acme',
  meta: Partial<Pick<ModelRoute, 'type' | 'inputFormat' | 'outputFormat' | 'accuracy' | 'latencyP50Ms'>> = {},
): ModelRoute {
  return {
    tenant,
    model,
    endpoints: endpoints.map((e) => ({ allocation: e.id, node: e.node, address: e.address, version: e.version ?? 1, deployment: model })),
    type: '',
    inputFormat: '',
    outputFormat: '',
    accuracy: 0,
    latencyP50Ms: 0,
    deployment: model,
    ...meta,
  };
}

function call(g: Gateway, path: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const [host, port] = g.address.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), path, method: init.method ?? (init.body ? 'POST' : 'GET'), headers: init.headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text || '{}') as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

const infer = (g: Gateway, path = '/v2/models/m/infer', headers: Record<string, string> = {}) =>
  call(g, path, { body: JSON.stringify({ inputs: [] }), headers: { 'content-type': 'application/json', ...headers } });

test('health: live at once, ready once a routing table has arrived', async (t) => {
  const g = await gateway(t);
  assert.equal((await call(g, '/v2/health/live')).status, 200);
  const notYet = await call(g, '/v2/health/ready');
  assert.equal(notYet.status, 503);
  assert.match(String(notYet.body.error), /no routing table yet/);
  g.setRoutes({ revision: 1, models: [] });
  assert.equal((await call(g, '/v2/health/ready')).status, 200);
});

test("a request goes to this host's replica first, and the body and path arrive intact", async (t) => {
  const g = await gateway(t);
  const remote = await replica(t, 'remote');
  const local = await replica(t, 'local');
  g.setRoutes({ revision: 1, models: [route('m', [{ id: 'r', node: 'there', address: remote.address }, { id: 'l', node: 'here', address: local.address }])] });
  for (let i = 0; i < 5; i++) {
    const answer = await infer(g);
    assert.equal(answer.status, 200);
    assert.equal(answer.body.replica, 'local');
    assert.equal(answer.body.path, '/v2/models/m/infer');
    assert.equal(answer.body.body, JSON.stringify({ inputs: [] }));
  }
  assert.equal(remote.hits, 0);
});

test('among remote replicas, the least busy gets the next request', async (t) => {
  const g = await gateway(t);
  const slow = await replica(t, 'slow', 300);
  const fast = await replica(t, 'fast');
  g.setRoutes({ revision: 1, models: [route('m', [{ id: 's', node: 'a', address: slow.address }, { id: 'f', node: 'b', address: fast.address }])] });
  // Ten requests at once: whichever gets the first, the others avoid the busy one.
  const answers = await Promise.all(Array.from({ length: 10 }, () => infer(g)));
  const bySlow = answers.filter((a) => a.body.replica === 'slow').length;
  assert.ok(bySlow <= 5, `the slow replica took ${bySlow} of 10`);
  assert.ok(answers.every((a) => a.status === 200));
});

test('a replica that cannot be reached is skipped for another; none reachable or none ready is 503', async (t) => {
  const g = await gateway(t);
  const dead = `127.0.0.1:${await freePort()}`;
  const alive = await replica(t, 'alive');
  g.setRoutes({ revision: 1, models: [route('m', [{ id: 'd', node: 'here', address: dead }, { id: 'a', node: 'there', address: alive.address }])] });
  for (let i = 0; i < 3; i++) {
    const answer = await infer(g);
    assert.equal(answer.status, 200);
    assert.equal(answer.body.replica, 'alive');
  }
  g.setRoutes({ revision: 2, models: [route('m', [{ id: 'd', node: 'here', address: dead }])] });
  const unreachable = await infer(g);
  assert.equal(unreachable.status, 503);
  assert.match(String(unreachable.body.error), /could be reached/);
  const unknown = await infer(g, '/v2/models/nope/infer');
  assert.equal(unknown.status, 503);
  assert.match(String(unknown.body.error), /no ready replica of model "nope"/);
  // An older table arriving late changes nothing.
  g.setRoutes({ revision: 1, models: [route('m', [{ id: 'a', node: 'there', address: alive.address }])] });
  assert.equal((await infer(g)).status, 503);
});

test('versioned paths reach only replicas of that version; a name several tenants serve needs the tenant header', async (t) => {
  const g = await gateway(t);
  const v1 = await replica(t, 'v1');
  const v2 = await replica(t, 'v2');
  const other = await replica(t, 'other-tenant');
  g.setRoutes({
    revision: 1,
    models: [
      route('m', [{ id: 'a', node: 'x', address: v1.address, version: 1 }, { id: 'b', node: 'y', address: v2.address, version: 2 }]),
      route('shared', [{ id: 'c', node: 'x', address: v1.address }], 'acme'),
      route('shared', [{ id: 'd', node: 'x', address: other.address }], 'globex'),
    ],
  });
  for (let i = 0; i < 4; i++) assert.equal((await infer(g, '/v2/models/m/versions/2/infer')).body.replica, 'v2');
  const missing = await infer(g, '/v2/models/m/versions/3/infer');
  assert.equal(missing.status, 503);
  const ambiguous = await infer(g, '/v2/models/shared/infer');
  assert.equal(ambiguous.status, 400);
  assert.match(String(ambiguous.body.error), /several tenants \(acme, globex\).*mlfleet-tenant/);
  assert.equal((await infer(g, '/v2/models/shared/infer', { 'mlfleet-tenant': 'globex' })).body.replica, 'other-tenant');
  // Metadata and readiness are routed like inference.
  assert.equal((await call(g, '/v2/models/m/versions/1/ready')).body.replica, 'v1');
  assert.equal((await call(g, '/v2/nothing')).status, 404);
});

test('latency is measured per model and replica, and handed over once', async (t) => {
  const g = await gateway(t);
  const r = await replica(t, 'r', 5);
  g.setRoutes({ revision: 1, models: [route('m', [{ id: 'r1', node: 'here', address: r.address }])] });
  for (let i = 0; i < 20; i++) await infer(g);
  const [sample, ...rest] = g.takeLatencies();
  assert.equal(rest.length, 0);
  assert.deepEqual([sample!.tenant, sample!.model, sample!.allocation, sample!.count, sample!.errors], ['acme', 'm', 'r1', 20, 0]);
  const [p50, p99] = [Number(sample!.p50Ms), Number(sample!.p99Ms)];
  assert.ok(p50 >= 5 && p50 < 200, `p50 ${p50}`);
  assert.ok(p99 >= p50);
  assert.deepEqual(g.takeLatencies(), [], 'nothing new since');
});

test('/v2/select/infer picks by criteria: hard ones never violated, then latency or accuracy as asked', async (t) => {
  const g = await gateway(t);
  const fast = await replica(t, 'fast');
  const accurate = await replica(t, 'accurate');
  const regressor = await replica(t, 'regressor');
  const text = { type: 'classification', inputFormat: 'text', outputFormat: 'tensor' };
  g.setRoutes({
    revision: 1,
    models: [
      route('small', [{ id: 'a', node: 'x', address: fast.address }], 'acme', { ...text, accuracy: 0.8, latencyP50Ms: 2 }),
      route('big', [{ id: 'b', node: 'x', address: accurate.address }], 'acme', { ...text, accuracy: 0.95, latencyP50Ms: 40 }),
      route('price', [{ id: 'c', node: 'x', address: regressor.address }], 'acme', { type: 'regression', inputFormat: 'tabular', outputFormat: 'tensor', accuracy: 0.99, latencyP50Ms: 1 }),
    ],
  });
  const headers = { 'mlfleet-type': 'classification', 'mlfleet-input-format': 'text' };
  const fastest = await infer(g, '/v2/select/infer', { ...headers, 'mlfleet-prefer': 'latency' });
  assert.equal(fastest.body.replica, 'fast');
  assert.equal(fastest.body.path, '/v2/models/small/infer', 'the replica is asked for the chosen model by name');
  assert.equal((await infer(g, '/v2/select/infer?type=classification&input-format=text&prefer=accuracy')).body.replica, 'accurate');
  // The regressor is fastest and most accurate, but never a classifier.
  for (const prefer of ['latency', 'accuracy']) assert.notEqual((await infer(g, '/v2/select/infer', { ...headers, 'mlfleet-prefer': prefer })).body.replica, 'regressor');
  const none = await infer(g, '/v2/select/infer', { 'mlfleet-type': 'detection' });
  assert.equal(none.status, 404);
  assert.match(String(none.body.error), /detection/);
  const vague = await infer(g, '/v2/select/infer');
  assert.equal(vague.status, 400);
  assert.equal((await infer(g, '/v2/select/infer', { ...headers, 'mlfleet-prefer': 'cheapest' })).status, 400);
});

test('answers pass through whole: small ones with their length, chunked and large ones streamed, statuses and headers kept', async (t) => {
  const big = Buffer.alloc(3 * 2 ** 20, 'x');
  const server = http.createServer((req, res) => {
    if (req.url!.includes('chunked')) {
      res.writeHead(201, { 'content-type': 'application/json', 'x-replica': 'one' });
      res.write('{"part": 1,');
      setTimeout(() => res.end('"rest": true}'), 20);
    } else if (req.url!.includes('big')) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': big.length });
      res.end(big);
    } else {
      const text = '{"error": "bad tensor"}';
      res.writeHead(400, { 'content-type': 'application/json', 'content-length': text.length });
      res.end(text);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const g = await gateway(t);
  g.setRoutes({ revision: 1, models: [route('m', [{ id: 'a', node: 'here', address: `127.0.0.1:${(server.address() as AddressInfo).port}` }])] });
  const [host, port] = g.address.split(':') as [string, string];
  const get = (path: string) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      http.get({ host, port: Number(port), path }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      }).on('error', reject);
    });
  const small = await get('/v2/models/m/ready?small');
  assert.equal(small.status, 400);
  assert.equal(small.headers['content-length'], String('{"error": "bad tensor"}'.length));
  assert.deepEqual(JSON.parse(small.body.toString()), { error: 'bad tensor' });
  const chunked = await get('/v2/models/m/ready?chunked');
  assert.equal(chunked.status, 201);
  assert.equal(chunked.headers['x-replica'], 'one');
  assert.deepEqual(JSON.parse(chunked.body.toString()), { part: 1, rest: true });
  const large = await get('/v2/models/m/ready?big');
  assert.equal(large.status, 200);
  assert.ok(large.body.equals(big), `a ${big.length}-byte answer arrives whole (${large.body.length} bytes)`);
});
