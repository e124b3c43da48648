// The workload controller end to end inside a real coordinator (SQLite store), with scripted
// agents on real sessions: deployments keep their replicas, roll on a spec change or an alias
// move, move off lost nodes; jobs run to completion, retry, fail, are cancelled; gangs are all
// or nothing; quotas and priorities hold; plans never over-commit.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { coordinatorOutputPusher } from '../../agent/job-output.js';
import { JOB_PEER_PORT, taskEnvironment } from '../../shared/workloads.js';
import { test, type TestContext } from 'node:test';
import type { Deployment, Job, WorkloadEvent } from '../../shared/proto.js';
import { SqliteStore } from '../../shared/store/sqlite-store.js';
import { Election, fencedTxn } from '../../shared/store/election.js';
import { Lease } from '../../shared/store/lease.js';
import { commitPlan } from '../../coordinator/workloads/plan-commit.js';
import type { AllocationRecord } from '../../coordinator/workloads/records.js';
import { eventually, until } from '../helpers/eventually.js';
import type { FakeAgent } from '../helpers/fake-agent.js';
import { workloadCluster, type WorkloadCluster } from '../helpers/workload-cluster.js';
import { tempDir } from '../helpers/processes.js';

type Cluster = WorkloadCluster;

function cluster(t: TestContext, nodeTtlMs = 10_000): Promise<Cluster> {
  return workloadCluster(t, { nodeTtlMs });
}

async function pushModel(c: Cluster, name: string, content: string): Promise<number> {
  const body = Buffer.from(content);
  const version = await c.client.push('model', { name, format: 'onnx', sizeBytes: body.length }, Readable.from([body]));
  return version.version;
}

const deployment = (name: string, extra: Record<string, unknown> = {}) => ({
  spec: { name, model: 'm', image: 'mlfleet/runtime:0.1.0', replicas: 2, resources: { cpuMillis: 500, memoryBytes: 2 ** 28 }, ...extra },
});

const getDeployment = (c: Cluster, name: string) => c.call<Deployment>('DeploymentService', 'GetDeployment', { name });
const getJob = (c: Cluster, name: string) => c.call<Job>('JobService', 'GetJob', { name });

function events(c: Cluster, object: string): Promise<WorkloadEvent[]> {
  return c.api.events(object);
}

test('a deployment is spread over nodes, becomes available when its replicas are ready, and is scaled', async (t) => {
  const c = await cluster(t);
  await pushModel(c, 'm', 'model one');
  const a = await c.agent('node-a');
  const b = await c.agent('node-b');
  const created = await c.call<Deployment>('DeploymentService', 'ApplyDeployment', deployment('web', { maxPerNode: 1 }));
  assert.equal(created.generation, 1);
  assert.equal(created.resolvedVersion, 1);
  await until('one replica on each node', () => a.desired.length === 1 && b.desired.length === 1);
  const alloc = a.desired[0]!;
  const run = a.run(alloc);
  assert.equal(run.image, 'mlfleet/runtime:0.1.0');
  assert.equal(run.model?.digest, created.modelDigest);
  assert.equal(run.model?.mountPath, '/model');
  assert.equal(run.port, 8080);
  assert.ok(alloc.hostPort >= 20_000 && alloc.hostPort <= 29_999, `host port ${alloc.hostPort}`);
  assert.equal(alloc.resources?.cpuMillis, 500);

  a.reportAll('ready');
  b.reportAll('ready');
  const ready = await eventually('deployment available', 5_000, async () => {
    const d = await getDeployment(c, 'web');
    return d.status === 'available' ? d : undefined;
  });
  assert.equal(ready.readyReplicas, 2);
  assert.equal((await c.client.getNode('node-a')).allocated?.cpuMillis, 500, "the node shows what its replica holds");
  // Every agent's gateway is told where the ready replicas are.
  await until('routes pushed to the gateways', () => [a, b].every((x) => x.routes.models.some((m) => m.model === 'm' && m.endpoints.length === 2)));
  assert.deepEqual(b.routes.models[0]!.endpoints.map((e) => e.address).sort(), [`node-a:${a.desired[0]!.hostPort}`, `node-b:${b.desired[0]!.hostPort}`].sort());
  assert.equal((await c.client.getTenant('default')).usage?.cpuMillis, 1000, "the tenant's usage counts both replicas");
  assert.deepEqual(ready.allocations.map((x) => x.endpoint).sort(), [`node-a:${a.desired[0]!.hostPort}`, `node-b:${b.desired[0]!.hostPort}`].sort());

  // Three replicas at most one per node on two nodes: one waits, and says why.
  await c.call('DeploymentService', 'ScaleDeployment', { name: 'web', replicas: 3 });
  const pending = await eventually('pending with a reason', 5_000, async () => {
    const d = await getDeployment(c, 'web');
    return d.status === 'pending' ? d : undefined;
  });
  assert.match(pending.message, /0\/2 nodes/);
  assert.match(pending.message, /per node/);

  await c.call('DeploymentService', 'ScaleDeployment', { name: 'web', replicas: 1 });
  await until('scaled down to one replica', () => a.desired.length + b.desired.length === 1);
  const seen = await events(c, 'deployment/web');
  for (const type of ['Created', 'Scheduled', 'Ready', 'Scaled', 'Pending', 'Stopping']) {
    assert.ok(seen.some((e) => e.type === type), `a ${type} event among ${seen.map((e) => e.type).join(', ')}`);
  }
});

