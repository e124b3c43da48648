// The decisions of blob replication between coordinators (coordinator/blobs/replication.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { missingBlobs, peerOrder, pushVerdict, referencedBlobs } from '../../coordinator/blobs/replication.js';
import type { ArtifactRecord, VersionRecord } from '../../coordinator/registry/artifact-record.js';

const digest = (c: string) => `sha256:${c.repeat(64)}`;
const version = (n: number, d: string, sizeBytes: number) => ({ version: n, digest: d, sizeBytes }) as VersionRecord;
const record = (name: string, versions: VersionRecord[]) => ({ kind: 'model', tenant: 't', name, versions, aliases: {}, lastVersion: versions.length, updatedAtMs: 0 }) as ArtifactRecord;

test('every digest a version names is referenced once, with its size', () => {
  const blobs = referencedBlobs([record('a', [version(1, digest('a'), 10), version(2, digest('b'), 20)]), record('b', [version(1, digest('a'), 10)]), record('c', [])]);
  assert.deepEqual([...blobs], [[digest('a'), 10], [digest('b'), 20]]);
});

test('what is missing comes smallest first, and what is held is left alone', () => {
  const referenced = new Map([[digest('c'), 300], [digest('a'), 5], [digest('b'), 5], [digest('d'), 1]]);
  assert.deepEqual(missingBlobs(referenced, (d) => d === digest('d')), [
    { digest: digest('a'), sizeBytes: 5 },
    { digest: digest('b'), sizeBytes: 5 },
    { digest: digest('c'), sizeBytes: 300 },
  ]);
  assert.deepEqual(missingBlobs(referenced, () => true), []);
});

test('peers are the other coordinators, rotated so copies spread', () => {
  const members = [{ id: 'c2', address: 'h2:1' }, { id: 'c1', address: 'h1:1' }, { id: 'c3', address: 'h3:1' }, { id: 'c4', address: '' }];
  assert.deepEqual(peerOrder(members, 'c1', 0).map((m) => m.id), ['c2', 'c3']);
  assert.deepEqual(peerOrder(members, 'c1', 1).map((m) => m.id), ['c3', 'c2']);
  assert.deepEqual(peerOrder(members, 'c1', 2).map((m) => m.id), ['c2', 'c3']);
  assert.deepEqual(peerOrder([{ id: 'c1', address: 'h1:1' }], 'c1', 7), []);
});

test('a push is recorded alone, or with a second copy; peers registered and none took it: refused', () => {
  assert.equal(pushVerdict(0, 0), 'record');
  assert.equal(pushVerdict(2, 1), 'record');
  assert.equal(pushVerdict(1, 0), 'refuse');
  assert.equal(pushVerdict(2, 0), 'refuse');
});
