// Fault: the agent is killed (SIGKILL) while a replica it started is loading. The restarted agent
// adopts the container and reports it ready, but that is not a start it timed: no ColdStart
// event and no histogram observation are made up for it. The next replica it starts (the model
// now cached: pull near 0) is timed whole. Real agent processes, the shared Docker engine,
// the runtime image; bounded: two replicas, one restart.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import type { Deployment } from '../../shared/proto.js';
import { startLeader } from '../helpers/coordinator.js';
import { removeContainersAfter } from '../helpers/docker-fleet.js';
import { eventually } from '../helpers/eventually.js';
import { ensureRuntimeImage } from '../helpers/images.js';
import { metricValue } from '../helpers/metrics.js';
import { startAgent, tempDir } from '../helpers/processes.js';
import { WorkloadApi } from '../helpers/workload-api.js';

/** Listens 3 s after it starts: long enough to kill its agent while it loads. */
const SERVER = `
const http = require('http');
setTimeout(() => http.createServer((req, res) => res.end('ok')).listen(Number(process.env.PORT)), 3000);
`;

test('an agent killed while its replica loads adopts it without phases; its next start is timed, with the cached model pulled in ~0 s', async (t) => {
  const image = await ensureRuntimeImage();
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { nodeTtlMs: 30_000, workloads: { tickMs: 200 } });
  const api = new WorkloadApi(coordinator.address, admin);
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => {
    api.close();
    client.close();
  });
  const body = Buffer.from('weights that load slowly');
  await client.push('model', { name: 'slow', format: 'other', sizeBytes: body.length }, Readable.from([body]));
  const args = ['--driver', 'docker', '--join-token', join];
  let agent = await startAgent(t, 'cold-kill', [coordinator.address], dir, args);
  removeContainersAfter(t, 'cold-kill');
  await agent.waitForMessage('connected to the leader');

  const deployment = () => api.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'slow' });
  await api.call('DeploymentService', 'ApplyDeployment', { spec: { name: 'slow', model: 'slow', image, command: ['node', '-e', SERVER], port: 8080, replicas: 1, readinessPath: '/' } });
  const first = await eventually('the replica running, not ready yet', 30_000, async () => {
    const a = (await deployment()).allocations[0];
    return a?.status === 'running' ? a : undefined;
  });
  await agent.kill('SIGKILL');
  agent = await startAgent(t, 'cold-kill', [coordinator.address], dir, args);
  const agentHttp = (await agent.waitForMessage('agent started')).http as string;
  await eventually('the adopted replica ready', 30_000, async () => ((await deployment()).allocations.find((a) => a.id === first.id)?.status === 'ready' ? true : undefined)).catch(async (err: Error) => {
    const seen = (await api.events('deployment/slow')).map((e) => `${e.type} ${e.allocation.slice(0, 8)} ${e.message}`);
    throw new Error(`${err.message}; first ${first.id.slice(0, 8)}; events: ${seen.join(' | ')}`);
  });
  const events = await api.events('deployment/slow');
  assert.ok(events.some((e) => e.type === 'Ready' && e.allocation === first.id));
  assert.equal(events.filter((e) => e.type === 'ColdStart').length, 0, 'an adopted replica reports no phases');
  assert.equal(await metricValue(coordinator.httpAddress, 'mlfleet_replica_start_seconds_count'), 0);
  assert.equal(await metricValue(agentHttp, 'mlfleet_agent_replica_start_seconds_count'), 0);

  await api.call('DeploymentService', 'ScaleDeployment', { name: 'slow', replicas: 2 });
  const event = await eventually('the second replica ColdStart', 45_000, async () => (await api.events('deployment/slow')).find((e) => e.type === 'ColdStart'));
  assert.notEqual(event.allocation, first.id);
  t.diagnostic(event.message);
  const match = /^ready in (\d+\.\d\d) s: schedule \d+\.\d\d s, pull (\d+\.\d\d) s, create \d+\.\d\d s, start \d+\.\d\d s, load (\d+\.\d\d) s$/.exec(event.message);
  assert.ok(match, event.message);
  assert.ok(Number(match[2]) <= 0.5, `pull ${match[2]} s: the model is in the cache already`);
  assert.ok(Number(match[3]) >= 2.9, `load ${match[3]} s: the server listens after 3 s`);
  assert.equal(await metricValue(coordinator.httpAddress, 'mlfleet_replica_start_seconds_count'), 1);
  assert.equal(await metricValue(agentHttp, 'mlfleet_agent_replica_start_seconds_count'), 1);
  await api.call('DeploymentService', 'DeleteDeployment', { name: 'slow' });
});
