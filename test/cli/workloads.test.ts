// `mlfleetctl deploy`, `apply`, `deployments …`, `jobs …`, `ps`, `logs` and `events` as users run
// them: the compiled CLI as a child process against a real coordinator (SQLite, in this
// process), with scripted agents on real sessions — and, for logs, a real agent running real
// processes. Bad usage exits 2 before any connection is made.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { compileDeploymentSpec } from '../../shared/workload-spec.js';
import { coordinatorOptions, createCoordinator } from '../helpers/coordinator.js';
import { eventually, until } from '../helpers/eventually.js';
import { CLI, mlfleetctl, runScript, tempHome, type Run } from '../helpers/mlfleetctl.js';
import { startAgent, tempDir } from '../helpers/processes.js';
import { workloadCluster, type WorkloadCluster } from '../helpers/workload-cluster.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

interface Cluster extends WorkloadCluster {
  ctl(...args: string[]): Promise<Run>;
}

async function cluster(t: TestContext): Promise<Cluster> {
  const c = await workloadCluster(t);
  return { ...c, ctl: (...args) => mlfleetctl(t, ['--coordinator', c.address, ...args], { MLFLEET_TOKEN: c.admin }) };
}

async function pushModel(c: Cluster, name: string, alias?: string): Promise<void> {
  const body = Buffer.from(`model ${name}`);
  const version = await c.client.push('model', { name, format: 'onnx', sizeBytes: body.length }, Readable.from([body]));
  if (alias) await c.client.setAlias('model', name, alias, version.version);
}

function ok(run: Run, what: string): string {
  assert.equal(run.code, 0, `${what}: exit ${run.code}\n${run.stderr}`);
  return run.stdout;
}

function json<T>(run: Run, what: string): T {
  return JSON.parse(ok(run, what)) as T;
}

/** A TCP listener that counts connections: bad usage must never reach the coordinator. */
async function listener(t: TestContext): Promise<{ address: string; connections: () => number }> {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, connections: () => connections };
}

/** mlfleetctl with `input` on stdin. */
function withStdin(t: TestContext, args: string[], env: Record<string, string>, input: string): Promise<Run> {
  return runScript(t, CLI, args, env, input);
}

interface DeploymentJson {
  name: string;
  tenant: string;
  model: string;
  stack: string;
  image: string;
  resolvedVersion: number;
  modelDigest: string;
  replicas: number;
  readyReplicas: number;
  status: string;
  message: string;
  generation: number;
  env: Record<string, string>;
  resources: { cpuMillis: number; memoryBytes: number };
  constraints: Record<string, string>;
  maxPerNode: number;
  rollout: { maxSurge: number; maxUnavailable: number };
  allocations: { id: string; node: string; status: string; endpoint: string; hostPort: number; gpuIndexes: number[]; kind: string; workload: string }[];
}

interface JobJson {
  name: string;
  status: string;
  attempts: number;
  message: string;
  outputModel: string;
  output: { model: string; format: string; type: string; inputFormat: string; outputFormat: string; accuracy: number; labels: Record<string, string> } | null;
  image: string;
  command: string[];
  workers: number;
  maxRetries: number;
  retryBackoffMs: number;
  deadlineMs: number;
  env: Record<string, string>;
  resources: { cpuMillis: number; memoryBytes: number };
  allocations: { id: string; rank: number; attempt: number; node: string; status: string }[];
}

// ---- bad usage ---------------------------------------------------------------------------------