test('a failed replica is replaced, and replicas on a lost node move to another', async (t) => {
  const c = await cluster(t, 1_500);
  await pushModel(c, 'm', 'model one');
  const a = await c.agent('node-a');
  await c.call('DeploymentService', 'ApplyDeployment', deployment('web', { replicas: 1 }));
  await until('placed on node-a', () => a.desired.length === 1);
  const first = a.desired[0]!.id;
  a.report({ id: first, state: 'failed', reason: 'exited with code 1', exitCode: 1 });
  await until('replaced', () => a.desired.length === 1 && a.desired[0]!.id !== first);

  const b = await c.agent('node-b');
  a.close();
  await until('moved to node-b after node-a went down', () => b.desired.length === 1, 10_000);
  const d = await getDeployment(c, 'web');
  const lost = (await c.call<{ allocations: Array<{ node: string; status: string; reason: string }> }>('AllocationService', 'ListAllocations', { all: true })).allocations.find(
    (x) => x.node === 'node-a' && x.reason.includes('down'),
  );
  assert.equal(lost?.status, 'failed');
  assert.equal(d.allocations.filter((x) => x.desired === 'run').length, 1);
});

test('moving the alias a deployment follows rolls it to the new version without going below its replicas', async (t) => {
  const c = await cluster(t);
  await pushModel(c, 'm', 'version one');
  await c.client.setAlias('model', 'm', 'production', 1);
  const a = await c.agent('node-a');
  await c.call('DeploymentService', 'ApplyDeployment', deployment('web', { model: 'm@production', replicas: 2 }));
  await until('two replicas', () => a.desired.length === 2);
  a.reportAll('ready');
  await eventually('available', 5_000, async () => ((await getDeployment(c, 'web')).status === 'available' ? true : undefined));
  const old = new Set(a.desired.map((x) => x.id));

  await pushModel(c, 'm', 'version two');
  await assert.rejects(c.client.deleteVersion('model', 'm', 1), /in use by deployment "web"/);
  await c.client.setAlias('model', 'm', 'production', 2);
  // One surge replica of version 2 comes; no old replica goes before a new one is ready.
  await until('a new-version replica', () => a.desired.some((x) => !old.has(x.id)));
  assert.equal(a.desired.filter((x) => old.has(x.id)).length, 2, 'both old replicas still run');
  const fresh = a.desired.find((x) => !old.has(x.id))!;
  assert.equal(a.run(fresh).model?.version, 2);
  for (let round = 0; round < 4 && a.desired.some((x) => old.has(x.id)); round++) {
    a.reportAll('ready', (x) => !old.has(x.id));
    await until('progress', () => a.desired.filter((x) => old.has(x.id)).length < 2 - round || a.desired.every((x) => !old.has(x.id)), 5_000).catch(() => undefined);
    assert.ok(a.desired.filter((x) => x.id && !old.has(x.id)).length + a.desired.filter((x) => old.has(x.id)).length >= 2);
  }
  await until('only version 2 replicas left', () => a.desired.length === 2 && a.desired.every((x) => !old.has(x.id)), 10_000);
  const d = await getDeployment(c, 'web');
  assert.equal(d.resolvedVersion, 2);
  assert.equal(d.generation, 2);
  assert.ok((await events(c, 'deployment/web')).some((e) => e.type === 'RolloutStarted' && /version 2/.test(e.message)));
});

