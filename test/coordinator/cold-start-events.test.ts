// Cold starts through a real leader: an agent's first `ready` with its start phases becomes a
// ColdStart event on the allocation (with the leader's schedule phase first) and observations
// in the leader's histograms, once; a report with bad phases is refused whole and changes nothing.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import type { WorkloadEvent } from '../../shared/proto.js';
import { eventually, until } from '../helpers/eventually.js';
import { metricValue } from '../helpers/metrics.js';
import { workloadCluster } from '../helpers/workload-cluster.js';

const PHASES = [
  { phase: 'pull', seconds: 0 },
  { phase: 'create', seconds: 0.08 },
  { phase: 'start', seconds: 0.31 },
  { phase: 'load', seconds: 1.02 },
];

test("a replica's first ready with phases is one ColdStart event and one observation per phase; bad phases are refused", async (t) => {
  const c = await workloadCluster(t, { nodeTtlMs: 10_000 });
  const body = Buffer.from('model one');
  await c.client.push('model', { name: 'm', format: 'onnx', sizeBytes: body.length }, Readable.from([body]));
  const a = await c.agent('node-a');
  await c.call('DeploymentService', 'ApplyDeployment', { spec: { name: 'web', model: 'm', image: 'mlfleet/runtime:0.1.0', replicas: 1, resources: { cpuMillis: 500, memoryBytes: 2 ** 28 } } });
  await until('the replica is placed', () => a.desired.length === 1);
  const alloc = a.desired[0]!;
  const endpoint = `node-a:${alloc.hostPort}`;
  a.report({ id: alloc.id, state: 'running', endpoint });
  const coldStarts = async () => (await c.api.events('deployment/web')).filter((e) => e.type === 'ColdStart');
  await eventually('running recorded', 5_000, async () => ((await c.api.events('deployment/web')).some((e) => e.type === 'Started') ? true : undefined));

  // Bounded and known: an unknown phase, a negative time and a schedule (the leader's) are refused, and nothing changes.
  a.report({ id: alloc.id, state: 'ready', endpoint, startPhases: [{ phase: 'warmup', seconds: 1 }, { phase: 'load', seconds: -1 }, { phase: 'schedule', seconds: 1 }] });
  await until('the session ends', () => a.endedWith !== undefined);
  assert.match(a.endedWith!.details, /invalid status report: allocations\.0\.startPhases\.0\.phase: .*'pull'/);
  assert.match(a.endedWith!.details, /startPhases\.1\.seconds/);
  await a.connect([{ id: alloc.id, state: 'running' }]);
  a.report({ id: alloc.id, state: 'ready', endpoint, startPhases: Array.from({ length: 9 }, () => ({ phase: 'pull', seconds: 0 })) });
  await until('the session ends again', () => a.endedWith !== undefined);
  assert.match(a.endedWith!.details, /startPhases: .*(8|at most)/);
  assert.equal((await c.api.events('deployment/web')).filter((e) => e.type === 'Ready').length, 0, 'not ready: the report was refused whole');
  assert.equal(await metricValue(c.httpAddress, 'mlfleet_replica_start_seconds_count'), 0);

  await a.connect([{ id: alloc.id, state: 'running' }]);
  a.report({ id: alloc.id, state: 'ready', endpoint, startPhases: PHASES });
  const [event] = await eventually('a ColdStart event', 5_000, async () => {
    const found = await coldStarts();
    return found.length > 0 ? found : undefined;
  });
  assert.equal(event!.allocation, alloc.id);
  assert.equal(event!.node, 'node-a');
  const match = /^ready in (\d+\.\d\d) s: schedule (\d+\.\d\d) s, pull 0\.00 s, create 0\.08 s, start 0\.31 s, load 1\.02 s$/.exec(event!.message);
  assert.ok(match, event!.message);
  const schedule = Number(match[2]);
  assert.ok(schedule >= 0 && schedule < 5, `schedule ${schedule} s: from the ask to the commit, which a leader with nothing else to do makes at once`);
  assert.ok(Math.abs(Number(match[1]) - (schedule + 1.41)) <= 0.0101, `${match[1]} s is the sum, each figure rounded on its own`);

  assert.equal(await metricValue(c.httpAddress, 'mlfleet_replica_start_seconds_count'), 1);
  for (const phase of ['schedule', 'pull', 'create', 'start', 'load']) {
    assert.equal(await metricValue(c.httpAddress, 'mlfleet_replica_start_phase_seconds_count', `phase="${phase}"`), 1, phase);
  }
  assert.equal(await metricValue(c.httpAddress, 'mlfleet_replica_start_phase_seconds_sum', 'phase="load"'), 1.02);
  assert.equal(await metricValue(c.httpAddress, 'mlfleet_replica_start_phase_seconds_bucket', 'le="0.01",phase="pull"'), 1, 'buckets from 10 ms');
  assert.equal(await metricValue(c.httpAddress, 'mlfleet_replica_start_phase_seconds_bucket', 'le="120",phase="load"'), 1, 'buckets to 120 s');

  // The same ready again (a hello after a reconnect carries it), and ready after a lapse, add nothing.
  a.report({ id: alloc.id, state: 'ready', endpoint, startPhases: PHASES });
  a.report({ id: alloc.id, state: 'running', endpoint, reason: 'stopped answering' });
  a.report({ id: alloc.id, state: 'ready', endpoint });
  await eventually('ready again', 5_000, async () => ((await c.api.events('deployment/web')).filter((e: WorkloadEvent) => e.type === 'Ready').length === 2 ? true : undefined));
  assert.equal((await coldStarts()).length, 1);
  assert.equal(await metricValue(c.httpAddress, 'mlfleet_replica_start_seconds_count'), 1);
});
