// A consumer floods the leader with WatchEvents(replay=1000, follow) streams, a few thousand at
// once and reopened as soon as refused, for a bounded time, against a real coordinator process
// on etcd with a real agent: the leader keeps leadership, renews its lease on time, the agent's
// heartbeats keep arriving, and the flood is shed with RESOURCE_EXHAUSTED and a retry hint,
// answered a second late so that retrying at once buys the flood nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { CoordinatorClient } from '../../shared/client.js';
import { keys } from '../../shared/keys.js';
import { openStore } from '../../shared/store/open-store.js';
import { startEtcd } from '../helpers/etcd.js';
import { bootstrapTokens, startAgent, startCoordinator, tempDir } from '../helpers/processes.js';
import { callUnary, method } from '../helpers/raw-grpc.js';
import type { FloodOrder, FloodReport } from '../helpers/stream-flood-worker.js';

const STREAMS = 3_000;
const CONNECTIONS = 6;
const FLOOD_MS = 12_000;
const EVENTS = 1_500;

async function metric(http: string, name: string): Promise<number> {
  const text = await (await fetch(`http://${http}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

test('a consumer flooding the leader with thousands of replaying watches is shed; the leader keeps its lease and the agent its heartbeats', { timeout: 90_000 }, async (t) => {
  const etcd = await startEtcd(t);
  // An event log worth replaying: 1,500 events of the consumer's tenant (the log keeps 10,000).
  const seed = await openStore(etcd.spec);
  for (let i = 0; i < EVENTS; i += 100) {
    await seed.txn([], Array.from({ length: 100 }, (_, j) => {
      const id = i + j + 1;
      const event = { id, timeMs: Date.now(), tenant: 'default', object: `deployment/d${id % 7}`, allocation: '', node: '', type: 'Seeded', message: 'x'.repeat(200) };
      return { type: 'put' as const, key: keys.event(id), value: JSON.stringify(event) };
    }));
  }
  await seed.close();

  const dir = tempDir(t);
  const coordinator = await startCoordinator(t, 'flooded', ['--store', etcd.spec, '--data-dir', dir, '--node-ttl', '3s', '--election-ttl', '2s']);
  const { admin, join } = await bootstrapTokens([dir]);
  const agent = await startAgent(t, 'node-a', [coordinator.grpc], tempDir(t), ['--join-token', join]);
  await agent.waitForMessage('connected to the leader');
  const client = new CoordinatorClient([coordinator.grpc], { token: admin });
  const consumer = (await client.createToken({ tenant: 'default', role: 'consumer', description: 'flood' })).token;
  client.close();

  const heartbeatsBefore = await metric(coordinator.http, 'mlfleet_heartbeats_total');
  const started = Date.now();
  const order: FloodOrder = { address: coordinator.grpc, token: consumer, streams: STREAMS, connections: CONNECTIONS, durationMs: FLOOD_MS };
  const worker = new Worker(new URL('../helpers/stream-flood-worker.js', import.meta.url), { workerData: order });
  t.after(() => worker.terminate());
  const reported = new Promise<FloodReport>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });

  // While it floods: an admin is answered, and how long it takes is noted.
  const adminLatencies: number[] = [];
  while (Date.now() - started < FLOOD_MS - 1_000) {
    const asked = Date.now();
    const answer = await callUnary(coordinator.grpc, method('ClusterService.GetStatus'), {}, admin);
    assert.equal(answer.answer, 'OK', answer.details);
    adminLatencies.push(Date.now() - asked);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const callsOpen = await metric(coordinator.http, 'mlfleet_rpc_calls_open');
  const { attempts, refused, hinted, replayedEvents: replayed, other } = await reported;
  const heartbeatsAfter = await metric(coordinator.http, 'mlfleet_heartbeats_total');
  const losses = await metric(coordinator.http, 'mlfleet_leadership_losses_total');
  const leaseGap = await metric(coordinator.http, 'mlfleet_lease_renewal_gap_max_seconds');
  const rss = await metric(coordinator.http, 'mlfleet_coordinator_process_resident_memory_bytes');
  const rejected = await metric(coordinator.http, 'mlfleet_rpc_rejected_total');
  const figures = {
    attempts, refused, hinted, replayedEvents: replayed, callsOpenOnLeader: callsOpen,
    heartbeats: heartbeatsAfter - heartbeatsBefore, leadershipLosses: losses,
    worstLeaseRenewalGapS: leaseGap, worstAdminCallMs: Math.max(...adminLatencies), rssMiB: Math.round(rss / 2 ** 20), rejectedByLeader: rejected,
  };
  t.diagnostic(JSON.stringify(figures));
  console.log('stream flood:', JSON.stringify(figures));

  assert.deepEqual(other, [], 'nothing but refusals and open streams');
  // 64 streams per connection reach the leader; past the consumer's 32 each is refused, a second later.
  assert.ok(attempts >= STREAMS && refused > 0 && rejected >= CONNECTIONS * 64 - 32, `the flood was shed: ${rejected} refusals on the leader, ${refused} seen by the flood`);
  assert.equal(hinted, refused, 'every refusal carries the retry-after-ms hint and says it');
  // The rest of the client's streams wait on its side: 64 streams per connection at most.
  assert.ok(callsOpen <= 32 + 1, `at most the consumer's share is open on the leader: ${callsOpen}`);
  assert.ok(replayed <= 32 * 1000, `only the admitted streams replayed: ${replayed} events`);
  const lost = coordinator.lines.filter((l) => l.msg === 'leadership lost' || l.msg === 'lease lost' || l.msg === 'lease keep-alive failed; retrying');
  assert.equal(losses, 0, `no leadership loss: ${JSON.stringify(lost)}`);
  assert.equal(coordinator.lines.some((l) => l.msg === 'leadership lost'), false);
  // Renewed every ~0.67 s for a 2 s TTL: never a whole TTL unconfirmed (then it would be presumed lost).
  assert.ok(leaseGap > 0 && leaseGap < 2, `the lease was renewed within its TTL: worst gap ${leaseGap} s`);
  // A 3 s node TTL: a heartbeat a second; allow for a loaded machine.
  assert.ok(heartbeatsAfter - heartbeatsBefore >= (FLOOD_MS / 1000) * 0.5, `heartbeats kept arriving: ${heartbeatsAfter - heartbeatsBefore} in ${FLOOD_MS / 1000} s`);
  assert.equal(agent.lines.filter((l) => l.msg === 'connected to the leader').length, 1, 'the agent never lost its session');
  const after = new CoordinatorClient([coordinator.grpc], { token: admin });
  t.after(() => after.close());
  assert.equal((await after.getNode('node-a')).status, 'ready');
  assert.equal(coordinator.running, true);
});
