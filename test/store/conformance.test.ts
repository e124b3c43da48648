// One specification of the Store (shared/store/store.ts), and of the lease keep-alive and the
// election built on it, run against both backends: SQLite and a real etcd. A case gets a
// store on fresh state of its own, so the two backends run side by side.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { NotLeaderError } from '../../shared/errors.js';
import { Election, fencedTxn } from '../../shared/store/election.js';
import { Lease } from '../../shared/store/lease.js';
import { CompactedError, LeaseNotFoundError, type Compare, type OpResult } from '../../shared/store/store.js';
import { etcdBackend, sqliteBackend, type Opened, type StoreBackend } from './backends.js';
import { PartitionableStore, WatchReader, aborted, eventually, stillPending, within } from './support.js';

/** What cases ask for; SQLite grants it, etcd rounds it up to a second or two. */
const SHORT_TTL_MS = 300;

interface Case {
  name: string;
  run(open: () => Promise<Opened>, t: TestContext): Promise<void>;
}

const cases: Case[] = [];
function spec(name: string, run: Case['run']): void {
  cases.push({ name, run });
}

function valueOf(result: OpResult | undefined): string | undefined {
  assert.equal(result?.type, 'get');
  return result.type === 'get' ? result.kv?.value : undefined;
}

// --- keys and revisions ---------------------------------------------------------------------

spec('a put takes a new revision and a get returns what it wrote', async (open) => {
  const { store } = await open();
  const before = await store.revision();
  const written = await store.put('/a', 'one');
  assert.ok(written > before);
  assert.equal(await store.revision(), written);
  assert.deepEqual(await store.get('/a'), { key: '/a', value: 'one', createRevision: written, modRevision: written, version: 1, lease: '' });
  assert.equal(await store.get('/missing'), undefined);
});

spec('createRevision stays while modRevision and version advance; a delete starts the key over', async (open) => {
  const { store } = await open();
  const created = await store.put('/k', '1');
  const updated = await store.put('/k', '2');
  assert.deepEqual(await store.get('/k'), { key: '/k', value: '2', createRevision: created, modRevision: updated, version: 2, lease: '' });
  const deleted = await store.delete('/k');
  assert.ok(deleted > updated);
  assert.equal(await store.get('/k'), undefined);
  assert.equal(await store.delete('/k'), deleted, 'deleting a missing key takes no revision');
  const recreated = await store.put('/k', '3');
  assert.deepEqual(await store.get('/k'), { key: '/k', value: '3', createRevision: recreated, modRevision: recreated, version: 1, lease: '' });
});

spec('range returns the keys under a prefix, sorted by key, with the revision it read at', async (open) => {
  const { store } = await open();
  for (const key of ['/b/z', '/a/1', '/b/2', '/b/é', '/b/1', '/b', '/bb/1', '/c']) await store.put(key, key);
  const { kvs, revision } = await store.range('/b/');
  assert.deepEqual(kvs.map((kv) => kv.key), ['/b/1', '/b/2', '/b/z', '/b/é']);
  assert.deepEqual(kvs.map((kv) => kv.value), ['/b/1', '/b/2', '/b/z', '/b/é']);
  assert.equal(revision, await store.revision());
  assert.equal((await store.range('')).kvs.length, 8);
  assert.deepEqual((await store.range('/nothing/')).kvs, []);
});

spec('a bounded range pages through a prefix from either end, counting what the bounds hold', async (open) => {
  const { store } = await open();
  for (const key of ['/p/1', '/p/2', '/p/3', '/p/4', '/p/5', '/pq', '/q/1']) await store.put(key, key);
  const keysOf = (result: { kvs: { key: string }[] }) => result.kvs.map((kv) => kv.key);

  const first = await store.range('/p/', { limit: 2 });
  assert.deepEqual(keysOf(first), ['/p/1', '/p/2']);
  assert.equal(first.count, 5, 'count ignores the limit');
  const next = await store.range('/p/', { start: '/p/2\0', limit: 2 });
  assert.deepEqual(keysOf(next), ['/p/3', '/p/4']);

  const newest = await store.range('/p/', { descending: true, limit: 2 });
  assert.deepEqual(keysOf(newest), ['/p/5', '/p/4'], 'descending: the last keys, largest first');
  const older = await store.range('/p/', { end: '/p/4', descending: true, limit: 2 });
  assert.deepEqual(keysOf(older), ['/p/3', '/p/2']);
  assert.equal(older.count, 3);

  assert.deepEqual(keysOf(await store.range('/p/', { start: '/a', end: '/z' })), ['/p/1', '/p/2', '/p/3', '/p/4', '/p/5'], 'bounds never widen the prefix');
  assert.deepEqual(await store.range('/p/', { start: '/p/4', end: '/p/2' }), { kvs: [], revision: await store.revision(), count: 0 });
  assert.equal((await store.range('/p/')).count, 5);
});

