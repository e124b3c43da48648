// Agents share pieces (issue 15), through real processes: a coordinator and three agents. The
// first agent pulls a model from the coordinator (the seed); the second pulls it from the
// first, costing the coordinator nothing; both say so in `nodes show` and their /metrics. A
// cordoned holder is no longer a source: the third agent then pulls from the coordinator.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import { eventually } from '../helpers/eventually.js';
import { metricValue } from '../helpers/metrics.js';
import { CLI, runScript } from '../helpers/mlfleetctl.js';
import { bootstrapTokens, startAgent, startCoordinator, tempDir } from '../helpers/processes.js';

const MiB = 1024 * 1024;
const SIZE = 40 * MiB + 123;

interface Delivery {
  fromPeersBytes: number;
  fromCoordinatorBytes: number;
  fromS3Bytes: number;
  toPeersBytes: number;
  corruptPieces: number;
}

/** A coordinator on SQLite with its tokens, the CLI as its admin, and a client. */
async function cluster(t: TestContext) {
  const dir = tempDir(t);
  const coordinator = await startCoordinator(t, 'c1', ['--store', `sqlite:${dir}/c.db`, '--data-dir', `${dir}/c1`]);
  const tokens = await bootstrapTokens([`${dir}/c1`]);
  const ctl = (...args: string[]) => runScript(t, CLI, ['--coordinator', coordinator.grpc, ...args], { MLFLEET_TOKEN: tokens.admin });
  const client = new CoordinatorClient([coordinator.grpc], { token: tokens.admin });
  t.after(() => client.close());
  return { dir, coordinator, tokens, ctl, client };
}

test('a second agent takes the pieces from the first instead of the coordinator; a cordoned holder is no source', async (t) => {
  const { dir, coordinator, tokens, ctl, client } = await cluster(t);

  const model = path.join(dir, 'model.onnx');
  writeFileSync(model, randomBytes(SIZE));
  const pushed = await ctl('-o', 'json', 'models', 'push', 'shared', model);
  assert.equal(pushed.code, 0, pushed.stderr);
  const { digest } = JSON.parse(pushed.stdout) as { digest: string };

  const agents = [];
  for (const name of ['peer-a', 'peer-b', 'peer-c']) {
    agents.push(await startAgent(t, name, [coordinator.grpc], dir, ['--join-token-file', tokens.joinFile, '--cache-max-bytes', '1Gi']));
  }
  await eventually('three ready nodes', 15_000, async () => ((await client.listNodes({ status: 'ready' })).nodes.length === 3 ? true : undefined));
  const cached = (name: string) =>
    eventually(`${name} to cache the model`, 30_000, async () => ((await client.getNode(name)).cache.some((e) => e.digest === digest) ? true : undefined));
  const delivery = async (name: string): Promise<Delivery> => {
    const shown = await ctl('-o', 'json', 'nodes', 'show', name);
    assert.equal(shown.code, 0, shown.stderr);
    return (JSON.parse(shown.stdout) as { delivery: Delivery }).delivery;
  };
  const sent = () => metricValue(coordinator.http, 'mlfleet_coordinator_blob_sent_bytes_total');

  // The first agent: nobody else has it, so all of it comes from the seed.
  assert.equal((await ctl('nodes', 'prefetch', 'peer-a', 'shared')).code, 0);
  await cached('peer-a');
  const afterFirst = await sent();
  assert.ok(afterFirst >= SIZE, `the coordinator sent ${afterFirst} bytes for the first pull`);

  // The second: every piece is on peer-a, so the coordinator sends nothing.
  assert.equal((await ctl('nodes', 'prefetch', 'peer-b', 'shared')).code, 0);
  await cached('peer-b');
  assert.equal(await sent(), afterFirst, 'the coordinator sent nothing for the second pull');
  const b = await eventually('peer-b to report its delivery', 10_000, async () => {
    const figures = await delivery('peer-b');
    return figures?.fromPeersBytes === SIZE ? figures : undefined;
  });
  assert.equal(b.fromCoordinatorBytes, 0);
  assert.equal(b.corruptPieces, 0);
  const a = await eventually('peer-a to report what it gave', 10_000, async () => {
    const figures = await delivery('peer-a');
    return figures?.toPeersBytes === SIZE ? figures : undefined;
  });
  assert.equal(a.fromCoordinatorBytes, SIZE);
  const agentB = agents[1]!;
  const agentHttp = (await agentB.waitForMessage('agent started')).http as string;
  assert.equal(await metricValue(agentHttp, 'mlfleet_agent_blob_received_bytes_total', 'source="peer"'), SIZE);

  // Both holders cordoned: neither is a source, and the third agent pulls from the seed.
  assert.equal((await ctl('nodes', 'cordon', 'peer-a')).code, 0);
  assert.equal((await ctl('nodes', 'cordon', 'peer-b')).code, 0);
  assert.equal((await ctl('nodes', 'prefetch', 'peer-c', 'shared')).code, 0);
  await cached('peer-c');
  const c = await eventually('peer-c to report its delivery', 10_000, async () => {
    const figures = await delivery('peer-c');
    return figures?.fromCoordinatorBytes === SIZE ? figures : undefined;
  });
  assert.equal(c.fromPeersBytes, 0);
  assert.equal(await sent(), afterFirst + SIZE);
});