test('bad flags and arguments are usage errors (exit 2) that never reach the coordinator', async (t) => {
  const target = await listener(t);
  const cases: [string[], RegExp][] = [
    [['deploy', 'web', '--stack', 'onnx'], /required option '--model <ref>' not specified/],
    [['deploy', 'web', '--model', 'm', '--stack', 'onnx', '--image', 'busybox'], /option '--stack <stack>' cannot be used with option '--image <image>'/],
    [['deploy', 'web', '--model', 'm'], /give --stack STACK \(a built-in runtime such as onnx\) or --image IMAGE/],
    [['deploy', 'web', '--model', 'm', '--stack', 'onnx', '--cpu', '5x'], /--cpu "5x" is not a CPU amount/],
    [['deploy', 'web', '--model', 'm', '--stack', 'onnx', '--memory', '12Q'], /--memory "12Q" is not a size/],
    [['deploy', 'web', '--model', 'm', '--stack', 'onnx', '--replicas', '-1'], /--replicas must be between 0 and/],
    [['deploy', 'web', '--model', 'm', '--stack', 'onnx', '--gpus', 'two'], /--gpus "two" is not a whole number/],
    [['deploy', 'web', '--model', 'm', '--stack', 'onnx', '--env', '1X=2'], /"1X" is not valid; environment variable names/],
    [['deploy', 'web', '--model', 'm', '--stack', 'onnx', '--constraint', 'zone'], /--constraint "zone" is not KEY=VALUE/],
    [['deploy', 'web', '--model', 'm:0', '--stack', 'onnx'], /the version after ":" must be a positive whole number/],
    [['deploy', 'Web', '--model', 'm', '--stack', 'onnx'], /name "Web" is not valid/],
    [['deploy', 'web', '--model', 'm', '--stack', 'onnx', 'python', 'serve.py'], /unexpected argument "python"; the command goes after --, as in: mlfleetctl deploy NAME … -- python main.py/],
    [['jobs', 'run', 'train', '--image', 'busybox', '--workers', '0', '--', 'true'], /--workers must be more than 0/],
    [['jobs', 'run', 'train', '--image', 'busybox', '--retry-backoff', 'soon', '--', 'true'], /--retry-backoff "soon" is not a duration/],
    [['jobs', 'run', 'train', '--', 'true'], /give --stack STACK/],
    [['jobs', 'run', 'train', '--image', 'busybox', 'true'], /the command goes after --, as in: mlfleetctl jobs run NAME/],
    [['jobs', 'run', 'train', '--image', 'busybox', '--output-model-type', 'x', '--', 'true'], /give --output-model NAME too/],
    [['jobs', 'run', 'train', '--image', 'busybox', '--output-model', 'Bad Name', '--', 'true'], /output model "Bad Name" is not valid/],
    [['jobs', 'run', 'train', '--image', 'busybox', '--output-model', 'm', '--output-model-format', 'csv', '--', 'true'], /Allowed choices are onnx/],
    [['deployments', 'scale', 'web', 'many'], /REPLICAS "many" is not a whole number/],
    [['logs', 'xyz'], /"xyz" is not an allocation id/],
    [['logs', 'abcd', '--tail', 'lots'], /--tail "lots" is not a size/],
    [['events', '--object', 'web'], /"web" is not an object; use deployment\/NAME, job\/NAME, node\/NAME, source\/NAME or model\/NAME/],
    [['events', '--replay', '5000'], /--replay must be between 0 and 1000/],
    [['events', '--audit', '--no-follow'], /--no-follow goes with the live stream, not --audit/],
    [['events', '--limit', '5'], /--limit goes with --audit/],
    [['apply'], /required option '-f, --filename <file>' not specified/],
  ];
  for (const [args, message] of cases) {
    const run = await mlfleetctl(t, ['--coordinator', target.address, ...args]);
    assert.equal(run.code, 2, `mlfleetctl ${args.join(' ')} → ${run.code}: ${run.stderr}`);
    assert.match(run.stderr, message, args.join(' '));
    assert.equal(run.stdout, '', args.join(' '));
  }
  assert.equal(target.connections(), 0, 'no usage error may connect to the coordinator');
});

