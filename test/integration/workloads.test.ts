// Workloads through real agents: a deployment served from a real Docker container with the
// model mounted read-only from the agent's cache, adopted (not duplicated) across an agent
// restart, removed with the deployment; jobs run by the process driver to success or failure,
// with their output served by `logs`.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import Docker from 'dockerode';
import { CoordinatorClient } from '../../shared/client.js';
import type { Deployment, Job } from '../../shared/proto.js';
import { startLeader } from '../helpers/coordinator.js';
import { removeContainersAfter } from '../helpers/docker-fleet.js';
import { eventually } from '../helpers/eventually.js';
import { ensureRuntimeImage } from '../helpers/images.js';
import { mlfleetctl } from '../helpers/mlfleetctl.js';
import { startAgent, tempDir } from '../helpers/processes.js';
import { WorkloadApi } from '../helpers/workload-api.js';

/** A model server in the runtime image (node, no shell): serves the mounted model's bytes. */
const SERVER = `
const http = require('http'); const fs = require('fs');
http.createServer((req, res) => {
  if (req.url === '/v2/health/ready') return res.end('ready');
  try { fs.writeFileSync(process.env.MLFLEET_MODEL_PATH, 'overwritten'); res.setHeader('x-model-writable', 'yes'); } catch { res.setHeader('x-model-writable', 'no'); }
  res.end(fs.readFileSync(process.env.MLFLEET_MODEL_PATH));
}).listen(Number(process.env.PORT));
`;

function get(url: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    }).on('error', reject);
  });
}

async function setUp(t: TestContext) {
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 200 } });
  const api = new WorkloadApi(coordinator.address, admin);
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => {
    api.close();
    client.close();
  });
  return { dir, address: coordinator.address, api, client, join, admin };
}

test('a deployment runs in Docker with its model mounted read-only, survives an agent restart without a duplicate, and goes with the deployment', async (t) => {
  const image = await ensureRuntimeImage();
  const { dir, address, api, client, join } = await setUp(t);
  const docker = new Docker();
  const body = Buffer.from('weights of version one');
  await client.push('model', { name: 'echo', format: 'other', sizeBytes: body.length }, Readable.from([body]));
  let agent = await startAgent(t, 'dock', [address], dir, ['--driver', 'docker', '--join-token', join]);

  await api.call('DeploymentService', 'ApplyDeployment', { spec: { name: 'echo', model: 'echo', image, command: ['node', '-e', SERVER], port: 8080, replicas: 1 } });
  const available = await eventually('deployment available', 60_000, async () => {
    const d = await api.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'echo' });
    return d.status === 'available' ? d : undefined;
  });
  const [allocation] = available.allocations;
  assert.ok(allocation);
  const url = `http://127.0.0.1:${allocation.hostPort}/`;
  const served = await get(url);
  assert.equal(served.body, body.toString(), 'the container serves the model from its mount');
  assert.equal(served.headers['x-model-writable'], 'no', 'the model is mounted read-only');
  const labelled = () => docker.listContainers({ all: true, filters: { label: [`mlfleet.allocation=${allocation.id}`] } });
  const [container] = await labelled();
  assert.ok(container, 'a container labelled with the allocation');

  // The agent stops; the container serves on. The agent comes back and adopts it.
  await agent.kill('SIGTERM');
  assert.equal((await get(url)).body, body.toString(), 'serving goes on without the agent');
  agent = await startAgent(t, 'dock', [address], dir, ['--driver', 'docker', '--join-token', join]);
  removeContainersAfter(t, 'dock');
  await agent.waitForMessage('connected to the leader');
  await eventually('the restarted agent reports the replica ready', 20_000, async () => {
    const d = await api.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'echo' });
    return d.status === 'available' && d.allocations[0]?.id === allocation.id ? true : undefined;
  });
  const after = await labelled();
  assert.deepEqual(after.map((c) => c.Id), [container.Id], 'the same container, not a second one');

  // The server logs nothing; its (empty) output still comes back from the host.
  assert.equal((await api.logs(allocation.id)).length, 0);

  await api.call('DeploymentService', 'DeleteDeployment', { name: 'echo' });
  await eventually('the container is removed', 20_000, async () => ((await labelled()).length === 0 ? true : undefined));
  const events = await eventually('the agent reports the replica stopped', 10_000, async () => {
    const seen = await api.events('deployment/echo');
    return seen.some((e) => e.type === 'Stopped') ? seen : undefined;
  });
  const types = events.map((e) => e.type);
  for (const type of ['Created', 'Scheduled', 'Started', 'Ready', 'Deleted', 'Stopped']) assert.ok(types.includes(type), `${type} in ${types.join(', ')}`);
  assert.ok(types.indexOf('Stopped') > types.indexOf('Deleted'));
});