test('a job retries with backoff and then fails; another succeeds; a third is cancelled', async (t) => {
  const c = await cluster(t);
  const a = await c.agent('node-a');
  const spec = (name: string, extra: Record<string, unknown> = {}) => ({
    spec: { name, image: 'mlfleet/runtime:0.1.0', command: ['node', 'train.js'], workers: 1, maxRetries: 1, retryBackoffMs: 100, ...extra },
  });
  const job = (id: string) => a.desired.find((x) => x.workload === id);

  await c.call('JobService', 'RunJob', spec('flaky'));
  await until('first attempt placed', () => job('flaky') !== undefined);
  const first = job('flaky')!;
  assert.equal((await getJob(c, 'flaky')).status, 'running');
  a.report({ id: first.id, state: 'failed', reason: 'exited with code 2', exitCode: 2 });
  await until('second attempt placed', () => a.desired.some((x) => x.workload === 'flaky' && x.id !== first.id));
  const second = a.desired.find((x) => x.workload === 'flaky' && x.id !== first.id)!;
  a.report({ id: second.id, state: 'failed', reason: 'exited with code 2', exitCode: 2 });
  const failed = await eventually('job failed', 5_000, async () => {
    const j = await getJob(c, 'flaky');
    return j.status === 'failed' ? j : undefined;
  });
  assert.equal(failed.attempts, 2);
  assert.match(failed.message, /failed after 2 attempts: worker 0 exited with code 2/);

  await c.call('JobService', 'RunJob', spec('good'));
  await until('placed', () => job('good') !== undefined);
  a.report({ id: job('good')!.id, state: 'completed' });
  const succeeded = await eventually('succeeded', 5_000, async () => {
    const j = await getJob(c, 'good');
    return j.status === 'succeeded' ? j : undefined;
  });
  assert.equal(succeeded.attempts, 1);
  assert.equal(succeeded.allocations[0]!.status, 'completed');

  await c.call('JobService', 'RunJob', spec('long'));
  await until('placed', () => job('long') !== undefined);
  a.report({ id: job('long')!.id, state: 'running' });
  const cancelled = await c.call<Job>('JobService', 'CancelJob', { name: 'long' });
  assert.equal(cancelled.status, 'cancelled');
  await until('its worker is no longer desired', () => job('long') === undefined);
  await assert.rejects(c.call('JobService', 'RunJob', spec('good')), /already exists/);
  await assert.rejects(c.call('JobService', 'CancelJob', { name: 'good' }), /already ended/);
});

test('a job past its deadline is stopped and fails', async (t) => {
  const c = await cluster(t);
  const a = await c.agent('node-a');
  await c.call('JobService', 'RunJob', { spec: { name: 'slow', image: 'i', command: ['node'], workers: 1, deadlineMs: 300 } });
  await until('placed', () => a.desired.length === 1);
  a.reportAll('running');
  const j = await eventually('failed on its deadline', 5_000, async () => {
    const job = await getJob(c, 'slow');
    return job.status === 'failed' ? job : undefined;
  });
  assert.match(j.message, /deadline of 300ms passed/);
  await until('stopped', () => a.desired.length === 0);
});

test('a gang is placed all or nothing, holding nothing while it waits', async (t) => {
  const c = await cluster(t);
  // Each node fits one worker.
  await c.agent('node-a', { cpuMillis: 1000 });
  await c.agent('node-b', { cpuMillis: 1000 });
  await c.call('JobService', 'RunJob', { spec: { name: 'gang', image: 'i', command: ['node'], workers: 3, resources: { cpuMillis: 800 } } });
  const waiting = await eventually('pending with a reason', 5_000, async () => {
    const j = await getJob(c, 'gang');
    return j.message.includes('waiting for capacity') ? j : undefined;
  });
  assert.equal(waiting.status, 'pending');
  const held = await c.call<{ allocations: unknown[] }>('AllocationService', 'ListAllocations', { all: true });
  assert.equal(held.allocations.length, 0, 'a partial gang holds nothing');

  const third = await c.agent('node-c', { cpuMillis: 1000 });
  await until('the gang runs once a third node joins', () => third.desired.length === 1);
  const running = await eventually('running', 5_000, async () => {
    const j = await getJob(c, 'gang');
    return j.status === 'running' ? j : undefined;
  });
  assert.deepEqual(running.allocations.map((x) => x.rank).sort(), [0, 1, 2]);
  assert.equal(new Set(running.allocations.map((x) => x.node)).size, 3);
});

