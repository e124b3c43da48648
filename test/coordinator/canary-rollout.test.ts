// Canaries, promotion, rollback and automatic rollback in a real coordinator (SQLite store) with
// scripted agents on real sessions: a canary runs its share of new replicas beside all the old
// ones and the routing table marks them; promote completes it; rollback returns to the last good
// version and pins it (the alias moves on, the deployment does not follow); replicas of a new
// version that keep failing, or an error rate the gateways report past the threshold, roll it
// back by themselves with a RolledBack event naming the signal.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import type { Deployment } from '../../shared/proto.js';
import { eventually, until } from '../helpers/eventually.js';
import type { FakeAgent } from '../helpers/fake-agent.js';
import { workloadCluster, type WorkloadCluster } from '../helpers/workload-cluster.js';

type Cluster = WorkloadCluster;

async function cluster(t: TestContext): Promise<Cluster> {
  return workloadCluster(t, { workloads: { tickMs: 100, crashBackoff: { initialMs: 50, maxMs: 200, resetAfterMs: 60_000 } } });
}

async function pushModel(c: Cluster, content: string): Promise<number> {
  const body = Buffer.from(content);
  return (await c.client.push('model', { name: 'm', format: 'onnx', sizeBytes: body.length }, Readable.from([body]))).version;
}

const get = (c: Cluster, name = 'web') => c.call<Deployment>('DeploymentService', 'GetDeployment', { name });
const versionOf = (a: FakeAgent, x: FakeAgent['desired'][number]) => a.run(x).model?.version;

/** Version 1 deployed through the alias, ready, and watched into its last good version. */
async function deployed(t: TestContext, rollout: Record<string, unknown>, replicas = 4): Promise<{ c: Cluster; a: FakeAgent }> {
  const c = await cluster(t);
  await pushModel(c, 'version one');
  await c.client.setAlias('model', 'm', 'production', 1);
  const a = await c.agent('node-a');
  await c.call('DeploymentService', 'ApplyDeployment', {
    spec: { name: 'web', model: 'm@production', image: 'mlfleet/runtime:0.1.0', replicas, resources: { cpuMillis: 100, memoryBytes: 2 ** 26 }, rollout: { maxSurge: 1, maxUnavailable: 0, watchMs: 300, ...rollout } },
  });
  await until('replicas', () => a.desired.length === replicas);
  a.reportAll('ready');
  await eventually('version 1 is the last good one', 5_000, async () => ((await get(c)).lastGoodVersion === 1 ? true : undefined));
  return { c, a };
}

async function rolledBack(c: Cluster): Promise<string> {
  return eventually('a RolledBack event', 10_000, async () => (await c.api.events('deployment/web')).find((e) => e.type === 'RolledBack')?.message);
}

test('a canary of 25% runs one new replica beside all four old ones, is marked in the routing table, and promote completes it', async (t) => {
  const { c, a } = await deployed(t, { canaryPercent: 25 });
  await assert.rejects(c.call('DeploymentService', 'PromoteDeployment', { name: 'web' }), /no canary to promote/);
  await pushModel(c, 'version two');
  await c.client.setAlias('model', 'm', 'production', 2);
  await until('one canary replica', () => a.desired.filter((x) => versionOf(a, x) === 2).length === 1);
  a.reportAll('ready');
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(a.desired.map((x) => versionOf(a, x)).sort(), [1, 1, 1, 1, 2], 'the canary waits for promotion, all old replicas stay');
  const table = await eventually('the route marks the canary', 5_000, async () => (a.routes.models[0]?.canaryPercent === 25 ? a.routes.models[0] : undefined));
  assert.deepEqual(table.endpoints.filter((e) => e.canary).map((e) => e.version), [2]);
  assert.equal(table.endpoints.filter((e) => !e.canary).length, 4);
  const d = await get(c);
  assert.equal(d.canaryReplicas, 1);
  assert.equal(d.status, 'progressing');

  const promoted = await c.call<Deployment>('DeploymentService', 'PromoteDeployment', { name: 'web' });
  assert.equal(promoted.resolvedVersion, 2);
  for (let i = 0; i < 20 && !a.desired.every((x) => versionOf(a, x) === 2); i++) {
    a.reportAll('ready');
    await new Promise((r) => setTimeout(r, 150));
  }
  await until('four version 2 replicas', () => a.desired.length === 4 && a.desired.every((x) => versionOf(a, x) === 2), 10_000);
  a.reportAll('ready');
  await eventually('version 2 becomes the last good one', 5_000, async () => ((await get(c)).lastGoodVersion === 2 ? true : undefined));
  assert.equal((await get(c)).canaryReplicas, 0);
  assert.ok((await c.api.events('deployment/web')).some((e) => e.type === 'Promoted'));
});

