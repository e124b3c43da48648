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
import type { BlobLocation } from '../../shared/proto.js';
import { compileDeploymentSpec } from '../../shared/workload-spec.js';
import { startCoordinatorPair } from '../helpers/coordinator-pair.js';
import { until } from '../helpers/eventually.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { callUnary, method } from '../helpers/raw-grpc.js';

const AGENTS = 8;
const FAILOVER_WITHIN_MS = 20_000;

test('after kill -9 of the leader, the new leader signs grants with the key agents already hold and ranks the fetchers afresh', async (t) => {
  const pair = await startCoordinatorPair(t, { args: ['--node-ttl', '30s'] });
  const { client, tokens } = pair;
  const body = randomBytes(3 << 20);
  const version = await client.push('model', { name: 'm', format: 'onnx', sizeBytes: body.length }, Readable.from([body]));
  const { leader, follower } = await pair.roles();

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
  const deadline = Date.now() + FAILOVER_WITHIN_MS;
  await pair.survivor(follower, FAILOVER_WITHIN_MS);
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
