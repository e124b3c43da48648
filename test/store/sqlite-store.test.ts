// What the SQLite backend does beyond the shared conformance suite: it trims its own log,
// wakes watches of every store on the file in this process at once, sweeps expired leases on
// its (injected) clock, and finds an expired lease on keep-alive before the sweeper does.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { prefixEnd, SqliteStore, type SqliteStoreOptions } from '../../shared/store/sqlite-store.js';
import { CompactedError, LeaseNotFoundError } from '../../shared/store/store.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { WatchReader } from './support.js';

async function openFile(t: TestContext, options: SqliteStoreOptions = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-sqlite-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'store.db');
  const open = async (more: SqliteStoreOptions = {}) => {
    const store = await SqliteStore.create(file, { ...options, ...more });
    t.after(() => store.close());
    return store;
  };
  return { file, store: await open(), open };
}

test('the log keeps the last retainRevisions revisions; a watch from before them fails with CompactedError', async (t) => {
  const { store } = await openFile(t, { retainRevisions: 10 });
  const revisions: number[] = [];
  for (let i = 0; i < 40; i++) revisions.push(await store.put('/k', String(i)));
  const error = await new WatchReader(store.watch('/', { fromRevision: revisions[0] })).failure();
  assert.ok(error instanceof CompactedError);
  const head = revisions[39]!;
  assert.ok(error.compactRevision > revisions[0]! && error.compactRevision <= head - 9, `compacted to ${error.compactRevision}`);
  const kept = await new WatchReader(store.watch('/', { fromRevision: head - 9 })).take(10);
  assert.deepEqual(kept.map((e) => e.value), Array.from({ length: 10 }, (_, i) => String(30 + i)));
});

test('a write through one store wakes the watches of another store on the same file at once', async (t) => {
  // Polling for other processes' commits is an hour apart: only the direct wake-up can work.
  const { store, open } = await openFile(t, { pollIntervalMs: 3_600_000 });
  const other = await open();
  const reader = new WatchReader(other.watch('/x/', { fromRevision: (await other.revision()) + 1 }));
  const revision = await store.put('/x/1', 'hello');
  const [event] = await reader.take(1, 500);
  assert.equal(event?.revision, revision);
  reader.watch.close();
});

test('the sweeper deletes an expired lease and its keys when the injected clock passes its TTL', async (t) => {
  const clock = new FakeClock();
  const { store } = await openFile(t, { clock, sweepIntervalMs: 100 });
  const lease = await store.leaseGrant(1_000);
  await store.put('/leased', 'v', { lease: lease.id });
  clock.advance(900);
  assert.ok(await store.get('/leased'), 'alive before its TTL');
  await store.leaseKeepAlive(lease.id);
  clock.advance(900);
  assert.ok(await store.get('/leased'), 'a keep-alive restarts the TTL');
  clock.advance(200);
  assert.equal(await store.get('/leased'), undefined, 'swept once the TTL passed');
  await assert.rejects(store.leaseKeepAlive(lease.id), LeaseNotFoundError);
});

test('a keep-alive that finds its lease expired deletes the lease’s keys itself', async (t) => {
  const clock = new FakeClock();
  const { store } = await openFile(t, { clock, sweepIntervalMs: 3_600_000 });
  const lease = await store.leaseGrant(1_000);
  await store.put('/leased', 'v', { lease: lease.id });
  const before = await store.revision();
  clock.advance(1_000);
  assert.ok(await store.get('/leased'), 'the sweeper has not run');
  await assert.rejects(store.put('/other', 'v', { lease: lease.id }), LeaseNotFoundError, 'an expired lease takes no keys');
  await assert.rejects(store.leaseKeepAlive(lease.id), LeaseNotFoundError);
  assert.equal(await store.get('/leased'), undefined);
  assert.equal(await store.revision(), before + 1, 'deleting the lease’s keys took one revision');
});

test('a prefix range ends at the first string that does not start with the prefix', () => {
  assert.equal(prefixEnd('/a/'), '/a0');
  assert.equal(prefixEnd('a'), 'b');
  assert.equal(prefixEnd(''), undefined);
  assert.equal(prefixEnd('\u{10FFFF}'), undefined);
  assert.equal(prefixEnd('a\u{10FFFF}'), 'b');
  assert.equal(prefixEnd('\uD7FF'), '\uE000');
  assert.equal(prefixEnd('é'), 'ê');
});

test('bad options are refused with a message that names them', async () => {
  await assert.rejects(SqliteStore.create(':memory:', { retainRevisions: 0 }), /retainRevisions must be a positive integer/);
});