// --- transactions ---------------------------------------------------------------------------

spec('a transaction takes one revision for all of its writes, and a read-only one takes none', async (open) => {
  const { store } = await open();
  await store.put('/t/c', 'old');
  const result = await store.txn(
    [],
    [
      { type: 'put', key: '/t/a', value: 'A' },
      { type: 'put', key: '/t/b', value: 'B' },
      { type: 'delete', key: '/t/c' },
      { type: 'range', prefix: '/t/' },
    ],
  );
  assert.equal(result.succeeded, true);
  assert.equal((await store.get('/t/a'))?.modRevision, result.revision);
  assert.equal((await store.get('/t/b'))?.modRevision, result.revision);
  assert.deepEqual(result.results.slice(0, 3), [{ type: 'put' }, { type: 'put' }, { type: 'delete', deleted: 1 }]);
  const range = result.results[3];
  assert.ok(range?.type === 'range');
  assert.deepEqual(range.kvs.map((kv) => kv.key), ['/t/a', '/t/b'], 'reads in a transaction see its earlier writes');
  const events = await new WatchReader(store.watch('/t/', { fromRevision: result.revision })).take(3);
  assert.deepEqual(events.map((e) => [e.type, e.key, e.revision]), [
    ['put', '/t/a', result.revision],
    ['put', '/t/b', result.revision],
    ['delete', '/t/c', result.revision],
  ]);
  const read = await store.txn([], [{ type: 'get', key: '/t/a' }]);
  assert.equal(read.revision, result.revision);
  assert.equal(valueOf(read.results[0]), 'A');
  const wipe = await store.txn([], [{ type: 'deletePrefix', prefix: '/t/' }]);
  assert.deepEqual(wipe.results, [{ type: 'deletePrefix', deleted: 2 }]);
  assert.equal(wipe.revision, result.revision + 1);
});

spec('compares test every target with every operator; a missing key has zero revisions and no value', async (open) => {
  const { store } = await open();
  const created = await store.put('/k', 'm');
  const modified = await store.put('/k', 'm');
  const table: [Compare, boolean][] = [
    [{ key: '/k', target: 'value', op: '=', value: 'm' }, true],
    [{ key: '/k', target: 'value', op: '!=', value: 'm' }, false],
    [{ key: '/k', target: 'value', op: '<', value: 'n' }, true],
    [{ key: '/k', target: 'value', op: '>', value: 'n' }, false],
    [{ key: '/k', target: 'value', op: '>', value: 'l' }, true],
    [{ key: '/k', target: 'version', op: '=', value: 2 }, true],
    [{ key: '/k', target: 'version', op: '!=', value: 2 }, false],
    [{ key: '/k', target: 'version', op: '<', value: 3 }, true],
    [{ key: '/k', target: 'version', op: '>', value: 1 }, true],
    [{ key: '/k', target: 'createRevision', op: '=', value: created }, true],
    [{ key: '/k', target: 'createRevision', op: '<', value: modified }, true],
    [{ key: '/k', target: 'createRevision', op: '>', value: created }, false],
    [{ key: '/k', target: 'createRevision', op: '!=', value: modified }, true],
    [{ key: '/k', target: 'modRevision', op: '=', value: modified }, true],
    [{ key: '/k', target: 'modRevision', op: '>', value: created }, true],
    [{ key: '/k', target: 'modRevision', op: '<', value: modified }, false],
    [{ key: '/k', target: 'modRevision', op: '!=', value: created }, true],
    [{ key: '/missing', target: 'version', op: '=', value: 0 }, true],
    [{ key: '/missing', target: 'createRevision', op: '=', value: 0 }, true],
    [{ key: '/missing', target: 'modRevision', op: '<', value: 1 }, true],
    [{ key: '/missing', target: 'value', op: '=', value: '' }, false],
    [{ key: '/missing', target: 'value', op: '!=', value: 'x' }, false],
  ];
  for (const [compare, holds] of table) {
    const result = await store.txn([compare], [{ type: 'get', key: '/k' }], []);
    assert.equal(result.succeeded, holds, `${compare.key} ${compare.target} ${compare.op} ${compare.value}`);
  }
  const both = await store.txn(table.slice(0, 2).map(([c]) => c), []);
  assert.equal(both.succeeded, false, 'every compare must hold');
});

