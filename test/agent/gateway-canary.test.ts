// The gateway's canary split against real HTTP replicas on loopback: a route with
// canary_percent sends that share of requests to the endpoints marked canary (25% of 400 within
// ±8 points), the rest to the stable ones; a canary that cannot be reached costs no request
// (the stable side is the fallback); a request for a version goes to that version alone.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { Gateway } from '../../agent/gateway/gateway.js';
import { modelRoute, type ModelRoute } from '../helpers/routes.js';
import { silentLogger } from '../../shared/log.js';
import { mintGatewayToken, tokenTable } from '../helpers/gateway-tokens.js';
import { freePort } from '../helpers/net.js';

async function replica(t: TestContext): Promise<{ address: string; hits: () => number }> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits += 1;
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"outputs":[]}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, hits: () => hits };
}

function route(percent: number, endpoints: Array<{ id: string; address: string; version: number; canary: boolean }>): ModelRoute {
  return modelRoute('acme', 'm', endpoints, { canaryPercent: percent });
}

async function gateway(t: TestContext, models: ModelRoute[]) {
  const user = mintGatewayToken('consumer', 'acme');
  const g = await Gateway.start({ listen: '127.0.0.1:0', node: 'here', credential: () => undefined, log: silentLogger() });
  t.after(() => g.close());
  g.setTokens(tokenTable(user));
  g.setRoutes({ revision: 1, models });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  t.after(() => agent.destroy());
  const infer = (path = '/v2/models/m/infer') =>
    new Promise<number>((resolve, reject) => {
      const [host, port] = g.address.split(':') as [string, string];
      const req = http.request({ host, port: Number(port), path, method: 'POST', agent, headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end('{"inputs":[]}');
    });
  return { infer };
}

/** Sends `count` requests, 8 at a time; returns their statuses. */
async function many(infer: () => Promise<number>, count: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < count; i += 8) statuses.push(...(await Promise.all(Array.from({ length: Math.min(8, count - i) }, () => infer()))));
  return statuses;
}

test('a route with canary_percent 25 sends a quarter of 400 requests to its canary replica, within ±8 points', async (t) => {
  const [a, b, c] = [await replica(t), await replica(t), await replica(t)];
  const { infer } = await gateway(t, [
    route(25, [
      { id: 's1', address: a.address, version: 3, canary: false },
      { id: 's2', address: b.address, version: 3, canary: false },
      { id: 'c1', address: c.address, version: 4, canary: true },
    ]),
  ]);
  const statuses = await many(infer, 400);
  assert.deepEqual(new Set(statuses), new Set([200]));
  const share = c.hits() / 400;
  t.diagnostic(`canary share ${(share * 100).toFixed(1)}% (${c.hits()}/400)`);
  assert.ok(share >= 0.17 && share <= 0.33, `canary share ${(share * 100).toFixed(1)}% (${c.hits()}/400), expected 25% ± 8`);
  assert.equal(a.hits() + b.hits() + c.hits(), 400);
  // The stable side is still spread over both its replicas.
  assert.ok(a.hits() > 50 && b.hits() > 50, `stable replicas got ${a.hits()} and ${b.hits()}`);
});

test('without canary_percent, endpoints marked canary are ordinary ones; a version asked for is that version alone', async (t) => {
  const [a, c] = [await replica(t), await replica(t)];
  const plain = await gateway(t, [route(0, [{ id: 's1', address: a.address, version: 3, canary: false }, { id: 'c1', address: c.address, version: 4, canary: true }])]);
  await many(plain.infer, 40);
  assert.ok(a.hits() >= 10 && c.hits() >= 10, `both take turns: ${a.hits()} and ${c.hits()}`);
  const before = c.hits();
  const split = await gateway(t, [route(90, [{ id: 's1', address: a.address, version: 3, canary: false }, { id: 'c1', address: c.address, version: 4, canary: true }])]);
  assert.deepEqual(new Set(await many(() => split.infer('/v2/models/m/versions/3/infer'), 40)), new Set([200]));
  assert.equal(c.hits(), before, 'version 3 asked for: the canary (version 4) got none');
});

test('a canary that cannot be reached costs no request: the stable replicas answer', async (t) => {
  const a = await replica(t);
  const dead = `127.0.0.1:${await freePort()}`;
  const { infer } = await gateway(t, [route(50, [{ id: 's1', address: a.address, version: 3, canary: false }, { id: 'c1', address: dead, version: 4, canary: true }])]);
  const statuses = await many(infer, 80);
  assert.deepEqual(new Set(statuses), new Set([200]));
  assert.equal(a.hits(), 80);
});