test('jobs on the process driver: success with its output kept for logs, failure with its exit code', async (t) => {
  const { dir, address, api, join } = await setUp(t);
  await startAgent(t, 'proc', [address], dir, ['--driver', 'process', '--join-token', join]);
  const job = (name: string, script: string) =>
    api.call('JobService', 'RunJob', { spec: { name, image: 'unused-by-the-process-driver', command: [process.execPath, '-e', script], workers: 1 } });
  const ended = (name: string) =>
    eventually(`${name} ended`, 30_000, async () => {
      const j = await api.call<Job>('JobService', 'GetJob', { name });
      return ['succeeded', 'failed'].includes(j.status) ? j : undefined;
    });

  await job('hello', "console.log('hello from rank', process.env.MLFLEET_RANK, 'of', process.env.MLFLEET_WORLD_SIZE)");
  const hello = await ended('hello');
  assert.equal(hello.status, 'succeeded', hello.message);
  const output = await api.logs(hello.allocations[0]!.id);
  assert.match(output.toString(), /hello from rank 0 of 1/);

  await job('broken', "console.error('no data'); process.exit(3)");
  const broken = await ended('broken');
  assert.equal(broken.status, 'failed');
  assert.match(broken.message, /exit(ed)? (with )?code 3/);
  assert.equal(broken.allocations[0]!.exitCode, 3);
  assert.match((await api.logs(broken.allocations[0]!.id)).toString(), /no data/);
});

test("a job's output on the process driver: written to MLFLEET_OUTPUT_PATH, pushed as the next model version with its lineage, pulled back identical; a failed job pushes nothing", async (t) => {
  const { dir, address, api, client, join, admin } = await setUp(t);
  const rows = Buffer.from('text,label\ngreat,1\nawful,0\n');
  await client.push('dataset', { name: 'reviews', format: 'csv', sizeBytes: rows.length }, Readable.from([rows]));
  await startAgent(t, 'proc', [address], dir, ['--driver', 'process', '--join-token', join]);
  const env = { MLFLEET_COORDINATOR: address, MLFLEET_TOKEN: admin };
  const ended = (name: string) =>
    eventually(`${name} ended`, 30_000, async () => {
      const j = await api.call<Job>('JobService', 'GetJob', { name });
      return ['succeeded', 'failed'].includes(j.status) ? j : undefined;
    });
  // The "training": reads its dataset, writes one file to its output directory.
  const TRAIN = `const fs = require('fs'), path = require('path');
const rows = fs.readFileSync(process.env.MLFLEET_DATASET_REVIEWS, 'utf8').trim().split('\\n').length - 1;
fs.writeFileSync(path.join(process.env.MLFLEET_OUTPUT_PATH, 'model.onnx'), 'weights from ' + rows + ' rows');`;
  const run = await mlfleetctl(t, ['jobs', 'run', 'train', '--image', 'unused', '--dataset', 'reviews', '--output-model', 'sentiment', '--output-model-type', 'classification', '--output-model-accuracy', '91%', '--output-model-meta', 'team=nlp', '--', process.execPath, '-e', TRAIN], env);
  assert.equal(run.code, 0, run.stderr);
  const train = await ended('train');
  assert.equal(train.status, 'succeeded', train.message);
  assert.equal(train.outputModel, 'sentiment:1');

  const shown = await mlfleetctl(t, ['models', 'show', 'sentiment', '-o', 'json'], env);
  assert.equal(shown.code, 0, shown.stderr);
  const model = JSON.parse(shown.stdout) as { versions: Array<{ version: number; format: string; metadata: { type: string; accuracy: number; labels: Record<string, string>; sourceJob: string; sourceDatasets: string[] } }> };
  assert.equal(model.versions.length, 1);
  const [v1] = model.versions;
  assert.equal(v1!.format, 'onnx', 'the format comes from the file name');
  assert.deepEqual({ type: v1!.metadata.type, accuracy: v1!.metadata.accuracy, team: v1!.metadata.labels.team }, { type: 'classification', accuracy: 0.91, team: 'nlp' });
  assert.equal(v1!.metadata.sourceJob, 'job/train');
  assert.deepEqual(v1!.metadata.sourceDatasets, ['reviews:1']);
  const table = await mlfleetctl(t, ['models', 'show', 'sentiment'], env);
  assert.match(table.stdout, /SOURCE/);
  assert.match(table.stdout, /job\/train ← reviews:1/);

  const pulled = path.join(dir, 'pulled.onnx');
  const pull = await mlfleetctl(t, ['models', 'pull', 'sentiment:1', pulled], env);
  assert.equal(pull.code, 0, pull.stderr);
  assert.equal(await readFile(pulled, 'utf8'), 'weights from 2 rows');

  // A job that writes its output and then fails pushes nothing.
  const FAIL = `require('fs').writeFileSync(require('path').join(process.env.MLFLEET_OUTPUT_PATH, 'model.onnx'), 'half'); process.exit(1);`;
  await api.call('JobService', 'RunJob', { spec: { name: 'broken', image: 'unused', command: [process.execPath, '-e', FAIL], workers: 1, output: { model: 'sentiment', format: '', metadata: null } } });
  const broken = await ended('broken');
  assert.equal(broken.status, 'failed');
  assert.equal(broken.outputModel, '');
  assert.equal((await client.getArtifact('model', 'sentiment')).versions.length, 1, 'no version from the failed job');
});