spec('a lost compare-and-swap answers succeeded: false and runs the failure branch', async (open) => {
  const { store } = await open();
  const first = await store.put('/cas', 'v1');
  await store.put('/cas', 'v2');
  const result = await store.txn(
    [{ key: '/cas', target: 'modRevision', op: '=', value: first }],
    [{ type: 'put', key: '/cas', value: 'lost' }],
    [{ type: 'get', key: '/cas' }],
  );
  assert.equal(result.succeeded, false);
  assert.equal(valueOf(result.results[0]), 'v2');
  assert.equal(result.revision, await store.revision(), 'a failure branch of reads takes no revision');
  assert.equal((await store.get('/cas'))?.value, 'v2');
});

spec('concurrent compare-and-swap increments from many clients never lose an update', async (open) => {
  const opened = await open();
  const clients = [opened.store, await opened.connect(), await opened.connect()];
  const workersPerClient = 3;
  const incrementsPerWorker = 8;
  await opened.store.put('/counter', '0');
  const increment = async (client: (typeof clients)[number]) => {
    for (;;) {
      const current = (await client.get('/counter'))!;
      const result = await client.txn(
        [{ key: '/counter', target: 'modRevision', op: '=', value: current.modRevision }],
        [{ type: 'put', key: '/counter', value: String(Number(current.value) + 1) }],
      );
      if (result.succeeded) return;
    }
  };
  await Promise.all(
    clients.flatMap((client) =>
      Array.from({ length: workersPerClient }, async () => {
        for (let i = 0; i < incrementsPerWorker; i++) await increment(client);
      }),
    ),
  );
  const counter = await opened.store.get('/counter');
  assert.equal(counter?.value, String(clients.length * workersPerClient * incrementsPerWorker));
  assert.equal(counter?.version, clients.length * workersPerClient * incrementsPerWorker + 1);
});

// --- watches --------------------------------------------------------------------------------

spec('a watch from a past revision replays every change in order, then delivers live ones', async (open) => {
  const { store } = await open();
  const from = (await store.revision()) + 1;
  const revisions: number[] = [];
  for (let chunk = 0; chunk < 20; chunk++) {
    // Concurrent puts are still one revision each, in some order: the watch must match it.
    const written = await Promise.all(Array.from({ length: 50 }, (_, i) => store.put(`/log/${chunk * 50 + i}`, `v${chunk * 50 + i}`)));
    revisions.push(...written);
  }
  await store.put('/elsewhere', 'x');
  const reader = new WatchReader(store.watch('/log/', { fromRevision: from }));
  const replayed = await reader.take(1000, 20_000);
  assert.deepEqual(replayed.map((e) => e.revision), [...revisions].sort((a, b) => a - b));
  assert.ok(replayed.every((e) => e.type === 'put' && e.value === `v${e.key.slice('/log/'.length)}` && e.version === 1));
  const live = await store.put('/log/live', 'now');
  assert.deepEqual(await reader.take(1), [{ type: 'put', key: '/log/live', value: 'now', revision: live, createRevision: live, version: 1 }]);
  reader.watch.close();
});