test('apply of an invalid file lists every problem by document and field, and sends nothing', async (t) => {
  const target = await listener(t);
  const dir = tempDir(t);
  const file = path.join(dir, 'FILE.yaml');
  writeFileSync(
    file,
    [
      'kind: Deployment',
      'name: web',
      'spec: { model: web, stack: onnx }',
      '---',
      'kind: Job',
      'name: train',
      'spec:',
      '  image: busybox',
      '  command: [python, train.py]',
      '  resources: { memory: 12Q }',
      '  replica: 2',
    ].join('\n'),
  );
  const run = await mlfleetctl(t, ['--coordinator', target.address, 'apply', '-f', file]);
  assert.equal(run.code, 2, run.stderr);
  assert.equal(run.stdout, '');
  assert.equal(
    run.stderr,
    [
      `mlfleetctl: ${file} is invalid (nothing was sent):`,
      `  ${file} document 2 (Job "train"): spec.resources.memory: "12Q" is not a size; use forms like 1000, 512Mi, 20Gi or 1.5GB`,
      `  ${file} document 2 (Job "train"): spec.replica: unknown field`,
      '',
    ].join('\n'),
  );

  const missing = await mlfleetctl(t, ['--coordinator', target.address, 'apply', '-f', path.join(dir, 'nope.yaml')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /^mlfleetctl: cannot read .*nope\.yaml: no such file or directory/);

  const stdin = await withStdin(t, ['--coordinator', target.address, 'apply', '-f', '-'], {}, 'kind: Deployment\nname: web\nspec: { stack: onnx }\n');
  assert.equal(stdin.code, 2);
  assert.match(stdin.stderr, /stdin document 1 \(Deployment "web"\): spec\.model: is required/);
  assert.equal(target.connections(), 0);
});

// ---- against a real coordinator ------------------------------------------------------------------

test('deploy, then deployments ls, show, scale and rm, ps and events', async (t) => {
  const c = await cluster(t);
  await pushModel(c, 'sentiment', 'production');
  const a = await c.agent('node-a', { labels: { zone: 'eu-1' } });
  const b = await c.agent('node-b', { labels: { zone: 'eu-1' } });

  const deployed = json<DeploymentJson>(
    await c.ctl(
      '-o', 'json', 'deploy', 'web', '--model', 'sentiment@production', '--stack', 'onnx', '--replicas', '2',
      '--cpu', '500m', '--memory', '512Mi', '--max-per-node', '1', '--constraint', 'zone=eu-1', '--env', 'LOG_LEVEL=debug',
    ),
    'deploy',
  );
  assert.equal(deployed.name, 'web');
  assert.equal(deployed.model, 'sentiment@production');
  assert.equal(deployed.stack, 'onnx');
  assert.equal(deployed.resolvedVersion, 1);
  assert.match(deployed.modelDigest, /^sha256:[0-9a-f]{64}$/);
  assert.equal(deployed.replicas, 2);
  assert.equal(deployed.generation, 1);
  assert.deepEqual(deployed.resources, { cpuMillis: 500, memoryBytes: 512 * MiB, gpus: 0, gpuMemoryBytes: 0, gpuModel: '', nicMbps: 0 });
  assert.deepEqual(deployed.constraints, { zone: 'eu-1' });
  assert.deepEqual(deployed.env, { LOG_LEVEL: 'debug' });
  assert.equal(deployed.maxPerNode, 1);
  assert.deepEqual(deployed.rollout, { maxSurge: 1, maxUnavailable: 0 });

  await until('a replica on each node', () => a.desired.length === 1 && b.desired.length === 1);
  a.reportAll('ready');
  b.reportAll('ready');
  const shown = await eventually('web available', 10_000, async () => {
    const d = json<DeploymentJson>(await c.ctl('-o', 'json', 'deployments', 'show', 'web'), 'deployments show');
    return d.status === 'available' ? d : undefined;
  });
  assert.equal(shown.readyReplicas, 2);
  assert.deepEqual(shown.allocations.map((x) => x.node).sort(), ['node-a', 'node-b']);
  for (const allocation of shown.allocations) {
    assert.equal(allocation.status, 'ready');
    assert.equal(allocation.endpoint, `${allocation.node}:${allocation.hostPort}`);
    assert.match(allocation.id, /^[0-9a-f]{16}$/);
    assert.deepEqual([allocation.kind, allocation.workload], ['deployment', 'web']);
  }

  const list = ok(await c.ctl('deployments', 'ls'), 'deployments ls').trimEnd().split('\n');
  assert.match(list[0]!, /^NAME\s+MODEL\s+VERSION\s+READY\s+STATUS\s+AGE$/);
  assert.match(list[1]!, /^web\s+sentiment@production\s+1\s+2\/2\s+available\s+\d/);
  assert.equal(list.length, 2);
  assert.deepEqual(
    json<DeploymentJson[]>(await c.ctl('-o', 'json', 'deployments', 'ls'), 'deployments ls -o json').map((d) => [d.name, d.readyReplicas]),
    [['web', 2]],
  );

  const detail = ok(await c.ctl('deployments', 'show', 'web'), 'deployments show');
  assert.match(detail, /^Name:\s+web$/m);
  assert.match(detail, /^Model:\s+sentiment@production → version 1$/m);
  assert.match(detail, /^Replicas:\s+2 ready of 2$/m);
  assert.match(detail, /^Resources:\s+cpu 500m, memory 512Mi per replica$/m);
  assert.match(detail, /^Allocations:\s+2$/m);
  assert.match(detail, /^ {2}ID\s+NODE\s+STATUS\s+ENDPOINT\s+GPUS\s+GEN\s+AGE$/m);
  for (const allocation of shown.allocations) {
    assert.match(detail, new RegExp(`^  ${allocation.id.slice(0, 8)}\\s+${allocation.node}\\s+ready\\s+${allocation.endpoint}\\s+-\\s+1\\s`, 'm'));
  }

  const ps = ok(await c.ctl('ps'), 'ps').trimEnd().split('\n');
  assert.match(ps[0]!, /^ID\s+WORKLOAD\s+NODE\s+STATUS\s+ENDPOINT\s+GPUS\s+AGE$/);
  assert.equal(ps.length, 3);
  assert.match(ps[1]!, /^[0-9a-f]{8}\s+deployment\/web\s+node-[ab]\s+ready\s+node-[ab]:\d+\s+-\s+\d/);
  const onA = json<{ id: string; node: string }[]>(await c.ctl('-o', 'json', 'ps', '--node', 'node-a'), 'ps --node');
  assert.deepEqual(
    onA.map((x) => x.node),
    ['node-a'],
  );

  // Three replicas, at most one per node, on two nodes: one waits, and show says why.
  const scaled = await c.ctl('deployments', 'scale', 'web', '3');
  assert.equal(ok(scaled, 'scale'), 'deployment/web scaled to 3 replicas (2 ready now)\n');
  const pending = await eventually('web pending', 10_000, async () => {
    const d = json<DeploymentJson>(await c.ctl('-o', 'json', 'deployments', 'show', 'web'), 'show');
    return d.status === 'pending' ? d : undefined;
  });
  assert.equal(pending.replicas, 3);
  assert.notEqual(pending.message, '');
  assert.match(ok(await c.ctl('deployments', 'show', 'web'), 'show'), new RegExp(`^Message:\\s+${pending.message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));

  const events = ok(await c.ctl('events', '--no-follow', '--replay', '100', '--object', 'deployment/web'), 'events').trimEnd().split('\n');
  for (const type of ['Created', 'Scheduled', 'Ready', 'Scaled']) {
    assert.ok(
      events.some((line) => new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\S+Z\\s+deployment/web\\s+${type}\\s`).test(line)),
      `a ${type} line among:\n${events.join('\n')}`,
    );
  }
  const eventsJson = ok(await c.ctl('-o', 'json', 'events', '--no-follow', '--replay', '2', '--object', 'deployment/web'), 'events -o json')
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as { id: number; object: string; type: string; time: string });
  assert.equal(eventsJson.length, 2);
  assert.ok(eventsJson[0]!.id < eventsJson[1]!.id, 'oldest first');
  assert.deepEqual(Object.keys(eventsJson[0]!), ['id', 'time', 'tenant', 'object', 'allocation', 'node', 'type', 'message']);

  assert.equal(ok(await c.ctl('deployments', 'rm', 'web'), 'rm'), 'deployment/web deleted; its replicas are being stopped\n');
  const gone = await c.ctl('deployments', 'show', 'web');
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /^mlfleetctl: .*deployment "web".*not found/im);
  assert.deepEqual(json(await c.ctl('-o', 'json', 'deployments', 'ls'), 'ls'), []);
  await until('the replicas are no longer desired', () => a.desired.length === 0 && b.desired.length === 0);
});

