// ArtifactRegistry.applyRetention against a real SQLite store and blob store, with the
// workload queue (whileUsesHeld) replaced by a gate the test opens: a removal decided before a
// deploy took the queue is decided again once it gets it, so a version the deploy then uses
// stays; with the uses unknown (no workload controller yet) nothing is removed.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { FsBlobStore } from '../../coordinator/blobs/fs-blob-store.js';
import { ArtifactRegistry } from '../../coordinator/registry/artifact-registry.js';
import { systemClock } from '../../shared/clock.js';
import { keys } from '../../shared/keys.js';
import { silentLogger } from '../../shared/log.js';
import { SqliteStore } from '../../shared/store/sqlite-store.js';
import { tempDir } from '../helpers/processes.js';

async function setup(t: TestContext) {
  const dir = tempDir(t);
  const store = await SqliteStore.create(`${dir}/c.db`);
  t.after(() => store.close());
  await store.txn([], [{ type: 'put', key: keys.tenant('default'), value: JSON.stringify({ name: 'default', quota: { storageBytes: 0 } }) }]);
  const blobs = await FsBlobStore.create({ root: `${dir}/blobs` });
  const registry = new ArtifactRegistry(store, blobs, systemClock, silentLogger());
  const push = async (name: string, text: string) => {
    const body = Buffer.from(text);
    async function* chunks() {
      yield body;
    }
    return (await registry.push(store, { kind: 'model', tenant: 'default', createdBy: 't', name, format: 'onnx', directory: false, sizeBytes: body.length, digest: '', metadata: { type: '', inputFormat: '', outputFormat: '', accuracy: 0, labels: {}, sourceJob: '', sourceDatasets: [] } }, chunks())).version;
  };
  const versions = async (name: string) => (await registry.get('model', 'default', name)).versions.map((v) => v.version);
  return { store, blobs, registry, push, versions };
}

test('a removal waiting for the workload queue is decided again: a version a deploy took meanwhile stays', async (t) => {
  const { store, blobs, registry, push, versions } = await setup(t);
  await push('m', 'one');
  await push('m', 'two');
  const oldDigest = (await registry.get('model', 'default', 'm')).versions[0]!.digest;
  await registry.setRetention(store, 'default', 'm', { keep: 1, keepAliased: false });
  assert.deepEqual(await versions('m'), [1, 2], 'nothing removed while the uses are unknown (no workload controller)');

  let used = false;
  registry.usedBy = (_kind, _tenant, _name, version) => (used && version === 1 ? 'deployment "web"' : undefined);
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let queued = false;
  registry.whileUsesHeld = async (fn) => {
    queued = true;
    await gate;
    return fn();
  };
  const removal = registry.applyRetention(store, 'default', 'm');
  while (!queued) await new Promise((resolve) => setImmediate(resolve));
  used = true; // the deploy holding the queue resolves version 1 and records it
  open();
  assert.deepEqual(await removal, []);
  assert.deepEqual(await versions('m'), [1, 2]);
  assert.ok(await blobs.stat(oldDigest));

  used = false; // the deployment moved on
  const removed = await registry.applyRetention(store, 'default', 'm');
  assert.deepEqual(removed.map((r) => r.version), [1]);
  assert.deepEqual(await versions('m'), [2]);
  assert.equal(await blobs.stat(oldDigest), undefined);
});