spec('a prefix watch sees only the keys under its prefix, and deletes as deletes', async (open) => {
  const { store } = await open();
  const reader = new WatchReader(store.watch('/w/', { fromRevision: (await store.revision()) + 1 }));
  await store.put('/x', '1');
  await store.put('/wx', '1');
  await store.put('/w', '1');
  const put = await store.put('/w/1', 'a');
  await store.put('/y', '1');
  const deleted = await store.delete('/w/1');
  assert.deepEqual(await reader.take(2), [
    { type: 'put', key: '/w/1', value: 'a', revision: put, createRevision: put, version: 1 },
    { type: 'delete', key: '/w/1', value: '', revision: deleted, createRevision: 0, version: 0 },
  ]);
  reader.watch.close();
});

spec('a watch with no revision starts after now, and close() or its signal ends it', async (open) => {
  const { store } = await open();
  const old = await store.put('/n/old', 'x');
  const reader = new WatchReader(store.watch('/n/'));
  // etcd registers a watch asynchronously: keep writing until the watch sees a write.
  const writing = new AbortController();
  const writer = (async () => {
    for (let i = 0; !writing.signal.aborted; i++) {
      await store.put(`/n/new-${i}`, 'y');
      await delay(50, undefined, { signal: writing.signal }).catch(() => undefined);
    }
  })();
  const [event] = await reader.take(1);
  writing.abort();
  await writer;
  assert.ok(event!.revision > old && event!.key.startsWith('/n/new-'), 'what was written before the watch is not replayed');
  reader.watch.close();
  reader.watch.close();
  for await (const batch of reader.watch) assert.fail(`a closed watch delivered ${JSON.stringify(batch)}`);
  const abort = new AbortController();
  const watch = store.watch('/n/', { fromRevision: 1, signal: abort.signal });
  abort.abort();
  for await (const batch of watch) assert.fail(`an aborted watch delivered ${JSON.stringify(batch)}`);
});

spec('a watch from a compacted revision fails with CompactedError; one from the compaction point works', async (open) => {
  const { store, compact } = await open();
  const revisions: number[] = [];
  for (let i = 0; i < 10; i++) revisions.push(await store.put(`/c/${i}`, String(i)));
  await compact(revisions[5]!);
  const error = await new WatchReader(store.watch('/c/', { fromRevision: revisions[1] })).failure();
  assert.ok(error instanceof CompactedError, `expected CompactedError, got ${String(error)}`);
  assert.equal(error.requested, revisions[1]);
  assert.equal(error.compactRevision, revisions[5]);
  const events = await new WatchReader(store.watch('/c/', { fromRevision: revisions[5] })).take(5);
  assert.deepEqual(events.map((e) => e.revision), revisions.slice(5));
});

// --- leases ---------------------------------------------------------------------------------

spec('an expired lease deletes its keys, in one revision, with delete events', async (open) => {
  const { store } = await open();
  const lease = await store.leaseGrant(SHORT_TTL_MS);
  assert.ok(lease.ttlMs >= SHORT_TTL_MS);
  await store.put('/l/a', 'a', { lease: lease.id });
  await store.put('/l/b', 'b', { lease: lease.id });
  await store.put('/l/kept', 'c');
  assert.equal((await store.get('/l/a'))?.lease, lease.id);
  const reader = new WatchReader(store.watch('/l/', { fromRevision: (await store.revision()) + 1 }));
  const events = await reader.take(2, lease.ttlMs + 3_000);
  assert.deepEqual(events.map((e) => [e.type, e.key]), [['delete', '/l/a'], ['delete', '/l/b']]);
  assert.equal(events[0]!.revision, events[1]!.revision);
  assert.deepEqual((await store.range('/l/')).kvs.map((kv) => kv.key), ['/l/kept']);
  reader.watch.close();
});

spec('revoking a lease deletes its keys at once; revoking it again is no error', async (open) => {
  const { store } = await open();
  const lease = await store.leaseGrant(10_000);
  await store.put('/r/a', 'a', { lease: lease.id });
  await store.put('/r/b', 'b', { lease: lease.id });
  const before = await store.revision();
  await store.leaseRevoke(lease.id);
  assert.deepEqual((await store.range('/r/')).kvs, []);
  assert.equal(await store.revision(), before + 1);
  await store.leaseRevoke(lease.id);
  await assert.rejects(store.leaseKeepAlive(lease.id), LeaseNotFoundError);
  await assert.rejects(store.put('/r/c', 'c', { lease: lease.id }), LeaseNotFoundError);
});