test('deploy prints what it did; deploying a changed spec configures the deployment', async (t) => {
  const c = await cluster(t);
  await pushModel(c, 'm');
  await c.agent('node-a');
  const created = ok(await c.ctl('deploy', 'api', '--model', 'm', '--image', 'mlfleet/runtime:0.1.0', '--port', '9000', '--readiness-path', '/ready', '--', 'serve', '--fast'), 'deploy');
  assert.match(created, /^deployment\/api created\n\nName:\s+api$/m);
  assert.match(created, /^Image:\s+mlfleet\/runtime:0\.1\.0$/m);
  assert.match(created, /^Command:\s+serve --fast$/m);
  const spec = (await c.client.getDeployment('api')).spec!;
  assert.deepEqual([spec.command, spec.port, spec.readinessPath, spec.replicas], [['serve', '--fast'], 9000, '/ready', 1]);

  const changed = json<DeploymentJson>(await c.ctl('-o', 'json', 'deploy', 'api', '--model', 'm', '--image', 'mlfleet/runtime:0.1.0', '--replicas', '2', '--max-surge', '0', '--max-unavailable', '1'), 'deploy again');
  assert.equal(changed.replicas, 2);
  assert.deepEqual(changed.rollout, { maxSurge: 0, maxUnavailable: 1 });
  const again = ok(await c.ctl('deploy', 'api', '--model', 'm', '--image', 'mlfleet/runtime:0.1.0', '--replicas', '3'), 'deploy a third time');
  assert.match(again, /^deployment\/api configured\n/);

  const unknownModel = await c.ctl('deploy', 'other', '--model', 'nope', '--stack', 'onnx');
  assert.equal(unknownModel.code, 1);
  assert.match(unknownModel.stderr, /nope/);
});