test("a tenant's quota keeps work pending with the reason; a higher priority preempts lower-priority work and says so", async (t) => {
  const c = await cluster(t);
  await pushModel(c, 'm', 'model');
  const a = await c.agent('node-a', { cpuMillis: 2000, gpus: [{ model: 'NVIDIA H100 80GB HBM3', memoryBytes: 80 * 2 ** 30 }] });
  await c.client.setTenantQuota({ name: 'default', quota: { cpuMillis: 1000, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, storageBytes: 0, maxDeployments: 0 }, clear: [] });
  await c.call('DeploymentService', 'ApplyDeployment', deployment('web', { replicas: 2, resources: { cpuMillis: 800 } }));
  const over = await eventually('over quota', 5_000, async () => {
    const d = await getDeployment(c, 'web');
    return d.status === 'pending' ? d : undefined;
  });
  assert.match(over.message, /quota/i);
  assert.equal(a.desired.length, 1);
  await c.client.setTenantQuota({ name: 'default', quota: null, clear: ['cpu'] });
  await until('both replicas once the quota is lifted', () => a.desired.length === 2);

  // The GPU is free; a low-priority job takes it, then a high-priority one needs it.
  await c.call('JobService', 'RunJob', { spec: { name: 'low', image: 'i', command: ['node'], workers: 1, priority: 1, resources: { cpuMillis: 100, gpus: 1 } } });
  await until('low placed', () => a.desired.some((x) => x.workload === 'low'));
  await c.call('JobService', 'RunJob', { spec: { name: 'high', image: 'i', command: ['node'], workers: 1, priority: 100, resources: { cpuMillis: 100, gpus: 1 } } });
  await until('high replaces low on the GPU', () => a.desired.some((x) => x.workload === 'high') && !a.desired.some((x) => x.workload === 'low' && x.id));
  assert.deepEqual(a.desired.find((x) => x.workload === 'high')!.gpuIndexes, [0]);
  assert.ok((await events(c, 'job/low')).some((e) => e.type === 'Preempted' && /high/.test(e.message)));
  assert.ok((await events(c, 'job/high')).some((e) => e.type === 'Preempting'));
  // The deployment's replicas (priority 0, but not lower than needed) were left alone.
  assert.equal(a.desired.filter((x) => x.workload === 'web').length, 2);
});

test('bad workload requests are refused with the field, and change nothing', async (t) => {
  const c = await cluster(t);
  await pushModel(c, 'm', 'model');
  const bad: Array<[string, string, unknown, RegExp]> = [
    ['DeploymentService', 'ApplyDeployment', deployment('Bad_Name'), /name: must be lowercase/],
    ['DeploymentService', 'ApplyDeployment', deployment('x', { stack: 'onnx' }), /exactly one of stack and image/],
    ['DeploymentService', 'ApplyDeployment', { spec: { ...deployment('x').spec, image: '', stack: 'nope' } }, /unknown stack "nope"/],
    ['DeploymentService', 'ApplyDeployment', deployment('x', { model: 'missing' }), /model "missing" not found/],
    ['DeploymentService', 'ApplyDeployment', deployment('x', { model: 'a/../b' }), /model/],
    ['JobService', 'RunJob', { spec: { name: 'j', image: 'i', command: ['x'], workers: 0 } }, /workers: must be at least 1/],
    ['JobService', 'RunJob', { spec: { name: 'j', image: 'i', command: [], workers: 1 } }, /needs a command/],
    ['JobService', 'RunJob', { spec: { name: 'j', image: 'i', command: ['x'], workers: 1, datasets: ['nope'] } }, /dataset "nope" not found/],
    ['DeploymentService', 'GetDeployment', { name: 'absent' }, /not found/],
  ];
  for (const [service, method, request, message] of bad) {
    await assert.rejects(c.call(service as 'JobService', method, request), message, `${method} ${JSON.stringify(request)}`);
  }
  assert.equal((await c.call<{ deployments: unknown[] }>('DeploymentService', 'ListDeployments', {})).deployments.length, 0);
  assert.equal((await c.call<{ jobs: unknown[] }>('JobService', 'ListJobs', {})).jobs.length, 0);
});

