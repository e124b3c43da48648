// SelectionService inside a real coordinator (SQLite store), with a scripted agent making
// replicas ready: models pushed with their metadata, deployments of them, latencies as agents
// would report them; then "a text classifier, fastest" (or most accurate) without naming a
// model. Also `mlfleetctl select` as users run it.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import type { Coordinator } from '../../coordinator/coordinator.js';
import { CoordinatorClient, type SelectCriteria } from '../../shared/client.js';
import { compileDeploymentSpec } from '../../shared/workload-spec.js';
import { startLeader } from '../helpers/coordinator.js';
import { eventually, until } from '../helpers/eventually.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { mlfleetctl } from '../helpers/mlfleetctl.js';

interface Fleet {
  coordinator: Coordinator;
  admin: string;
  client: CoordinatorClient;
  agent: FakeAgent;
  hostPort(deployment: string): number;
}

const textClassifier = { type: 'classification', inputFormat: 'text', outputFormat: 'tensor' };

async function pushModel(client: CoordinatorClient, name: string, metadata: { type: string; inputFormat: string; outputFormat: string; accuracy: number }) {
  const body = Buffer.from(`model ${name}`);
  await client.push('model', { name, format: 'onnx', sizeBytes: body.length, metadata }, Readable.from([body]));
}

/**
 * Three models — a small fast classifier, a big accurate one, a regressor — and four
 * deployments, all placed on one node; every replica ready but `down`'s.
 */
async function fleet(t: TestContext): Promise<Fleet> {
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 100 } });
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => client.close());
  await pushModel(client, 'small', { ...textClassifier, accuracy: 0.81 });
  await pushModel(client, 'big', { ...textClassifier, accuracy: 0.95 });
  await pushModel(client, 'price', { type: 'regression', inputFormat: 'tabular', outputFormat: 'tensor', accuracy: 0.99 });
  const agent = await FakeAgent.start(t, 'node-a', coordinator.address, join);
  const deployments = { 'fast-small': 'small', 'slow-big': 'big', regressor: 'price', down: 'small' };
  for (const [name, model] of Object.entries(deployments)) {
    await client.applyDeployment(compileDeploymentSpec({ name, model, stack: 'onnx', replicas: 1 }));
  }
  await until('every replica placed', () => agent.desired.length === 4);
  agent.reportAll('ready', (a) => a.workload !== 'down');
  await eventually('three deployments ready', 5_000, async () => {
    const { deployments: all } = await client.listDeployments();
    return all.filter((d) => d.readyReplicas > 0).length === 3 ? true : undefined;
  });
  coordinator.recordLatency('default', 'fast-small', 3.1);
  coordinator.recordLatency('default', 'slow-big', 42);
  const hostPort = (deployment: string) => agent.desired.find((a) => a.workload === deployment)!.hostPort;
  return { coordinator, admin, client, agent, hostPort };
}

const criteria = (fields: Partial<SelectCriteria>): SelectCriteria => ({ ...textClassifier, prefer: '', maxLatencyMs: 0, ...fields });

test('a text classifier, fastest or most accurate, without naming a model', async (t) => {
  const f = await fleet(t);

  const fastest = await f.client.select(criteria({ prefer: 'latency' }));
  assert.equal(fastest.deployment, 'fast-small');
  assert.equal(fastest.tenant, 'default');
  assert.equal(fastest.model, 'small');
  assert.equal(fastest.version, 1);
  assert.deepEqual([fastest.type, fastest.inputFormat, fastest.outputFormat], ['classification', 'text', 'tensor']);
  assert.deepEqual(fastest.endpoints, [`node-a:${f.hostPort('fast-small')}`]);
  assert.equal(fastest.reason, 'fastest measured p50 3.1 ms among 2 eligible (2 others left out)');
  assert.deepEqual(
    fastest.candidates.map((c) => [c.deployment, c.model, c.score, c.latencyMs, c.latencyMeasured, c.accuracy, c.readyReplicas]),
    [
      ['fast-small', 'small', 1, 3.1, true, 0.81, 1],
      ['slow-big', 'big', 0, 42, true, 0.95, 1],
    ],
  );

  const accurate = await f.client.select(criteria({ prefer: 'accuracy' }));
  assert.equal(accurate.deployment, 'slow-big');
  assert.equal(accurate.reason, 'most accurate (accuracy 0.95) among 2 eligible; p50 42 ms (2 others left out)');

  // Mostly accuracy, but not only: the big model still wins; mostly latency: the small one.
  assert.equal((await f.client.select(criteria({ latencyWeight: 0.3 }))).deployment, 'slow-big');
  assert.equal((await f.client.select(criteria({ latencyWeight: 0.7 }))).deployment, 'fast-small');
  // A latency ceiling is a filter: the accurate one is too slow.
  const capped = await f.client.select(criteria({ prefer: 'accuracy', maxLatencyMs: 10 }));
  assert.equal(capped.deployment, 'fast-small');
  assert.deepEqual(capped.candidates.map((c) => c.deployment), ['fast-small']);

  // A newer measurement replaces the older one.
  f.coordinator.recordLatency('default', 'slow-big', 1.5);
  assert.equal((await f.client.select(criteria({ prefer: 'latency' }))).deployment, 'slow-big');

  // Any type taking tabular input: only the regressor.
  assert.equal((await f.client.select({ inputFormat: 'tabular', prefer: 'accuracy' })).deployment, 'regressor');
});

