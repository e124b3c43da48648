// Through a real leader and agents on real agent sessions: what the gateways report in their
// heartbeats comes back in GET /api/v1/deployments[/{name}] as `traffic`, and what an agent's
// cache holds comes back in GET /api/v1/nodes as cacheEntries and cacheBytes.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import type { DeploymentJson } from '../../shared/views/deployments.js';
import type { NodeJson } from '../../shared/views/nodes.js';
import { eventually, until } from '../helpers/eventually.js';
import { rest } from '../helpers/rest.js';
import { workloadCluster } from '../helpers/workload-cluster.js';

test("a deployment's traffic is what the gateways report of its replicas, over every gateway; null before any did", async (t) => {
  const c = await workloadCluster(t);
  const base = `http://${c.httpAddress}`;
  const body = Buffer.from('weights');
  await c.client.push('model', { name: 'm', format: 'onnx', sizeBytes: body.length }, Readable.from([body]));
  const a = await c.agent('node-a');
  const b = await c.agent('node-b');
  await c.call('DeploymentService', 'ApplyDeployment', { spec: { name: 'web', model: 'm', image: 'mlfleet/runtime:0.1.0', replicas: 2, maxPerNode: 1, resources: { cpuMillis: 100, memoryBytes: 2 ** 26 } } });
  await until('one replica on each node', () => a.desired.length === 1 && b.desired.length === 1);
  a.reportAll('ready');
  b.reportAll('ready');
  const get = async () => {
    const got = await rest(base, 'GET', '/api/v1/deployments/web', { token: c.admin });
    assert.equal(got.status, 200, got.text);
    return got.json as DeploymentJson;
  };
  await eventually('ready', 5_000, async () => ((await get()).readyReplicas === 2 ? true : undefined));
  assert.equal((await get()).traffic, null, 'no gateway reported yet');

  // Each gateway reports every beat, as a gateway under steady load: node-a's gateway reached
  // both replicas, node-b's only its own; one request in ten failed on node-b's replica.
  const [ra, rb] = [a.desired[0]!.id, b.desired[0]!.id];
  const feed = setInterval(() => {
    if (a.latencies.length === 0) a.latencies.push({ tenant: 'default', model: 'm', allocation: ra, count: 30, errors: 0, p50Ms: 4, p99Ms: 9 }, { tenant: 'default', model: 'm', allocation: rb, count: 10, errors: 1, p50Ms: 8, p99Ms: 25 });
    if (b.latencies.length === 0) b.latencies.push({ tenant: 'default', model: 'm', allocation: rb, count: 10, errors: 1, p50Ms: 8, p99Ms: 12 });
  }, 20);
  t.after(() => clearInterval(feed));
  const traffic = await eventually('traffic measured', 10_000, async () => {
    const d = await get();
    return d.traffic && d.traffic.requestRate > 0 ? d.traffic : undefined;
  });
  assert.equal(traffic.p50Ms, (30 * 4 + 20 * 8) / 50, 'weighted by requests over both gateways');
  assert.equal(traffic.p99Ms, 25, 'the largest any gateway reported');
  assert.equal(traffic.errorRate, 2 / 50);
  assert.ok(traffic.measuredAt && Math.abs(Date.parse(traffic.measuredAt) - Date.now()) < 10_000, traffic.measuredAt ?? 'null');
  const list = await rest(base, 'GET', '/api/v1/deployments', { token: c.admin });
  assert.equal(list.status, 200, list.text);
  const listed = (list.json as { items: DeploymentJson[] }).items.find((d) => d.name === 'web');
  assert.equal(listed?.traffic?.p50Ms, traffic.p50Ms, 'the list carries it as well');

  // The gateways stop reporting (no requests): the rate goes to zero while the minute's latency stays.
  clearInterval(feed);
  const quiet = await eventually('no requests lately', 10_000, async () => {
    const d = await get();
    return d.traffic && d.traffic.requestRate === 0 ? d.traffic : undefined;
  });
  assert.equal(quiet.p50Ms, traffic.p50Ms);
});

test('GET /api/v1/nodes carries each node\'s cache in short; the node itself lists it', async (t) => {
  const c = await workloadCluster(t);
  const base = `http://${c.httpAddress}`;
  const a = await c.agent('node-a');
  await c.agent('node-b');
  a.reportCache([
    { digest: `sha256:${'a'.repeat(64)}`, sizeBytes: 1_000 },
    { digest: `sha256:${'b'.repeat(64)}`, sizeBytes: 24 },
  ]);
  const nodes = await eventually('the cache reported', 5_000, async () => {
    const got = await rest(base, 'GET', '/api/v1/nodes', { token: c.admin });
    assert.equal(got.status, 200, got.text);
    const items = (got.json as { items: Array<NodeJson & { cache?: unknown }> }).items;
    return items.find((n) => n.name === 'node-a')?.cacheEntries === 2 ? items : undefined;
  });
  const [na, nb] = [nodes.find((n) => n.name === 'node-a')!, nodes.find((n) => n.name === 'node-b')!];
  assert.equal(na.cacheBytes, 1_024);
  assert.equal(na.cache, undefined, 'the list does not carry the entries');
  assert.deepEqual([nb.cacheEntries, nb.cacheBytes], [0, 0]);
  const one = await rest(base, 'GET', '/api/v1/nodes/node-a', { token: c.admin });
  assert.deepEqual([(one.json as NodeJson).cacheEntries, (one.json as { cache: unknown[] }).cache.length], [2, 2]);
});
