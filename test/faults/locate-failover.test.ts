// Fault: kill -9 of the leader while 8 agents are locating a blob, two coordinator processes on
// a real etcd. Before the kill each agent gets its own rank among 8 fetchers and a grant; after
// it, the new leader (its tracker starts empty) answers the same agents, reconnected, with grants
// the key from the old leader's Welcome verifies, and ranks them afresh. Reported: kill to the
// first Locate answered by the new leader.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { verifyGrant } from '../../shared/blob-http.js';
import { CoordinatorClient } from '../../shared/client.js';
import type { BlobLocation } from '../../shared/proto.js';
import { compileDeploymentSpec } from '../../shared/workload-spec.js';
import { until } from '../helpers/eventually.js';
import { startEtcd } from '../helpers/etcd.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { callUnary, method } from '../helpers/raw-grpc.js';
import { bootstrapTokens, startCoordinator, tempDir, type StartedCoordinator } from '../helpers/processes.js';

const AGENTS = 8;
const FAILOVER_WITHIN_MS = 20_000;

test('after kill -9 of the leader, the new leader signs grants with the key agents already hold and ranks the fetchers afresh', async (t) => {
  const etcd = await startEtcd(t, { dedicated: true });
  const dir = tempDir(t);
  const storeSpec = `etcd:${etcd.endpoints.join(',')}`;
  const coordinators: StartedCoordinator[] = [];
  for (const name of ['c1', 'c2']) coordinators.push(await startCoordinator(t, name, ['--store', storeSpec, '--data-dir', `${dir}/${name}`, '--election-ttl', '1s', '--node-ttl', '30s']));
  const tokens = await bootstrapTokens(['c1', 'c2'].map((name) => `${dir}/${name}`));
  const client = new CoordinatorClient(coordinators.map((c) => c.grpc), { deadlineMs: 5_000, token: tokens.admin });
  t.after(() => client.close());
  const body = randomBytes(3 << 20);
  const version = await client.push('model', { name: 'm', format: 'onnx', sizeBytes: body.length }, Readable.from([body]));
  const leaderAddress = (await client.clusterStatus()).leader;
  const leader = coordinators.find((c) => c.grpc === leaderAddress)!;
  const follower = coordinators.find((c) => c !== leader)!;

  const agents: FakeAgent[] = [];
  for (let i = 0; i < AGENTS; i++) agents.push(await FakeAgent.start(t, `node-${i}`, leader.grpc, tokens.join, { peerUploadMbps: 100, address: `127.0.0.1:${18000 + i}` }));
  await client.applyDeployment(compileDeploymentSpec({ name: 'web', model: 'm', image: 'mlfleet/runtime:0.1.0', port: 8080, replicas: AGENTS, maxPerNode: 1, resources: { cpuMillis: 100, memoryBytes: 2 ** 26 } }));
  await until('a replica on every agent', () => agents.every((a) => a.desired.length === 1), 20_000);
  const locate = async (at: string, agent: FakeAgent): Promise<BlobLocation> => {
    const got = await callUnary(at, method('DeliveryService.Locate'), { digest: version.digest }, agent.credential);
    if (got.answer !== 'OK') throw new Error(`${agent.name}: ${got.answer} ${got.details}`);
    return got.response as BlobLocation;
  };

  const key = agents[0]!.grantPublicKey!;
  for (const [i, agent] of agents.entries()) {
    const location = await locate(leader.grpc, agent);
    assert.deepEqual([location.rank, location.fetchers], [i, i + 1], `${agent.name} arrives ${i + 1}th`);
    assert.equal(location.sources.filter((s) => s.kind === 'peer').length, i, 'every earlier fetcher is a peer');
    verifyGrant(key, location.grant, { node: agent.name, digest: version.digest, nowMs: Date.now() });
  }

  leader.child.kill('SIGKILL');
  const killedAt = Date.now();
  for (const agent of agents) agent.close();
  const survivor = new CoordinatorClient([follower.grpc], { deadlineMs: 2_000, token: tokens.admin });
  t.after(() => survivor.close());
  const deadline = Date.now() + FAILOVER_WITHIN_MS;
  while ((await survivor.clusterStatus().catch(() => undefined))?.leader !== follower.grpc) {
    if (Date.now() > deadline) throw new Error(`${follower.name} did not lead within ${FAILOVER_WITHIN_MS} ms of the kill`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  // The same nodes, with their credentials, to whichever coordinator leads now.
  let first: BlobLocation | undefined;
  const again: FakeAgent[] = [];
  for (const old of agents) {
    const agent = new FakeAgent(old.name, follower.grpc, tokens.join, { peerUploadMbps: 100, address: `127.0.0.1:${18000 + again.length}` });
    agent.credential = old.credential;
    t.after(() => agent.close());
    // As a real agent does: a session the new leader ends while it settles in is opened again.
    for (;;) {
      try {
        await agent.connect();
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        agent.disconnect();
        t.diagnostic(`${agent.name}: session ended before welcome (${(err as Error).message}); again`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    again.push(agent);
  }
  for (const [i, agent] of again.entries()) {
    assert.ok(agent.grantPublicKey!.equals(key), "the new leader's Welcome carries the old key");
    const location = await locate(follower.grpc, agent);
    first ??= location;
    if (i === 0) t.diagnostic(`failover: ${((Date.now() - killedAt) / 1000).toFixed(2)} s from kill -9 to the first Locate answered by the new leader`);
    assert.deepEqual([location.rank, location.fetchers], [i, i + 1], `${agent.name} ranked afresh`);
    assert.equal(verifyGrant(key, location.grant, { node: agent.name, digest: version.digest, nowMs: Date.now() }).node, agent.name);
  }
  assert.ok(first);
});
