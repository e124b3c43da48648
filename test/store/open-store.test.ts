// --store specs: what parses, what a bad one says, and that an etcd nobody answers on fails
// fast with the endpoints in the message.
import { freePort } from '../helpers/net.js';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { InvalidArgumentError } from '../../shared/errors.js';
import { openStore, parseStoreSpec } from '../../shared/store/open-store.js';
import { StoreUnavailableError } from '../../shared/store/store.js';
import { startEtcd } from '../helpers/etcd.js';

test('store specs name a SQLite file or etcd endpoints with an optional namespace', () => {
  assert.deepEqual(parseStoreSpec('sqlite:./.mlfleet/coordinator.db'), { kind: 'sqlite', path: './.mlfleet/coordinator.db' });
  assert.deepEqual(parseStoreSpec('etcd:http://h1:2379,http://h2:2379'), { kind: 'etcd', endpoints: ['http://h1:2379', 'http://h2:2379'], prefix: '' });
  assert.deepEqual(parseStoreSpec('etcd:https://10.0.0.1?prefix=/cluster-a/'), { kind: 'etcd', endpoints: ['https://10.0.0.1:2379'], prefix: '/cluster-a/' });
  assert.deepEqual(parseStoreSpec('etcd:http://[::1]:2379'), { kind: 'etcd', endpoints: ['http://[::1]:2379'], prefix: '' });
});

test('a bad store spec is an InvalidArgumentError that shows the expected form', () => {
  for (const spec of ['', 'postgres://db', 'sqlite:', 'etcd:', 'etcd:h1:2379', 'etcd:http://h1:2379/path', 'etcd:http://h1:2379?ns=/x/', 'etcd:ftp://h1']) {
    assert.throws(() => parseStoreSpec(spec), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError, `${spec}: ${String(err)}`);
      assert.match(err.message, /sqlite:PATH or etcd:http:\/\/HOST:PORT/);
      return true;
    });
  }
});

test('a sqlite: store creates its folder', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-open-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'nested', 'deeper', 'coordinator.db');
  const store = await openStore(`sqlite:${file}`);
  t.after(() => store.close());
  assert.equal(store.kind, 'sqlite');
  await store.put('/k', 'v');
  assert.ok(existsSync(file));
});

test('an etcd: store keeps its keys under the namespace it was given', async (t) => {
  const etcd = await startEtcd(t);
  const inside = await openStore(`${etcd.spec}inner/`);
  t.after(() => inside.close());
  const outside = await openStore(etcd.spec);
  t.after(() => outside.close());
  await inside.put('/k', 'v');
  assert.equal(inside.kind, 'etcd');
  assert.deepEqual((await inside.range('/')).kvs.map((kv) => kv.key), ['/k']);
  assert.deepEqual((await outside.range('')).kvs.map((kv) => kv.key), ['inner//k']);
});

test('an etcd that does not answer fails within seconds, naming its endpoints', async () => {
  const port = await freePort();
  const startedAt = Date.now();
  await assert.rejects(openStore(`etcd:http://127.0.0.1:${port}`), (err: unknown) => {
    assert.ok(err instanceof StoreUnavailableError, String(err));
    assert.match(err.message, new RegExp(`cannot reach etcd at http://127.0.0.1:${port}`));
    return true;
  });
  assert.ok(Date.now() - startedAt < 6_000, `took ${Date.now() - startedAt} ms`);
});

