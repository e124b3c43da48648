// The order in which pieces enter a download's whole digest: from their buffers when next in
// order, else read back from the file once the pieces before them are in. Pure.
import assert from 'node:assert/strict';
import test from 'node:test';
import { DigestOrder } from '../../../agent/delivery/digest-order.js';

test('pieces verified in order all enter from their buffers: nothing is read back', () => {
  const order = new DigestOrder(4);
  for (let piece = 0; piece < 4; piece += 1) assert.equal(order.verified(piece, true), undefined);
  assert.equal(order.next, 4);
  assert.equal(order.complete, true);
  assert.equal(order.failure, undefined);
});

test('a piece verified ahead of its turn is read back once the pieces before it are in, with any run after it', () => {
  const order = new DigestOrder(6);
  assert.equal(order.verified(2, false), undefined);
  assert.equal(order.verified(3, false), undefined);
  assert.equal(order.verified(5, false), undefined);
  assert.equal(order.complete, false);
  assert.equal(order.verified(0, true), undefined);
  assert.deepEqual(order.verified(1, true), { from: 2, to: 4 });
  assert.equal(order.next, 4);
  assert.deepEqual(order.verified(4, true), { from: 5, to: 6 });
  assert.equal(order.complete, true);
});

test('the next piece that the worker did not take (sent before a read-back ahead of it) is read back at once', () => {
  const order = new DigestOrder(3);
  assert.equal(order.verified(1, false), undefined);
  assert.deepEqual(order.verified(0, false), { from: 0, to: 2 });
  assert.deepEqual(order.verified(2, false), { from: 2, to: 3 });
  assert.equal(order.complete, true);
});

test('a resume reads back the recorded pieces that lead the file and keeps the others for later', () => {
  const order = new DigestOrder(6);
  const held = new Set([0, 1, 3]);
  assert.deepEqual(order.resumed((piece) => held.has(piece)), { from: 0, to: 2 });
  assert.deepEqual(order.verified(2, true), { from: 3, to: 4 });
  assert.equal(order.verified(4, true), undefined);
  assert.equal(order.verified(5, true), undefined);
  assert.equal(order.complete, true);
});

test('a resume with nothing leading reads nothing back; an empty blob is complete at once', () => {
  assert.equal(new DigestOrder(3).resumed((piece) => piece === 2), undefined);
  const empty = new DigestOrder(0);
  assert.equal(empty.resumed(() => false), undefined);
  assert.equal(empty.complete, true);
});

test('anything that breaks the order leaves the digest untrusted (the file is then hashed again), never complete', () => {
  const taken = new DigestOrder(3);
  taken.verified(1, true);
  assert.match(taken.failure!, /took piece 1 while piece 0 was next/);
  for (let piece = 0; piece < 3; piece += 1) taken.verified(piece, piece !== 1);
  assert.equal(taken.complete, false);

  const twice = new DigestOrder(3);
  twice.verified(0, true);
  twice.verified(0, false);
  assert.match(twice.failure!, /verified twice/);
  assert.equal(twice.complete, false);

  const outside = new DigestOrder(2);
  outside.verified(2, false);
  assert.match(outside.failure!, /not one of the 2/);

  const failed = new DigestOrder(1);
  failed.fail('a read failed');
  failed.verified(0, true);
  assert.equal(failed.complete, false);
  assert.equal(failed.failure, 'a read failed');
  assert.throws(() => new DigestOrder(-1), RangeError);
});