test('apply creates, then configures; a job that exists is refused and reported, the rest applied', async (t) => {
  const c = await cluster(t);
  await pushModel(c, 'sentiment', 'production');
  await c.agent('node-a', { labels: { zone: 'eu-1' } });
  const dir = tempDir(t);
  const file = path.join(dir, 'workloads.yaml');
  const write = (replicas: number) =>
    writeFileSync(
      file,
      `kind: Deployment
name: sentiment
spec:
  model: sentiment@production
  stack: onnx
  replicas: ${replicas}
  resources: { cpu: 500m, memory: 512Mi }
  constraints: { zone: eu-1 }
  priority: 10
  rollout: { maxSurge: 1, maxUnavailable: 0 }
---
kind: Job
name: train
spec:
  image: busybox
  command: [sh, -c, "echo training"]
  env: { EPOCHS: 3 }
  resources: { cpu: 1, memory: 1Gi }
  workers: 1
  retries: 2
  retryBackoff: 5s
  deadline: 1h
`,
    );
  write(1);
  assert.equal(ok(await c.ctl('apply', '-f', file), 'apply'), 'deployment/sentiment created\njob/train created\n');
  const deployment = await c.client.getDeployment('sentiment');
  assert.deepEqual(deployment.spec?.resources, { cpuMillis: 500, memoryBytes: 512 * MiB, gpus: 0, gpuMemoryBytes: 0, gpuModel: '', nicMbps: 0 });
  assert.deepEqual([deployment.spec?.priority, deployment.spec?.constraints], [10, { zone: 'eu-1' }]);
  const job = await c.client.getJob('train');
  assert.deepEqual(
    [job.spec?.command, job.spec?.env, job.spec?.maxRetries, job.spec?.retryBackoffMs, job.spec?.deadlineMs, job.spec?.resources?.memoryBytes],
    [['sh', '-c', 'echo training'], { EPOCHS: '3' }, 2, 5_000, 3_600_000, GiB],
  );

  write(2);
  const again = await c.ctl('apply', '-f', file);
  assert.equal(again.code, 1);
  assert.equal(again.stdout, 'deployment/sentiment configured\n');
  assert.match(again.stderr, /^mlfleetctl: job\/train: job "train" already exists/m);
  assert.match(again.stderr, /^mlfleetctl: 1 of 2 objects failed \(see above\)$/m);
  assert.equal((await c.client.getDeployment('sentiment')).spec?.replicas, 2);

  // stdin, -o json: one result per object.
  const piped = await withStdin(
    t,
    ['--coordinator', c.address, '-o', 'json', 'apply', '-f', '-'],
    { MLFLEET_TOKEN: c.admin },
    'kind: Job\nname: etl\nspec: { image: busybox, command: [true] }\n',
  );
  assert.equal(piped.code, 0, piped.stderr);
  const { tenant } = await c.client.getJob('etl');
  assert.deepEqual(JSON.parse(piped.stdout), [{ kind: 'job', name: 'etl', tenant, action: 'created' }]);
});

