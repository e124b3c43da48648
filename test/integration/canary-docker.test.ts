// Canary traffic, automatic rollback on errors and on p99, and promote/rollback by hand, with real
// processes and Docker: an in-process leader, one Docker agent whose gateway every request goes
// through, and replicas of the runtime image running a tiny server that answers with the model
// version it serves (test/helpers/docker-serving.ts). Each deployment follows the alias
// `production` of its model; moving the alias is the change that rolls out. Bounded: one agent,
// at most three replicas at once, loopback only, each test well under a minute on a quiet host.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { Deployment } from '../../shared/proto.js';
import { nodeDeployment, post, servingCluster, VERSIONED_SERVER, type Answer, type ServingCluster } from '../helpers/docker-serving.js';
import { eventually } from '../helpers/eventually.js';
import { mlfleetctl } from '../helpers/mlfleetctl.js';

const INFER = '/v2/models/echo/infer';

/** `count` requests through the gateway, `parallel` at a time. */
async function send(gateway: string, count: number, parallel = 4): Promise<Answer[]> {
  const answers: Answer[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) {
        next += 1;
        answers.push(await post(gateway, INFER));
      }
    }),
  );
  return answers;
}

function tally(answers: Answer[]): Record<string, number> {
  const by: Record<string, number> = {};
  for (const a of answers) {
    const key = a.status === 200 ? `v${a.version}` : String(a.status);
    by[key] = (by[key] ?? 0) + 1;
  }
  return by;
}

/** Version 1 of model echo (content `{"v":1}`), the alias production on it, deployed and watched into the last good version. */
async function deployedV1(c: ServingCluster, rollout: Record<string, number>): Promise<Deployment> {
  await c.push('echo', '{"v":1}');
  await c.client.setAlias('model', 'echo', 'production', 1);
  await c.client.applyDeployment(nodeDeployment(c.image, 'echo', 'echo@production', VERSIONED_SERVER, { rollout: { watchMs: 1_000, ...rollout } }));
  const good = await eventually('version 1 watched into the last good one', 60_000, async () => {
    const d = await c.client.getDeployment('echo');
    return d.lastGoodVersion === 1 && d.status === 'available' ? d : undefined;
  });
  await eventually('the gateway routes version 1', 10_000, async () => ((await post(c.gateway, INFER)).version === '1' ? true : undefined));
  return good;
}

/** Moves the alias to a new version with `content` and waits until a canary replica of it answers through the gateway. */
async function canaryOf(c: ServingCluster, content: string): Promise<number> {
  const version = await c.push('echo', content);
  await c.client.setAlias('model', 'echo', 'production', version);
  await eventually(`a canary of version ${version} ready and routed`, 60_000, async () => {
    const d = await c.client.getDeployment('echo');
    if (d.canaryReplicas < 1) return undefined;
    // The gateway learns of it with the next routing table: some request reaches it.
    return (await send(c.gateway, 8, 1)).some((a) => a.version === String(version)) ? true : undefined;
  });
  return version;
}

/**
 * Version 1 deployed with canaries of 50% (so that a canary reaches the 20 requests it is judged
 * on quickly), then a canary of a version 2 with `content`, and requests through the gateway
 * one after another until it is rolled back: the RolledBack event's message and the answers.
 */
async function canaryRolledBack(t: TestContext, content: string): Promise<{ c: ServingCluster; message: string; answers: Answer[] }> {
  const c = await servingCluster(t);
  await deployedV1(c, { canaryPercent: 50 });
  await canaryOf(c, content);
  const answers: Answer[] = [];
  const message = await whileSending(c, answers, () => eventually('a RolledBack event', 30_000, async () => (await c.api.events('deployment/echo')).find((e) => e.type === 'RolledBack')?.message));
  t.diagnostic(`${message}; requests during the canary: ${JSON.stringify(tally(answers))}`);
  return { c, message, answers };
}

/** Sends requests through the gateway one after another, collecting the answers, until `wait` settles. */
async function whileSending<T>(c: ServingCluster, answers: Answer[], wait: () => Promise<T>): Promise<T> {
  let running = true;
  const loop = (async () => {
    while (running) answers.push(await post(c.gateway, INFER));
  })();
  try {
    return await wait();
  } finally {
    running = false;
    await loop;
  }
}

/**
 * Waits until only replicas of `version` run (the others stopped) and the gateway's routing table
 * has caught up, then checks that 40 requests in a row are all answered by it.
 */
async function onlyVersion(c: ServingCluster, version: number): Promise<void> {
  await eventually(`only version ${version} runs`, 60_000, async () => {
    const d = await c.client.getDeployment('echo');
    return d.resolvedVersion === version && d.canaryReplicas === 0 && d.allocations.every((a) => a.desired !== 'run' || (a.generation === d.generation && a.status === 'ready')) ? true : undefined;
  });
  await eventually(`the gateway routes version ${version} alone`, 10_000, async () => ((await send(c.gateway, 10, 1)).every((a) => a.version === String(version)) ? true : undefined));
  assert.deepEqual(tally(await send(c.gateway, 40)), { [`v${version}`]: 40 }, `version ${version} answers everything`);
}

