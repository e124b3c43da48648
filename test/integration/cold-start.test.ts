// Cold starts in real Docker: a deployment's replica (the runtime image, a server that takes a
// moment before it listens) reports every start phase; the allocation's ColdStart event names
// them all and they add up to about the start as the test saw it; both /metrics pages count it.
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

/** Listens 700 ms after it starts: the load phase is at least that. */
const SERVER = `
const http = require('http');
setTimeout(() => http.createServer((req, res) => res.end(req.url === '/v2/health/ready' ? 'ready' : 'hi')).listen(Number(process.env.PORT)), 700);
`;

test('a replica started in Docker reports pull, create, start and load, and the leader adds schedule, in its ColdStart event and /metrics', async (t) => {
  const image = await ensureRuntimeImage();
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 200 } });
  const api = new WorkloadApi(coordinator.address, admin);
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => {
    api.close();
    client.close();
  });
  const body = Buffer.from('weights for a cold start');
  await client.push('model', { name: 'cold', format: 'other', sizeBytes: body.length }, Readable.from([body]));
  const agent = await startAgent(t, 'cold-dock', [coordinator.address], dir, ['--driver', 'docker', '--join-token', join]);
  removeContainersAfter(t, 'cold-dock');
  const agentHttp = (await agent.waitForMessage('agent started')).http as string;
  await agent.waitForMessage('connected to the leader');

  const applied = Date.now();
  await api.call('DeploymentService', 'ApplyDeployment', { spec: { name: 'cold', model: 'cold', image, command: ['node', '-e', SERVER], port: 8080, replicas: 1 } });
  const available = await eventually('deployment available', 60_000, async () => {
    const d = await api.call<Deployment>('DeploymentService', 'GetDeployment', { name: 'cold' });
    return d.status === 'available' ? d : undefined;
  });
  const allocation = available.allocations[0]!;
  const event = await eventually('a ColdStart event', 10_000, async () => (await api.events('deployment/cold')).find((e) => e.type === 'ColdStart'));
  assert.equal(event.allocation, allocation.id);
  const match = /^ready in (\d+\.\d\d) s: schedule (\d+\.\d\d) s, pull (\d+\.\d\d) s, create (\d+\.\d\d) s, start (\d+\.\d\d) s, load (\d+\.\d\d) s$/.exec(event.message);
  assert.ok(match, `every phase in "${event.message}"`);
  const [total, schedule, pull, create, start, load] = match.slice(1).map(Number) as [number, number, number, number, number, number];
  const seen = (event.timeMs - applied) / 1000;
  t.diagnostic(`${event.message}; the test saw ${seen.toFixed(2)} s from apply to the event`);
  assert.ok(Math.abs(total - (schedule + pull + create + start + load)) <= 0.031, 'the total is the sum of the phases');
  assert.ok(load >= 0.65, `load ${load} s includes the 700 ms the server waits before it listens`);
  assert.ok(create > 0 || start > 0, 'the container took some time to make');
  // What is not timed: the desired set's trip to the agent and the ready report's trip back.
  assert.ok(total <= seen + 0.05 && total >= seen - Math.max(3, 0.3 * seen), `phases add up to ${total} s of the ${seen.toFixed(2)} s the test saw`);

  assert.equal(await metricValue(coordinator.httpAddress, 'mlfleet_replica_start_seconds_count'), 1);
  assert.equal(await metricValue(coordinator.httpAddress, 'mlfleet_replica_start_phase_seconds_count', 'phase="load"'), 1);
  assert.equal(await metricValue(agentHttp, 'mlfleet_agent_replica_start_seconds_count'), 1);
  for (const phase of ['pull', 'create', 'start', 'load']) assert.equal(await metricValue(agentHttp, 'mlfleet_agent_replica_start_phase_seconds_count', `phase="${phase}"`), 1, phase);
  assert.equal(await metricValue(agentHttp, 'mlfleet_agent_replica_start_phase_seconds_count', 'phase="schedule"'), 0, "schedule is the leader's");

  await api.call('DeploymentService', 'DeleteDeployment', { name: 'cold' });
});
