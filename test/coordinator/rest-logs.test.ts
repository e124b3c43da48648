// Logs over REST from a real agent (process driver): a job's logs with ?follow=1 arrive while it
// runs and the answer ends when it does; several workers' lines are prefixed with their rank;
// an allocation's logs by id, with ?tail=.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { eventually } from '../helpers/eventually.js';
import { startAgent } from '../helpers/processes.js';
import { rest } from '../helpers/rest.js';
import { workloadCluster } from '../helpers/workload-cluster.js';

test('job logs follow live over REST, rank-prefixed for several workers; allocation logs take ?tail=', async (t) => {
  const c = await workloadCluster(t);
  const base = `http://${c.httpAddress}`;
  await startAgent(t, 'worker-1', [c.address], c.dir, ['--join-token-file', path.join(c.dir, 'join-token')]);
  await eventually('the agent to register', 15_000, async () => ((await c.client.listNodes({ status: 'ready' })).nodes.length === 1 ? true : undefined));

  const run = await rest(base, 'POST', '/api/v1/jobs', { token: c.admin, body: { name: 'live', spec: { image: 'busybox', command: ['sh', '-c', 'echo first; sleep 3; echo second'] } } });
  assert.equal(run.status, 201, run.text);
  await eventually('a worker to run', 30_000, async () => ((await c.client.getJob('live')).allocations.some((a) => a.status === 'running') ? true : undefined));
  const res = await fetch(`${base}/api/v1/jobs/live/logs?follow=1`, { headers: { authorization: `Bearer ${c.admin}` } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  while (!text.includes('first')) {
    const { value, done } = await reader.read();
    assert.equal(done, false, 'the stream ended before the first line');
    text += decoder.decode(value, { stream: true });
  }
  assert.equal(text.includes('second'), false, 'the first line came while the job still ran');
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  assert.equal(text, 'first\nsecond\n');

  const pair = await rest(base, 'POST', '/api/v1/jobs', { token: c.admin, body: { name: 'pair', spec: { image: 'busybox', workers: 2, command: ['sh', '-c', 'echo "hello from $MLFLEET_RANK"; echo done'] } } });
  assert.equal(pair.status, 201, pair.text);
  await eventually('pair succeeded', 30_000, async () => ((await c.client.getJob('pair')).status === 'succeeded' ? true : undefined));
  const logs = await rest(base, 'GET', '/api/v1/jobs/pair/logs', { token: c.admin });
  assert.equal(logs.status, 200);
  assert.deepEqual(logs.text.trimEnd().split('\n').sort(), ['[rank 0] done', '[rank 0] hello from 0', '[rank 1] done', '[rank 1] hello from 1']);
  const rank1 = (await c.client.getJob('pair')).allocations.find((a) => a.rank === 1)!;
  const one = await rest(base, 'GET', `/api/v1/allocations/${rank1.id}/logs?tail=5`, { token: c.admin });
  assert.equal(one.text, 'done\n');
  const shown = await rest(base, 'GET', `/api/v1/allocations/${rank1.id}`, { token: c.admin });
  assert.equal((shown.json as { rank: number; workload: string }).rank, 1);
});