test('three agents pulling at once share the pieces while they fetch them: the coordinator sends about one copy, and every agent verifies the whole', async (t) => {
  const { dir, coordinator, tokens, ctl, client } = await cluster(t);
  // 12 pieces of 8 MiB: each agent's share of the seed is a third; the rest come from the others.
  const size = 96 * MiB;
  const model = path.join(dir, 'model.onnx');
  writeFileSync(model, randomBytes(size));
  const pushed = await ctl('-o', 'json', 'models', 'push', 'together', model);
  assert.equal(pushed.code, 0, pushed.stderr);
  const { digest } = JSON.parse(pushed.stdout) as { digest: string };
  const names = ['swarm-a', 'swarm-b', 'swarm-c'];
  const agents = [];
  for (const name of names) agents.push(await startAgent(t, name, [coordinator.grpc], dir, ['--join-token-file', tokens.joinFile, '--cache-max-bytes', '1Gi']));
  await eventually('three ready nodes', 15_000, async () => ((await client.listNodes({ status: 'ready' })).nodes.length === 3 ? true : undefined));
  const before = await metricValue(coordinator.http, 'mlfleet_coordinator_blob_sent_bytes_total');

  const prefetched = await Promise.all(names.map((name) => ctl('nodes', 'prefetch', name, 'together')));
  for (const result of prefetched) assert.equal(result.code, 0, result.stderr);
  for (const name of names) {
    await eventually(`${name} to cache the model`, 60_000, async () => ((await client.getNode(name)).cache.some((e) => e.digest === digest) ? true : undefined));
  }
  const sent = (await metricValue(coordinator.http, 'mlfleet_coordinator_blob_sent_bytes_total')) - before;
  assert.ok(sent < 2 * size, `the coordinator sent ${(sent / size).toFixed(2)} copies for three agents pulling at once`);
  let fromPeers = 0;
  for (const agent of agents) {
    const agentHttp = (await agent.waitForMessage('agent started')).http as string;
    fromPeers += await metricValue(agentHttp, 'mlfleet_agent_blob_received_bytes_total', 'source="peer"');
    // Each verified the whole digest as it went (in order, from its kept pieces), not by hashing the file again.
    const whole = await agent.waitForMessage('whole digest taken with the pieces');
    assert.equal(whole.digest, digest);
    assert.equal(agent.lines.some((line) => String(line.msg).startsWith('the whole digest could not follow')), false);
  }
  assert.ok(fromPeers >= size, `${fromPeers} bytes came from peers`);
});
