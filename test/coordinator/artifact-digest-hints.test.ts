// ArtifactRegistry.findByDigest against a real SQLite store: after one scan a digest is found by
// reading the one record that held it, not every record; a record that no longer holds it (a
// version removed) sends it back to a scan, which says what is true; tenants are kept apart.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { FsBlobStore } from '../../coordinator/blobs/fs-blob-store.js';
import { ArtifactRegistry, DigestHints } from '../../coordinator/registry/artifact-registry.js';
import { systemClock } from '../../shared/clock.js';
import { keys } from '../../shared/keys.js';
import { silentLogger } from '../../shared/log.js';
import type { Store } from '../../shared/store/store.js';
import { SqliteStore } from '../../shared/store/sqlite-store.js';
import { tempDir } from '../helpers/processes.js';

async function setup(t: TestContext) {
  const dir = tempDir(t);
  const sqlite = await SqliteStore.create(`${dir}/c.db`);
  t.after(() => sqlite.close());
  for (const tenant of ['default', 'other']) {
    await sqlite.txn([], [{ type: 'put', key: keys.tenant(tenant), value: JSON.stringify({ name: tenant, quota: { storageBytes: 0 } }) }]);
  }
  const counts = { ranges: 0 };
  // The same store, its range reads counted.
  const store = new Proxy(sqlite, {
    get(target, name, receiver) {
      if (name === 'range') return (...args: Parameters<Store['range']>) => (counts.ranges++, target.range(...args));
      const value = Reflect.get(target, name, receiver) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as Store;
  const blobs = await FsBlobStore.create({ root: `${dir}/blobs` });
  const registry = new ArtifactRegistry(store, blobs, systemClock, silentLogger());
  const push = async (tenant: string, name: string, text: string) => {
    const body = Buffer.from(text);
    async function* chunks() {
      yield body;
    }
    const spec = { kind: 'model' as const, tenant, createdBy: 't', name, format: 'onnx', directory: false, sizeBytes: body.length, digest: '', metadata: { type: '', inputFormat: '', outputFormat: '', accuracy: 0, labels: {}, sourceJob: '', sourceDatasets: [] } };
    return (await registry.push(store, spec, chunks())).version;
  };
  return { store, registry, push, counts };
}

test('a digest found once is found again by reading one record, not every one', async (t) => {
  const { registry, push, counts } = await setup(t);
  for (let i = 0; i < 20; i++) await push('default', `m${i}`, `weights ${i}`);
  const wanted = (await registry.get('model', 'default', 'm7')).versions[0]!.digest;
  counts.ranges = 0;
  assert.equal((await registry.findByDigest('model', wanted))?.record.name, 'm7');
  assert.equal(counts.ranges, 1, 'the first lookup scans');
  for (let i = 0; i < 5; i++) assert.equal((await registry.findByDigest('model', wanted))?.record.name, 'm7');
  const other = (await registry.get('model', 'default', 'm3')).versions[0]!.digest;
  assert.equal((await registry.findByDigest('model', other))?.record.name, 'm3');
  assert.equal(counts.ranges, 1, 'later lookups, of any digest the scan saw, read one record');
  assert.equal(await registry.findByDigest('model', `sha256:${'0'.repeat(64)}`), undefined);
  assert.equal(counts.ranges, 2, 'an unknown digest is a scan, and not found');
});

test('a version removed since: the stale hint is checked, and the scan says it is gone', async (t) => {
  const { store, registry, push } = await setup(t);
  const first = await push('default', 'm', 'one');
  await push('default', 'm', 'two');
  assert.equal((await registry.findByDigest('model', first.digest))?.version.version, 1);
  registry.usedBy = () => undefined;
  registry.whileUsesHeld = (fn) => fn();
  await registry.setRetention(store, 'default', 'm', { keep: 1, keepAliased: false });
  await registry.applyRetention(store, 'default', 'm');
  assert.deepEqual((await registry.get('model', 'default', 'm')).versions.map((v) => v.version), [2]);
  assert.equal(await registry.findByDigest('model', first.digest), undefined);
});

test('a hint for one tenant answers no lookup in another', async (t) => {
  const { registry, push } = await setup(t);
  const mine = await push('default', 'm', 'shared bytes');
  assert.equal((await registry.findByDigest('model', mine.digest, 'default'))?.record.tenant, 'default');
  assert.equal(await registry.findByDigest('model', mine.digest, 'other'), undefined, "another tenant's lookup does not see it");
  await push('other', 'm', 'shared bytes');
  assert.equal((await registry.findByDigest('model', mine.digest, 'other'))?.record.tenant, 'other');
  assert.equal((await registry.findByDigest('model', mine.digest, 'default'))?.record.tenant, 'default');
});

test('hints are bounded: past the limit they are forgotten all at once', () => {
  const hints = new DigestHints(3);
  for (const d of ['a', 'b', 'c']) hints.note('p/', d, `k-${d}`);
  assert.equal(hints.get('p/', 'a'), 'k-a');
  hints.note('p/', 'd', 'k-d');
  assert.equal(hints.get('p/', 'a'), undefined);
  assert.equal(hints.get('p/', 'd'), 'k-d');
  assert.equal(hints.get('q/', 'd'), undefined, 'per prefix');
});
