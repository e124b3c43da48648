// Bad job requests against a real coordinator (SQLite, in this process) with a scripted agent
// ready to take work: a missing dataset, an unknown stack, a stack that does not train, zero
// workers and an output model in another tenant are refused — through the gRPC API with the
// status and a message that says what to do, through `mlfleetctl jobs run` with one line and a
// non-zero exit — and nothing is started: no job, no allocation, no event, nothing sent to the
// agent. A good request afterwards is placed at once, so the agent would have seen a bad one.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CoordinatorClient } from '../../shared/client.js';
import type { Job } from '../../shared/proto.js';
import { startLeader } from '../helpers/coordinator.js';
import { until } from '../helpers/eventually.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { mlfleetctl, type Run } from '../helpers/mlfleetctl.js';
import { WorkloadApi } from '../helpers/workload-api.js';

interface Fleet {
  address: string;
  admin: string;
  /** The workload services as the admin. */
  api: WorkloadApi;
  client: CoordinatorClient;
  agent: FakeAgent;
  /** The workload services with another token (closed after the test). */
  as(token: string): WorkloadApi;
}

async function fleet(t: TestContext): Promise<Fleet> {
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 100 } });
  const address = coordinator.address;
  const client = new CoordinatorClient([address], { token: admin });
  const apis: WorkloadApi[] = [];
  const as = (token: string) => {
    const api = new WorkloadApi(address, token);
    apis.push(api);
    return api;
  };
  const api = as(admin);
  t.after(() => {
    for (const a of apis) a.close();
    client.close();
  });
  const agent = await FakeAgent.start(t, 'node-a', address, join);
  return { address, admin, api, client, agent, as };
}

const job = (name: string, extra: Record<string, unknown> = {}) => ({
  spec: { name, image: 'mlfleet/runtime:0.1.0', command: ['node', 'train.js'], workers: 1, ...extra },
});

/** What a refusal must leave behind: nothing at all, in any tenant. */
async function assertNothingStarted(f: Fleet, name: string): Promise<void> {
  const { jobs } = await f.api.call<{ jobs: Job[] }>('JobService', 'ListJobs', {});
  assert.deepEqual(jobs.map((j) => `${j.tenant}/${j.spec?.name}`), [], `no job after refusing "${name}"`);
  const { allocations } = await f.api.call<{ allocations: unknown[] }>('AllocationService', 'ListAllocations', { all: true });
  assert.deepEqual(allocations, [], 'no allocation');
  assert.deepEqual((await f.api.events(`job/${name}`)).map((e) => `${e.type}: ${e.message}`), [], 'no event');
  assert.deepEqual(f.agent.desired, [], 'nothing sent to the agent');
}

/** A request the leader must refuse with `code`, its message matching `message`. */
async function refused(f: Fleet, api: WorkloadApi, request: ReturnType<typeof job> & { tenant?: string }, code: grpc.status, message: RegExp): Promise<void> {
  await assert.rejects(api.call('JobService', 'RunJob', request), (err: grpc.ServiceError) => {
    assert.equal(grpc.status[err.code], grpc.status[code], err.message);
    assert.match(err.details, message);
    return true;
  });
  await assertNothingStarted(f, request.spec.name);
}

/**
 * The CLI's answer to a refused request: the error on one line of stderr (a usage error, exit 2,
 * adds only the pointer to --help), nothing on stdout, exit `code`.
 */
function assertOneLineError(run: Run, code: number, message: RegExp): void {
  assert.equal(run.code, code, run.stderr);
  assert.equal(run.stdout, '');
  const [error, ...rest] = run.stderr.trimEnd().split('\n');
  assert.match(error!, /^mlfleetctl: /);
  assert.match(error!, message);
  assert.deepEqual(rest, code === 2 ? ['(run with --help for usage)'] : [], 'the error is one line');
}

/** A good job is placed on the agent at once: refused ones would have been too. */
async function assertGoodJobPlaced(f: Fleet, api: WorkloadApi): Promise<void> {
  await api.call('JobService', 'RunJob', job('good'));
  await until('the good job reaches the agent', () => f.agent.desired.some((a) => a.workload === 'good'));
}