test('two plans made from the same view cannot both commit on one node: the second is refused and re-planned', async (t) => {
  const store = await SqliteStore.create(`${tempDir(t)}/s.db`);
  const lease = await Lease.create(store, 5_000);
  t.after(async () => {
    await lease.revoke();
    await store.close();
  });
  const leadership = await new Election(store, '/test/election').campaign('me', lease, new AbortController().signal);
  const writer = { txn: (c: Parameters<typeof fencedTxn>[2], s: Parameters<typeof fencedTxn>[3], f?: Parameters<typeof fencedTxn>[4]) => fencedTxn(store, leadership, c, s, f) };
  const record = (id: string, node: string) => ({ id, node, gpuIndexes: [0] }) as unknown as AllocationRecord;
  const seen = new Map<string, number>();
  // Both plans put a whole GPU 0 of node-a to use, computed from the same (empty) view.
  const [one, two] = await Promise.all([
    commitPlan(writer, [{ node: 'node-a', record: record('one', 'node-a'), group: 'one' }], seen, 100),
    commitPlan(writer, [{ node: 'node-a', record: record('two', 'node-a'), group: 'two' }], seen, 100),
  ]);
  const results = [one, two];
  assert.equal(results.filter((r) => r.written.length === 1).length, 1, 'exactly one plan committed');
  assert.equal(results.filter((r) => r.conflicted.has('node-a')).length, 1, 'the other saw the node change');
  const { kvs } = await store.range('/mlfleet/allocations/');
  assert.equal(kvs.length, 1);
  // Plans on different nodes both commit; a chunked plan keeps each gang in one transaction.
  const many = Array.from({ length: 30 }, (_, i) => ({ node: `n${i % 10}`, record: record(`g${i}`, `n${i % 10}`), group: `gang-${Math.floor(i / 3)}` }));
  const chunked = await commitPlan(writer, many, new Map(), 8);
  assert.equal(chunked.written.length, 30);
  const revisions = new Map<string, Set<number>>();
  for (const { record: r, modRevision } of chunked.written) {
    const gang = many.find((m) => m.record.id === r.id)!.group;
    revisions.set(gang, (revisions.get(gang) ?? new Set()).add(modRevision));
  }
  for (const [gang, set] of revisions) assert.equal(set.size, 1, `${gang} was written in one transaction`);
});

