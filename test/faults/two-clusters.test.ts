// Fault: two clusters on one Docker engine (issue 14, item 7). Two coordinators, each with its
// own data dir and store, each with an agent of the same node name on the local engine: a dev
// cluster beside production. Before containers carried the cluster's id, each agent took the
// other's containers for strays and removed them, and neither deployment became ready.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import Docker from 'dockerode';
import { LABELS } from '../../agent/drivers/docker-driver.js';
import { CoordinatorClient } from '../../shared/client.js';
import type { Deployment } from '../../shared/proto.js';
import { startLeader } from '../helpers/coordinator.js';
import { removeContainersAfter } from '../helpers/docker-fleet.js';
import { eventually } from '../helpers/eventually.js';
import { ensureRuntimeImage } from '../helpers/images.js';
import { startAgent, tempDir } from '../helpers/processes.js';
import { WorkloadApi } from '../helpers/workload-api.js';

const SERVER = `require('http').createServer((q, s) => s.end(process.env.MLFLEET_ALLOCATION_ID)).listen(Number(process.env.PORT))`;

interface Cluster {
  api: WorkloadApi;
  deployment(): Promise<Deployment>;
}

/** A coordinator of its own, and an agent named `node` on the local engine. */
async function cluster(t: TestContext, node: string, image: string, portRange: [number, number]): Promise<Cluster> {
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 200, portRange } });
  const api = new WorkloadApi(coordinator.address, admin);
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => {
    api.close();
    client.close();
  });
  await startAgent(t, node, [coordinator.address], dir, ['--driver', 'docker', '--join-token', join]);
  removeContainersAfter(t, node);
  await eventually(`node ${node} ready`, 15_000, async () => ((await client.getNode(node).catch(() => undefined))?.status === 'ready' ? true : undefined));
  const body = Buffer.from('weights');
  await client.push('model', { name: 'm', format: 'other', sizeBytes: body.length }, Readable.from([body]));
  await api.call('DeploymentService', 'ApplyDeployment', { spec: { name: 'web', model: 'm', image, command: ['node', '-e', SERVER], port: 8080, readinessPath: '/', replicas: 1 } });
  return { api, deployment: () => api.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'web' }) };
}

test('two clusters with agents of the same name on one engine each run their deployment and leave the other\'s containers alone', { timeout: 90_000 }, async (t) => {
  const image = await ensureRuntimeImage();
  const docker = new Docker();
  const node = `twin-${randomBytes(3).toString('hex')}`;
  // Two clusters on one host must not hand out the same host ports: each gets its own range.
  const production = await cluster(t, node, image, [21_000, 21_999]);
  const dev = await cluster(t, node, image, [22_000, 22_999]);

  const ready = async (c: Cluster, name: string) =>
    eventually(`${name}'s deployment available`, 45_000, async () => {
      const d = await c.deployment();
      return d.status === 'available' ? d : undefined;
    }).catch(async (err: unknown) => {
      const d = await c.deployment();
      throw new Error(`${(err as Error).message}: ${d.status} ${d.message} ${JSON.stringify(d.allocations.map((a) => [a.id, a.status, a.reason]))}`);
    });
  const [p, d] = await Promise.all([ready(production, 'production'), ready(dev, 'dev')]);
  const live = (deployment: Deployment) => deployment.allocations.filter((a) => a.desired === 'run').map((a) => a.id);
  const expected = [...live(p), ...live(d)].sort();
  assert.equal(expected.length, 2);

  const containers = async () => (await docker.listContainers({ all: true, filters: { label: [`${LABELS.node}=${node}`] } })).sort((a, b) => a.Labels[LABELS.allocation]!.localeCompare(b.Labels[LABELS.allocation]!));
  const before = await containers();
  assert.deepEqual(before.map((c) => c.Labels[LABELS.allocation]), expected, 'one container per cluster, none else');
  assert.equal(new Set(before.map((c) => c.Labels[LABELS.cluster])).size, 2, 'each labelled with its own cluster');
  assert.ok(before.every((c) => c.State === 'running'));

  // Several resyncs of both agents later, both containers are the same ones, still running,
  // and both deployments are still available.
  await new Promise((resolve) => setTimeout(resolve, 6_000));
  const after = await containers();
  assert.deepEqual(after.map((c) => [c.Id, c.State]), before.map((c) => [c.Id, 'running']));
  assert.equal((await production.deployment()).status, 'available');
  assert.equal((await dev.deployment()).status, 'available');
  assert.deepEqual([...live(await production.deployment()), ...live(await dev.deployment())].sort(), expected, 'no replica was replaced');
});