test('rollback returns to the last good version and pins it: the alias stays moved, the deployment does not follow', async (t) => {
  const { c, a } = await deployed(t, { canaryPercent: 50 }, 2);
  await pushModel(c, 'version two');
  await c.client.setAlias('model', 'm', 'production', 2);
  await until('a canary replica', () => a.desired.some((x) => versionOf(a, x) === 2));
  a.reportAll('ready');
  const back = await c.call<Deployment>('DeploymentService', 'RollbackDeployment', { name: 'web' });
  assert.equal(back.resolvedVersion, 1);
  assert.equal(back.pinned, true);
  await until('only version 1 replicas', () => a.desired.length === 2 && a.desired.every((x) => versionOf(a, x) === 1), 5_000);
  assert.match(await rolledBack(c), /rolled back by hand to version 1/);
  // Several ticks later it still does not follow the alias (which still names version 2).
  await new Promise((r) => setTimeout(r, 600));
  assert.equal((await get(c)).resolvedVersion, 1);
  assert.ok(a.desired.every((x) => versionOf(a, x) === 1));
  assert.equal((await c.client.resolve('model', 'm@production')).version, 2, 'the alias is not moved back');
  await assert.rejects(c.call('DeploymentService', 'RollbackDeployment', { name: 'web' }), /already runs its last good version 1/);
  await assert.rejects(c.call('DeploymentService', 'RollbackDeployment', { name: 'nope' }), /not found|does not exist/i);
});

test('replicas of a new version that keep failing roll it back by themselves, pinned, with the signal named', async (t) => {
  const { c, a } = await deployed(t, {}, 2);
  await pushModel(c, 'version two');
  await c.client.setAlias('model', 'm', 'production', 2);
  const failed = new Set<string>();
  const message = await eventually('a RolledBack event', 15_000, async () => {
    for (const x of a.desired) {
      if (versionOf(a, x) === 2 && !failed.has(x.id)) {
        failed.add(x.id);
        a.report({ id: x.id, state: 'failed', reason: 'server exited at start', exitCode: 1 });
      }
    }
    return (await c.api.events('deployment/web')).find((e) => e.type === 'RolledBack')?.message;
  });
  assert.match(message, /^rolled back to version 1: 3 replicas of the new version failed since it started rolling out \(the last: server exited at start\)/);
  const d = await get(c);
  assert.equal(d.resolvedVersion, 1);
  assert.equal(d.pinned, true);
  await until('version 1 replicas only', () => a.desired.length === 2 && a.desired.every((x) => versionOf(a, x) === 1), 5_000);
  assert.ok(failed.size >= 3);
});

