// Workloads through real agents: a deployment served from a real Docker container with the
// model mounted read-only from the agent's cache, adopted (not duplicated) across an agent
// restart, removed with the deployment; jobs run by the process driver to success or failure,
// with their output served by `logs`.
import assert from 'node:assert/strict';
import http from 'node:http';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import Docker from 'dockerode';
import { CoordinatorClient } from '../../shared/client.js';
import type { Deployment, Job } from '../../shared/proto.js';
import { startLeader } from '../helpers/coordinator.js';
import { eventually } from '../helpers/eventually.js';
import { ensureRuntimeImage } from '../helpers/images.js';
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
  return { dir, address: coordinator.address, api, client, join };
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
