// The piece planner: which piece next, from which source (docs/delivery.md). Pure, on a fake
// clock (plain numbers) and an injected random.
import assert from 'node:assert/strict';
import test from 'node:test';
import { planNextPiece, type PlanInput, type PlanSource } from '../../../agent/delivery/piece-plan.js';
import { Bitfield } from '../../../shared/pieces.js';

const SEED: PlanSource = { id: 'coord', kind: 'coordinator', pieces: undefined, inFlight: 0, limit: 4 };

function peer(id: string, pieces: number[] | 'complete' | undefined, size: number, inFlight = 0): PlanSource {
  const field = Array.isArray(pieces) ? new Bitfield(size) : pieces;
  if (Array.isArray(pieces)) for (const piece of pieces) (field as Bitfield).set(piece);
  return { id, kind: 'peer', pieces: field, inFlight, limit: 2 };
}

function input(over: Partial<PlanInput>): PlanInput {
  const pieceCount = over.pieceCount ?? 8;
  return {
    pieceCount,
    held: new Bitfield(pieceCount),
    inFlight: new Set(),
    sources: [SEED],
    rank: 0,
    fetchers: 1,
    now: 10_000,
    waitingSince: new Map(),
    stallMs: 1_500,
    corruptFrom: new Map(),
    failed: new Set(),
    maxInFlight: 4,
    random: () => 0,
    ...over,
  };
}

test('one agent alone takes every piece from the seed, in order, skipping what it holds or has in flight', () => {
  const held = new Bitfield(8);
  held.set(0);
  assert.deepEqual(planNextPiece(input({ held, inFlight: new Set([1]) })).next, { piece: 2, source: 'coord' });
  const all = Bitfield.full(8);
  assert.equal(planNextPiece(input({ held: all })).next, undefined);
});

test('among fetchers, the seed gives this agent only its share (i % fetchers == rank), first, starting at its own place; the rest wait', () => {
  // Rank 1 of 3 over 8 pieces starts at piece floor(8 / 3) = 2 and wraps.
  const result = planNextPiece(input({ rank: 1, fetchers: 3, sources: [peer('a', [], 8), SEED] }));
  assert.deepEqual(result.next, { piece: 4, source: 'coord' });
  const held = new Bitfield(8);
  held.set(4);
  const next = planNextPiece(input({ held, rank: 1, fetchers: 3, sources: [peer('a', [], 8), SEED] }));
  assert.deepEqual(next.next, { piece: 7, source: 'coord' });
  held.set(7);
  const wrapped = planNextPiece(input({ held, rank: 1, fetchers: 3, sources: [peer('a', [], 8), SEED] }));
  assert.deepEqual(wrapped.next, { piece: 1, source: 'coord' }, 'past the end it wraps to the start');
  held.set(1);
  const rest = planNextPiece(input({ held, rank: 1, fetchers: 3, sources: [peer('a', [], 8), SEED] }));
  assert.equal(rest.next, undefined, 'the others\' shares wait for them');
  assert.deepEqual(rest.waiting, [2, 3, 5, 6, 0]);
});

test('a piece that waited past the stall time comes from the seed even when it is not this agent\'s share', () => {
  // Rank 1 of 2 starts at piece 4; its own share (the odd pieces) is held already.
  const sources = [peer('a', [], 8), SEED];
  const held = new Bitfield(8);
  for (const piece of [1, 3, 5, 7]) held.set(piece);
  const waitingSince = new Map([[4, 10_000 - 1_499]]);
  assert.equal(planNextPiece(input({ held, rank: 1, fetchers: 2, sources, waitingSince })).next, undefined);
  waitingSince.set(4, 10_000 - 1_500);
  assert.deepEqual(planNextPiece(input({ held, rank: 1, fetchers: 2, sources, waitingSince })).next, { piece: 4, source: 'coord' });
});

test('a piece whose holders are all busy waits for them four stall times before the seed is asked', () => {
  const sources = [peer('a', [0], 8, 2), SEED];
  const held = new Bitfield(8);
  for (const piece of [2, 4, 6]) held.set(piece);
  const waitingSince = new Map([[0, 10_000 - 4 * 1_500 + 1]]);
  assert.equal(planNextPiece(input({ held, fetchers: 2, sources, waitingSince })).next, undefined, 'it still waits');
  waitingSince.set(0, 10_000 - 4 * 1_500);
  assert.equal(planNextPiece(input({ held, fetchers: 2, sources, waitingSince })).next, undefined, 'the other agent\'s turn first');
  const heldOdd = new Bitfield(8);
  for (const piece of [1, 3, 5, 7]) heldOdd.set(piece);
  assert.deepEqual(planNextPiece(input({ held: heldOdd, rank: 1, fetchers: 2, sources, waitingSince })).next, { piece: 0, source: 'coord' });
  waitingSince.set(0, 10_000 - 8 * 1_500);
  assert.deepEqual(planNextPiece(input({ held, fetchers: 2, sources, waitingSince })).next, { piece: 0, source: 'coord' }, 'after a full round, anyone');
});