test('RunJob refuses a missing dataset, an unknown stack, a stack that does not train and zero workers, and starts nothing', async (t) => {
  const f = await fleet(t);
  const rows = Buffer.from('text,label\ngood,1\n');
  await f.client.push('dataset', { name: 'reviews', format: 'csv', sizeBytes: rows.length }, Readable.from([rows]));

  await refused(f, f.api, job('missing-data', { datasets: ['reviews', 'tweets'] }), grpc.status.NOT_FOUND, /dataset "tweets" not found \(in tenant "default"\); `mlfleetctl datasets ls` lists them/);
  await refused(f, f.api, job('missing-version', { datasets: ['reviews:2'] }), grpc.status.NOT_FOUND, /dataset "reviews" has no version 2 \(in tenant "default"\)/);
  await refused(f, f.api, job('unknown-stack', { image: '', stack: 'pytorch' }), grpc.status.INVALID_ARGUMENT, /unknown stack "pytorch"; stacks: .*onnx/);
  for (const stack of ['tensorflow-serving', 'triton', 'mlserver']) {
    await refused(f, f.api, job(`on-${stack}`, { image: '', stack }), grpc.status.INVALID_ARGUMENT, new RegExp(`stack "${stack}" does not train`));
  }
  await refused(f, f.api, job('nobody', { workers: 0 }), grpc.status.INVALID_ARGUMENT, /spec\.workers: must be at least 1/);
  await assertGoodJobPlaced(f, f.api);
});

test("a developer cannot make a job's output another tenant's model, and starts nothing trying", async (t) => {
  const f = await fleet(t);
  for (const name of ['vision', 'nlp']) await f.client.createTenant({ name, description: '', quota: null });
  const developer = async (tenant: string) => (await f.client.createToken({ tenant, role: 'developer', description: `${tenant} developer`, ttlMs: 0 })).token;
  const vision = new CoordinatorClient([f.address], { token: await developer('vision') });
  t.after(() => vision.close());
  const weights = Buffer.from('vision weights');
  await vision.push('model', { name: 'sentiment', format: 'onnx', sizeBytes: weights.length }, Readable.from([weights]));
  const nlpToken = await developer('nlp');
  const nlp = f.as(nlpToken);
  const output = { model: 'sentiment', format: '', metadata: null };

  // In the other tenant (as admins may): that tenant is not there for a developer of nlp.
  await refused(f, nlp, { ...job('steal', { output }), tenant: 'vision' }, grpc.status.NOT_FOUND, /tenant "vision" not found/);
  // A model name cannot carry a tenant: a job's output is always a model of its own tenant.
  await refused(f, nlp, job('steal', { output: { ...output, model: 'vision/sentiment' } }), grpc.status.INVALID_ARGUMENT, /spec\.output\.model: must be lowercase letters, digits/);
  const cli = (...args: string[]) => mlfleetctl(t, ['--coordinator', f.address, 'jobs', 'run', 'steal', '--image', 'mlfleet/runtime:0.1.0', ...args, '--', 'node', 'train.js'], { MLFLEET_TOKEN: nlpToken });
  assertOneLineError(await cli('--tenant', 'vision', '--output-model', 'sentiment'), 1, /tenant "vision" not found/);
  assertOneLineError(await cli('--output-model', 'vision/sentiment'), 2, /output model "vision\/sentiment" is not valid/);
  await assertNothingStarted(f, 'steal');
  assert.equal((await vision.getArtifact('model', 'sentiment')).versions.length, 1, "vision's model is untouched");
  await assertGoodJobPlaced(f, nlp);
});

test('mlfleetctl jobs run prints one line and exits non-zero for zero workers, a missing dataset or a stack that does not train, and starts nothing', async (t) => {
  const f = await fleet(t);
  const run = (name: string, ...args: string[]) => mlfleetctl(t, ['--coordinator', f.address, 'jobs', 'run', name, ...args], { MLFLEET_TOKEN: f.admin });
  const image = ['--image', 'mlfleet/runtime:0.1.0'];

  assertOneLineError(await run('nobody', ...image, '--workers', '0', '--', 'node', 'train.js'), 2, /--workers must be more than 0/);
  await assertNothingStarted(f, 'nobody');
  assertOneLineError(await run('missing-data', ...image, '--dataset', 'tweets', '--', 'node', 'train.js'), 1, /dataset "tweets" not found \(in tenant "default"\)/);
  await assertNothingStarted(f, 'missing-data');
  assertOneLineError(await run('unknown-stack', '--stack', 'pytorch', '--', 'train.py'), 1, /unknown stack "pytorch"; stacks: .*onnx/);
  await assertNothingStarted(f, 'unknown-stack');
  assertOneLineError(await run('on-triton', '--stack', 'triton', '--', 'train.py'), 1, /stack "triton" does not train/);
  await assertNothingStarted(f, 'on-triton');
  await assertGoodJobPlaced(f, f.api);
});