test('jobs run, ls, show and cancel', async (t) => {
  const c = await cluster(t);
  const a = await c.agent('node-a');
  const run = json<JobJson>(
    await c.ctl(
      '-o', 'json', 'jobs', 'run', 'train', '--image', 'pytorch/pytorch:2.3', '--workers', '2', '--retries', '1', '--retry-backoff', '2s',
      '--deadline', '1h', '--cpu', '1', '--memory', '1Gi', '--env', 'EPOCHS=3', '--', 'python', 'train.py', '--epochs', '3',
    ),
    'jobs run',
  );
  assert.equal(run.name, 'train');
  assert.equal(run.status, 'pending');
  assert.equal(run.output, null);
  assert.deepEqual(run.command, ['python', 'train.py', '--epochs', '3']);
  assert.deepEqual([run.workers, run.maxRetries, run.retryBackoffMs, run.deadlineMs], [2, 1, 2_000, 3_600_000]);
  assert.deepEqual([run.resources.cpuMillis, run.resources.memoryBytes, run.env], [1000, GiB, { EPOCHS: '3' }]);

  await until('both workers placed', () => a.desired.length === 2);
  a.reportAll('running');
  const running = await eventually('train running', 10_000, async () => {
    const j = json<JobJson>(await c.ctl('-o', 'json', 'jobs', 'show', 'train'), 'jobs show');
    return j.status === 'running' && j.allocations.every((x) => x.status === 'running') ? j : undefined;
  });
  assert.equal(running.attempts, 1);
  assert.equal(running.outputModel, '');
  assert.deepEqual(running.allocations.map((x) => [x.rank, x.attempt, x.node]).sort(), [[0, 1, 'node-a'], [1, 1, 'node-a']]);

  const shown = ok(await c.ctl('jobs', 'show', 'train'), 'jobs show');
  assert.match(shown, /^Status:\s+running$/m);
  assert.match(shown, /^Command:\s+python train\.py --epochs 3$/m);
  assert.match(shown, /^Attempts:\s+1 of at most 2 \(retry backoff 2s, doubling\)$/m);
  assert.match(shown, /^ {2}RANK\s+ID\s+NODE\s+STATUS\s+EXIT\s+GPUS\s+AGE$/m);
  assert.match(shown, /^ {2}0\s+[0-9a-f]{8}\s+node-a\s+running\s+-\s+-\s/m);

  const list = ok(await c.ctl('jobs', 'ls'), 'jobs ls').trimEnd().split('\n');
  assert.match(list[0]!, /^NAME\s+STATUS\s+WORKERS\s+ATTEMPTS\s+DURATION\s+AGE$/);
  assert.match(list[1]!, /^train\s+running\s+2\s+1\s+\S+\s+\S+$/);

  assert.equal(ok(await c.ctl('jobs', 'cancel', 'train'), 'cancel'), 'job/train cancelled\n');
  assert.equal(json<JobJson>(await c.ctl('-o', 'json', 'jobs', 'show', 'train'), 'show').status, 'cancelled');
  const twice = await c.ctl('jobs', 'cancel', 'train');
  assert.equal(twice.code, 1);
  assert.match(twice.stderr, /already ended \(cancelled\)/);
  const rerun = await c.ctl('jobs', 'run', 'train', '--image', 'busybox', '--', 'true');
  assert.equal(rerun.code, 1);
  assert.match(rerun.stderr, /job "train" already exists/);
  const missing = await c.ctl('jobs', 'show', 'nope');
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /not found/);
});