test('a piece a peer holds comes from a peer, the least busy one, at random among equals', () => {
  const sources = [peer('a', [0, 1], 8, 1), peer('b', 'complete', 8, 0), peer('c', [0], 8, 0), SEED];
  assert.deepEqual(planNextPiece(input({ fetchers: 3, sources, random: () => 0 })).next, { piece: 0, source: 'b' });
  assert.deepEqual(planNextPiece(input({ fetchers: 3, sources, random: () => 0.99 })).next, { piece: 0, source: 'c' });
  // The seed is not asked for a piece a peer holds, even this agent's share.
  const busy = [peer('a', [0], 8, 2), SEED];
  const result = planNextPiece(input({ fetchers: 2, sources: busy }));
  assert.deepEqual(result.next, { piece: 2, source: 'coord' }, 'piece 0 waits for its busy peer; 1 is the other agent\'s share');
});

test('a source that sent a corrupt copy of a piece is not asked for it again; failed sources are skipped', () => {
  const sources = [peer('a', 'complete', 8), peer('b', 'complete', 8, 1), SEED];
  const corruptFrom = new Map([[0, new Set(['a'])]]);
  assert.deepEqual(planNextPiece(input({ fetchers: 2, sources, corruptFrom })).next, { piece: 0, source: 'b' });
  corruptFrom.set(0, new Set(['a', 'b']));
  assert.deepEqual(planNextPiece(input({ fetchers: 2, sources, corruptFrom })).next, { piece: 0, source: 'coord' }, 'the seed, since every peer holding it sent it corrupt');
  assert.deepEqual(planNextPiece(input({ fetchers: 2, sources, failed: new Set(['a']) })).next, { piece: 0, source: 'b' });
  const onlySeed = planNextPiece(input({ corruptFrom: new Map([[0, new Set(['coord'])]]) }));
  assert.deepEqual(onlySeed.next, { piece: 1, source: 'coord' });
});

test('pieces in flight are bounded in total and per source', () => {
  assert.equal(planNextPiece(input({ inFlight: new Set([0, 1, 2, 3]) })).next, undefined);
  const full = { ...SEED, inFlight: 4 };
  assert.equal(planNextPiece(input({ sources: [full], inFlight: new Set([0, 1, 2, 3]), maxInFlight: 6 })).next, undefined);
  const peers = [peer('a', 'complete', 8, 2), peer('b', [5], 8, 1), SEED];
  assert.deepEqual(planNextPiece(input({ fetchers: 3, sources: peers, maxInFlight: 6 })).next, { piece: 5, source: 'b' });
});

test('while a peer\'s bitfield is not known yet the seed waits; with no peer listed the seed serves all', () => {
  const unknown = [peer('a', undefined, 8), SEED];
  const waits = planNextPiece(input({ rank: 1, fetchers: 2, sources: unknown }));
  assert.equal(waits.next, undefined, 'not even its own share from the seed until it knows what the peer holds');
  assert.deepEqual(planNextPiece(input({ rank: 1, fetchers: 2, sources: [peer('a', [], 8), SEED] })).next, { piece: 5, source: 'coord' });
  assert.deepEqual(planNextPiece(input({ rank: 1, fetchers: 2, sources: [SEED] })).next, { piece: 0, source: 'coord' }, 'alone: in order from the start');
});

test('a peer that failed a moment ago still counts as fetching: its share waits for the stall rule, not the seed', () => {
  const sources = [peer('a', [4], 8), SEED];
  assert.deepEqual(planNextPiece(input({ rank: 1, fetchers: 2, sources, failed: new Set(['a']) })).next, { piece: 5, source: 'coord' });
  const held = new Bitfield(8);
  for (const piece of [1, 3, 5, 7]) held.set(piece);
  const result = planNextPiece(input({ held, rank: 1, fetchers: 2, sources, failed: new Set(['a']) }));
  assert.equal(result.next, undefined);
  assert.deepEqual(result.waiting, [4, 6, 0, 2]);
});

test('while the count of fetchers is settling the seed gives only stalled pieces, not this agent\'s share', () => {
  const sources = [peer('a', [], 8), SEED];
  assert.equal(planNextPiece(input({ rank: 1, fetchers: 2, sources, settling: true })).next, undefined);
  const waitingSince = new Map([[4, 10_000 - 1_500]]);
  assert.deepEqual(planNextPiece(input({ rank: 1, fetchers: 2, sources, settling: true, waitingSince })).next, { piece: 4, source: 'coord' });
  assert.deepEqual(planNextPiece(input({ rank: 1, fetchers: 2, sources, settling: false })).next, { piece: 5, source: 'coord' });
  assert.deepEqual(planNextPiece(input({ sources: [SEED], settling: true })).next, { piece: 0, source: 'coord' }, 'alone, nothing waits');
});

