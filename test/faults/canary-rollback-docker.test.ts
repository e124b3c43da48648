// Automatic rollback with real processes: a coordinator, a Docker agent and its gateway, and a
// replica of the runtime image serving version 1. A spec change whose server exits at start is
// rolled out; its replicas fail, back off, and once 3 have failed the deployment rolls itself
// back to version 1 and is pinned — while a loop of requests through the gateway never sees a
// failure (the failing replicas never became ready, so were never routed to). Bounded: one
// replica, one agent, loopback only, about 30 s.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Deployment } from '../../shared/proto.js';
import { nodeDeployment, post, servingCluster } from '../helpers/docker-serving.js';
import { eventually } from '../helpers/eventually.js';

const SERVER = `require('http').createServer((req, res) => { res.setHeader('content-type', 'application/json'); res.end('{"outputs":[]}'); }).listen(Number(process.env.PORT));`;

test('a rollout whose server exits at start rolls itself back to version 1, pinned, with no failed request through the gateway', async (t) => {
  const { client, api, gateway, image, push } = await servingCluster(t);
  await push('echo', 'weights');
  const spec = (command: string) => nodeDeployment(image, 'echo', 'echo', command, { rollout: { watchMs: 1_000 } });
  await client.applyDeployment(spec(SERVER));
  const good = await eventually('version 1 watched into the last good one', 60_000, async () => {
    const d = await client.getDeployment('echo');
    return d.lastGoodVersion === 1 && d.status === 'available' ? d : undefined;
  });
  const stable = good.allocations[0]!.id;
  await eventually('the gateway routes it', 10_000, async () => ((await post(gateway, '/v2/models/echo/infer')).status === 200 ? true : undefined));

  // Requests through the gateway, one after another, for the whole episode.
  const statuses = new Map<number, number>();
  let running = true;
  const loop = (async () => {
    while (running) {
      const { status } = await post(gateway, '/v2/models/echo/infer');
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  t.after(() => void (running = false));

  await client.applyDeployment(spec('process.exit(3)'));
  const message = await eventually('a RolledBack event', 45_000, async () => (await api.events('deployment/echo')).find((e) => e.type === 'RolledBack')?.message);
  running = false;
  await loop;
  assert.match(message, /^rolled back to version 1: 3 replicas of the new version failed since it started rolling out \(the last: .*\)/);
  const d: Deployment = await client.getDeployment('echo');
  assert.equal(d.pinned, true);
  assert.equal(d.generation, 1, 'back on generation 1');
  assert.equal(d.lastGoodVersion, 1);
  assert.deepEqual(d.spec?.command, ['node', '-e', SERVER], 'the spec it runs is the last good one');
  assert.ok(d.allocations.some((a) => a.id === stable && a.status === 'ready' && a.desired === 'run'), 'the version 1 replica served throughout');
  const total = [...statuses.values()].reduce((a, b) => a + b, 0);
  t.diagnostic(`requests through the gateway during the episode: ${JSON.stringify(Object.fromEntries(statuses))}`);
  assert.ok(total >= 20, `a loop of requests ran (${total})`);
  assert.deepEqual([...statuses.keys()], [200], 'no request failed');
});
