// The token changes the leader sends every gateway: at once when they are rare, one message per
// window in a burst (a fleet enrolling), and a revocation never held back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { broadcastWindowMs, TokenBroadcast } from '../../coordinator/auth/token-broadcast.js';
import type { TokenTable__Output as TokenTable } from '../../shared/gen/mlfleet/v1/TokenTable.js';
import { FakeClock } from '../helpers/fake-clock.js';

const token = (id: string) => ({ id, secretSha256: `h-${id}`, role: 'node', tenant: '', node: id, expiresAtMs: 0 });
const added = (id: string): TokenTable => ({ reset: false, complete: true, tokens: [token(id)], removed: [] });
const removed = (id: string): TokenTable => ({ reset: false, complete: true, tokens: [], removed: [id] });

function setup() {
  const clock = new FakeClock();
  const sent: TokenTable[] = [];
  const broadcast = new TokenBroadcast(clock, (change) => sent.push(change), () => 100);
  const summary = () => sent.map((m) => `+${m.tokens.map((t) => t.id).join(',')} -${m.removed.join(',')}`);
  return { clock, sent, broadcast, summary };
}

test('a lone change goes out at once', () => {
  const { broadcast, summary, clock } = setup();
  broadcast.change(added('a'));
  assert.deepEqual(summary(), ['+a -']);
  clock.advance(500);
  broadcast.change(added('b'));
  assert.deepEqual(summary(), ['+a -', '+b -']);
});

test('a burst of additions goes out as one message per window, none lost', () => {
  const { broadcast, summary, clock } = setup();
  for (let i = 0; i < 50; i++) {
    broadcast.change(added(`n${i}`));
    clock.advance(10);
  }
  clock.advance(200);
  const messages = summary();
  assert.ok(messages.length <= 7, `${messages.length} messages for 50 additions in 500 ms`);
  const ids = messages.flatMap((m) => m.slice(1, m.indexOf(' ')).split(',')).filter(Boolean);
  assert.deepEqual(ids, Array.from({ length: 50 }, (_, i) => `n${i}`));
});

test('a revocation goes out at once, with the additions that waited', () => {
  const { broadcast, summary, clock } = setup();
  broadcast.change(added('a'));
  clock.advance(10);
  broadcast.change(added('b'));
  broadcast.change(removed('x'));
  assert.deepEqual(summary(), ['+a -', '+b -x']);
  clock.advance(500);
  assert.equal(summary().length, 2, 'nothing left to send');
});

test('a token added and revoked in one window reaches no gateway as valid', () => {
  const { broadcast, summary, clock } = setup();
  broadcast.change(added('a'));
  broadcast.change(added('b'));
  broadcast.change(removed('b'));
  clock.advance(500);
  assert.deepEqual(summary(), ['+a -', '+ -b']);
});

test('stop drops what waits', () => {
  const { broadcast, summary, clock } = setup();
  broadcast.change(added('a'));
  broadcast.change(added('b'));
  broadcast.stop();
  clock.advance(500);
  assert.deepEqual(summary(), ['+a -']);
});

test('the window grows with the sessions a message goes to, from 50 ms to a second', () => {
  assert.equal(broadcastWindowMs(1), 50);
  assert.equal(broadcastWindowMs(1_000), 200);
  assert.equal(broadcastWindowMs(5_000), 1_000);
  assert.equal(broadcastWindowMs(50_000), 1_000);
});
