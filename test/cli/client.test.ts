// The client SDK against real gRPC servers: leader discovery, redirects, dead addresses,
// elections, typed errors, the token.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoordinatorClient, parseCoordinatorAddresses, type CoordinatorClientOptions } from '../../shared/client.js';
import { MlfleetError, NotFoundError, UnauthenticatedError, UnavailableError } from '../../shared/errors.js';
import { seededRandom } from '../../shared/clock.js';
import { FakeCoordinator, deadAddress, sampleNode, silentServer, type FakeCoordinatorOptions } from '../helpers/fake-coordinator.js';

type TestContext = { after(fn: () => unknown): void };

async function coordinator(t: TestContext, options: FakeCoordinatorOptions): Promise<FakeCoordinator> {
  const fake = await FakeCoordinator.start(options);
  t.after(() => fake.close());
  return fake;
}

function client(t: TestContext, addresses: string[], options: CoordinatorClientOptions = {}): CoordinatorClient {
  const c = new CoordinatorClient(addresses, { random: seededRandom(7), ...options });
  t.after(() => c.close());
  return c;
}

test('a follower redirects to the leader and the client follows', async (t) => {
  const leader = await coordinator(t, { role: 'leader', nodes: [sampleNode('gpu-1')] });
  const follower = await coordinator(t, { role: 'follower', leader: leader.address });
  const c = client(t, [follower.address]);

  const { nodes } = await c.listNodes();
  assert.deepEqual(
    nodes.map((n) => n.name),
    ['gpu-1'],
  );
  assert.equal(follower.callsTo('ListNodes').length, 1);
  assert.equal(leader.callsTo('ListNodes').length, 1);
  assert.equal(c.leader, leader.address);

  // The next call goes straight to the leader it learned.
  await c.getNode('gpu-1');
  assert.equal(follower.calls.length, 1);
  assert.equal(leader.callsTo('GetNode').length, 1);
});

test('the leader listed after a follower is found without extra hops', async (t) => {
  const leader = await coordinator(t, { role: 'leader', nodes: [sampleNode('gpu-1')] });
  const follower = await coordinator(t, { role: 'follower', leader: leader.address });
  const c = client(t, [follower.address, leader.address]);

  const node = await c.cordonNode('gpu-1');
  assert.equal(node.cordoned, true);
  assert.equal(leader.callsTo('CordonNode').length, 1);
});

test('a dead address first in the list is skipped for a live one', async (t) => {
  const leader = await coordinator(t, { role: 'leader', nodes: [sampleNode('gpu-1')] });
  const dead = await deadAddress();
  const c = client(t, [dead, leader.address]);

  const started = Date.now();
  const { nodes } = await c.listNodes();
  assert.equal(nodes.length, 1);
  assert.ok(Date.now() - started < 2_000, 'a refused connection fails fast');
});