test('a stalled piece is taken over by one agent per stall period, in rank order after its owner, then by anyone', () => {
  // Piece 4 of 9 is rank 1's share (of 3); nobody holds it; every agent's own share is held.
  const sources = [peer('a', [], 9), peer('b', [], 9), SEED];
  const asking = (rank: number, waited: number) => {
    const held = new Bitfield(9);
    for (let piece = 0; piece < 9; piece += 1) if (piece !== 4 && piece % 3 === rank) held.set(piece);
    const result = planNextPiece(input({ pieceCount: 9, held, rank, fetchers: 3, sources, stallMs: 1_000, waitingSince: new Map([[4, 10_000 - waited]]) }));
    return result.next?.piece === 4;
  };
  assert.deepEqual([0, 1, 2].map((rank) => asking(rank, 999)), [false, true, false], 'before a stall, only its owner');
  assert.deepEqual([0, 2].map((rank) => asking(rank, 1_000)), [false, true], 'one period: the next rank');
  assert.deepEqual([0, 2].map((rank) => asking(rank, 2_000)), [true, false], 'two periods: the one after');
  assert.deepEqual([0, 2].map((rank) => asking(rank, 3_000)), [true, true], 'a full round: anyone');
});

test('a piece whose owner is a listed fetcher waits four stall times for it; an owner not listed is taken over after one', () => {
  // Piece 4 of 8 is rank 0's share (of 2); this agent is rank 1 and holds its own share.
  const held = new Bitfield(8);
  for (const piece of [1, 3, 5, 7]) held.set(piece);
  const owner = { ...peer('a', [], 8), rank: 0 };
  const waitingSince = new Map([[4, 10_000 - 1_500]]);
  assert.equal(planNextPiece(input({ held, rank: 1, fetchers: 2, sources: [owner, SEED], waitingSince })).next, undefined, 'its owner is listed: only slow');
  waitingSince.set(4, 10_000 - 4 * 1_500);
  assert.deepEqual(planNextPiece(input({ held, rank: 1, fetchers: 2, sources: [owner, SEED], waitingSince })).next, { piece: 4, source: 'coord' });
  const stranger = { ...peer('b', [], 8), rank: 1 };
  waitingSince.set(4, 10_000 - 1_500);
  assert.deepEqual(planNextPiece(input({ held, rank: 1, fetchers: 2, sources: [stranger, SEED], waitingSince })).next, { piece: 4, source: 'coord' }, 'its owner is gone');
});

test('windowed, an agent among others takes only the pieces from its first missing one to the window\'s end, in order: its share of the seed there first, then what peers hold', () => {
  // Rank 1 of 4 over 16 pieces, holding 0 and 2: its window of 6 is pieces 1 to 6.
  const held = new Bitfield(16);
  held.set(0);
  held.set(2);
  const plan = (holds: number[], over: Partial<PlanInput> = {}) =>
    planNextPiece(input({ pieceCount: 16, held, rank: 1, fetchers: 4, sources: [peer('a', holds, 16), peer('b', [], 16), SEED], window: 6, ...over }));
  assert.deepEqual(plan([0, 1, 3, 4, 9, 10]).next, { piece: 5, source: 'coord' }, 'its share in the window nobody holds (5) comes first');
  const everyShareHeld = [0, 1, 3, 4, 5, 9, 10, 13];
  assert.deepEqual(plan(everyShareHeld).next, { piece: 1, source: 'a' }, 'then the first missing piece a peer holds');
  const full = plan(everyShareHeld, { inFlight: new Set([1, 3, 4, 5]), maxInFlight: 8 });
  assert.equal(full.next, undefined, 'nothing past the window: not 9 or 10, which a peer holds');
  assert.deepEqual(full.waiting, [6], 'piece 6 waits for its owner');
  // Without a window: from its own place in the blob (piece 4), over the whole blob.
  assert.deepEqual(plan(everyShareHeld, { window: undefined }).next, { piece: 4, source: 'a' });
  // Alone, a window changes nothing: every piece from the seed, in order.
  assert.deepEqual(planNextPiece(input({ pieceCount: 16, held, window: 2 })).next, { piece: 1, source: 'coord' });
});

test('windowed, an owner a window or more behind the piece is not waited for as a live one: its piece is taken over after one stall time', () => {
  // Piece 6 of 16 is rank 2's share (of 4); this agent (rank 1) holds 0 to 5.
  const held = new Bitfield(16);
  for (let piece = 0; piece < 6; piece += 1) held.set(piece);
  // Three stall times: rank 1's turn (after ranks 3 and 0) to take over a piece of rank 2's.
  const waitingSince = new Map([[6, 10_000 - 3 * 1_500]]);
  const plan = (ownerHolds: number[]) =>
    planNextPiece(input({ pieceCount: 16, held, rank: 1, fetchers: 4, sources: [{ ...peer('owner', ownerHolds, 16), rank: 2 }, SEED], window: 4, waitingSince, inFlight: new Set([7, 8, 9]), maxInFlight: 8 })).next;
  assert.equal(plan([0, 1, 2, 3]), undefined, 'its owner misses piece 4: piece 6 is in its window, it is only slow (four stall times)');
  assert.deepEqual(plan([0, 1]), { piece: 6, source: 'coord' }, 'its owner misses piece 2: piece 6 is past its window');
});
