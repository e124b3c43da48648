// Three coordinators on one real etcd and three real agent processes: one leader at a time,
// a kill -9 of the leader is survived within 3 s with no node marked down, the dead leader's
// fence no longer admits writes, and a killed agent's node goes down within the TTL and comes
// back when the agent does.
import { eventually } from '../helpers/eventually.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import { keys } from '../../shared/keys.js';
import { openStore } from '../../shared/store/open-store.js';
import { startEtcd } from '../helpers/etcd.js';
import { bootstrapTokens, startAgent, startCoordinator, tempDir, type StartedCoordinator } from '../helpers/processes.js';

const NODE_TTL_MS = 3_000;

test('a cluster of three coordinators and three agents survives losing its leader and an agent', async (t) => {
  const etcd = await startEtcd(t, { dedicated: true });
  const dir = tempDir(t);
  const storeSpec = `etcd:${etcd.endpoints.join(',')}`;
  const coordinators: StartedCoordinator[] = [];
  for (const name of ['c1', 'c2', 'c3']) {
    coordinators.push(await startCoordinator(t, name, ['--store', storeSpec, '--data-dir', `${dir}/${name}`, '--node-ttl', `${NODE_TTL_MS}ms`, '--election-ttl', '1s']));
  }
  const addresses = coordinators.map((c) => c.grpc);
  const tokens = await bootstrapTokens(['c1', 'c2', 'c3'].map((name) => `${dir}/${name}`));
  const client = new CoordinatorClient(addresses, { deadlineMs: 5_000, token: tokens.admin });
  t.after(() => client.close());
  const agents = new Map<string, Awaited<ReturnType<typeof startAgent>>>();
  for (const name of ['node-a', 'node-b', 'node-c']) agents.set(name, await startAgent(t, name, addresses, dir, ['--join-token-file', tokens.joinFile]));

  const readyNames = async () => (await client.listNodes({ status: 'ready' })).nodes.map((n) => n.name).sort();
  await eventually('three ready nodes', 15_000, async () => ((await readyNames()).length === 3 ? true : undefined), { retryErrors: true });

  // Exactly one coordinator leads, and every one of them says the same.
  const statuses = await Promise.all(
    addresses.map(async (a) => {
      const single = new CoordinatorClient([a], { token: tokens.admin });
      try {
        return await single.clusterStatus();
      } finally {
        single.close();
      }
    }),
  );
  const leaders = new Set(statuses.map((s) => s.leader));
  assert.equal(leaders.size, 1);
  const leaderAddress = [...leaders][0]!;
  assert.equal(statuses[0]!.coordinators.filter((c) => c.role === 'leader').length, 1);
  assert.equal(statuses[0]!.store, 'etcd');
  const leader = coordinators.find((c) => c.grpc === leaderAddress)!;
  assert.ok(leader, `the leader ${leaderAddress} is one of ours`);

  // Remember the leader's fence: the creation revision of its election key.
  const store = await openStore(storeSpec);
  t.after(() => store.close());
  const { kvs } = await store.range(keys.electionPrefix);
  const oldLeaderKey = kvs.find((kv) => JSON.parse(kv.value).address === leaderAddress)!;
  assert.ok(oldLeaderKey, 'the leader holds an election key');

  // kill -9 the leader: a new one serves `nodes ls` within 3 s.
  leader.child.kill('SIGKILL');
  const killedAt = Date.now();
  const survivors = coordinators.filter((c) => c !== leader);
  const failoverClient = new CoordinatorClient(survivors.map((c) => c.grpc), { deadlineMs: 1_000, token: tokens.admin });
  t.after(() => failoverClient.close());
  const nodes = await eventually('a new leader answering nodes ls', 6_000, async () => (await failoverClient.listNodes({})).nodes, { retryErrors: true });
  const failoverMs = Date.now() - killedAt;
  t.diagnostic(`new leader served nodes ls ${failoverMs} ms after kill -9`);
  assert.ok(failoverMs < 3_000, `failover took ${failoverMs} ms`);
  assert.equal(nodes.length, 3);
  assert.ok(nodes.every((n) => n.status === 'ready'), 'no node is down right after the failover');

  // The dead leader's fence admits nothing any more.
  const fenced = await store.txn(
    [{ key: oldLeaderKey.key, target: 'createRevision', op: '=', value: oldLeaderKey.createRevision }],
    [{ type: 'put', key: keys.node('node-a'), value: '{"forged":true}' }],
  );
  assert.equal(fenced.succeeded, false, "a write fenced by the old leader's key is rejected");
  assert.equal(JSON.parse((await store.get(keys.node('node-a')))!.value).forged, undefined);

  // Over the next TTL and a half, the agents reconnect and nothing is marked down.
  const until = Date.now() + NODE_TTL_MS * 1.5;
  while (Date.now() < until) {
    const list = await failoverClient.listNodes({});
    assert.deepEqual(list.nodes.filter((n) => n.status !== 'ready').map((n) => n.name), [], 'no node goes down after a failover');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const status = await failoverClient.clusterStatus();
  assert.notEqual(status.leader, leaderAddress);
  assert.equal(status.coordinators.length, 2, 'the dead coordinator has left the member list');

  // Kill an agent: its node goes down within the TTL, and comes back with the agent.
  const agentB = agents.get('node-b')!;
  agentB.child.kill('SIGKILL');
  const agentKilledAt = Date.now();
  await eventually('node-b down', NODE_TTL_MS + 2_000, async () =>
    (await failoverClient.getNode('node-b')).status === 'down' ? true : undefined,
  { retryErrors: true });
  const downMs = Date.now() - agentKilledAt;
  t.diagnostic(`node-b marked down ${downMs} ms after its agent was killed (TTL ${NODE_TTL_MS} ms)`);
  assert.ok(downMs <= NODE_TTL_MS + 500, `node went down after ${downMs} ms`);
  assert.equal((await failoverClient.getNode('node-a')).status, 'ready');

  // It comes back with the credential it was issued at its first join (no join token this time).
  await startAgent(t, 'node-b', survivors.map((c) => c.grpc), dir);
  await eventually('node-b ready again', 10_000, async () =>
    (await failoverClient.getNode('node-b')).status === 'ready' ? true : undefined,
  { retryErrors: true });
});