test('a canary at 25% gets about a quarter of 400 requests through a real gateway, the rest go to the stable version, none fails; a request naming a version gets that one', async (t) => {
  const c = await servingCluster(t);
  await deployedV1(c, { canaryPercent: 25 });
  await canaryOf(c, '{"v":2}');
  const d = await c.client.getDeployment('echo');
  assert.equal(d.canaryReplicas, 1, 'one canary replica (ceil(1 × 25%))');
  assert.ok(d.allocations.some((a) => a.status === 'ready' && a.desired === 'run' && a.generation === 1), 'the stable replica still runs');

  const answers = await send(c.gateway, 400);
  const by = tally(answers);
  t.diagnostic(`400 requests: ${JSON.stringify(by)}`);
  assert.equal((by.v1 ?? 0) + (by.v2 ?? 0), 400, `every request answered by version 1 or 2: ${JSON.stringify(by)}`);
  // Each request goes to the canary with p = 0.25, independently (the gateway draws per
  // request): the count is binomial(n = 400, p = 0.25), mean 100, sd = sqrt(400 × 0.25 × 0.75)
  // ≈ 8.66. ±3 sd is 74..126; a correct split falls outside it about 0.3% of the time, and a
  // split that ignored the canary (0), sent it half (200) or a replica-count share (50%) never
  // falls in it.
  const canary = by.v2 ?? 0;
  assert.ok(canary >= 74 && canary <= 126, `the canary got ${canary} of 400 requests, outside 100 ± 3 sd (74..126)`);

  // A request that names a version goes to that version only, canary or not.
  for (const version of [1, 2]) {
    const named = await Promise.all(Array.from({ length: 20 }, () => post(c.gateway, `/v2/models/echo/versions/${version}/infer`)));
    assert.deepEqual(tally(named), { [`v${version}`]: 20 }, `requests for version ${version}`);
  }
});

test('a new version answering 500 to a third of its requests rolls back by itself; the RolledBack event names the error rate', async (t) => {
  // The canary's share fails one time in three.
  const { c, message, answers } = await canaryRolledBack(t, '{"v":2,"failEvery":3}');
  const values = /^rolled back to version 1: error rate ([\d.]+)% \((\d+)\/(\d+)\) against 0\.0% for version 1, over the threshold 5\.0%$/.exec(message);
  assert.ok(values, `the event names the error rate and its values: ${message}`);
  const [rate, errors, count] = [Number(values[1]), Number(values[2]), Number(values[3])];
  assert.ok(count >= 20, `judged on at least --min-requests (20) requests: ${count}`);
  // The server fails exactly every third inference, and the gateway counts each one it sent.
  assert.ok(Math.abs(errors - count / 3) <= 1, `about a third failed: ${errors}/${count}`);
  assert.ok(Math.abs(rate - (100 * errors) / count) < 0.1, `the rate is errors/count: ${rate}%`);
  assert.equal(tally(answers)['500'] !== undefined, true, 'the failures reached the clients (nothing hides a 500)');

  const d = await c.client.getDeployment('echo');
  assert.equal(d.pinned, true, 'pinned to version 1');
  assert.equal(d.resolvedVersion, 1);
  assert.equal(d.lastGoodVersion, 1);
  // The canary's replica goes; every request is version 1's again.
  await onlyVersion(c, 1);
  const alias = (await c.client.getArtifact('model', 'echo')).aliases;
  assert.equal(alias.production, 2, 'the alias is not moved back');
});

test('a new version 300 ms slower rolls back by itself on its p99; the RolledBack event names both p99s', async (t) => {
  const { c, message, answers } = await canaryRolledBack(t, '{"v":2,"delayMs":300}');
  const values = /^rolled back to version 1: p99 ([\d.]+) ms against ([\d.]+) ms for version 1, over 2× its p99$/.exec(message);
  assert.ok(values, `the event names the latency signal and its values: ${message}`);
  const [slow, before] = [Number(values[1]), Number(values[2])];
  assert.ok(slow >= 300, `the new version's p99 includes its 300 ms: ${slow}`);
  assert.ok(before > 0 && slow > 2 * before, `version 1's p99 was measured over the same window, and is under half: ${before}`);
  assert.deepEqual(Object.keys(tally(answers)).sort(), ['v1', 'v2'], 'slow, not failing: every request answered');
  assert.equal((await c.client.getDeployment('echo')).pinned, true);
  await onlyVersion(c, 1);
});

test('promote and rollback by hand through mlfleetctl: a promoted canary serves everything, a later canary rolled back is gone and the deployment pinned', async (t) => {
  const c = await servingCluster(t);
  const env = { MLFLEET_TOKEN: c.admin };
  const ctl = (...args: string[]) => mlfleetctl(t, ['--coordinator', c.address, ...args], env);
  await deployedV1(c, { canaryPercent: 50 });

  const early = await ctl('deployments', 'promote', 'echo');
  assert.notEqual(early.code, 0, 'nothing to promote yet');
  assert.match(early.stderr, /no canary to promote/);

  await canaryOf(c, '{"v":2}');
  const promoted = await ctl('deployments', 'promote', 'echo');
  assert.equal(promoted.code, 0, promoted.stderr);
  assert.match(promoted.stdout, /deployment\/echo promoted: model version 2, generation 2/);
  await onlyVersion(c, 2);
  await eventually('version 2 watched into the last good one', 20_000, async () => ((await c.client.getDeployment('echo')).lastGoodVersion === 2 ? true : undefined));

  await canaryOf(c, '{"v":3}');
  const rolled = await ctl('deployments', 'rollback', 'echo', '-o', 'json');
  assert.equal(rolled.code, 0, rolled.stderr);
  const shown = JSON.parse(rolled.stdout) as { resolvedVersion: number; pinned: boolean; lastGoodVersion: number };
  assert.deepEqual([shown.resolvedVersion, shown.pinned, shown.lastGoodVersion], [2, true, 2]);
  await onlyVersion(c, 2);

  const again = await ctl('deployments', 'rollback', 'echo');
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /already runs its last good version 2/);
  const json = JSON.parse((await ctl('deployments', 'show', 'echo', '-o', 'json')).stdout) as { pinned: boolean; canary: unknown; lastGoodVersion: number };
  assert.deepEqual([json.pinned, json.lastGoodVersion], [true, 2]);
});