test("a canary whose error rate the gateways report past the threshold is rolled back by itself", async (t) => {
  const { c, a } = await deployed(t, { canaryPercent: 25 });
  await pushModel(c, 'version two');
  await c.client.setAlias('model', 'm', 'production', 2);
  await until('a canary replica', () => a.desired.some((x) => versionOf(a, x) === 2));
  a.reportAll('ready');
  const canary = a.desired.find((x) => versionOf(a, x) === 2)!;
  const stable = a.desired.filter((x) => versionOf(a, x) === 1);
  // As a gateway reports in its heartbeat: the canary failed 12 of 51, the stable replicas none.
  a.latencies.push({ tenant: 'default', model: 'm', allocation: canary.id, count: 51, errors: 12, p50Ms: 5, p99Ms: 9 });
  for (const s of stable) a.latencies.push({ tenant: 'default', model: 'm', allocation: s.id, count: 25, errors: 0, p50Ms: 5, p99Ms: 9 });
  const message = await rolledBack(c);
  assert.equal(message, 'rolled back to version 1: error rate 23.5% (12/51) against 0.0% for version 1, over the threshold 5.0%');
  await until('the canary is stopped', () => a.desired.length === 4 && a.desired.every((x) => versionOf(a, x) === 1), 5_000);
  assert.equal((await get(c)).pinned, true);
});

test("the two versions' error rates are compared over the canary's window: the stable version's errors from before it do not count, those since do", async (t) => {
  const { c, a } = await deployed(t, { canaryPercent: 25 });
  const stable = a.desired.filter((x) => versionOf(a, x) === 1);
  const report = (allocation: string, count: number, errors: number) => a.latencies.push({ tenant: 'default', model: 'm', allocation, count, errors, p50Ms: 5, p99Ms: 9 });
  const taken = async () => {
    await until('the heartbeat took the reports', () => a.latencies.length === 0);
    await new Promise((r) => setTimeout(r, 400)); // a few guard passes
  };
  // Before the rollout: a bad hour of the stable version, half its requests failed.
  for (const s of stable) report(s.id, 100, 50);
  await taken();
  await pushModel(c, 'version two');
  await c.client.setAlias('model', 'm', 'production', 2);
  await until('a canary replica', () => a.desired.some((x) => versionOf(a, x) === 2));
  a.reportAll('ready');
  await new Promise((r) => setTimeout(r, 400));
  const canary = a.desired.find((x) => versionOf(a, x) === 2)!;
  // Since the canary started it failed 10 of 40 (25%), and the stable replicas 28 of 100: the
  // canary is no worse, nothing rolls back.
  report(canary.id, 40, 10);
  for (const s of stable) report(s.id, 25, 7);
  await taken();
  assert.deepEqual((await c.api.events('deployment/web')).filter((e) => e.type === 'RolledBack'), [], 'no worse than the stable version over the same window');
  // Then the stable version recovers (400 more, none failed): 28/500 = 5.6% against the
  // canary's 25% — rolled back, and the message gives the stable rate over the window (not its
  // lifetime's 228/900, which would hide the canary's 25% entirely).
  for (const s of stable) report(s.id, 100, 0);
  const message = await rolledBack(c);
  assert.equal(message, 'rolled back to version 1: error rate 25.0% (10/40) against 5.6% for version 1, over the threshold 5.0%');
});

test('bad rollout settings are refused with the field named, and change nothing', async (t) => {
  const c = await cluster(t);
  await pushModel(c, 'one');
  const spec = (rollout: Record<string, unknown>) => ({ spec: { name: 'bad', model: 'm', image: 'mlfleet/runtime:0.1.0', replicas: 2, rollout: { maxSurge: 1, maxUnavailable: 0, ...rollout } } });
  await assert.rejects(c.call('DeploymentService', 'ApplyDeployment', spec({ canaryPercent: 100 })), /canaryPercent.*0 to 99/s);
  await assert.rejects(c.call('DeploymentService', 'ApplyDeployment', spec({ maxErrorRate: 1.5 })), /maxErrorRate.*at most 1/s);
  await assert.rejects(c.call('DeploymentService', 'ApplyDeployment', spec({ maxP99Ratio: 0.5 })), /maxP99Ratio.*from 1/s);
  await assert.rejects(c.call('DeploymentService', 'GetDeployment', { name: 'bad' }), /not found/i);
});
