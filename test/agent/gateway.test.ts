// The agent's inference gateway against real HTTP replicas on loopback, with a gateway per node
// (remote replicas are reached through their host's gateway): tokens checked from the table
// the leader sends, tenants kept apart, public deployments; local replicas first, then the least
// busy; a replica that cannot be reached is skipped for the next; latency measured.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { Gateway } from '../../agent/gateway/gateway.js';
import { modelRoute, type ModelRoute } from '../helpers/routes.js';
import { silentLogger } from '../../shared/log.js';
import { freePort } from '../helpers/net.js';
import { mintGatewayToken, tokenTable } from '../helpers/gateway-tokens.js';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import https from 'node:https';
import path from 'node:path';
import { loadTls, type TlsMaterial } from '../../shared/tls.js';
import { REPO_ROOT, tempDir } from '../helpers/processes.js';

interface Replica {
  address: string;
  hits: number;
  /** The headers of the last request it got. */
  headers: http.IncomingHttpHeaders;
}

/** A replica answering every request with its name (after `delayMs`). */
async function replica(t: TestContext, name: string, delayMs = 0): Promise<Replica> {
  const state: Replica = { address: '', hits: 0, headers: {} };
  const server = http.createServer((req, res) => {
    state.hits += 1;
    state.headers = req.headers;
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

/**
 * Gateways of several nodes ("here" first, whose gateway the tests call), sharing one token
 * table — the node credentials for the hop, an acme consumer, a globex consumer, an acme
 * admin — and one routing table, as the leader would send them.
 */
async function fleet(t: TestContext, nodes = ['here', 'there', 'a', 'b'], tls?: (node: string) => TlsMaterial) {
  const credentials = new Map(nodes.map((node) => [node, mintGatewayToken('node', '', { node })]));
  const users = {
    acme: mintGatewayToken('consumer', 'acme'),
    globex: mintGatewayToken('consumer', 'globex'),
    admin: mintGatewayToken('admin', 'acme'),
    developer: mintGatewayToken('developer', 'acme'),
  };
  const table = tokenTable(...credentials.values(), ...Object.values(users));
  const gateways = new Map<string, Gateway>();
  for (const node of nodes) {
    const g = await Gateway.start({ listen: '127.0.0.1:0', node, credential: () => credentials.get(node)!.token, tls: tls?.(node), log: silentLogger() });
    t.after(() => g.close());
    g.setTokens(table);
    gateways.set(node, g);
  }
  const here = gateways.get(nodes[0]!)!;
  return {
    g: here,
    gateways,
    users,
    credentials,
    /** Every gateway gets the table, each endpoint its node's gateway address. */
    setRoutes(revision: number, models: ModelRoute[]) {
      for (const m of models) for (const e of m.endpoints) e.gateway = gateways.get(e.node)?.address ?? '';
      for (const g of gateways.values()) g.setRoutes({ revision, models });
    },
    /** `token` null: none sent. */
    infer: (path = '/v2/models/m/infer', headers: Record<string, string> = {}, token: string | null = users.acme.token) =>
      infer(here, path, { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers }),
    get: (path: string, token: string | null = users.acme.token) => call(here, path, { headers: token ? { authorization: `Bearer ${token}` } : {} }),
  };
}

function route(
  model: string,
  endpoints: Array<{ id: string; node: string; address: string; version?: number; public?: boolean }>,
  tenant = 'acme',
  meta: Partial<Pick<ModelRoute, 'type' | 'inputFormat' | 'outputFormat' | 'accuracy' | 'latencyP50Ms'>> = {},
): ModelRoute {
  return modelRoute(tenant, model, endpoints, meta);
}

function call(g: Gateway, path: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: Record<string, unknown>; headers: http.IncomingHttpHeaders }> {
  const [host, port] = g.address.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), path, method: init.method ?? (init.body ? 'POST' : 'GET'), headers: init.headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text || '{}') as Record<string, unknown>, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

const infer = (g: Gateway, path = '/v2/models/m/infer', headers: Record<string, string> = {}) =>
  call(g, path, { body: JSON.stringify({ inputs: [] }), headers: { 'content-type': 'application/json', ...headers } });

test('health: live at once, ready once a routing table and the tokens have arrived; health needs no token', async (t) => {
  const g = await Gateway.start({ listen: '127.0.0.1:0', node: 'here', credential: () => undefined, log: silentLogger() });
  t.after(() => g.close());
  assert.equal((await call(g, '/v2/health/live')).status, 200);
  const notYet = await call(g, '/v2/health/ready');
  assert.equal(notYet.status, 503);
  assert.match(String(notYet.body.error), /no routing table or tokens yet/);
  g.setRoutes({ revision: 1, models: [] });
  assert.equal((await call(g, '/v2/health/ready')).status, 503, 'routes alone are not enough: it could not check a token');
  const consumer = mintGatewayToken('consumer', 'acme');
  // A table in two pieces is taken in only once complete.
  g.setTokens({ reset: true, complete: false, tokens: [], removed: [] });
  assert.equal((await call(g, '/v2/health/ready')).status, 503);
  assert.equal((await call(g, '/v2', { headers: { authorization: `Bearer ${consumer.token}` } })).status, 401);
  g.setTokens({ reset: false, complete: true, tokens: [consumer.entry], removed: [] });
  assert.equal((await call(g, '/v2/health/ready')).status, 200);
  assert.equal((await call(g, '/v2', { headers: { authorization: `Bearer ${consumer.token}` } })).status, 200);
});

test("a request goes to this host's replica first, and the body and path arrive intact, without the caller's token", async (t) => {
  const f = await fleet(t);
  const remote = await replica(t, 'remote');
  const local = await replica(t, 'local');
  f.setRoutes(1, [route('m', [{ id: 'r', node: 'there', address: remote.address }, { id: 'l', node: 'here', address: local.address }])]);
  for (let i = 0; i < 5; i++) {
    const answer = await f.infer();
    assert.equal(answer.status, 200);
    assert.equal(answer.body.replica, 'local');
    assert.equal(answer.body.path, '/v2/models/m/infer');
    assert.equal(answer.body.body, JSON.stringify({ inputs: [] }));
  }
  assert.equal(remote.hits, 0);
  assert.equal(local.headers.authorization, undefined, 'a replica never sees a token');
});

test("a remote replica is reached through its host's gateway with this node's credential, and sees no token", async (t) => {
  const f = await fleet(t);
  const remote = await replica(t, 'remote');
  f.setRoutes(1, [route('m', [{ id: 'r', node: 'there', address: remote.address }])]);
  const answer = await f.infer();
  assert.equal(answer.status, 200);
  assert.equal(answer.body.replica, 'remote');
  assert.equal(answer.body.path, '/v2/models/m/infer');
  assert.equal(remote.headers.authorization, undefined);
  assert.equal(remote.headers['mlfleet-replica'], undefined);
  // The hop is for gateways: a user token naming a replica, or a node credential without one, is refused.
  const there = f.gateways.get('there')!;
  const asUser = await infer(there, '/v2/models/m/infer', { authorization: `Bearer ${f.users.admin.token}`, 'mlfleet-replica': 'r' });
  assert.equal(asUser.status, 403);
  const asNode = await infer(there, '/v2/models/m/infer', { authorization: `Bearer ${f.credentials.get('here')!.token}` });
  assert.equal(asNode.status, 403);
  assert.match(String(asNode.body.error), /only pass requests between gateways/);
  // A hop for a replica that does not run on that host is answered as unreachable.
  const elsewhere = await infer(there, '/v2/models/m/infer', { authorization: `Bearer ${f.credentials.get('here')!.token}`, 'mlfleet-replica': 'not-here' });
  assert.equal(elsewhere.status, 503);
  assert.equal(remote.hits, 1);
});

test('among remote replicas, the least busy gets the next request', async (t) => {
  const f = await fleet(t);
  const slow = await replica(t, 'slow', 300);
  const fast = await replica(t, 'fast');
  f.setRoutes(1, [route('m', [{ id: 's', node: 'a', address: slow.address }, { id: 'f', node: 'b', address: fast.address }])]);
  // Ten requests at once: whichever gets the first, the others avoid the busy one.
  const answers = await Promise.all(Array.from({ length: 10 }, () => f.infer()));
  const bySlow = answers.filter((a) => a.body.replica === 'slow').length;
  assert.ok(bySlow <= 5, `the slow replica took ${bySlow} of 10`);
  assert.ok(answers.every((a) => a.status === 200));
});

test('a replica that cannot be reached is skipped for another, also behind a hop; none reachable is 503, none ready 404', async (t) => {
  const f = await fleet(t);
  const dead = `127.0.0.1:${await freePort()}`;
  const alive = await replica(t, 'alive');
  f.setRoutes(1, [route('m', [{ id: 'd', node: 'here', address: dead }, { id: 'd2', node: 'there', address: dead }, { id: 'a', node: 'a', address: alive.address }])]);
  for (let i = 0; i < 3; i++) {
    const answer = await f.infer();
    assert.equal(answer.status, 200);
    assert.equal(answer.body.replica, 'alive');
  }
  f.setRoutes(2, [route('m', [{ id: 'd', node: 'here', address: dead }])]);
  const unreachable = await f.infer();
  assert.equal(unreachable.status, 503);
  assert.match(String(unreachable.body.error), /could be reached/);
  const unknown = await f.infer('/v2/models/nope/infer');
  assert.equal(unknown.status, 404);
  assert.match(String(unknown.body.error), /model "nope" not found/);
  // An older table arriving late changes nothing.
  for (const g of f.gateways.values()) g.setRoutes({ revision: 1, models: [route('m', [{ id: 'a', node: 'a', address: alive.address }])] });
  assert.equal((await f.infer()).status, 503);
  // A new session (a new leader numbers its tables afresh): its first table counts whatever its revision.
  for (const g of f.gateways.values()) {
    g.newSession();
    g.setRoutes({ revision: 1, models: [route('m', [{ id: 'b', node: 'here', address: alive.address }])] });
  }
  assert.equal((await f.infer()).status, 200);
});

test('versioned paths reach only replicas of that version; each tenant reaches its own model of a shared name without a header', async (t) => {
  const f = await fleet(t);
  const v1 = await replica(t, 'v1');
  const v2 = await replica(t, 'v2');
  const other = await replica(t, 'other-tenant');
  f.setRoutes(1, [
    route('m', [{ id: 'a', node: 'here', address: v1.address, version: 1 }, { id: 'b', node: 'there', address: v2.address, version: 2 }]),
    route('shared', [{ id: 'c', node: 'here', address: v1.address }], 'acme'),
    route('shared', [{ id: 'd', node: 'there', address: other.address }], 'globex'),
  ]);
  for (let i = 0; i < 4; i++) assert.equal((await f.infer('/v2/models/m/versions/2/infer')).body.replica, 'v2');
  const missing = await f.infer('/v2/models/m/versions/3/infer');
  assert.equal(missing.status, 404);
  assert.equal((await f.infer('/v2/models/shared/infer')).body.replica, 'v1', "acme's consumer gets acme's model");
  assert.equal((await f.infer('/v2/models/shared/infer', {}, f.users.globex.token)).body.replica, 'other-tenant', "globex's gets globex's");
  // A consumer naming another tenant sees only what is public there: nothing here.
  assert.equal((await f.infer('/v2/models/shared/infer', { 'mlfleet-tenant': 'globex' })).status, 404);
  // An admin may name any tenant.
  assert.equal((await f.infer('/v2/models/shared/infer', { 'mlfleet-tenant': 'globex' }, f.users.admin.token)).body.replica, 'other-tenant');
  // Metadata and readiness are routed like inference.
  assert.equal((await f.get('/v2/models/m/versions/1/ready')).body.replica, 'v1');
  assert.equal((await f.get('/v2/nothing')).status, 404);
});

test("another tenant's model is 404 exactly like a missing one, on infer, metadata, ready and versions", async (t) => {
  const f = await fleet(t);
  const r = await replica(t, 'acme-only');
  f.setRoutes(1, [route('linear', [{ id: 'a', node: 'here', address: r.address }])]);
  for (const path of ['/v2/models/linear/infer', '/v2/models/linear', '/v2/models/linear/ready', '/v2/models/linear/versions/1/infer']) {
    const asOther = path.endsWith('infer') ? await f.infer(path, {}, f.users.globex.token) : await f.get(path, f.users.globex.token);
    const missingPath = path.replace('linear', 'absent');
    const missing = path.endsWith('infer') ? await f.infer(missingPath, {}, f.users.globex.token) : await f.get(missingPath, f.users.globex.token);
    assert.equal(asOther.status, 404, path);
    assert.equal(String(asOther.body.error), String(missing.body.error).replace('absent', 'linear'), `${path}: the same answer as a missing model`);
  }
  assert.equal(r.hits, 0);
});

test('no token, a bad token, an expired or revoked one is 401 with WWW-Authenticate; a node credential may not infer', async (t) => {
  const f = await fleet(t);
  const r = await replica(t, 'r');
  f.setRoutes(1, [route('m', [{ id: 'a', node: 'here', address: r.address }])]);
  for (const path of ['/v2', '/v2/models/m', '/v2/models/m/ready', '/v2/models/m/versions/1/infer', '/v2/select/infer?type=x']) {
    const none = path.includes('infer') ? await f.infer(path, {}, null) : await f.get(path, null);
    assert.equal(none.status, 401, path);
    assert.match(String(none.headers['www-authenticate']), /^Bearer/);
  }
  assert.equal((await f.infer('/v2/models/m/infer', {}, 'mlf_0123456789abcdef_' + 'x'.repeat(43))).status, 401);
  assert.equal((await f.infer('/v2/models/m/infer', { authorization: 'Basic eDp5' }, null)).status, 401);
  const expired = mintGatewayToken('consumer', 'acme', { expiresAtMs: Date.now() - 1 });
  const soon = mintGatewayToken('consumer', 'acme', { expiresAtMs: Date.now() + 300 });
  f.g.setTokens({ reset: false, complete: true, tokens: [expired.entry, soon.entry], removed: [] });
  assert.equal((await f.infer('/v2/models/m/infer', {}, expired.token)).status, 401);
  assert.equal((await f.infer('/v2/models/m/infer', {}, soon.token)).status, 200);
  await new Promise((resolve) => setTimeout(resolve, 350));
  assert.equal((await f.infer('/v2/models/m/infer', {}, soon.token)).status, 401, 'a remembered token still expires');
  // A revocation arrives as a change: the next request is refused.
  assert.equal((await f.infer()).status, 200);
  f.g.setTokens({ reset: false, complete: true, tokens: [], removed: [f.users.acme.entry.id] });
  const revoked = await f.infer();
  assert.equal(revoked.status, 401);
  const asNode = await f.infer('/v2/models/m/infer', {}, f.credentials.get('there')!.token);
  assert.equal(asNode.status, 403);
  assert.equal(r.hits, 2);
});

test('a public deployment takes anonymous inference and tokens of any tenant; its private replicas stay private', async (t) => {
  const f = await fleet(t);
  const open = await replica(t, 'public');
  const closed = await replica(t, 'private');
  f.setRoutes(1, [
    route('m', [{ id: 'p', node: 'there', address: open.address, public: true }, { id: 'q', node: 'here', address: closed.address, version: 2 }]),
    route('secret', [{ id: 's', node: 'here', address: closed.address }]),
  ]);
  for (let i = 0; i < 3; i++) {
    assert.equal((await f.infer('/v2/models/m/infer', {}, null)).body.replica, 'public', 'anonymous: the public replica only');
    assert.equal((await f.infer('/v2/models/m/infer', {}, f.users.globex.token)).body.replica, 'public', "another tenant's token: the same");
  }
  assert.equal((await f.infer('/v2/models/m/versions/2/infer', {}, null)).status, 404, 'the private version is not there for them');
  assert.equal((await f.infer('/v2/models/m/versions/2/infer')).body.replica, 'private', 'the tenant reaches both');
  assert.equal((await f.infer('/v2/models/secret/infer', {}, null)).status, 401, 'no token and no public model of that name: authenticate');
  assert.equal((await f.infer('/v2/models/secret/infer', {}, f.users.globex.token)).status, 404);
  assert.equal((await f.get('/v2', null)).status, 401);
});

test('latency is measured per model and replica, and handed over once', async (t) => {
  const f = await fleet(t);
  const r = await replica(t, 'r', 5);
  f.setRoutes(1, [route('m', [{ id: 'r1', node: 'here', address: r.address }])]);
  for (let i = 0; i < 20; i++) await f.infer();
  const [sample, ...rest] = f.g.takeLatencies();
  assert.equal(rest.length, 0);
  assert.deepEqual([sample!.tenant, sample!.model, sample!.allocation, sample!.count, sample!.errors], ['acme', 'm', 'r1', 20, 0]);
  const [p50, p99] = [Number(sample!.p50Ms), Number(sample!.p99Ms)];
  assert.ok(p50 >= 5 && p50 < 200, `p50 ${p50}`);
  assert.ok(p99 >= p50);
  assert.deepEqual(f.g.takeLatencies(), [], 'nothing new since');
});

test("/v2/select/infer picks by criteria among the caller's tenant's models only: hard ones never violated, then latency or accuracy", async (t) => {
  const f = await fleet(t);
  const fast = await replica(t, 'fast');
  const accurate = await replica(t, 'accurate');
  const regressor = await replica(t, 'regressor');
  const spy = await replica(t, 'spy');
  const text = { type: 'classification', inputFormat: 'text', outputFormat: 'tensor' };
  f.setRoutes(1, [
    route('small', [{ id: 'a', node: 'here', address: fast.address }], 'acme', { ...text, accuracy: 0.8, latencyP50Ms: 2 }),
    route('big', [{ id: 'b', node: 'here', address: accurate.address }], 'acme', { ...text, accuracy: 0.95, latencyP50Ms: 40 }),
    route('price', [{ id: 'c', node: 'here', address: regressor.address }], 'acme', { type: 'regression', inputFormat: 'tabular', outputFormat: 'tensor', accuracy: 0.99, latencyP50Ms: 1 }),
    // Another tenant's classifier claims to be better at everything, even publicly.
    route('spy', [{ id: 'd', node: 'there', address: spy.address, public: true }], 'globex', { ...text, accuracy: 0.999, latencyP50Ms: 0.5 }),
  ]);
  const headers = { 'mlfleet-type': 'classification', 'mlfleet-input-format': 'text' };
  const fastest = await f.infer('/v2/select/infer', { ...headers, 'mlfleet-prefer': 'latency' });
  assert.equal(fastest.body.replica, 'fast');
  assert.equal(fastest.headers['mlfleet-selected'], 'acme/small');
  assert.equal(fastest.body.path, '/v2/models/small/infer', 'the replica is asked for the chosen model by name');
  assert.equal((await f.infer('/v2/select/infer?type=classification&input-format=text&prefer=accuracy')).body.replica, 'accurate');
  // The regressor is fastest and most accurate, but never a classifier.
  for (const prefer of ['latency', 'accuracy']) assert.notEqual((await f.infer('/v2/select/infer', { ...headers, 'mlfleet-prefer': prefer })).body.replica, 'regressor');
  const none = await f.infer('/v2/select/infer', { 'mlfleet-type': 'detection' });
  assert.equal(none.status, 404);
  assert.match(String(none.body.error), /detection/);
  const vague = await f.infer('/v2/select/infer');
  assert.equal(vague.status, 400);
  assert.equal((await f.infer('/v2/select/infer', { ...headers, 'mlfleet-prefer': 'cheapest' })).status, 400);
  assert.equal(spy.hits, 0, "selection never crossed into globex's models");
  assert.equal((await f.infer('/v2/select/infer', headers, f.users.globex.token)).body.replica, 'spy', "globex's own caller gets globex's");
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
  const f = await fleet(t);
  f.setRoutes(1, [route('m', [{ id: 'a', node: 'there', address: `127.0.0.1:${(server.address() as AddressInfo).port}` }])]);
  const [host, port] = f.g.address.split(':') as [string, string];
  const get = (path: string) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      http.get({ host, port: Number(port), path, headers: { authorization: `Bearer ${f.users.acme.token}` } }, (res) => {
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

test('with mutual TLS, the gateway port speaks HTTPS beside HTTP, hops go over mutual TLS, and a plain-text hop is refused', async (t) => {
  const dir = tempDir(t);
  const made = spawnSync('bash', [path.join(REPO_ROOT, 'scripts', 'make-certs.sh'), dir, 'here', 'there'], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  const material = (node: string) => loadTls({ cert: path.join(dir, `${node}.pem`), key: path.join(dir, `${node}-key.pem`), ca: path.join(dir, 'ca.pem') }, 'client')!;
  const f = await fleet(t, ['here', 'there'], material);
  const remote = await replica(t, 'remote');
  f.setRoutes(1, [route('m', [{ id: 'r', node: 'there', address: remote.address }])]);
  const answer = await f.infer();
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.equal(answer.body.replica, 'remote');
  // The same hop in plain text, with a valid node credential, is refused: the cluster has mutual TLS.
  const there = f.gateways.get('there')!;
  const plainHop = await infer(there, '/v2/models/m/infer', { authorization: `Bearer ${f.credentials.get('here')!.token}`, 'mlfleet-replica': 'r' });
  assert.equal(plainHop.status, 403);
  assert.match(String(plainHop.body.error), /mutual TLS/);
  // Consumers may call over HTTPS (no client certificate needed) or plain HTTP.
  const [host, port] = f.g.address.split(':') as [string, string];
  const overHttps = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = https.request(
      { host, port: Number(port), path: '/v2/models/m/infer', method: 'POST', ca: material('here').ca, headers: { authorization: `Bearer ${f.users.acme.token}`, 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end('{"inputs": []}');
  });
  assert.equal(overHttps.status, 200, overHttps.body);
  assert.equal((await f.infer()).status, 200);
  assert.equal(remote.hits, 3);
});

/** A replica that takes bodies as they come, keeping only their size and SHA-256. */
async function sink(t: TestContext): Promise<{ address: string; bodies: Array<{ size: number; sha256: string; length: string | undefined }> }> {
  const bodies: Array<{ size: number; sha256: string; length: string | undefined }> = [];
  const server = http.createServer((req, res) => {
    const hash = createHash('sha256');
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      hash.update(c);
    });
    req.on('end', () => {
      bodies.push({ size, sha256: hash.digest('hex'), length: req.headers['content-length'] });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ size }));
    });
    req.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, bodies };
}

/** POSTs `size` bytes made on the fly (1 MiB pieces of a pattern), with or without a length. */
function postGenerated(g: Gateway, path: string, token: string, size: number, chunked: boolean): Promise<{ status: number; body: string; sha256: string }> {
  const [host, port] = g.address.split(':') as [string, string];
  const piece = Buffer.alloc(2 ** 20, 'abcdefgh');
  const hash = createHash('sha256');
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' };
    if (!chunked) headers['content-length'] = String(size);
    const req = http.request({ host, port: Number(port), path, method: 'POST', headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, sha256: hash.digest('hex') }));
    });
    req.on('error', (err) => (/ECONNRESET|EPIPE/.test(err.message) ? resolve({ status: 0, body: err.message, sha256: '' }) : reject(err)));
    let sent = 0;
    const write = () => {
      while (sent < size) {
        const chunk = piece.subarray(0, Math.min(piece.length, size - sent));
        sent += chunk.length;
        hash.update(chunk);
        if (!req.write(chunk)) return void req.once('drain', write);
      }
      req.end();
    };
    write();
  });
}