test('draining a node moves its replicas off it, each old one stopped only once its replacement is ready; a spec change rolls out', async (t) => {
  const c = await cluster(t);
  await pushModel(c, 'm', 'model');
  const a = await c.agent('node-a');
  await c.call('DeploymentService', 'ApplyDeployment', deployment('web', { replicas: 2 }));
  await until('both replicas on node-a', () => a.desired.length === 2);
  a.reportAll('ready');
  await eventually('available', 5_000, async () => ((await getDeployment(c, 'web')).status === 'available' ? true : undefined));
  const b = await c.agent('node-b');

  await c.client.drainNode('node-a');
  await until('replacements on node-b', () => b.desired.length >= 1);
  assert.equal(a.desired.length, 2, 'nothing on node-a stops before a replacement is ready');
  for (let i = 0; i < 10 && a.desired.length > 0; i++) {
    b.reportAll('ready');
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  await until('node-a emptied', () => a.desired.length === 0 && b.desired.length === 2, 10_000);

  // A spec change (here: an environment variable) is a new generation, rolled out the same way.
  const before = new Set(b.desired.map((x) => x.id));
  const rolled = await c.call<Deployment>('DeploymentService', 'ApplyDeployment', deployment('web', { replicas: 2, env: { MODE: 'fast' } }));
  assert.equal(rolled.generation, 2);
  for (let i = 0; i < 20 && [...b.desired].some((x) => before.has(x.id)); i++) {
    b.reportAll('ready', (x) => !before.has(x.id));
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await until('only generation 2 replicas', () => b.desired.length === 2 && b.desired.every((x) => !before.has(x.id)), 10_000);
  assert.deepEqual(b.desired.map((x) => b.run(x).env.MODE), ['fast', 'fast']);
});

test("a job's output: only rank 0's node pushes it, into the job's model and tenant with its lineage; the job succeeds naming the version", async (t) => {
  const c = await cluster(t);
  const reviews = Buffer.from('text,label\ngood,1\n');
  await c.client.push('dataset', { name: 'reviews', format: 'csv', sizeBytes: reviews.length }, Readable.from([reviews]));
  const a = await c.agent('node-a', { cpuMillis: 1000 });
  const b = await c.agent('node-b', { cpuMillis: 1000 });
  const output = { model: 'sentiment', format: 'onnx', metadata: { type: 'classification', inputFormat: 'text', outputFormat: 'tensor', accuracy: 0.9, labels: { team: 'nlp' }, sourceJob: '', sourceDatasets: [] as string[] } };
  const spec = (name: string, extra: Record<string, unknown> = {}) => ({
    spec: { name, image: 'mlfleet/runtime:0.1.0', command: ['node', 'train.js'], datasets: ['reviews'], workers: 1, resources: { cpuMillis: 800 }, output, ...extra },
  });

  // A bad output model name is refused up front, and nothing starts.
  await assert.rejects(c.call('JobService', 'RunJob', spec('bad', { output: { ...output, model: 'Not A Name' } })), /INVALID_ARGUMENT: .*spec\.output\.model/);
  await assert.rejects(c.call('JobService', 'RunJob', spec('bad', { output: { ...output, format: 'csv' } })), /INVALID_ARGUMENT: .*spec\.output\.format/);
  await assert.rejects(getJob(c, 'bad'), /NOT_FOUND/);

  await c.call('JobService', 'RunJob', spec('train'));
  await until('placed', () => a.desired.length + b.desired.length === 1);
  const [mine, other] = a.desired.length === 1 ? [a, b] : [b, a];
  const worker = mine.desired[0]!;
  assert.deepEqual(mine.run(worker).output?.model, 'sentiment');
  mine.report({ id: worker.id, state: 'running' });
  await eventually('running', 5_000, async () => ((await getJob(c, 'train')).allocations[0]?.status === 'running' ? true : undefined));

  const dir = tempDir(t, 'output');
  await writeFile(path.join(dir, 'model.onnx'), 'weights v1');
  const pushAs = (agent: FakeAgent, model = 'sentiment') =>
    coordinatorOutputPusher({ leader: () => c.address, token: () => agent.credential, credentials: grpc.credentials.createInsecure() })(
      { allocationId: worker.id, dir, output: { ...output, model, metadata: { ...output.metadata, sourceJob: 'forged', sourceDatasets: [] } } },
      new AbortController().signal,
    );
  // Another node, or another model name, is refused.
  await assert.rejects(pushAs(other), { code: 'PERMISSION_DENIED' });
  await assert.rejects(pushAs(mine, 'other-model'), { code: 'PERMISSION_DENIED' });
  const version = await pushAs(mine);
  assert.equal(version, 1);
  const stored = (await c.client.getArtifact('model', 'sentiment')).versions[0]!;
  assert.equal(stored.format, 'onnx');
  assert.equal(stored.metadata?.type, 'classification');
  assert.equal(stored.metadata?.sourceJob, 'job/train', 'the coordinator writes the lineage, not the agent');
  assert.deepEqual(stored.metadata?.sourceDatasets, ['reviews:1']);
  assert.equal(stored.metadata?.labels['source-attempt'], '1');
  assert.equal(stored.metadata?.labels.team, 'nlp');

  mine.report({ id: worker.id, state: 'completed', outputVersion: version });
  const done = await eventually('succeeded', 5_000, async () => {
    const j = await getJob(c, 'train');
    return j.status === 'succeeded' ? j : undefined;
  });
  assert.equal(done.outputModel, 'sentiment:1');
  assert.match(done.message, /its output is model sentiment:1/);
  assert.ok((await events(c, 'job/train')).some((e) => e.type === 'Succeeded' && e.message.includes('sentiment:1')));
  // The job has ended: its allocation pushes nothing more.
  await assert.rejects(pushAs(mine), { code: 'PERMISSION_DENIED' });

  // A job that fails pushes nothing, and a job without an output model cannot be pushed for.
  await c.call('JobService', 'RunJob', spec('plain', { output: null }));
  await until('placed', () => [...a.desired, ...b.desired].some((x) => x.workload === 'plain'));
  const plainOn = a.desired.some((x) => x.workload === 'plain') ? a : b;
  const plain = plainOn.desired.find((x) => x.workload === 'plain')!;
  await assert.rejects(
    coordinatorOutputPusher({ leader: () => c.address, token: () => plainOn.credential, credentials: grpc.credentials.createInsecure() })(
      { allocationId: plain.id, dir, output },
      new AbortController().signal,
    ),
    { code: 'PERMISSION_DENIED' },
  );
  assert.equal((await c.client.getArtifact('model', 'sentiment')).versions.length, 1);
});

test('a gang of 3 learns every rank\'s host:port and its master, the same on every worker', async (t) => {
  const c = await cluster(t);
  const agents = [await c.agent('node-a', { cpuMillis: 1000 }), await c.agent('node-b', { cpuMillis: 1000 }), await c.agent('node-c', { cpuMillis: 1000 })];
  await c.call('JobService', 'RunJob', { spec: { name: 'ddp', image: 'i', command: ['torchrun', 'train.py'], workers: 3, resources: { cpuMillis: 800 } } });
  await until('the gang is placed', () => agents.every((x) => x.desired.length === 1));
  const workers = agents.map((x) => ({ node: x.name, allocation: x.desired[0]!, run: x.run(x.desired[0]!) })).sort((x, y) => x.run.rank - y.run.rank);
  assert.deepEqual(workers.map((w) => w.run.rank), [0, 1, 2]);
  for (const w of workers) {
    assert.ok(w.allocation.hostPort > 0, 'each worker has a host port');
    assert.equal(w.run.port, JOB_PEER_PORT, 'it listens on the peer port in its container');
  }
  const peers = workers.map((w) => `${w.node}:${w.allocation.hostPort}`);
  for (const w of workers) {
    assert.deepEqual(w.run.peers, peers, 'every worker has the same peers, in rank order');
    const env = taskEnvironment(w.allocation.id, w.run, { model: undefined, datasets: {}, port: w.allocation.hostPort });
    assert.equal(env.MLFLEET_PEERS, peers.join(','));
    assert.equal(env.MASTER_ADDR, workers[0]!.node);
    assert.equal(env.MASTER_PORT, String(workers[0]!.allocation.hostPort));
    assert.equal(env.MLFLEET_WORLD_SIZE, '3');
    assert.equal(env.MLFLEET_RANK, String(w.run.rank));
  }
});

test("a gang's output is taken only once every worker exited 0: rank 0's push waits (UNAVAILABLE) until then", async (t) => {
  const c = await cluster(t);
  const a = await c.agent('node-a');
  const output = { model: 'joint', format: 'other', metadata: null };
  await c.call('JobService', 'RunJob', { spec: { name: 'pair', image: 'i', command: ['node'], workers: 2, output } });
  await until('placed', () => a.desired.length === 2);
  a.reportAll('running');
  const [rank0, rank1] = [...a.desired].sort((x, y) => a.run(x).rank - a.run(y).rank);
  await eventually('running', 5_000, async () => ((await getJob(c, 'pair')).allocations.every((x) => x.status === 'running') ? true : undefined));
  const dir = tempDir(t, 'output');
  await writeFile(path.join(dir, 'weights.bin'), 'joint weights');
  const push = () =>
    coordinatorOutputPusher({ leader: () => c.address, token: () => a.credential, credentials: grpc.credentials.createInsecure() })(
      { allocationId: rank0!.id, dir, output: { ...output, metadata: { type: '', inputFormat: '', outputFormat: '', accuracy: 0, labels: {}, sourceJob: '', sourceDatasets: [] } } },
      new AbortController().signal,
    );
  await assert.rejects(push(), (err: Error & { code?: string }) => err.code === 'UNAVAILABLE' && /worker 1 not done yet/.test(err.message));
  a.report({ id: rank1!.id, state: 'completed' });
  await eventually('rank 1 completed', 5_000, async () => ((await getJob(c, 'pair')).allocations.find((x) => x.rank === 1)?.status === 'completed' ? true : undefined));
  assert.equal(await push(), 1);
  a.report({ id: rank0!.id, state: 'completed', outputVersion: 1 });
  const done = await eventually('succeeded', 5_000, async () => {
    const j = await getJob(c, 'pair');
    return j.status === 'succeeded' ? j : undefined;
  });
  assert.equal(done.outputModel, 'joint:1');
});
