// The node registry's liveness rules, on a real SQLite store with a hand-driven clock.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CoordinatorMetrics } from '../../coordinator/metrics.js';
import { NodeRegistry, type SessionHandle } from '../../coordinator/node-registry.js';
import { keys } from '../../shared/keys.js';
import { silentLogger } from '../../shared/log.js';
import type { Hello } from '../../shared/proto.js';
import { SqliteStore } from '../../shared/store/sqlite-store.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { tempDir } from '../helpers/processes.js';

const TTL = 15_000;
const GiB = 2 ** 30;

function hello(name: string, overrides: Partial<Hello> = {}): Hello {
  return {
    nodeName: name,
    agentVersion: 'test',
    address: '10.0.0.1:7780',
    labels: { zone: 'a' },
    capacity: { cpuMillis: 8000, memoryBytes: 32 * GiB, gpus: [], nics: [], disks: [] },
    appliedRevision: 0,
    allocations: [],
    cache: [],
    sessionId: 's',
    peerUploadMbps: 0,
    ...overrides,
  };
}

function session(id: string): SessionHandle & { closedWith: string | undefined } {
  return { id, tokenId: `token-${id}`, credentialId: '', closedWith: undefined, close(reason: string) { this.closedWith = reason; }, command: () => true, desired: () => true, routes: () => true, tokens: () => true };
}

async function setup(t: import('node:test').TestContext) {
  const clock = new FakeClock();
  const store = await SqliteStore.create(`${tempDir(t)}/c.db`, { clock });
  t.after(() => store.close());
  /** A registry as the coordinator makes one: loaded, then opened once it takes sessions (`open` false: not yet). */
  const load = async (open = true) => {
    const registry = await NodeRegistry.load({
      store, clock, writer: store, log: silentLogger(), metrics: new CoordinatorMetrics(), nodeTtlMs: TTL,
    });
    t.after(() => registry.close());
    if (open) registry.open();
    return registry;
  };
  return { clock, store, load };
}