spec('keep-alives keep a lease and its keys past its TTL', async (open) => {
  const { store } = await open();
  const lease = await store.leaseGrant(SHORT_TTL_MS);
  await store.put('/ka', 'alive', { lease: lease.id });
  const until = Date.now() + lease.ttlMs * 2.5;
  while (Date.now() < until) {
    await store.leaseKeepAlive(lease.id);
    await delay(lease.ttlMs / 4);
  }
  assert.equal((await store.get('/ka'))?.value, 'alive');
});

spec('a keep-alive of an expired lease throws LeaseNotFoundError', async (open) => {
  const { store } = await open();
  const lease = await store.leaseGrant(SHORT_TTL_MS);
  await store.put('/gone', 'soon', { lease: lease.id });
  await eventually('the lease to expire', lease.ttlMs + 3_000, async () => ((await store.get('/gone')) ? undefined : true));
  await assert.rejects(store.leaseKeepAlive(lease.id), LeaseNotFoundError);
  await assert.rejects(store.put('/gone', 'again', { lease: lease.id }), LeaseNotFoundError);
});

spec('a Lease keeps its keys alive, and reports lost when the lease is gone', async (open) => {
  const { store } = await open();
  const lease = await Lease.create(store, SHORT_TTL_MS);
  await store.put('/lease/k', 'v', { lease: lease.id });
  await delay(lease.ttlMs * 2);
  assert.equal((await store.get('/lease/k'))?.value, 'v');
  assert.equal(lease.lost.aborted, false);
  await store.leaseRevoke(lease.id); // as an operator (or the lease's expiry) would
  await within('the Lease to report lost', lease.ttlMs * 2, aborted(lease.lost));
  assert.ok(lease.lost.reason instanceof LeaseNotFoundError);
  await lease.revoke();
});

spec('a Lease whose keep-alives fail for a whole TTL reports lost; revoke() stops it quietly', async (open) => {
  const opened = await open();
  const partitioned = new PartitionableStore(opened.store);
  const lease = await Lease.create(partitioned, SHORT_TTL_MS);
  const lost = aborted(lease.lost);
  const cutAt = Date.now();
  partitioned.cutKeepAlives();
  await within('the Lease to report lost', lease.ttlMs * 2, lost);
  assert.ok(Date.now() - cutAt <= lease.ttlMs + 200, 'lost within about one TTL of the last renewal');
  assert.match(String(lease.lost.reason), /no keep-alive succeeded/);
  await lease.revoke();

  const healthy = await Lease.create(opened.store, SHORT_TTL_MS);
  await healthy.revoke();
  assert.equal(healthy.lost.aborted, false);
  await assert.rejects(opened.store.leaseKeepAlive(healthy.id), LeaseNotFoundError);
});

// --- election -------------------------------------------------------------------------------

spec('exactly one of several campaigners leads, and the next takes over when it resigns', async (open) => {
  const opened = await open();
  const elections = await Promise.all(['a', 'b', 'c'].map(async () => new Election(await opened.connect(), '/election', { ttlMs: 5_000 })));
  const inLine = (count: number) =>
    eventually(`${count} campaigners in line`, 3_000, async () => ((await opened.store.range('/election/')).kvs.length === count ? true : undefined));
  const first = await elections[0]!.campaign('a');
  // One at a time, so that b is in line before c.
  const b = elections[1]!.campaign('b');
  await inLine(2);
  const c = elections[2]!.campaign('c');
  await inLine(3);
  assert.ok(await stillPending(Promise.race([b, c]), 300), 'nobody else leads while a does');
  assert.deepEqual(await elections[2]!.leader(), { key: first.key, value: 'a', createRevision: first.createRevision });
  await first.resign();
  const second = await within('b to lead after a resigned', 3_000, b);
  assert.equal(second.value, 'b');
  assert.ok(await stillPending(c, 300), 'c still waits while b leads');
  assert.equal((await elections[0]!.leader())?.value, 'b');
  await second.resign();
  const third = await within('c to lead after b resigned', 3_000, c);
  await third.resign();
  assert.equal(await elections[0]!.leader(), undefined);
  assert.equal(first.lost.aborted || second.lost.aborted || third.lost.aborted, false, 'resigning is not losing');
});

