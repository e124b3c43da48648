// Fault: the Docker engine restarts under serving replicas (issue 14's fault suite). A real agent
// on a private dockerd (the machine's shared engine is in use by other test files) serves two
// onnx replicas; dockerd is stopped (SIGTERM: it stops every container, RestartPolicy "no") and
// started again on the same roots. The deployment must come back to two ready replicas that
// answer inference through the agent's gateway, with exactly two containers of it on the engine:
// none left over from before the restart, none started twice.
import assert from 'node:assert/strict';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { LABELS } from '../../agent/drivers/docker-driver.js';
import { encodeModel } from '../../agent/stacks/onnx/onnx-model.js';
import { linearModel } from '../../scripts/onnx/example-models.js';
import { CoordinatorClient } from '../../shared/client.js';
import type { Deployment } from '../../shared/proto.js';
import { startLeader } from '../helpers/coordinator.js';
import { eventually } from '../helpers/eventually.js';
import { ensureOnnxImage } from '../helpers/images.js';
import { startPrivateDockerd } from '../helpers/private-dockerd.js';
import { startAgent, tempDir } from '../helpers/processes.js';
import { WorkloadApi } from '../helpers/workload-api.js';

const INPUT = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] };
/** Recovery bound, from the engine answering again to two ready replicas and a 200. */
const RECOVERY_BOUND_MS = 30_000;

function infer(gateway: string, token: string): Promise<number> {
  const [host, port] = gateway.split(':') as [string, string];
  const text = JSON.stringify(INPUT);
  return new Promise((resolve) => {
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), authorization: `Bearer ${token}` };
    const req = http.request({ host, port: Number(port), path: '/v2/models/linear/infer', method: 'POST', headers, timeout: 5_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(0));
    req.end(text);
  });
}

test('a dockerd restart under two serving replicas: back to two ready replicas answering inference, no duplicate containers', { timeout: 120_000 }, async (t) => {
  const image = await ensureOnnxImage();
  const engine = await startPrivateDockerd(t);
  await engine.load(image);

  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 200, portRange: [23_000, 23_999] } });
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  const api = new WorkloadApi(coordinator.address, admin);
  t.after(() => {
    api.close();
    client.close();
  });
  const node = `dockerd-restart-${randomBytes(3).toString('hex')}`;
  const agent = await startAgent(t, node, [coordinator.address], dir, ['--driver', 'docker', '--join-token', join], { DOCKER_HOST: engine.host });
  const gateway = (await agent.waitForMessage('agent started')).gateway as string;
  await eventually(`node ${node} ready`, 15_000, async () => ((await client.getNode(node).catch(() => undefined))?.status === 'ready' ? true : undefined));

  const model = encodeModel(linearModel());
  const metadata = { type: 'regression', inputFormat: 'tensor', outputFormat: 'tensor', accuracy: 0.9, labels: {}, sourceJob: '', sourceDatasets: [] };
  await client.push('model', { name: 'linear', format: 'onnx', sizeBytes: model.length, metadata }, Readable.from([Buffer.from(model)]));
  await api.call('DeploymentService', 'ApplyDeployment', {
    spec: { name: 'linear', model: 'linear', stack: 'onnx', replicas: 2, resources: { cpuMillis: 200, memoryBytes: 256 * 2 ** 20 } },
  });

  const deployment = () => api.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'linear' });
  const live = (d: Deployment) => d.allocations.filter((a) => a.desired === 'run').map((a) => a.id).sort();
  const containers = async () =>
    (await engine.docker.listContainers({ all: true, filters: { label: [`${LABELS.workload}=linear`] } })).sort((a, b) => a.Labels[LABELS.allocation]!.localeCompare(b.Labels[LABELS.allocation]!));
  const explain = async (err: unknown) => {
    const d = await deployment();
    const cs = await containers().catch(() => []);
    const warnings = agent.lines.filter((l) => Number(l.level) >= 40).slice(-10).map((l) => `  ${JSON.stringify(l)}`);
    throw new Error([
      `${(err as Error).message}: deployment ${d.status} (${d.message}), ${d.readyReplicas} ready, allocations ${JSON.stringify(d.allocations.map((a) => [a.id, a.desired, a.status, a.reason]))}`,
      `containers ${JSON.stringify(cs.map((c) => [c.Labels[LABELS.allocation], c.State, c.Status]))}`,
      ...warnings,
    ].join('\n'));
  };
  /** Two ready replicas, exactly their two containers on the engine, running, and a 200 through the gateway. */
  const serving = (what: string, timeoutMs: number) =>
    eventually(what, timeoutMs, async () => {
      const d = await deployment();
      if (d.status !== 'available' || d.readyReplicas !== 2) return undefined;
      const cs = await containers();
      const ids = live(d);
      if (ids.length !== 2 || cs.length !== 2 || cs.some((c) => c.State !== 'running')) return undefined;
      if (JSON.stringify(cs.map((c) => c.Labels[LABELS.allocation])) !== JSON.stringify(ids)) return undefined;
      return (await infer(gateway, admin)) === 200 ? { d, cs } : undefined;
    }).catch(explain);

  const before = await serving('two replicas serving before the restart', 90_000);
  const cluster = before.cs[0]!.Labels[LABELS.cluster];
  assert.ok(cluster, 'containers carry the cluster id');

  // The restart: dockerd stops both containers on its way down.
  const stopping = Date.now();
  await engine.stop();
  const stopped = Date.now();
  assert.notEqual(await infer(gateway, admin), 200, 'no replica answers while the engine is down');
  await engine.start();
  const up = Date.now();

  const after = await serving('two replicas serving again after the restart', RECOVERY_BOUND_MS);
  const recovered = Date.now();
  t.diagnostic(`dockerd stop ${((stopped - stopping) / 1000).toFixed(1)} s; engine up to two ready replicas answering ${((recovered - up) / 1000).toFixed(1)} s; outage from stop ${((recovered - stopping) / 1000).toFixed(1)} s; allocations ${JSON.stringify(live(before.d))} -> ${JSON.stringify(live(after.d))}`);

  // Each container is this node's and this cluster's; a few resyncs later they are still the
  // same two, running, and no third one was started behind them.
  for (const c of after.cs) {
    assert.equal(c.Labels[LABELS.node], node);
    assert.equal(c.Labels[LABELS.cluster], cluster);
  }
  await new Promise((resolve) => setTimeout(resolve, 4_000));
  const held = await containers();
  assert.deepEqual(held.map((c) => [c.Id, c.State]), after.cs.map((c) => [c.Id, 'running']), 'the same two containers, still running');
  const d = await deployment();
  assert.equal(d.status, 'available');
  assert.equal(d.readyReplicas, 2);
  assert.deepEqual(live(d), live(after.d), 'no replica was replaced once recovered');
  assert.equal(await infer(gateway, admin), 200);
});
