// Fault: kill -9 of the leader under push and deploy load, three coordinator processes on a
// real etcd with the default filesystem blob store. 30 small pushes, one at a time, each followed
// by a deployment of the version just pushed; the leader is killed after the 10th push is
// acknowledged. No acknowledged version or deployment is lost, and every version is pulled, byte
// for byte, from the new leader. The outage (kill to the next acknowledged write) is reported.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import { compileDeploymentSpec } from '../../shared/workload-spec.js';
import { pulledDigest, pushRandom, type Pushed } from '../helpers/blob-copies.js';
import { startEtcd } from '../helpers/etcd.js';
import { bootstrapTokens, startCoordinator, tempDir, type StartedCoordinator } from '../helpers/processes.js';

const PUSHES = 30;
const KILL_AFTER = 10;
/** How long one push may keep being retried through the failover. */
const PUSH_WITHIN_MS = 20_000;

test('kill -9 of the leader under pushes and deployments loses no acknowledged write, and the new leader serves every version', async (t) => {
  const etcd = await startEtcd(t, { dedicated: true });
  const dir = tempDir(t);
  const storeSpec = `etcd:${etcd.endpoints.join(',')}`;
  const names = ['c1', 'c2', 'c3'];
  const coordinators: StartedCoordinator[] = [];
  for (const name of names) coordinators.push(await startCoordinator(t, name, ['--store', storeSpec, '--data-dir', `${dir}/${name}`, '--election-ttl', '1s']));
  const tokens = await bootstrapTokens(names.map((name) => `${dir}/${name}`));
  const client = new CoordinatorClient(coordinators.map((c) => c.grpc), { deadlineMs: 5_000, token: tokens.admin });
  t.after(() => client.close());

  const acknowledged: Pushed[] = [];
  const deployed: string[] = [];
  /** Retries `write` through the failover, as a user would, until it is acknowledged. */
  const untilAcknowledged = async <T>(what: string, write: () => Promise<T>): Promise<T> => {
    const deadline = Date.now() + PUSH_WITHIN_MS;
    for (;;) {
      try {
        return await write();
      } catch (err) {
        refusedDuringFailover += 1;
        if (Date.now() > deadline) throw new Error(`${what} was not acknowledged within ${PUSH_WITHIN_MS} ms: ${(err as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  };
  let killed: { leader: StartedCoordinator; atMs: number } | undefined;
  let outageMs: number | undefined;
  let refusedDuringFailover = 0;
  for (let i = 0; i < PUSHES; i++) {
    const body = randomBytes(2_048 + ((i * 4_099) % 30_000));
    const pushed = await untilAcknowledged(`push ${i}`, () => pushRandom(client, `model-${i % 4}`, 0, body));
    acknowledged.push(pushed);
    if (killed && outageMs === undefined) outageMs = Date.now() - killed.atMs;
    // A deployment of it (no agent runs it: what matters is that the acknowledged write stays).
    const spec = compileDeploymentSpec({ name: `web-${i}`, model: `${pushed.name}:${pushed.version}`, image: 'mlfleet/runtime:0.1.0', port: 8080 });
    await untilAcknowledged(`deployment ${i}`, () => client.applyDeployment(spec));
    deployed.push(spec.name);
    if (i + 1 === KILL_AFTER) {
      const leaderAddress = (await client.clusterStatus()).leader;
      const leader = coordinators.find((c) => c.grpc === leaderAddress);
      assert.ok(leader, `the leader ${leaderAddress} is one of ours`);
      leader.child.kill('SIGKILL');
      killed = { leader, atMs: Date.now() };
    }
  }
  assert.ok(killed && outageMs !== undefined);
  t.diagnostic(`outage: ${(outageMs / 1000).toFixed(2)} s from kill -9 of ${killed.leader.name} to the next acknowledged push; ${refusedDuringFailover} unacknowledged attempts pushed again`);
  assert.equal(acknowledged.length, PUSHES);

  // Every acknowledged version is listed by the new leader and pulled byte for byte.
  const survivors = coordinators.filter((c) => c !== killed!.leader);
  const after = new CoordinatorClient(survivors.map((c) => c.grpc), { deadlineMs: 10_000, token: tokens.admin });
  t.after(() => after.close());
  const newLeader = (await after.clusterStatus()).leader;
  assert.notEqual(newLeader, killed.leader.grpc);
  let lost = 0;
  for (const pushed of acknowledged) {
    const digest = await pulledDigest(after, pushed.name, pushed.version).catch((err: Error) => `unpullable: ${err.message}`);
    if (digest !== pushed.digest) lost += 1;
    assert.equal(digest, pushed.digest, `${pushed.name}:${pushed.version} from the new leader ${newLeader}`);
  }
  t.diagnostic(`${acknowledged.length} acknowledged versions, ${lost} lost; all pulled from the new leader ${newLeader}`);
  const deployments = new Set((await after.listDeployments()).deployments.map((d) => d.spec?.name));
  assert.deepEqual(deployed.filter((name) => !deployments.has(name)), [], 'every acknowledged deployment is on the new leader');
  t.diagnostic(`${deployed.length} acknowledged deployments, all on the new leader`);
});