test('events follows new events until Ctrl-C, which ends it with exit 0', async (t) => {
  const c = await cluster(t);
  await pushModel(c, 'm');
  await c.client.applyDeployment(compileDeploymentSpec({ name: 'web', model: 'm', image: 'busybox', replicas: 0 }));
  const child = spawn(process.execPath, [CLI, '--coordinator', c.address, '-o', 'json', 'events', '--replay', '1', '--object', 'deployment/web'], {
    env: { PATH: process.env.PATH ?? '', HOME: await tempHome(t), MLFLEET_TOKEN: c.admin },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const lines: { type: string; object: string }[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => lines.push(JSON.parse(line) as { type: string; object: string }));

  await until('the replayed event', () => lines.length === 1, 15_000);
  assert.equal(lines[0]!.type, 'Created');
  await c.client.scaleDeployment('web', 1);
  await until('the new event, live', () => lines.some((e) => e.type === 'Scaled'), 15_000);
  assert.ok(lines.every((e) => e.object === 'deployment/web'));
  child.kill('SIGINT');
  assert.equal(await exited, 0, stderr);
  assert.equal(stderr, '');
});

test('logs and jobs logs print what a real agent ran: raw for one worker, [rank N] for several', async (t) => {
  const c = await cluster(t);
  const agent = await startAgent(t, 'worker-1', [c.address], c.dir, ['--join-token-file', path.join(c.dir, 'join-token')]);
  await eventually('the agent to register', 15_000, async () => ((await c.client.listNodes({ status: 'ready' })).nodes.length === 1 ? true : undefined));

  ok(await c.ctl('jobs', 'run', 'hello', '--image', 'busybox', '--workers', '2', '--', 'sh', '-c', 'echo "hello from $MLFLEET_RANK"; echo done'), 'jobs run');
  const done = await eventually('hello succeeded', 30_000, async () => {
    const job = await c.client.getJob('hello');
    if (job.status === 'failed') assert.fail(`the job failed: ${job.message}\n${agent.lines.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`);
    return job.status === 'succeeded' ? job : undefined;
  });

  const logs = ok(await c.ctl('jobs', 'logs', 'hello'), 'jobs logs').trimEnd().split('\n');
  assert.deepEqual([...logs].sort(), ['[rank 0] done', '[rank 0] hello from 0', '[rank 1] done', '[rank 1] hello from 1']);
  for (const rank of [0, 1]) {
    assert.deepEqual(
      logs.filter((l) => l.startsWith(`[rank ${rank}]`)),
      [`[rank ${rank}] hello from ${rank}`, `[rank ${rank}] done`],
    );
  }

  const rank1 = done.allocations.find((x) => x.rank === 1)!;
  assert.equal(ok(await c.ctl('logs', rank1.id.slice(0, 8)), 'logs'), 'hello from 1\ndone\n');
  assert.equal(ok(await c.ctl('logs', rank1.id, '--tail', '5'), 'logs --tail'), 'done\n');
  const all = json<{ id: string; status: string }[]>(await c.ctl('-o', 'json', 'ps', '--all'), 'ps --all');
  assert.equal(all.find((x) => x.id === rank1.id)?.status, 'completed');
  const unknown = await c.ctl('logs', 'ffffffff');
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /allocation "ffffffff" not found/);

  // One worker: the bytes as they are; -f follows until the worker ends.
  ok(await c.ctl('jobs', 'run', 'slow', '--image', 'busybox', '--', 'sh', '-c', 'echo start; sleep 1; echo end'), 'jobs run slow');
  await eventually('slow running', 15_000, async () => ((await c.client.getJob('slow')).allocations.some((x) => x.status === 'running') ? true : undefined));
  assert.equal(ok(await c.ctl('jobs', 'logs', 'slow', '-f'), 'jobs logs -f'), 'start\nend\n');
});

test('workload calls and streams given only a follower find the leader', async (t) => {
  const c = await cluster(t);
  await pushModel(c, 'm');
  await c.client.applyDeployment(compileDeploymentSpec({ name: 'web', model: 'm', image: 'busybox', replicas: 0 }));
  const dir = tempDir(t);
  const follower = await createCoordinator(t, coordinatorOptions(dir, { store: `sqlite:${c.dir}/c.db`, id: 'follower' }));
  await until('the follower knows the leader', () => follower.leaderAddress !== '' && !follower.isLeader);
  const viaFollower = (...args: string[]) => mlfleetctl(t, ['--coordinator', follower.address, ...args], { MLFLEET_TOKEN: c.admin });

  assert.deepEqual(
    json<DeploymentJson[]>(await viaFollower('-o', 'json', 'deployments', 'ls'), 'deployments ls').map((d) => d.name),
    ['web'],
  );
  const events = ok(await viaFollower('events', '--no-follow', '--object', 'deployment/web'), 'events').trimEnd().split('\n');
  assert.match(events[0]!, /deployment\/web\s+Created\s/);
});

test('jobs run --output-model sends where the output goes and its metadata; jobs show says so', async (t) => {
  const c = await cluster(t);
  const run = json<JobJson>(
    await c.ctl(
      '-o', 'json', 'jobs', 'run', 'ft', '--image', 'pytorch/pytorch:2.3', '--output-model', 'sentiment', '--output-model-format', 'onnx',
      '--output-model-type', 'classification', '--output-model-input', 'text', '--output-model-output', 'tensor', '--output-model-accuracy', '91%',
      '--output-model-meta', 'team=nlp', '--', 'python', 'train.py',
    ),
    'jobs run',
  );
  assert.deepEqual(run.output, { model: 'sentiment', format: 'onnx', type: 'classification', inputFormat: 'text', outputFormat: 'tensor', accuracy: 0.91, labels: { team: 'nlp' } });
  assert.equal(run.outputModel, '');
  assert.match(ok(await c.ctl('jobs', 'show', 'ft'), 'jobs show'), /^Output model:\s+sentiment \(rank 0's \/output, pushed when the job succeeds\)$/m);
});