/** Lets the registry's fire-and-forget writes land. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

test('a node is ready after hello and stays ready while heartbeats arrive', async (t) => {
  const { clock, store, load } = await setup(t);
  const registry = await load();
  const s = session('1');
  await registry.hello(hello('gpu-1'), s);
  assert.equal(registry.get('gpu-1').record.status, 'ready');
  for (let i = 0; i < 10; i++) {
    clock.advance(5_000);
    registry.heartbeat('gpu-1', s, { seq: i, sentAtMs: clock.now(), usage: null, latencies: [], delivery: null });
  }
  await settle();
  assert.equal(registry.get('gpu-1').record.status, 'ready');
  assert.equal(JSON.parse((await store.get(keys.node('gpu-1')))!.value).status, 'ready');
});

test('a node without heartbeats for the TTL is marked down in the store, and ready again on the next heartbeat', async (t) => {
  const { clock, store, load } = await setup(t);
  const registry = await load();
  const s = session('1');
  await registry.hello(hello('gpu-1'), s);
  clock.advance(TTL - 1_000);
  await settle();
  assert.equal(registry.get('gpu-1').record.status, 'ready', 'still within the TTL');
  clock.advance(1_500);
  await settle();
  assert.equal(registry.get('gpu-1').record.status, 'down');
  assert.equal(JSON.parse((await store.get(keys.node('gpu-1')))!.value).status, 'down');

  registry.heartbeat('gpu-1', s, { seq: 1, sentAtMs: clock.now(), usage: null, latencies: [], delivery: null });
  await settle();
  assert.equal(registry.get('gpu-1').record.status, 'ready');
});

test('heartbeats are not written to the store; only transitions are', async (t) => {
  const { clock, store, load } = await setup(t);
  const registry = await load();
  const s = session('1');
  await registry.hello(hello('gpu-1'), s);
  const before = await store.revision();
  for (let i = 0; i < 50; i++) {
    clock.advance(1_000);
    registry.heartbeat('gpu-1', s, { seq: i, sentAtMs: clock.now(), usage: { cpuMillisUsed: i, memoryUsedBytes: GiB, gpus: [] }, latencies: [], delivery: null });
  }
  await settle();
  assert.equal(await store.revision(), before);
  assert.equal(registry.get('gpu-1').usage?.cpuMillisUsed, 49);
});

test('a reconnect with the same capacity writes nothing; a changed capacity is recorded', async (t) => {
  const { store, load } = await setup(t);
  const registry = await load();
  await registry.hello(hello('gpu-1'), session('1'));
  const revision = await store.revision();
  await registry.hello(hello('gpu-1'), session('2'));
  assert.equal(await store.revision(), revision);
  await registry.hello(hello('gpu-1', { labels: { zone: 'b' } }), session('3'));
  assert.ok((await store.revision()) > revision);
  assert.deepEqual(registry.get('gpu-1').record.labels, { zone: 'b' });
});

test('a newer session of the same node replaces the older one', async (t) => {
  const { load } = await setup(t);
  const registry = await load();
  const first = session('1');
  const second = session('2');
  await registry.hello(hello('gpu-1'), first);
  await registry.hello(hello('gpu-1'), second);
  assert.match(first.closedWith ?? '', /replaced by a newer session/);
  assert.equal(second.closedWith, undefined);
});

test('a new leader gives every node one TTL to reconnect before marking it down', async (t) => {
  const { clock, load } = await setup(t);
  const first = await load();
  await first.hello(hello('gpu-1'), session('1'));
  await first.hello(hello('gpu-2'), session('2'));
  clock.advance(TTL - 100); // the old leader heard nothing for almost a TTL, then died
  first.close();

  const next = await load();
  clock.advance(TTL - 100);
  await settle();
  assert.deepEqual(next.list().map((v) => v.record.status), ['ready', 'ready'], 'nothing is down within the grace TTL');
  const s = session('3');
  await next.hello(hello('gpu-1'), s);
  clock.advance(200);
  await settle();
  assert.equal(next.get('gpu-1').record.status, 'ready', 'the node that reconnected stays ready');
  assert.equal(next.get('gpu-2').record.status, 'down', 'the node that did not is down after the grace TTL');
});

test("a new leader's grace TTL counts from when it takes sessions, not from when it began loading", async (t) => {
  const { clock, load } = await setup(t);
  const first = await load();
  await first.hello(hello('gpu-1'), session('1'));
  first.close();
  // The next leader loads the registry, then spends longer than a TTL loading the workloads
  // (a loaded machine), during which no agent can reach it.
  const next = await load(false);
  clock.advance(TTL * 2);
  await settle();
  assert.equal(next.get('gpu-1').record.status, 'ready', 'nothing is swept before the leader opens');
  next.open();
  clock.advance(TTL - 100);
  await settle();
  assert.equal(next.get('gpu-1').record.status, 'ready', 'a whole TTL from opening to reconnect');
  clock.advance(200);
  await settle();
  assert.equal(next.get('gpu-1').record.status, 'down', 'and down once it has passed');
});

test('cordon, drain and uncordon change the stored record; unknown nodes are NOT_FOUND', async (t) => {
  const { store, load } = await setup(t);
  const registry = await load();
  await registry.hello(hello('gpu-1'), session('1'));
  await registry.cordon('gpu-1');
  assert.equal(JSON.parse((await store.get(keys.node('gpu-1')))!.value).cordoned, true);
  await registry.drain('gpu-1');
  const drained = JSON.parse((await store.get(keys.node('gpu-1')))!.value);
  assert.equal(drained.draining, true);
  await registry.uncordon('gpu-1');
  const back = JSON.parse((await store.get(keys.node('gpu-1')))!.value);
  assert.deepEqual([back.cordoned, back.draining], [false, false]);
  await assert.rejects(registry.cordon('nope'), /node "nope" not found/);
});
