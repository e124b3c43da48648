// The agent's session with real coordinators (two, sharing one SQLite file, so one leads and
// one follows): it follows the follower's redirect, registers, heartbeats, and after the
// leader goes away reconnects to the new one and says hello again.
import { eventually, until } from '../helpers/eventually.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CoordinatorSession, type SessionOptions } from '../../agent/session.js';
import { DeliveryCounters } from '../../agent/delivery/counters.js';
import { CoordinatorClient } from '../../shared/client.js';
import { backoffDelay, seededRandom, systemClock } from '../../shared/clock.js';
import { silentLogger } from '../../shared/log.js';
import type { Hello } from '../../shared/gen/mlfleet/v1/Hello.js';
import { coordinatorOptions, createCoordinator } from '../helpers/coordinator.js';
import { bootstrapTokens, tempDir } from '../helpers/processes.js';

async function pair(t: import('node:test').TestContext) {
  const dir = tempDir(t);
  const make = async (id: string) => {
    return createCoordinator(t, coordinatorOptions(`${dir}/${id}`, { store: `sqlite:${dir}/shared.db`, nodeTtlMs: 3_000, id }));
  };
  const both = [await make('c1'), await make('c2')];
  await until('a leader', () => both.some((c) => c.isLeader));
  await until('the follower to know the leader', () => both.every((c) => c.leaderAddress !== ''));
  const leader = both.find((c) => c.isLeader)!;
  const follower = both.find((c) => !c.isLeader)!;
  const { join, admin } = await bootstrapTokens([`${dir}/c1`, `${dir}/c2`]);
  return { leader, follower, join, admin };
}

function agentSession(coordinators: string[], hellos: Hello[], joinToken: string, refusals: string[] = [], extra: Partial<SessionOptions> = {}) {
  let credential: string | undefined;
  const abort = new AbortController();
  const session = new CoordinatorSession({
    coordinators,
    clock: systemClock,
    random: seededRandom(7),
    log: silentLogger(),
    usage: () => ({ cpuMillisUsed: 0, memoryUsedBytes: 0, gpus: [] }),
    onDesired: () => undefined,
    token: () => credential ?? joinToken,
    onCredential: (issued) => void (credential = issued),
    // As the agent does: a refused credential is dropped and the join token tried again.
    onUnauthenticated: () => void (credential = undefined),
    onJoinRefused: (err) => void refusals.push(err.message),
    hello: () => {
      const hello: Hello = {
        nodeName: 'node-1',
        agentVersion: 'test',
        address: '127.0.0.1:7780',
        labels: {},
        capacity: { cpuMillis: 2000, memoryBytes: 2 ** 30, gpus: [], nics: [], disks: [] },
        sessionId: 'agent-process-1',
      };
      hellos.push(hello);
      return hello;
    },
    ...extra,
  });
  const running = session.run(abort.signal);
  return { session, credential: () => credential, stop: async () => { abort.abort(); await running; } };
}

test('an agent pointed at a follower is redirected to the leader and registers there', async (t) => {
  const { leader, follower, join } = await pair(t);
  const hellos: Hello[] = [];
  const agent = agentSession([follower.address], hellos, join);
  t.after(() => agent.stop());
  await until('connected', () => agent.session.state === 'connected');
  assert.equal(agent.session.connectedTo, leader.address);
  assert.equal(agent.session.welcome?.heartbeatIntervalMs, 1_000);
  assert.ok(hellos.length >= 2, 'one hello to the follower, one to the leader');
  assert.match(agent.credential() ?? '', /^mlf_/, 'the join was answered with a node credential');
});

test('when the leader goes away the agent reconnects to the new leader and says hello again', async (t) => {
  const { leader, follower, join } = await pair(t);
  const hellos: Hello[] = [];
  const agent = agentSession([leader.address, follower.address], hellos, join);
  t.after(() => agent.stop());
  await until('connected', () => agent.session.state === 'connected');
  const before = hellos.length;
  await leader.close();
  await until('the follower to lead', () => follower.isLeader);
  await until('reconnected to the new leader', () => agent.session.state === 'connected' && agent.session.connectedTo === follower.address);
  assert.ok(hellos.length > before, 'hello is sent again after the reconnect');
});

