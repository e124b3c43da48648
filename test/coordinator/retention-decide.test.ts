// What decideRetention (coordinator/registry/retention.ts) removes, on plain data: the newest
// N versions stay, older ones go unless an alias points at them or something uses them;
// --keep-aliased keeps aliased versions without counting them; order is by version number, so
// versions created in the same millisecond (or with a clock that stepped back) are ordered by
// the order they were pushed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decideRetention, type RetentionVersion } from '../../coordinator/registry/retention.js';

function versions(count: number, aliases: Record<number, string[]> = {}, createdAtMs = (v: number) => 1_000 * v): RetentionVersion[] {
  return Array.from({ length: count }, (_, i) => ({ version: i + 1, digest: `sha256:${i + 1}`, createdAtMs: createdAtMs(i + 1), aliases: aliases[i + 1] ?? [] }));
}

const removed = (d: ReturnType<typeof decideRetention>) => d.remove.map((r) => r.version);

test('keep N keeps the N newest versions and removes the rest, newest first', () => {
  const d = decideRetention({ keep: 2, keepAliased: false }, versions(5), new Set());
  assert.deepEqual(d.keep, [5, 4]);
  assert.deepEqual(removed(d), [3, 2, 1]);
  assert.equal(d.remove[0]!.digest, 'sha256:3');
  assert.match(d.remove[0]!.reason, /keeps the 2 newest version\(s\); no alias points at it and nothing uses it/);
});

test('no more versions than N removes nothing', () => {
  assert.deepEqual(removed(decideRetention({ keep: 5, keepAliased: false }, versions(5), new Set())), []);
  assert.deepEqual(removed(decideRetention({ keep: 1, keepAliased: false }, [], new Set())), []);
});

test('without --keep-aliased an aliased version counts toward N, and is never removed past it', () => {
  // production on the newest: it fills one of the two places.
  assert.deepEqual(removed(decideRetention({ keep: 2, keepAliased: false }, versions(5, { 5: ['production'] }), new Set())), [3, 2, 1]);
  // production on an old version: kept past N, and the two newest still stay.
  const d = decideRetention({ keep: 2, keepAliased: false }, versions(5, { 1: ['production', 'stable'] }), new Set());
  assert.deepEqual(d.keep, [5, 4, 1]);
  assert.deepEqual(removed(d), [3, 2]);
});

test('with --keep-aliased an aliased version is kept and does not count toward N', () => {
  const d = decideRetention({ keep: 2, keepAliased: true }, versions(5, { 5: ['production'] }), new Set());
  assert.deepEqual(d.keep, [5, 4, 3]);
  assert.deepEqual(removed(d), [2, 1]);
  assert.match(d.remove[0]!.reason, /2 newest unaliased version\(s\)/);
});

test('a version in use is never removed, wherever it stands', () => {
  const d = decideRetention({ keep: 1, keepAliased: false }, versions(6), new Set([2, 4]));
  assert.deepEqual(d.keep, [6, 4, 2]);
  assert.deepEqual(removed(d), [5, 3, 1]);
});

test('in use and aliased versions past N are all kept at keep 1', () => {
  const d = decideRetention({ keep: 1, keepAliased: false }, versions(4, { 1: ['old'] }), new Set([2]));
  assert.deepEqual(removed(d), [3]);
});

test('versions with the same creation time (or a clock that went back) are ordered by number', () => {
  const same = decideRetention({ keep: 2, keepAliased: false }, versions(4, {}, () => 5_000), new Set());
  assert.deepEqual(same.keep, [4, 3]);
  const backwards = decideRetention({ keep: 2, keepAliased: false }, versions(4, {}, (v) => 10_000 - v), new Set());
  assert.deepEqual(backwards.keep, [4, 3]);
  assert.deepEqual(removed(backwards), [2, 1]);
});

test('gaps left by deleted versions do not matter, and input order does not either', () => {
  const sparse: RetentionVersion[] = [9, 2, 7, 4].map((v) => ({ version: v, digest: `sha256:${v}`, createdAtMs: v, aliases: [] }));
  const d = decideRetention({ keep: 2, keepAliased: false }, sparse, new Set());
  assert.deepEqual(d.keep, [9, 7]);
  assert.deepEqual(removed(d), [4, 2]);
});
