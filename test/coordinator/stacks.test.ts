// Stacks as a registry, inside a real coordinator (SQLite store): the built-ins are listed and
// cannot be changed; admins register, replace and delete their own, which outlive the leader;
// a bad stack is refused naming every wrong field; a deployment on a stack runs what the stack
// says. For the built-in stacks whose images cannot be pulled here (TensorFlow Serving, Triton,
// MLServer), the container the docker driver would create is checked instead of the server.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { containerSpec } from '../../agent/drivers/docker-driver.js';
import { driverTask } from '../../agent/reconciler.js';
import type { Task } from '../../agent/drivers/driver.js';
import { CoordinatorClient, type StackInput } from '../../shared/client.js';
import type { Allocation } from '../../shared/proto.js';
import { compileDeploymentSpec, type DeploymentInput } from '../../shared/workload-spec.js';
import { startLeader } from '../helpers/coordinator.js';
import { until } from '../helpers/eventually.js';
import { FakeAgent, type FakeAgentOptions } from '../helpers/fake-agent.js';

const GiB = 2 ** 30;

interface Cluster {
  dir: string;
  admin: CoordinatorClient;
  client(token: string): CoordinatorClient;
  token(role: 'developer' | 'consumer'): Promise<string>;
  agent(name: string, options?: FakeAgentOptions): Promise<FakeAgent>;
  close(): Promise<void>;
}

async function cluster(t: TestContext, dataDir?: string): Promise<Cluster> {
  const { coordinator, dir, admin, join } = await startLeader(t, { workloads: { tickMs: 100 }, ...(dataDir ? { dataDir } : {}) });
  const client = (token: string) => {
    const c = new CoordinatorClient([coordinator.address], { token });
    t.after(() => c.close());
    return c;
  };
  const adminClient = client(admin);
  return {
    dir,
    admin: adminClient,
    client,
    token: async (role) => (await adminClient.createToken({ tenant: 'default', role, description: role, ttlMs: 0 })).token,
    agent: (name, options) => FakeAgent.start(t, name, coordinator.address, join, options),
    close: () => coordinator.close(),
  };
}

function stack(name: string, fields: Partial<StackInput> = {}): StackInput {
  return {
    name,
    description: 'a server of our own',
    image: 'registry.example.com/team/server:1.0',
    formats: ['safetensors'],
    modelMount: '/srv/model',
    port: 9000,
    protocol: 'http',
    readinessPath: '/healthz',
    ...fields,
  };
}

async function pushModel(c: Cluster, name: string, format: string): Promise<void> {
  const body = Buffer.from(`model ${name}`);
  await c.admin.push('model', { name, format, sizeBytes: body.length }, Readable.from([body]));
}

function deploy(c: Cluster, input: Omit<DeploymentInput, 'replicas'> & { replicas?: number }) {
  return c.admin.applyDeployment(compileDeploymentSpec({ replicas: 1, ...input }));
}

async function placed(agent: FakeAgent, deployment: string): Promise<Allocation> {
  await until(`a replica of ${deployment} on ${agent.name}`, () => agent.desired.some((a) => a.workload === deployment));
  return agent.desired.find((a) => a.workload === deployment)!;
}

/** The Task the agent's reconciler hands the docker driver for an allocation, the model in its cache. */
function dockerTask(agent: FakeAgent, allocation: Allocation): Task {
  const spec = agent.run(allocation);
  const model = spec.model!;
  return driverTask(allocation, spec, new Map([[model, `/var/lib/mlfleet/cache/${model.digest.slice(7)}`]]), { onHost: false, dirs: undefined });
}

interface ServingExpectation {
  image: string;
  /** Where the stack mounts the model. */
  mount: string;
  port: number;
  readinessPath: string;
}

/**
 * Deploys one replica on `agent` and builds the container the docker driver would create for
 * it, checking what every serving stack needs: its image, the model mounted read-only at the
 * stack's path, its port exposed and published on the replica's host port (loopback only), its readiness check.
 */
