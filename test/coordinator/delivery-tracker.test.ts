// The tracker's decisions (coordinator/delivery/tracker.ts) on a hand-driven clock: who is
// listed as a peer, in which order, and each fetcher's share of the seed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seededRandom } from '../../shared/clock.js';
import { FETCH_EXPIRY_MS, FetchTracker, MAX_PEERS, type TrackerNode } from '../../coordinator/delivery/tracker.js';
import { FakeClock } from '../helpers/fake-clock.js';

const D = `sha256:${'a'.repeat(64)}`;
const OTHER = `sha256:${'b'.repeat(64)}`;

function node(name: string, overrides: Partial<TrackerNode> = {}): TrackerNode {
  return { name, address: `${name}:7780`, status: 'ready', cordoned: false, draining: false, peerUploadMbps: 1000, cache: [], ...overrides };
}

const holding = (name: string, overrides: Partial<TrackerNode> = {}) => node(name, { cache: [{ digest: D }], ...overrides });

test('holders come before fetchers, each marked; the requester is never listed', () => {
  const clock = new FakeClock();
  const tracker = new FetchTracker(seededRandom(1));
  tracker.record('f1', D, clock.now());
  tracker.record('me', D, clock.now());
  const nodes = [node('me'), node('f1'), holding('h1'), holding('h2'), node('idle')];
  const { peers } = tracker.sources('me', D, clock.now(), nodes);
  assert.deepEqual(peers.slice(0, 2).map((p) => p.node).sort(), ['h1', 'h2']);
  assert.ok(peers.slice(0, 2).every((p) => p.complete));
  assert.deepEqual(peers.slice(2), [{ node: 'f1', address: 'f1:7780', complete: false, rank: 0 }]);
  // A holder asking is not listed to itself; the fetchers are.
  assert.deepEqual(tracker.sources('h1', D, clock.now(), nodes).peers.map((p) => p.node).sort(), ['f1', 'h2', 'me']);
  // Nobody holds or fetches another blob.
  assert.deepEqual(tracker.sources('me', OTHER, clock.now(), nodes).peers, []);
});

test('down, cordoned, draining, non-sharing and address-less nodes are never listed, holding or fetching', () => {
  const clock = new FakeClock();
  const tracker = new FetchTracker(seededRandom(2));
  const bad: Array<Partial<TrackerNode>> = [{ status: 'down' }, { cordoned: true }, { cordoned: true, draining: true }, { draining: true }, { peerUploadMbps: 0 }, { address: '' }];
  const nodes: TrackerNode[] = [node('me')];
  bad.forEach((overrides, i) => {
    nodes.push(holding(`h${i}`, overrides));
    nodes.push(node(`f${i}`, overrides));
    tracker.record(`f${i}`, D, clock.now());
  });
  nodes.push(holding('good'));
  tracker.record('me', D, clock.now());
  const decision = tracker.sources('me', D, clock.now(), nodes);
  assert.deepEqual(decision.peers, [{ node: 'good', address: 'good:7780', complete: true }]);
  // Fetchers nobody may read from take no share of the seed.
  assert.deepEqual({ rank: decision.rank, fetchers: decision.fetchers }, { rank: 0, fetchers: 1 });
});

test('three nodes arriving in turn get ranks 0, 1, 2 of a count that grows; a node done (its cache lists the blob) becomes a holder', () => {
  const clock = new FakeClock();
  const tracker = new FetchTracker(seededRandom(3));
  const nodes = [node('a'), node('b'), node('c')];
  const locate = (name: string) => {
    tracker.record(name, D, clock.now());
    return tracker.sources(name, D, clock.now(), nodes);
  };
  const a = locate('a');
  assert.deepEqual([a.rank, a.fetchers, a.peers.length], [0, 1, 0]);
  clock.advance(1000);
  const b = locate('b');
  assert.deepEqual([b.rank, b.fetchers], [1, 2]);
  assert.deepEqual(b.peers, [{ node: 'a', address: 'a:7780', complete: false, rank: 0 }], 'a fetcher says its rank');
  clock.advance(1000);
  const c = locate('c');
  assert.deepEqual([c.rank, c.fetchers], [2, 3]);
  // Asking again keeps one's place.
  clock.advance(1000);
  assert.deepEqual([locate('a').rank, locate('b').rank, locate('c').fetchers], [0, 1, 3]);

  // a finishes: its cache report lists the blob; it is a holder, and the others move up.
  nodes[0] = holding('a');
  tracker.cacheReported('a', [{ digest: D }]);
  const after = locate('c');
  assert.deepEqual([after.rank, after.fetchers], [1, 2]);
  assert.deepEqual(after.peers[0], { node: 'a', address: 'a:7780', complete: true });
  assert.deepEqual(tracker.fetchersOf(D, clock.now()), ['b', 'c']);
});

