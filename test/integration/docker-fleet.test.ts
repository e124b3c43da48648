// Workloads on real Docker across several real agents, with the image the project builds
// offline: a 2-replica deployment spreads over 2 agents; kill -9 of one agent moves its replica
// to another node within TTL + 5 s while the orphaned container keeps serving; a job that fails
// twice then succeeds ends `succeeded` after 3 attempts; cancel stops a running job's container.
import assert from 'node:assert/strict';
import http from 'node:http';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import Docker from 'dockerode';
import { CoordinatorClient } from '../../shared/client.js';
import type { Deployment, Job } from '../../shared/proto.js';
import { startLeader } from '../helpers/coordinator.js';
import { removeContainersAfter } from '../helpers/docker-fleet.js';
import { eventually } from '../helpers/eventually.js';
import { ensureRuntimeImage } from '../helpers/images.js';
import { startAgent, tempDir, type Daemon } from '../helpers/processes.js';
import { WorkloadApi } from '../helpers/workload-api.js';

const SERVER = `require('http').createServer((q, s) => s.end(process.env.MLFLEET_ALLOCATION_ID)).listen(Number(process.env.PORT))`;
const NODE_TTL_MS = 3_000;

function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

test('deployments and jobs across three Docker agents: spread, a lost agent, retries, cancel', async (t) => {
  const image = await ensureRuntimeImage();
  const docker = new Docker();
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { nodeTtlMs: NODE_TTL_MS, workloads: { tickMs: 200 } });
  const api = new WorkloadApi(coordinator.address, admin);
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  const names = ['dock-a', 'dock-b', 'dock-c'];
  t.after(() => {
    api.close();
    client.close();
  });
  const agents = new Map<string, Daemon>();
  for (const name of names) {
    agents.set(name, await startAgent(t, name, [coordinator.address], dir, ['--driver', 'docker', '--join-token', join]));
    // Containers outlive a killed agent by design: the test removes what its agents started.
    removeContainersAfter(t, name, docker);
  }

  const body = Buffer.from('weights');
  await client.push('model', { name: 'm', format: 'other', sizeBytes: body.length }, Readable.from([body]));
  await api.call('DeploymentService', 'ApplyDeployment', { spec: { name: 'web', model: 'm', image, command: ['node', '-e', SERVER], port: 8080, readinessPath: '/', replicas: 2, maxPerNode: 1 } });
  const available = await eventually('2 replicas ready', 60_000, async () => {
    const d = await api.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'web' });
    return d.status === 'available' ? d : undefined;
  }).catch(async (err: unknown) => {
    const d = await api.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'web' });
    throw new Error(`${(err as Error).message}: ${d.status} ${d.message} ${JSON.stringify(d.allocations.map((a) => [a.node, a.status, a.reason]))}`);
  });
  const nodes = available.allocations.map((a) => a.node);
  assert.equal(new Set(nodes).size, 2, `the replicas are on two agents: ${nodes.join(', ')}`);

  // kill -9 an agent holding a replica: its container serves on; the replica moves.
  const victim = available.allocations[0]!;
  const killedAt = Date.now();
  await agents.get(victim.node)!.kill('SIGKILL');
  assert.equal(await get(`http://127.0.0.1:${victim.hostPort}/`), victim.id, "the dead agent's container keeps serving");
  const moved = await eventually('the replica rescheduled', NODE_TTL_MS + 5_000, async () => {
    const d = await api.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'web' });
    const live = d.allocations.filter((a) => a.desired === 'run');
    return live.length === 2 && !live.some((a) => a.node === victim.node) && live.every((a) => a.status === 'ready') ? d : undefined;
  });
  const elapsed = Date.now() - killedAt;
  t.diagnostic(`replica ready elsewhere ${elapsed} ms after kill -9 (TTL ${NODE_TTL_MS} ms)`);
  assert.ok(elapsed <= NODE_TTL_MS + 5_000);
  assert.equal(new Set(moved.allocations.filter((a) => a.desired === 'run').map((a) => a.node)).size, 2);
  assert.equal(await get(`http://127.0.0.1:${victim.hostPort}/`), victim.id, 'and still serves after being replaced');

  // A job that fails on its first two attempts and succeeds on the third.
  await api.call('JobService', 'RunJob', {
    spec: { name: 'flaky', image, command: ['node', '-e', 'process.exit(Number(process.env.MLFLEET_ATTEMPT) < 3 ? 1 : 0)'], workers: 1, maxRetries: 2, retryBackoffMs: 100 },
  });
  const flaky = await eventually('flaky ended', 60_000, async () => {
    const j = await api.call<Job>('JobService', 'GetJob', { name: 'flaky' });
    return ['succeeded', 'failed'].includes(j.status) ? j : undefined;
  });
  assert.equal(flaky.status, 'succeeded', flaky.message);
  assert.equal(flaky.attempts, 3);

  // Cancel stops a running job's container (kept, stopped, for its logs: docker-jobs.test.ts).
  await api.call('JobService', 'RunJob', { spec: { name: 'forever', image, command: ['node', '-e', 'setInterval(() => {}, 1000)'], workers: 1 } });
  const running = await eventually('forever running', 60_000, async () => {
    const j = await api.call<Job>('JobService', 'GetJob', { name: 'forever' });
    return j.allocations[0]?.status === 'running' ? j : undefined;
  });
  const containerOf = async () => docker.listContainers({ filters: { label: [`mlfleet.allocation=${running.allocations[0]!.id}`] } });
  assert.equal((await containerOf()).length, 1);
  await api.call('JobService', 'CancelJob', { name: 'forever' });
  await eventually("the job's container stops running", 30_000, async () => ((await containerOf()).length === 0 ? true : undefined));
  assert.equal((await api.call<Job>('JobService', 'GetJob', { name: 'forever' })).status, 'cancelled');
});
