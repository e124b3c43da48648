// The pure decision of which bucket objects a source imports, on plain data: no bucket, no store.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decideImports, rememberImported, type ListedObject, type Observation } from '../../coordinator/sources/decide.js';

const obj = (key: string, sizeBytes: number, etag: string, lastModifiedMs: number): ListedObject => ({ key, sizeBytes, etag, lastModifiedMs });
const seen = (...objects: ListedObject[]): Record<string, Observation> => Object.fromEntries(objects.map((o) => [o.key, { sizeBytes: o.sizeBytes, etag: o.etag }]));

test('an object seen for the first time waits: it is imported at the next poll if it has not changed', () => {
  const a = obj('models/a.onnx', 10, '"e1"', 1000);
  const first = decideImports({ layout: 'files', prefix: 'models/', listing: [a], previous: {}, imported: {} });
  assert.deepEqual(first.imports, []);
  assert.deepEqual(first.waiting, ['models/a.onnx']);
  const second = decideImports({ layout: 'files', prefix: 'models/', listing: [a], previous: first.observed, imported: {} });
  assert.deepEqual(second.imports.map((c) => c.key), ['models/a.onnx']);
  assert.equal(second.imports[0]!.etag, '"e1"');
});

test('an object whose size or ETag changed between polls (still being written) is not imported until stable', () => {
  const growing = obj('m/a.onnx', 10, '"e1"', 1000);
  const grown = obj('m/a.onnx', 20, '"e2"', 2000);
  const d = decideImports({ layout: 'files', prefix: 'm/', listing: [grown], previous: seen(growing), imported: {} });
  assert.deepEqual(d.imports, []);
  assert.deepEqual(d.waiting, ['m/a.onnx']);
  const sameSizeNewEtag = obj('m/a.onnx', 10, '"e3"', 3000);
  assert.deepEqual(decideImports({ layout: 'files', prefix: 'm/', listing: [sameSizeNewEtag], previous: seen(growing), imported: {} }).imports, []);
  assert.equal(decideImports({ layout: 'files', prefix: 'm/', listing: [grown], previous: seen(grown), imported: {} }).imports.length, 1);
});

test('what was imported with the same ETag is never imported again; a replaced object (new ETag) is a new version', () => {
  const a = obj('m/a.onnx', 10, '"e1"', 1000);
  assert.deepEqual(decideImports({ layout: 'files', prefix: 'm/', listing: [a], previous: seen(a), imported: { 'm/a.onnx': '"e1"' } }).imports, []);
  const replaced = obj('m/a.onnx', 10, '"e9"', 5000);
  assert.equal(decideImports({ layout: 'files', prefix: 'm/', listing: [replaced], previous: seen(replaced), imported: { 'm/a.onnx': '"e1"' } }).imports.length, 1);
});

test('imports come oldest first: by LastModified, then by key', () => {
  const listing = [obj('m/c.onnx', 1, 'c', 2000), obj('m/b.onnx', 1, 'b', 1000), obj('m/a.onnx', 1, 'a', 2000)];
  const d = decideImports({ layout: 'files', prefix: 'm/', listing, previous: seen(...listing), imported: {} });
  assert.deepEqual(d.imports.map((c) => c.key), ['m/b.onnx', 'm/a.onnx', 'm/c.onnx']);
});

test('layout files: objects in deeper folders and folder markers are not versions', () => {
  const listing = [obj('m/a.onnx', 1, 'a', 1), obj('m/old/b.onnx', 1, 'b', 1), obj('m/dir/', 0, 'd', 1)];
  const d = decideImports({ layout: 'files', prefix: 'm/', listing, previous: seen(...listing), imported: {} });
  assert.deepEqual(d.imports.map((c) => c.key), ['m/a.onnx']);
});

test('layout version-dirs: a directory is one version, imported only once every object in it is stable', () => {
  const model = obj('m/v1/model.onnx', 100, 'x', 1000);
  const config = obj('m/v1/config.json', 5, 'y', 1500);
  const configGrowing = obj('m/v1/config.json', 9, 'y2', 1600);
  const loose = obj('m/readme.txt', 1, 'r', 1);
  const waiting = decideImports({ layout: 'version-dirs', prefix: 'm/', listing: [model, configGrowing, loose], previous: seen(model, config, loose), imported: {} });
  assert.deepEqual(waiting.imports, []);
  assert.deepEqual(waiting.waiting, ['m/v1/']);
  const ready = decideImports({ layout: 'version-dirs', prefix: 'm/', listing: [model, config, loose], previous: seen(model, config, loose), imported: {} });
  assert.equal(ready.imports.length, 1);
  const dir = ready.imports[0]!;
  assert.equal(dir.key, 'm/v1/');
  assert.deepEqual(dir.objects.map((o) => o.key), ['m/v1/config.json', 'm/v1/model.onnx']);
  assert.equal(dir.lastModifiedMs, 1500);
  // The directory's ETag follows its content: the same objects give the same one, a change another.
  const again = decideImports({ layout: 'version-dirs', prefix: 'm/', listing: [config, model], previous: seen(model, config), imported: {} });
  assert.equal(again.imports[0]!.etag, dir.etag);
  const changed = obj('m/v1/model.onnx', 100, 'x2', 3000);
  assert.notEqual(decideImports({ layout: 'version-dirs', prefix: 'm/', listing: [config, changed], previous: seen(changed, config), imported: {} }).imports[0]!.etag, dir.etag);
  assert.deepEqual(decideImports({ layout: 'version-dirs', prefix: 'm/', listing: [model, config], previous: seen(model, config), imported: { 'm/v1/': dir.etag } }).imports, []);
});

test('the empty prefix: the whole bucket', () => {
  const listing = [obj('a.onnx', 1, 'a', 1), obj('v2/x.onnx', 1, 'x', 1)];
  assert.deepEqual(decideImports({ layout: 'files', prefix: '', listing, previous: seen(...listing), imported: {} }).imports.map((c) => c.key), ['a.onnx']);
  assert.deepEqual(decideImports({ layout: 'version-dirs', prefix: '', listing, previous: seen(...listing), imported: {} }).imports.map((c) => c.key), ['v2/']);
});

test('what is remembered as imported: keys still listed plus the new ones, at most the newest N', () => {
  const a = obj('m/a', 1, 'a', 1);
  const b = obj('m/b', 1, 'b', 2);
  const d = decideImports({ layout: 'files', prefix: 'm/', listing: [a, b], previous: seen(a, b), imported: { 'm/gone': 'g', 'm/a': 'a' } });
  assert.deepEqual(rememberImported({ 'm/gone': 'g', 'm/a': 'a' }, d.imports.filter((c) => c.key === 'm/b'), d.present, 10), { 'm/a': 'a', 'm/b': 'b' });
  assert.deepEqual(Object.keys(rememberImported({ k1: '1', k2: '2', k3: '3' }, [], new Set(['k1', 'k2', 'k3']), 2)), ['k2', 'k3']);
});