async function servingContainer(c: Cluster, agent: FakeAgent, input: Omit<DeploymentInput, 'replicas'>, expected: ServingExpectation) {
  await deploy(c, input);
  const allocation = await placed(agent, input.name);
  const task = dockerTask(agent, allocation);
  assert.equal(task.spec.readinessPath, expected.readinessPath);
  const spec = containerSpec(task, agent.name, { name: 'mlfleet-tenant-default' });
  assert.equal(spec.Image, expected.image);
  assert.deepEqual(spec.HostConfig?.Binds, [`${task.mounts[0]!.hostPath}:${expected.mount}:ro`]);
  assert.deepEqual(spec.ExposedPorts, { [`${expected.port}/tcp`]: {} });
  assert.deepEqual(spec.HostConfig?.PortBindings, { [`${expected.port}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: String(allocation.hostPort) }] });
  for (const variable of [`PORT=${expected.port}`, `MLFLEET_MODEL_PATH=${expected.mount}`]) assert.ok(spec.Env?.includes(variable), `${variable} in ${spec.Env?.join(' ')}`);
  return spec;
}

test('the built-in stacks are listed first, as documented, and cannot be replaced or deleted', async (t) => {
  const c = await cluster(t);
  const { stacks } = await c.admin.listStacks();
  assert.deepEqual(stacks.map((s) => [s.name, s.builtin]), [
    ['onnx', true],
    ['tensorflow-serving', true],
    ['triton', true],
    ['mlserver', true],
  ]);
  assert.deepEqual(await c.admin.getStack('onnx'), {
    name: 'onnx',
    description: 'the reference ONNX runtime (Open Inference Protocol v2 over HTTP); trains by running a Node script that writes ONNX',
    image: 'mlfleet/onnx:0.1.0',
    formats: ['onnx'],
    modelMount: '/model',
    port: 8080,
    protocol: 'v2',
    readinessPath: '/v2/health/ready',
    readinessTimeoutMs: 900_000,
    command: [],
    env: {},
    gpus: false,
    trainCommand: ['node', '/opt/mlfleet/dist/agent/stacks/onnx/train.js'],
    builtin: true,
  });
  await assert.rejects(c.admin.registerStack(stack('onnx', { formats: ['onnx'] })), { code: 'FAILED_PRECONDITION', message: /"onnx" is built in and cannot be replaced/ });
  await assert.rejects(c.admin.deleteStack('triton'), { code: 'FAILED_PRECONDITION', message: /"triton" is built in/ });
  await assert.rejects(c.admin.getStack('nope'), { code: 'NOT_FOUND', message: /stack "nope" not found; stacks: onnx, tensorflow-serving, triton, mlserver/ });
});

test('an admin registers, replaces and deletes a user stack; users read it; it outlives the leader', async (t) => {
  const c = await cluster(t);
  const registered = await c.admin.registerStack(stack('custom', { env: { WORKERS: '2' }, gpus: true }));
  assert.equal(registered.builtin, false);
  assert.equal(registered.readinessTimeoutMs, 900_000, 'a timeout of 0 becomes the default');
  assert.deepEqual(registered.env, { WORKERS: '2' });

  const consumer = c.client(await c.token('consumer'));
  const developer = c.client(await c.token('developer'));
  assert.deepEqual(await consumer.getStack('custom'), registered);
  assert.deepEqual((await developer.listStacks()).stacks.map((s) => s.name), ['onnx', 'tensorflow-serving', 'triton', 'mlserver', 'custom']);
  await assert.rejects(developer.registerStack(stack('mine')), { code: 'PERMISSION_DENIED' });
  await assert.rejects(consumer.deleteStack('custom'), { code: 'PERMISSION_DENIED' });

  const replaced = await c.admin.registerStack(stack('custom', { image: 'registry.example.com/team/server:2.0', readinessTimeoutMs: 30_000 }));
  assert.equal(replaced.image, 'registry.example.com/team/server:2.0');
  assert.equal((await c.admin.getStack('custom')).readinessTimeoutMs, 30_000);
  await c.admin.registerStack(stack('kept'));

  // A new coordinator on the same store knows the registered stacks.
  await c.close();
  const again = await cluster(t, c.dir);
  assert.equal((await again.admin.getStack('custom')).image, 'registry.example.com/team/server:2.0');

  await again.admin.deleteStack('custom');
  await assert.rejects(again.admin.getStack('custom'), { code: 'NOT_FOUND' });
  await assert.rejects(again.admin.deleteStack('custom'), { code: 'NOT_FOUND', message: /stacks ls/ });
  assert.deepEqual((await again.admin.listStacks()).stacks.filter((s) => !s.builtin).map((s) => s.name), ['kept']);
});

test('a bad stack is refused naming every wrong field, and nothing is stored', async (t) => {
  const c = await cluster(t);
  const bad = {
    name: 'Bad_Name',
    image: 'not an image',
    formats: ['onnx', 'pickle'],
    modelMount: 'model',
    port: 0,
    protocol: 'grpc',
    readinessPath: 'ready',
    env: { '1X': 'y' },
    builtin: true,
  };
  await assert.rejects(c.admin.registerStack(bad), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'INVALID_ARGUMENT');
    for (const field of ['stack.name', 'stack.image', 'stack.formats.1', 'stack.modelMount', 'stack.port', 'stack.protocol', 'stack.readinessPath', 'stack.env.1X', 'stack.builtin']) {
      assert.match(err.message, new RegExp(`${field.replaceAll('.', '\\.')}: `), `names ${field}: ${err.message}`);
    }
    assert.match(err.message, /formats\.1: must be one of onnx, tensorflow-savedmodel, torchscript, safetensors, other/);
    assert.match(err.message, /port: must be a port number \(1-65535\)/);
    return true;
  });
  await assert.rejects(c.admin.registerStack(stack('x', { formats: [] })), { code: 'INVALID_ARGUMENT', message: /formats: give at least one model format/ });
  await assert.rejects(c.admin.registerStack(stack('x', { modelMount: '/models/../etc' })), { code: 'INVALID_ARGUMENT', message: /modelMount: must not contain "\." or "\.\." segments/ });
  await assert.rejects(c.admin.registerStack(stack('x', { port: 70_000 })), { code: 'INVALID_ARGUMENT', message: /port: must be a port number/ });
  await assert.rejects(c.admin.registerStack(stack('x', { image: '' })), { code: 'INVALID_ARGUMENT', message: /image: is required/ });
  assert.deepEqual((await c.admin.listStacks()).stacks.filter((s) => !s.builtin), []);
});

test('a deployment on a registered stack runs its image, port, mount, readiness check, command and environment', async (t) => {
  const c = await cluster(t);
  await c.admin.registerStack(
    stack('custom', { command: ['serve', '--port', '9000'], env: { WORKERS: '2', MODE: 'fast' }, readinessTimeoutMs: 30_000 }),
  );
  await pushModel(c, 'weights', 'safetensors');
  await pushModel(c, 'graph', 'onnx');
  const a = await c.agent('node-a');

  await deploy(c, { name: 'web', model: 'weights', stack: 'custom', env: { MODE: 'careful' } });
  const run = a.run(await placed(a, 'web'));
  assert.equal(run.image, 'registry.example.com/team/server:1.0');
  assert.equal(run.port, 9000);
  assert.equal(run.model?.mountPath, '/srv/model');
  assert.equal(run.readinessPath, '/healthz');
  assert.equal(run.readinessTimeoutMs, 30_000);
  assert.deepEqual(run.command, ['serve', '--port', '9000']);
  assert.deepEqual(run.env, { WORKERS: '2', MODE: 'careful' }, "the deployment's env overrides the stack's");

  await assert.rejects(deploy(c, { name: 'graph', model: 'graph', stack: 'custom' }), {
    code: 'INVALID_ARGUMENT',
    message: 'stack "custom" serves safetensors models; default/graph:1 is onnx',
  });
  await assert.rejects(deploy(c, { name: 'nope', model: 'weights', stack: 'nope' }), {
    code: 'INVALID_ARGUMENT',
    message: 'unknown stack "nope"; stacks: onnx, tensorflow-serving, triton, mlserver, custom',
  });
  await assert.rejects(deploy(c, { name: 'gpu', model: 'weights', stack: 'custom', resources: { gpus: 1 } }), {
    code: 'INVALID_ARGUMENT',
    message: /stack "custom" does not use GPUs/,
  });
  await assert.rejects(c.admin.deleteStack('custom'), { code: 'FAILED_PRECONDITION', message: /used by deployment "web" of tenant "default"/ });
  await c.admin.deleteDeployment('web');
  await c.admin.deleteStack('custom');
});

test('tensorflow-serving: the SavedModel is version 1 of "model" under /models, REST on 8501', async (t) => {
  const c = await cluster(t);
  await pushModel(c, 'saved', 'tensorflow-savedmodel');
  const a = await c.agent('node-a');
  const spec = await servingContainer(c, a, { name: 'tf', model: 'saved', stack: 'tensorflow-serving' }, {
    image: 'tensorflow/serving:2.16.1',
    mount: '/models/model/1',
    port: 8501,
    readinessPath: '/v1/models/model/metadata',
  });
  assert.equal(spec.Cmd, undefined, "the image's entrypoint starts tensorflow_model_server");
  assert.ok(spec.Env?.includes('MODEL_NAME=model'), `env: ${spec.Env?.join(' ')}`);
  await assert.rejects(deploy(c, { name: 'wrong', model: 'saved', stack: 'mlserver' }), { message: /stack "mlserver" serves other, safetensors, onnx models/ });
});

test('triton: the model repository at /models, tritonserver on 8000, GPUs passed through', async (t) => {
  const c = await cluster(t);
  await pushModel(c, 'repository', 'other');
  const a = await c.agent('gpu-a', { gpus: [{ model: 'NVIDIA H100 80GB HBM3', memoryBytes: 80 * GiB }] });
  const spec = await servingContainer(c, a, { name: 'triton', model: 'repository', stack: 'triton', resources: { gpus: 1 } }, {
    image: 'nvcr.io/nvidia/tritonserver:24.08-py3',
    mount: '/models',
    port: 8000,
    readinessPath: '/v2/health/ready',
  });
  assert.deepEqual(spec.Cmd, ['tritonserver', '--model-repository=/models', '--http-port=8000']);
  assert.deepEqual(spec.HostConfig?.DeviceRequests, [{ Driver: 'nvidia', DeviceIDs: ['0'], Capabilities: [['gpu']] }]);
});

test('mlserver: the model folder at /mnt/models, `mlserver start` on 8080, no GPUs', async (t) => {
  const c = await cluster(t);
  await pushModel(c, 'sklearn', 'other');
  const a = await c.agent('node-a');
  const spec = await servingContainer(c, a, { name: 'ml', model: 'sklearn', stack: 'mlserver' }, {
    image: 'seldonio/mlserver:1.6.1',
    mount: '/mnt/models',
    port: 8080,
    readinessPath: '/v2/health/ready',
  });
  assert.deepEqual(spec.Cmd, ['mlserver', 'start', '/mnt/models']);
  assert.ok(spec.Env?.includes('MLSERVER_HTTP_PORT=8080'));
  assert.equal(spec.HostConfig?.DeviceRequests, undefined);
  await assert.rejects(deploy(c, { name: 'gpu', model: 'sklearn', stack: 'mlserver', resources: { gpuMemoryBytes: 10 * GiB } }), {
    message: /stack "mlserver" does not use GPUs/,
  });
});