spec("the next campaigner takes over when the leader's lease expires, and the deposed leader's fenced writes fail", async (open) => {
  const opened = await open();
  const partitioned = new PartitionableStore(opened.store);
  const deposed = new Election(partitioned, '/election', { ttlMs: SHORT_TTL_MS });
  const next = new Election(await opened.connect(), '/election', { ttlMs: SHORT_TTL_MS });
  const old = await deposed.campaign('old');
  const successor = next.campaign('new');
  await fencedTxn(opened.store, old, [], [{ type: 'put', key: '/state', value: 'by old' }]);

  partitioned.cutKeepAlives();
  const leader = await within('the successor to lead', old.lease.ttlMs + 3_000, successor);
  assert.equal(leader.value, 'new');
  await within('the old leader to learn it lost', old.lease.ttlMs + 3_000, aborted(old.lost));

  await assert.rejects(fencedTxn(partitioned, old, [], [{ type: 'put', key: '/state', value: 'late write' }]), NotLeaderError);
  await assert.rejects(
    fencedTxn(partitioned, old, [{ key: '/state', target: 'value', op: '=', value: 'no such value' }], [{ type: 'put', key: '/state', value: 'late' }]),
    NotLeaderError,
    'a failed fence wins over failed compares',
  );
  assert.equal((await opened.store.get('/state'))?.value, 'by old');

  const written = await fencedTxn(opened.store, leader, [], [{ type: 'put', key: '/state', value: 'by new' }]);
  assert.equal(written.succeeded, true);
  const conflict = await fencedTxn(
    opened.store,
    leader,
    [{ key: '/state', target: 'value', op: '=', value: 'stale' }],
    [{ type: 'put', key: '/state', value: 'never' }],
    [{ type: 'get', key: '/state' }],
  );
  assert.equal(conflict.succeeded, false, "the leader's own compare failed: an answer, not an error");
  assert.equal(valueOf(conflict.results[0]), 'by new');
  await assert.rejects(fencedTxn(opened.store, leader, [], [], [{ type: 'delete', key: '/state' }]), /may only read/);
  await leader.resign();
});

spec('observe reports the leader now and at every change', async (open, t) => {
  const opened = await open();
  const watcher = new Election(await opened.connect(), '/election');
  const a = new Election(await opened.connect(), '/election', { ttlMs: 5_000 });
  const b = new Election(await opened.connect(), '/election', { ttlMs: 5_000 });
  const stop = new AbortController();
  t.after(() => stop.abort());
  const seen: (string | undefined)[] = [];
  let changed: () => void = () => undefined;
  const observing = (async () => {
    for await (const value of watcher.observe(stop.signal)) {
      seen.push(value);
      changed();
    }
  })();
  const expect = async (values: (string | undefined)[]) => {
    await within(`observe to report ${JSON.stringify(values)} (saw ${JSON.stringify(seen)})`, 3_000, new Promise<void>((resolve) => {
      changed = () => seen.length >= values.length && resolve();
      changed();
    }));
    assert.deepEqual(seen, values);
  };
  await expect([undefined]);
  const leaderA = await a.campaign('a');
  await expect([undefined, 'a']);
  const leaderB = b.campaign('b');
  await delay(100);
  await leaderA.resign();
  await expect([undefined, 'a', 'b']);
  await (await leaderB).resign();
  await expect([undefined, 'a', 'b', undefined]);
  stop.abort();
  await within('observe to end when aborted', 2_000, observing);
});

// --- the suite --------------------------------------------------------------------------------

const backends: StoreBackend[] = [sqliteBackend(), etcdBackend()];

test('Store conformance', { concurrency: backends.length }, async (t) => {
  await Promise.all(
    backends.map((backend) =>
      t.test(backend.name, async (t) => {
        await backend.setup(t);
        for (const c of cases) await t.test(c.name, (t) => c.run(() => backend.open(t), t));
      }),
    ),
  );
});
