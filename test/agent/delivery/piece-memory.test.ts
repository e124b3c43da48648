// The agent's piece buffers and the verified pieces kept in them (agent/delivery/piece-memory.ts):
// working buffers bounded, kept pieces published only once verified, pinned ones never dropped
// or reused, unpinned ones dropped oldest first and after their pull.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'node:test';
import { PieceMemory } from '../../../agent/delivery/piece-memory.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

function memory(limits = { working: 2, kept: 2 }) {
  const made: Buffer[] = [];
  const pieces = new PieceMemory(limits, (size) => {
    const buffer = Buffer.alloc(size);
    made.push(buffer);
    return buffer;
  });
  return { pieces, made };
}

test('working buffers are bounded: a take waits until one is given back, and given-back ones are reused', async () => {
  const { pieces, made } = memory();
  const signal = new AbortController().signal;
  const a = await pieces.take(16, signal);
  await pieces.take(16, signal);
  let third: Buffer | undefined;
  const waiting = pieces.take(16, signal).then((buffer) => (third = buffer));
  await sleep(10);
  assert.equal(third, undefined, 'both working buffers are out');
  pieces.give(a);
  await waiting;
  assert.equal(third!.buffer, a.buffer, 'the same memory again');
  assert.equal(made.length, 2);
  // An aborted wait ends with the abort's reason.
  const stop = new AbortController();
  const aborted = pieces.take(16, stop.signal);
  stop.abort(new Error('the pull ended'));
  await assert.rejects(aborted, /the pull ended/);
});

test('a take whose wait was aborted leaves the queue: the next buffer given back goes to a taker still waiting', async () => {
  const { pieces } = memory({ working: 1, kept: 1 });
  const first = await pieces.take(16, new AbortController().signal);
  const gone = new AbortController();
  const abandoned = pieces.take(16, gone.signal);
  let got: Buffer | undefined;
  const waiting = pieces.take(16, new AbortController().signal).then((buffer) => (got = buffer));
  gone.abort(new Error('that pull ended'));
  await assert.rejects(abandoned, /that pull ended/);
  pieces.give(first);
  await Promise.race([waiting, sleep(500)]);
  assert.ok(got, 'the waiting take got the buffer');
});

test('a reserved piece frees its working slot; peers see it only once published, and a discarded one is gone', async () => {
  const { pieces } = memory();
  const signal = new AbortController().signal;
  const bytes = (await pieces.take(16, signal)).fill(7);
  await pieces.take(16, signal);
  const slot = pieces.reserve(bytes)!;
  assert.ok(slot);
  await pieces.take(16, signal); // the reserved buffer's working slot is free again
  assert.equal(pieces.pin(DIGEST, 3), undefined, 'not verified yet: nobody is sent it');
  slot.publish(DIGEST, 3);
  const pinned = pieces.pin(DIGEST, 3)!;
  assert.deepEqual([...pinned.bytes], [...Buffer.alloc(16, 7)]);
  pinned.unpin();
  slot.unpin();
  assert.ok(pieces.pin(DIGEST, 3), 'verified and unpinned: still kept for peers');

  const bad = pieces.reserve(Buffer.alloc(16))!;
  bad.discard();
  bad.publish(DIGEST, 4);
  assert.equal(pieces.pin(DIGEST, 4), undefined, 'a discarded (corrupt) piece is never published');
});

test('when kept pieces fill up, the oldest unpinned one goes; a pinned one is never dropped, and with all pinned nothing more is kept', () => {
  const { pieces } = memory({ working: 4, kept: 2 });
  const keep = (piece: number) => {
    const slot = pieces.reserve(Buffer.alloc(16, piece));
    slot?.publish(DIGEST, piece);
    return slot;
  };
  const zero = keep(0)!;
  const one = keep(1)!;
  one.unpin();
  zero.unpin();
  const held = pieces.pin(DIGEST, 0)!; // a peer is being sent piece 0
  keep(2)!.unpin();
  assert.equal(pieces.pin(DIGEST, 1), undefined, 'piece 1, the oldest unpinned, went');
  assert.ok(pieces.pin(DIGEST, 0), 'piece 0 is pinned: it stays');
  assert.equal(pieces.keptCount, 2);
  const three = keep(3);
  assert.ok(three, 'piece 2 (unpinned) made room');
  assert.equal(keep(4), undefined, 'pieces 0 and 3 are pinned: piece 4 is not kept');
  held.unpin();
});

test("a blob's unpinned pieces go a while after its pull ends; pinned ones and other blobs' stay", async () => {
  const { pieces } = memory({ working: 4, kept: 4 });
  const other = `sha256:${'b'.repeat(64)}`;
  for (const [digest, piece] of [[DIGEST, 0], [DIGEST, 1], [other, 0]] as const) {
    const slot = pieces.reserve(Buffer.alloc(16))!;
    slot.publish(digest, piece);
    slot.unpin();
  }
  const reading = pieces.pin(DIGEST, 1)!;
  pieces.forget(DIGEST, 20);
  const early = pieces.pin(DIGEST, 0);
  assert.ok(early, 'not before the delay');
  early.unpin();
  await sleep(60);
  assert.equal(pieces.pin(DIGEST, 0), undefined);
  assert.ok(pieces.pin(DIGEST, 1), 'pinned: still there');
  assert.ok(pieces.pin(other, 0));
  reading.unpin();
});
