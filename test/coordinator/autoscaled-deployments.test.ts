// The autoscaler's side of the workload controller inside a real coordinator with scripted
// agents (docs/autoscaling.md, "Spec" and "Applying"): an autoscaled deployment starts at
// max(min, 1), is resized without a rollout and the pass places and stops its replicas,
// re-applying keeps its size within the new bounds, `scale` is refused, the quota's headroom is
// counted, and its model is routed with `holds` even at zero replicas.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import type { Deployment } from '../../shared/proto.js';
import { eventually, until } from '../helpers/eventually.js';
import { workloadCluster, type WorkloadCluster } from '../helpers/workload-cluster.js';

async function pushModel(c: WorkloadCluster, name: string, content: string): Promise<void> {
  const body = Buffer.from(content);
  await c.client.push('model', { name, format: 'onnx', sizeBytes: body.length }, Readable.from([body]));
}

const spec = (name: string, extra: Record<string, unknown> = {}) => ({
  spec: { name, model: 'm', image: 'mlfleet/runtime:0.1.0', replicas: 0, minReplicas: 1, maxReplicas: 4, resources: { cpuMillis: 500, memoryBytes: 2 ** 28 }, ...extra },
});
const apply = (c: WorkloadCluster, request: unknown) => c.call<Deployment>('DeploymentService', 'ApplyDeployment', request);
const get = (c: WorkloadCluster, name: string) => c.call<Deployment>('DeploymentService', 'GetDeployment', { name });

async function setup(t: TestContext): Promise<{ c: WorkloadCluster; agent: Awaited<ReturnType<WorkloadCluster['agent']>> }> {
  const c = await workloadCluster(t);
  await pushModel(c, 'm', 'model one');
  return { c, agent: await c.agent('node-a') };
}

test('an autoscaled deployment starts at max(min, 1); a resize changes its size without a rollout, with the reason as an event, and the pass places and stops replicas', async (t) => {
  const { c, agent } = await setup(t);
  const created = await apply(c, spec('web', { minReplicas: 0 }));
  assert.equal(created.spec!.replicas, 1);
  assert.equal(created.generation, 1);
  await until('one replica placed', () => agent.desired.length === 1);
  const [listed] = c.controller().autoscaled();
  assert.deepEqual(listed, { tenant: 'default', name: 'web', minReplicas: 0, maxReplicas: 4, targetConcurrency: 4, scaleToZeroAfterMs: 0, replicas: 1, readyReplicas: 0, quotaHeadroom: undefined });

  await c.controller().resizeDeployment('default', 'web', 3, 'scaled 1 → 3: 10.2 in flight / target 4');
  await until('three replicas placed', () => agent.desired.length === 3);
  const grown = await get(c, 'web');
  assert.equal(grown.spec!.replicas, 3);
  assert.equal(grown.generation, 1, 'a resize rolls nothing out');
  agent.reportAll('ready');
  await until('autoscaled() counts the ready replicas', () => c.controller().autoscaled()[0]!.readyReplicas === 3);
  const autoscaledEvents = async () => (await c.api.events('deployment/web')).filter((e) => e.type === 'Autoscaled');
  assert.deepEqual((await autoscaledEvents()).map((e) => e.message), ['scaled 1 → 3: 10.2 in flight / target 4']);
  // (Whether `grown` already has the running autoscaler's view depends on its 500 ms tick, so
  // the view is checked below with one the test gives.)
  c.controller().useAutoscalerViews((tenant, name) => (tenant === 'default' && name === 'web' ? { desiredReplicas: 3, inFlight: 10.2, waiting: 0, requestRate: 5, stableConcurrency: 9, panicConcurrency: 10.2, panicking: false, lastDecision: 'scaled 1 → 3: 10.2 in flight / target 4', lastDecisionAtMs: 1, idleSinceMs: 0, blocked: '' } : undefined));
  const shown = await get(c, 'web');
  assert.equal(shown.autoscaler?.desiredReplicas, 3);
  assert.equal(shown.autoscaler?.lastDecision, 'scaled 1 → 3: 10.2 in flight / target 4');

  await c.controller().resizeDeployment('default', 'web', 3, 'unchanged');
  await c.controller().resizeDeployment('default', 'gone', 2, 'no such deployment');
  assert.equal((await autoscaledEvents()).length, 1, 'a resize to the current size is no change and no event');

  await c.controller().resizeDeployment('default', 'web', 0, 'scaled 3 → 1: idle');
  await until('scaled down to one replica', () => agent.desired.length === 1);
  assert.equal((await get(c, 'web')).spec!.replicas, 1, 'never below 1 without scale to zero');

  // A fixed-size deployment is never resized.
  await apply(c, { spec: { ...spec('fixed').spec, replicas: 1, minReplicas: 0, maxReplicas: 0 } });
  await c.controller().resizeDeployment('default', 'fixed', 3, 'no');
  assert.equal((await get(c, 'fixed')).spec!.replicas, 1);
  assert.deepEqual(c.controller().autoscaled().map((d) => d.name), ['web']);
});