test("an agent whose credential is revoked is refused a rejoin under its name, says why and backs off, and joins again after nodes rm", async (t) => {
  const { leader, admin, join } = await pair(t);
  const client = new CoordinatorClient([leader.address], { token: admin });
  t.after(() => client.close());
  const refusals: string[] = [];
  const agent = agentSession([leader.address], [], join, refusals);
  t.after(() => agent.stop());
  await until('connected', () => agent.session.state === 'connected');
  const first = agent.credential();
  const credential = (await client.listTokens({ tenant: '', includeRevoked: false })).tokens.find((tk) => tk.role === 'node' && tk.node === 'node-1')!;
  await client.revokeToken(credential.id);

  await until('the rejoin refused', () => refusals.length > 0);
  assert.match(refusals[0]!, /node "node-1" already exists and a join token admits new nodes only.*mlfleetctl nodes rm node-1/);
  const start = refusals.length;
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  assert.ok(refusals.length - start <= 6, `backs off rather than spins: ${refusals.length - start} refusals in 3 s`);
  assert.notEqual(agent.session.state, 'connected');

  await client.removeNode('node-1');
  await until('joined again', () => agent.session.state === 'connected', 15_000);
  assert.ok(agent.credential() && agent.credential() !== first, 'a new credential');
});

test('every heartbeat carries the delivery counters, and the leader shows the latest in the node', async (t) => {
  const { leader, admin, join } = await pair(t);
  const client = new CoordinatorClient([leader.address], { token: admin });
  t.after(() => client.close());
  const counters = new DeliveryCounters();
  const agent = agentSession([leader.address], [], join, [], { delivery: () => counters.toProto() });
  t.after(() => agent.stop());
  await until('connected', () => agent.session.state === 'connected');
  counters.received('peer', 3 * 1024 * 1024);
  counters.received('coordinator', 1024 * 1024);
  counters.received('s3', 5);
  counters.corrupt('peer');
  counters.corrupt('s3');
  counters.sentToPeer(7 * 1024 * 1024);
  const expected = { fromPeersBytes: 3 * 1024 * 1024, fromCoordinatorBytes: 1024 * 1024, fromS3Bytes: 5, toPeersBytes: 7 * 1024 * 1024, corruptPieces: 2 };
  const shown = async () => (await client.getNode('node-1')).delivery;
  await eventually('the node shows the counters', 10_000, async () => (JSON.stringify(await shown()) === JSON.stringify(expected) ? true : undefined));
  counters.sentToPeer(1);
  await eventually('their next value', 10_000, async () => (Number((await shown())?.toPeersBytes) === 7 * 1024 * 1024 + 1 ? true : undefined));
});

test('reconnect delays are jittered and grow up to the cap', () => {
  const random = seededRandom(42);
  const delays = Array.from({ length: 12 }, (_, attempt) => backoffDelay(attempt, random, 250, 5_000));
  delays.forEach((delay, attempt) => assert.ok(delay >= 0 && delay < Math.min(5_000, 250 * 2 ** attempt), `attempt ${attempt}: ${delay}`));
  assert.ok(new Set(delays).size > 6, 'delays differ (jitter)');
  const ceilingLate = Math.max(...delays.slice(6));
  assert.ok(ceilingLate > 250, 'later attempts wait longer than the base');
});

test('messages for the leader are dropped, not queued, while there is no session', () => {
  const session = new CoordinatorSession({
    coordinators: ['127.0.0.1:1'],
    clock: systemClock,
    random: seededRandom(1),
    log: silentLogger(),
    usage: () => ({ cpuMillisUsed: 0, memoryUsedBytes: 0, gpus: [] }),
    onDesired: () => undefined,
    token: () => undefined,
    hello: () => ({ nodeName: 'node-1', agentVersion: 'test', address: '127.0.0.1:7780', labels: {}, capacity: null, sessionId: 's' }) as Hello,
  });
  assert.equal(session.send({ logs: { commandId: 'c1', data: Buffer.from('x'), eof: true, error: '' } }), false);
  session.report({ allocations: [{ id: 'a1', state: 'running' }], cache: [] }); // does not throw
});