test('nothing eligible is NOT_FOUND with the reason; another tenant sees none of it', async (t) => {
  const f = await fleet(t);
  await assert.rejects(f.client.select(criteria({ type: 'detection', outputFormat: '' })), {
    code: 'NOT_FOUND',
    message: 'no ready deployment serves a detection model taking text (4 deployments: 3 of type classification, 1 of type regression)',
  });
  await assert.rejects(f.client.select(criteria({ maxLatencyMs: 1 })), {
    code: 'NOT_FOUND',
    message: 'no ready deployment serves a classification model taking text and giving tensor within a p50 of 1 ms (4 deployments: 2 over 1 ms, 1 not ready, 1 of type regression)',
  });

  await f.client.createTenant({ name: 'beta', description: '', quota: null });
  const consumer = new CoordinatorClient([f.coordinator.address], {
    token: (await f.client.createToken({ tenant: 'beta', role: 'consumer', description: 'beta consumer', ttlMs: 0 })).token,
  });
  t.after(() => consumer.close());
  await assert.rejects(consumer.select(criteria({})), { code: 'NOT_FOUND', message: /\(there are no deployments\)$/ });
  await assert.rejects(consumer.select({ ...criteria({}), tenant: 'default' }), { code: 'NOT_FOUND', message: 'tenant "default" not found' });
  // An admin may ask in another tenant.
  assert.equal((await f.client.select({ ...criteria({ prefer: 'latency' }), tenant: 'default' })).deployment, 'fast-small');
});

test('a selection that asks for nothing, or for contradicting things, is refused', async (t) => {
  const { coordinator, admin } = await startLeader(t);
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => client.close());
  const refused = [
    [{ prefer: 'latency' }, /type: give at least one of type, inputFormat and outputFormat/],
    [{ type: 'classification', prefer: 'latency', latencyWeight: 0.2 }, /latencyWeight: give prefer or latencyWeight, not both/],
    [{ type: 'classification', latencyWeight: 1.5 }, /latencyWeight: must be between 0 \(all accuracy\) and 1 \(all latency\)/],
    [{ type: 'classification', prefer: 'cheapest' }, /prefer: must be latency or accuracy/],
    [{ type: 'classification', maxLatencyMs: -1 }, /maxLatencyMs: must be 0 \(no ceiling\) or more/],
  ] as const;
  for (const [request, message] of refused) {
    await assert.rejects(client.select(request as SelectCriteria), { code: 'INVALID_ARGUMENT', message }, JSON.stringify(request));
  }
});

test('mlfleetctl select prints the winner and why; -o json is the response; bad usage exits 2', async (t) => {
  const f = await fleet(t);
  const env = { MLFLEET_TOKEN: f.admin };
  const address = f.coordinator.address;

  const json = await mlfleetctl(t, ['--coordinator', address, 'select', '--type', 'classification', '--input-format', 'text', '--prefer', 'latency', '-o', 'json'], env);
  assert.equal(json.code, 0, json.stderr);
  const answer = JSON.parse(json.stdout) as { deployment: string; reason: string; endpoints: string[]; candidates: Array<{ deployment: string; latencyMs: number | null }> };
  assert.equal(answer.deployment, 'fast-small');
  assert.equal(answer.reason, 'fastest measured p50 3.1 ms among 2 eligible (2 others left out)');
  assert.deepEqual(answer.endpoints, [`node-a:${f.hostPort('fast-small')}`]);
  assert.deepEqual(answer.candidates.map((c) => [c.deployment, c.latencyMs]), [['fast-small', 3.1], ['slow-big', 42]]);

  const table = await mlfleetctl(t, ['--coordinator', address, 'select', '--type', 'classification', '--prefer', 'accuracy', '--max-latency', '50ms'], env);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^Deployment:\s+slow-big$/m);
  assert.match(table.stdout, /^Model:\s+big:1 \(classification, text in, tensor out\)$/m);
  assert.match(table.stdout, /^Why:\s+most accurate \(accuracy 0\.95\) among 2 eligible; p50 42 ms/m);
  assert.match(table.stdout, /^DEPLOYMENT\s+MODEL\s+SCORE\s+P50\s+ACCURACY\s+READY$/m);
  assert.match(table.stdout, /^slow-big\s+big:1\s+1\.00\s+42 ms\s+0\.95\s+1$/m);

  const none = await mlfleetctl(t, ['--coordinator', address, 'select', '--type', 'detection'], env);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no ready deployment serves a detection model \(4 deployments: 3 of type classification, 1 of type regression\)/);

  for (const args of [['select'], ['select', '--type', 'x', '--prefer', 'latency', '--latency-weight', '0.5'], ['select', '--type', 'x', '--latency-weight', '2'], ['select', '--type', 'x', '--prefer', 'cheap']]) {
    const run = await mlfleetctl(t, ['--coordinator', address, ...args], env);
    assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
  }
});

test("the gateways' latency reports, arriving in heartbeats, decide the fastest", async (t) => {
  const f = await fleet(t);
  const replica = (deployment: string) => f.agent.desired.find((a) => a.workload === deployment)!.id;
  // The gateways measured the big model faster than the earlier recorded figures say.
  f.agent.latencies.push(
    { tenant: 'default', model: 'big', allocation: replica('slow-big'), count: 100, errors: 0, p50Ms: 0.9, p99Ms: 2 },
    { tenant: 'default', model: 'small', allocation: replica('fast-small'), count: 100, errors: 0, p50Ms: 7.5, p99Ms: 9 },
  );
  const fastest = await eventually('the reports counted', 10_000, async () => {
    const answer = await f.client.select(criteria({ prefer: 'latency' }));
    return answer.deployment === 'slow-big' ? answer : undefined;
  });
  assert.deepEqual(fastest.candidates.map((c) => [c.deployment, c.latencyMs]), [['slow-big', 0.9], ['fast-small', 7.5]]);
});