test('re-applying keeps the size clamped to the new bounds and rolls nothing out; scale is refused on an autoscaled deployment', async (t) => {
  const { c, agent } = await setup(t);
  await apply(c, spec('web'));
  await c.controller().resizeDeployment('default', 'web', 4, 'scaled 1 → 4');
  await until('four replicas', () => agent.desired.length === 4);
  const narrowed = await apply(c, spec('web', { maxReplicas: 2, targetConcurrency: 8 }));
  assert.equal(narrowed.spec!.replicas, 2, 'clamped to the new max');
  assert.equal(narrowed.generation, 1, 'new bounds and target roll nothing out');
  await until('two replicas', () => agent.desired.length === 2);
  const again = await apply(c, spec('web', { maxReplicas: 6, targetConcurrency: 8 }));
  assert.equal(again.spec!.replicas, 2, 'a wider max keeps the current size');
  assert.equal(again.generation, 1);
  const updated = (await c.api.events('deployment/web')).filter((e) => e.type === 'Updated').map((e) => e.message);
  assert.ok(updated.some((m) => /autoscaled between 1–2 replicas/.test(m) && /aiming at 8/.test(m)), updated.join(' | '));

  await assert.rejects(
    c.call('DeploymentService', 'ScaleDeployment', { name: 'web', replicas: 5 }),
    (err: Error & { code?: number }) => err.code === 9 && /deployment web is autoscaled \(1–6 replicas\); change --min-replicas\/--max-replicas instead/.test(err.message),
  );
  assert.equal((await get(c, 'web')).spec!.replicas, 2, 'the refused scale changed nothing');
  assert.equal(agent.desired.length, 2);
});

test("autoscaled() gives the replicas the tenant's quota still allows", async (t) => {
  const { c, agent } = await setup(t);
  await c.client.setTenantQuota({ name: 'default', quota: { cpuMillis: 2000, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, storageBytes: 0, maxDeployments: 0 }, clear: [] });
  await apply(c, spec('web'));
  await until('one replica placed', () => agent.desired.length === 1);
  await until('headroom of three 500m replicas', () => c.controller().autoscaled()[0]?.quotaHeadroom === 3);
  await c.controller().resizeDeployment('default', 'web', 4, 'scaled 1 → 4');
  await until('four replicas', () => agent.desired.length === 4);
  await until('no headroom left', () => c.controller().autoscaled()[0]?.quotaHeadroom === 0);
});

test('an autoscaled model is routed with holds even at zero replicas, with its own public and size limit; a fixed one is not held', async (t) => {
  const { c, agent } = await setup(t);
  await pushModel(c, 'f', 'model f');
  await apply(c, spec('web', { minReplicas: 0, scaleToZeroAfterMs: 60_000, public: true, maxRequestBytes: 4096 }));
  await apply(c, { spec: { ...spec('fixed').spec, model: 'f', replicas: 1, minReplicas: 0, maxReplicas: 0 } });
  await until('two replicas placed', () => agent.desired.length === 2);
  agent.reportAll('ready');
  const routed = await eventually('both routed with endpoints', 5_000, async () => {
    const m = agent.routes.models;
    return m.length === 2 && m.every((r) => r.endpoints.length === 1) ? m : undefined;
  });
  const held = routed.find((r) => r.model === 'm')!;
  assert.deepEqual({ holds: held.holds, public: held.public, maxRequestBytes: Number(held.maxRequestBytes), deployment: held.deployment }, { holds: true, public: true, maxRequestBytes: 4096, deployment: 'web' });
  const fixed = routed.find((r) => r.model === 'f')!;
  assert.deepEqual({ holds: fixed.holds, public: fixed.public, maxRequestBytes: Number(fixed.maxRequestBytes) }, { holds: false, public: false, maxRequestBytes: 0 });

  await c.controller().resizeDeployment('default', 'web', 0, 'scaled 1 → 0: idle for 60 s');
  await until('the replica stopped', () => agent.desired.length === 1);
  const zero = await eventually('m routed with no endpoints', 5_000, async () => agent.routes.models.find((r) => r.model === 'm' && r.endpoints.length === 0));
  assert.equal(zero.holds, true);
  assert.equal(zero.public, true);
  assert.equal(Number(zero.maxRequestBytes), 4096);
  assert.equal(zero.deployment, 'web');
  assert.equal((await get(c, 'web')).spec!.replicas, 0);
});
