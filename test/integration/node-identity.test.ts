// A node's identity through real agent processes: a second agent started with the cluster's
// join token under a connected node's name is refused — it says why and keeps retrying with
// backoff — while the real node keeps its credential and its session and goes on running work.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Job } from '../../shared/proto.js';
import { eventually } from '../helpers/eventually.js';
import { startAgent, tempDir, type LogLine } from '../helpers/processes.js';
import { workloadCluster } from '../helpers/workload-cluster.js';

const refusal = (line: LogLine) => typeof line.msg === 'string' && line.msg.startsWith("the coordinator refused this node's join");

test("an agent joining under a connected node's name is refused and retries with backoff; the real node keeps its session and runs work", async (t) => {
  const { address, api, client, join } = await workloadCluster(t, { workloads: { tickMs: 200 } });
  const real = await startAgent(t, 'node-a', [address], tempDir(t), ['--join-token', join]);
  await real.waitForMessage('connected to the leader');
  await eventually('node-a ready', 10_000, async () => ((await client.getNode('node-a')).status === 'ready' ? true : undefined));
  const credentials = async () => (await client.listTokens({ tenant: '', includeRevoked: true })).tokens.filter((tk) => tk.role === 'node' && tk.node === 'node-a');
  const before = await credentials();

  const impostor = await startAgent(t, 'node-a', [address], tempDir(t), ['--join-token', join]);
  const refused = await impostor.waitFor(refusal);
  assert.match(String(refused.msg), /node "node-a" already exists and a join token admits new nodes only; an admin must run `mlfleetctl nodes rm node-a`/);
  assert.equal(refused.level, 50, 'logged as an error');
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  // Backoff with full jitter (a random wait up to 250 ms × 2^n): a handful in 3 s, where spinning would be hundreds.
  const refusals = impostor.lines.filter(refusal).length;
  assert.ok(refusals >= 2 && refusals <= 15, `retries with backoff, neither gives up nor spins: ${refusals} refusals in ~3 s`);
  assert.equal(impostor.lines.some((l) => l.msg === 'connected to the leader'), false);

  // Nothing changed for the real node: the same valid credential, its one session, and work runs there.
  assert.deepEqual(await credentials(), before);
  assert.equal(before.length, 1);
  assert.equal(before[0]!.revokedAtMs, 0);
  assert.equal(real.lines.filter((l) => l.msg === 'connected to the leader').length, 1, 'the real node was never disconnected');
  await api.call('JobService', 'RunJob', { spec: { name: 'after', image: 'unused-by-the-process-driver', command: [process.execPath, '-e', "console.log('ran on the real node')"], workers: 1 } });
  const job = await eventually('the job ended', 30_000, async () => {
    const j = await api.call<Job>('JobService', 'GetJob', { name: 'after' });
    return ['succeeded', 'failed'].includes(j.status) ? j : undefined;
  });
  assert.equal(job.status, 'succeeded', job.message);
  assert.equal(job.allocations[0]!.node, 'node-a');
  assert.match((await api.logs(job.allocations[0]!.id)).toString(), /ran on the real node/);
  assert.equal(real.running, true);
  await impostor.kill();
});