test('when nothing answers, one line names every address and why', async (t) => {
  const a = await deadAddress();
  const b = await deadAddress();
  const c = client(t, [a, b]);

  const err = await c.listNodes().then(
    () => assert.fail('expected the call to fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof UnavailableError);
  assert.equal(err.message, `cannot reach coordinator at ${a} (connection refused), ${b} (connection refused)`);
  assert.ok(!err.message.includes('\n'));
});

test('an address that accepts but never answers times out and the next one is used', async (t) => {
  const hung = await silentServer();
  t.after(() => hung.close());
  const leader = await coordinator(t, { role: 'leader', nodes: [sampleNode('gpu-1')] });
  const c = client(t, [hung.address, leader.address], { connectTimeoutMs: 200 });

  const { nodes } = await c.listNodes();
  assert.equal(nodes.length, 1);

  const only = client(t, [hung.address], { connectTimeoutMs: 200, deadlineMs: 1_000 });
  await assert.rejects(only.clusterStatus(), {
    name: 'UnavailableError',
    message: `cannot reach coordinator at ${hung.address} (no connection within 200ms)`,
  });
});

test('the client retries while an election is in progress', async (t) => {
  const leader = await coordinator(t, { role: 'leader', nodes: [sampleNode('gpu-1')] });
  let asked = 0;
  // No leader for the first two calls, then the election is won.
  const follower = await coordinator(t, { role: 'follower', leader: () => (++asked <= 2 ? '' : leader.address) });
  const c = client(t, [follower.address]);

  const { nodes } = await c.listNodes();
  assert.equal(nodes.length, 1);
  assert.equal(follower.callsTo('ListNodes').length, 3);
  assert.equal(c.leader, leader.address);
});

test('an election that never ends gives up at the deadline', async (t) => {
  const follower = await coordinator(t, { role: 'follower', leader: '' });
  const c = client(t, [follower.address], { deadlineMs: 400 });

  const started = Date.now();
  await assert.rejects(c.listNodes(), {
    name: 'UnavailableError',
    message: `cannot reach coordinator at ${follower.address} (no leader elected yet)`,
  });
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 300 && elapsed < 3_000, `gave up after ${elapsed}ms`);
  assert.ok(follower.callsTo('ListNodes').length >= 3, 'it retried before giving up');
});

test('followers pointing at each other do not loop forever', async (t) => {
  const a = await coordinator(t, { role: 'follower' });
  const b = await coordinator(t, { role: 'follower', leader: a.address });
  a.leader = b.address;
  const c = client(t, [a.address], { deadlineMs: 400 });

  await assert.rejects(c.listNodes(), (err: unknown) => {
    assert.ok(err instanceof UnavailableError);
    assert.match(err.message, new RegExp(`${a.address} \\(not the leader; redirected to ${b.address}\\)`));
    assert.match(err.message, new RegExp(`${b.address} \\(not the leader; redirected to ${a.address}\\)`));
    return true;
  });
});

test('a follower that points at a dead leader is retried until the deadline', async (t) => {
  const dead = await deadAddress();
  const follower = await coordinator(t, { role: 'follower', leader: dead });
  const c = client(t, [follower.address], { deadlineMs: 400 });

  await assert.rejects(c.getNode('gpu-1'), {
    name: 'UnavailableError',
    message: `cannot reach coordinator at ${follower.address} (not the leader; redirected to ${dead}), ${dead} (connection refused)`,
  });
  assert.ok(follower.callsTo('GetNode').length >= 2);
});

test('cluster status is answered by a follower without a redirect', async (t) => {
  const follower = await coordinator(t, { role: 'follower', leader: '10.9.9.9:7700' });
  const c = client(t, [follower.address]);

  const status = await c.clusterStatus();
  assert.equal(status.leader, '10.9.9.9:7700');
  assert.equal(status.store, 'sqlite');
  assert.equal(status.revision, 42);
  assert.deepEqual(
    status.coordinators.map((co) => [co.address, co.role]),
    [[follower.address, 'follower']],
  );
  assert.equal(c.leader, undefined, 'a GetStatus answer says nothing about who leads');
});

test('errors from the leader come back as typed errors and are not retried elsewhere', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const other = await coordinator(t, { role: 'leader' });
  const c = client(t, [leader.address, other.address]);

  await assert.rejects(c.getNode('nope'), (err: unknown) => {
    assert.ok(err instanceof NotFoundError);
    assert.ok(MlfleetError.is(err));
    assert.equal(err.code, 'NOT_FOUND');
    assert.match(err.message, /node "nope" not found/);
    return true;
  });
  assert.equal(other.calls.length, 0);
});

test('the token travels as a bearer authorization header', async (t) => {
  const leader = await coordinator(t, { role: 'leader', token: 's3cret', nodes: [sampleNode('gpu-1')] });

  await client(t, [leader.address], { token: 's3cret' }).listNodes();
  assert.equal(leader.calls[0]?.authorization, 'Bearer s3cret');

  await assert.rejects(client(t, [leader.address]).listNodes(), UnauthenticatedError);
  assert.equal(leader.calls[1]?.authorization, undefined);
});

test('list filters reach the coordinator', async (t) => {
  const leader = await coordinator(t, {
    role: 'leader',
    nodes: [sampleNode('a', { labels: { zone: 'x' } }), sampleNode('b', { labels: { zone: 'y' }, status: 'down' })],
  });
  const c = client(t, [leader.address]);

  assert.deepEqual((await c.listNodes({ selector: { zone: 'y' } })).nodes.map((n) => n.name), ['b']);
  assert.deepEqual((await c.listNodes({ status: 'ready' })).nodes.map((n) => n.name), ['a']);
  assert.deepEqual(leader.callsTo('ListNodes')[1]?.request, { status: 'ready', selector: {}, limit: 0, after: '' });
});

test('an aborted call stops at once', async (t) => {
  const follower = await coordinator(t, { role: 'follower', leader: '' });
  const c = client(t, [follower.address], { deadlineMs: 5_000 });
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error('stopped by the test')), 100);

  const started = Date.now();
  await assert.rejects(c.listNodes({}, { signal: controller.signal }), /stopped by the test/);
  assert.ok(Date.now() - started < 2_500, 'well before the 5s deadline');
});

test('a closed client refuses calls; addresses are parsed from flags', async (t) => {
  const c = client(t, ['127.0.0.1:1']);
  c.close();
  c.close();
  await assert.rejects(c.clusterStatus(), { code: 'FAILED_PRECONDITION' });

  assert.deepEqual(parseCoordinatorAddresses('a:1, b:2,,a:1'), ['a:1', 'b:2']);
  assert.deepEqual(parseCoordinatorAddresses(['a:1,b:2', 'c:3']), ['a:1', 'b:2', 'c:3']);
  assert.throws(() => parseCoordinatorAddresses(' , '), { code: 'INVALID_ARGUMENT' });
});