test('a fetch expires 15 s after its last Locate, and a node that comes back starts over at the end', () => {
  const clock = new FakeClock();
  const tracker = new FetchTracker(seededRandom(4));
  const nodes = [node('a'), node('b')];
  tracker.record('a', D, clock.now());
  clock.advance(1000);
  tracker.record('b', D, clock.now());
  clock.advance(FETCH_EXPIRY_MS - 1500);
  tracker.record('b', D, clock.now()); // b keeps asking; a went quiet
  assert.deepEqual(tracker.fetchersOf(D, clock.now()), ['a', 'b']);
  clock.advance(500);
  assert.deepEqual(tracker.fetchersOf(D, clock.now()), ['b'], 'a expired 15 s after its last Locate');
  assert.deepEqual(tracker.sources('b', D, clock.now(), nodes), { peers: [], rank: 0, fetchers: 1 });
  tracker.record('a', D, clock.now());
  assert.deepEqual(tracker.fetchersOf(D, clock.now()), ['b', 'a']);
  clock.advance(FETCH_EXPIRY_MS);
  assert.deepEqual(tracker.fetchersOf(D, clock.now()), []);
  assert.equal(tracker.size, 0, 'nothing is kept for a blob nobody fetches');
});

test('forget ends every fetch of a node whose session ended', () => {
  const clock = new FakeClock();
  const tracker = new FetchTracker(seededRandom(5));
  tracker.record('a', D, clock.now());
  tracker.record('a', OTHER, clock.now());
  tracker.record('b', D, clock.now());
  tracker.forget('a');
  assert.deepEqual(tracker.fetchersOf(D, clock.now()), ['b']);
  assert.deepEqual(tracker.fetchersOf(OTHER, clock.now()), []);
  const decision = tracker.sources('c', D, clock.now(), [node('a'), node('b'), node('c')]);
  assert.deepEqual(decision.peers.map((p) => p.node), ['b']);
  assert.deepEqual([decision.rank, decision.fetchers], [1, 2], 'a requester not recorded comes last');
});

test(`at most ${MAX_PEERS} peers, chosen at random, holders preferred`, () => {
  const clock = new FakeClock();
  const nodes: TrackerNode[] = [node('me')];
  for (let i = 0; i < 10; i++) nodes.push(holding(`h${i}`));
  const seen = new Set<string>();
  for (let seed = 1; seed <= 20; seed++) {
    const tracker = new FetchTracker(seededRandom(seed));
    for (let i = 0; i < 30; i++) {
      if (seed === 1) nodes.push(node(`f${i}`));
      tracker.record(`f${i}`, D, clock.now());
    }
    const { peers } = tracker.sources('me', D, clock.now(), nodes);
    assert.equal(peers.length, MAX_PEERS);
    assert.ok(peers.slice(0, 10).every((p) => p.complete && p.node.startsWith('h')), 'every holder first');
    assert.ok(peers.slice(10).every((p) => !p.complete));
    assert.equal(new Set(peers.map((p) => p.node)).size, MAX_PEERS, 'no node twice');
    for (const p of peers.slice(10)) seen.add(p.node);
  }
  assert.ok(seen.size > 12, `fetchers are picked at random (${seen.size} of 30 seen)`);
});