test("request bodies are bounded by their deployment (8 MiB unless it says more): a declared length over it is 413 before the replica sees a byte", async (t) => {
  const f = await fleet(t);
  const small = await sink(t);
  f.setRoutes(1, [route('m', [{ id: 'a', node: 'here', address: small.address }])]);
  const over = await postGenerated(f.g, '/v2/models/m/infer', f.users.acme.token, 9 * 2 ** 20, false);
  assert.equal(over.status, 413);
  assert.match(over.body, /over 8388608 bytes.*--max-request-size/);
  const chunkedOver = await postGenerated(f.g, '/v2/models/m/infer', f.users.acme.token, 9 * 2 ** 20, true);
  assert.ok(chunkedOver.status === 413 || chunkedOver.status === 0, `a chunked body past the bound is cut (${chunkedOver.status})`);
  assert.ok(small.bodies.every((b) => b.size <= 8 * 2 ** 20), 'no replica got more than its deployment takes');
  // The same connection goes on serving: a refused body was drained, not left paused.
  const fits = await postGenerated(f.g, '/v2/models/m/infer', f.users.acme.token, 3 * 2 ** 20, false);
  assert.equal(fits.status, 200);
  assert.equal(small.bodies.at(-1)!.sha256, fits.sha256);
});

test('large bodies stream through, locally and over the hop, intact and with their length; eight 60 MiB bodies at once do not grow the gateway by their size', async (t) => {
  const f = await fleet(t);
  const local = await sink(t);
  const remote = await sink(t);
  const big = 128 * 2 ** 20;
  const withCap = (r: ModelRoute) => {
    for (const e of r.endpoints) e.maxRequestBytes = big;
    return r;
  };
  f.setRoutes(1, [withCap(route('near', [{ id: 'l', node: 'here', address: local.address }])), withCap(route('far', [{ id: 'r', node: 'there', address: remote.address }]))]);
  for (const [model, replica] of [['near', local], ['far', remote]] as const) {
    for (const chunked of [false, true]) {
      const sent = await postGenerated(f.g, `/v2/models/${model}/infer`, f.users.acme.token, 20 * 2 ** 20 + 7, chunked);
      assert.equal(sent.status, 200, `${model}, chunked ${chunked}: ${sent.body}`);
      const got = replica.bodies.at(-1)!;
      assert.equal(got.sha256, sent.sha256, `${model}: the body arrives intact`);
      if (!chunked) assert.equal(got.length, String(20 * 2 ** 20 + 7), 'its length goes with it');
    }
  }
  global.gc?.();
  const before = process.memoryUsage().rss;
  const answers = await Promise.all(Array.from({ length: 8 }, () => postGenerated(f.g, '/v2/models/far/infer', f.users.acme.token, 60 * 2 ** 20, false)));
  const grown = process.memoryUsage().rss - before;
  assert.deepEqual(answers.map((a) => a.status), Array(8).fill(200));
  // Held whole, the bodies would take 480 MiB in each of two gateways (and the test's process holds both).
  assert.ok(grown < 200 * 2 ** 20, `memory grew by ${(grown / 2 ** 20).toFixed(0)} MiB for 480 MiB streamed through two gateways`);
});