test('a retried job finds what its last attempt saved to MLFLEET_CHECKPOINT_PATH on the same host', async (t) => {
  const { dir, address, api, join } = await setUp(t);
  await startAgent(t, 'proc', [address], dir, ['--driver', 'process', '--join-token', join]);
  // The first attempt saves a checkpoint and crashes; the second resumes from it and succeeds.
  const RESUME = `const fs = require('fs'), path = require('path');
const saved = path.join(process.env.MLFLEET_CHECKPOINT_PATH, 'step');
if (!fs.existsSync(saved)) { fs.writeFileSync(saved, '500'); process.exit(1); }
console.log('resumed at step', fs.readFileSync(saved, 'utf8'));`;
  await api.call('JobService', 'RunJob', { spec: { name: 'resume', image: 'unused', command: [process.execPath, '-e', RESUME], workers: 1, maxRetries: 1, retryBackoffMs: 100 } });
  const job = await eventually('resume ended', 30_000, async () => {
    const j = await api.call<Job>('JobService', 'GetJob', { name: 'resume' });
    return ['succeeded', 'failed'].includes(j.status) ? j : undefined;
  });
  assert.equal(job.status, 'succeeded', job.message);
  assert.equal(job.attempts, 2);
  assert.match((await api.logs(job.allocations[0]!.id)).toString(), /resumed at step 500/);
});

test("a job's output in Docker: /output is a writable host directory, pushed when the job succeeds", async (t) => {
  const image = await ensureRuntimeImage();
  const { dir, address, api, client, join } = await setUp(t);
  await startAgent(t, 'dock', [address], dir, ['--driver', 'docker', '--join-token', join]);
  removeContainersAfter(t, 'dock');
  const WRITE = `const fs = require('fs');
fs.mkdirSync('/output/weights'); fs.writeFileSync('/output/weights/layer0', 'w0'); fs.writeFileSync('/output/config.json', '{}');
fs.writeFileSync('/checkpoint/step', '1');
if (process.env.MLFLEET_OUTPUT_PATH !== '/output' || process.env.MLFLEET_CHECKPOINT_PATH !== '/checkpoint') process.exit(9);`;
  await api.call('JobService', 'RunJob', { spec: { name: 'docked', image, command: ['node', '-e', WRITE], workers: 1, output: { model: 'docked-model', format: '', metadata: null } } });
  const job = await eventually('docked ended', 60_000, async () => {
    const j = await api.call<Job>('JobService', 'GetJob', { name: 'docked' });
    return ['succeeded', 'failed'].includes(j.status) ? j : undefined;
  });
  assert.equal(job.status, 'succeeded', job.message);
  assert.equal(job.outputModel, 'docked-model:1');
  const [version] = (await client.getArtifact('model', 'docked-model')).versions;
  assert.equal(version?.directory, true, 'a directory of outputs travels as a tar');
  assert.equal(version?.metadata?.sourceJob, 'job/docked');
});
