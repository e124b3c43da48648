// The gateway's decisions as pure functions: who may reach which model (access.ts), which
// tokens it accepts (token-book.ts) and what the leader sends it of the tokens
// (coordinator/auth/gateway-tokens.ts). No server, a fake clock.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AccessError, checkMayInfer, routeFor, selectable, type Sender } from '../../agent/gateway/access.js';
import { TokenBook } from '../../agent/gateway/token-book.js';
import { gatewayToken, tokenChange, tokenTablePieces } from '../../coordinator/auth/gateway-tokens.js';
import type { TokenRecord } from '../../coordinator/auth/token-registry.js';
import type { Role } from '../../shared/auth.js';
import { modelRoute, type ModelRoute } from '../helpers/routes.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { mintGatewayToken } from '../helpers/gateway-tokens.js';

function route(tenant: string, model: string, endpoints: Array<{ id: string; public?: boolean }>): ModelRoute {
  return modelRoute(tenant, model, endpoints.map((e) => ({ ...e, node: 'n', address: '127.0.0.1:1' })));
}

const as = (role: Role, tenant: string): Sender => ({ anonymous: false, caller: { tokenId: 't', role, tenant, node: '' } });
const anonymous: Sender = { anonymous: true };

function status(fn: () => unknown): number | 'ok' {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (err instanceof AccessError) return err.status;
    throw err;
  }
}

const routes = [
  route('ta', 'linear', [{ id: 'ta-1' }]),
  route('tb', 'linear', [{ id: 'tb-1' }]),
  route('tb', 'open', [{ id: 'tb-open', public: true }, { id: 'tb-closed' }]),
  route('tc', 'open', [{ id: 'tc-open', public: true }]),
  route('ta', 'secret', [{ id: 'ta-secret' }]),
];

test('each tenant reaches its own model of a shared name with no header; no one reaches another tenant\'s private model', () => {
  assert.equal(routeFor(routes, as('consumer', 'ta'), 'linear', undefined).endpoints[0]!.allocation, 'ta-1');
  assert.equal(routeFor(routes, as('developer', 'tb'), 'linear', undefined).endpoints[0]!.allocation, 'tb-1');
  assert.equal(status(() => routeFor(routes, as('consumer', 'tb'), 'secret', undefined)), 404);
  assert.equal(status(() => routeFor(routes, as('consumer', 'tb'), 'secret', 'ta')), 404, 'naming the tenant does not help');
  assert.equal(status(() => routeFor(routes, as('consumer', 'tb'), 'missing', undefined)), 404);
  const hidden = (() => { try { routeFor(routes, as('consumer', 'tb'), 'secret', undefined); } catch (err) { return (err as Error).message; } })();
  const missing = (() => { try { routeFor(routes, as('consumer', 'tb'), 'absent', undefined); } catch (err) { return (err as Error).message; } })();
  assert.equal(hidden, missing!.replace('absent', 'secret'), 'the same words as a missing model');
});

test('an admin sees its own tenant, or the one it names', () => {
  assert.equal(routeFor(routes, as('admin', 'ta'), 'linear', undefined).tenant, 'ta');
  assert.equal(routeFor(routes, as('admin', 'ta'), 'linear', 'tb').tenant, 'tb');
  assert.equal(routeFor(routes, as('admin', 'ta'), 'secret', 'ta').tenant, 'ta');
  assert.equal(status(() => routeFor(routes, as('admin', 'ta'), 'secret', 'tb')), 404);
});

test('public replicas are open to anyone; the private replicas of the same model stay the tenant\'s', () => {
  const seen = routeFor(routes, anonymous, 'open', 'tb');
  assert.deepEqual(seen.endpoints.map((e) => e.allocation), ['tb-open']);
  assert.deepEqual(routeFor(routes, as('consumer', 'tb'), 'open', undefined).endpoints.map((e) => e.allocation), ['tb-open', 'tb-closed']);
  assert.deepEqual(routeFor(routes, as('consumer', 'ta'), 'open', 'tc').endpoints.map((e) => e.allocation), ['tc-open']);
  // Two tenants serve "open" publicly: a caller of neither must say which.
  assert.equal(status(() => routeFor(routes, anonymous, 'open', undefined)), 400);
  assert.equal(status(() => routeFor(routes, as('consumer', 'ta'), 'open', undefined)), 400);
  assert.equal(status(() => routeFor(routes, anonymous, 'secret', undefined)), 401, 'anonymous: only public models, else authenticate');
});

test('only admin, developer and consumer tokens infer; selection stays in the caller\'s tenant', () => {
  for (const role of ['admin', 'developer', 'consumer'] as const) assert.equal(status(() => checkMayInfer(as(role, 'ta'))), 'ok');
  assert.equal(status(() => checkMayInfer(as('node', ''))), 403);
  assert.equal(status(() => checkMayInfer(as('join', ''))), 403);
  assert.deepEqual(selectable(routes, as('consumer', 'ta'), undefined).map((r) => `${r.tenant}/${r.model}`), ['ta/linear', 'ta/secret']);
  assert.deepEqual(selectable(routes, as('consumer', 'ta'), 'tb').map((r) => r.tenant), ['ta', 'ta'], 'a consumer naming another tenant still selects in its own');
  assert.deepEqual(selectable(routes, as('admin', 'ta'), 'tb').map((r) => r.tenant), ['tb', 'tb']);
});

test('the token book accepts what the table holds until it expires or is removed, and nothing before a whole table', () => {
  const clock = new FakeClock(1_000_000);
  const book = new TokenBook(clock);
  const consumer = mintGatewayToken('consumer', 'ta', { expiresAtMs: 1_060_000 });
  const admin = mintGatewayToken('admin', 'ta');
  assert.equal(book.verify(`Bearer ${admin.token}`).ok, false, 'no table yet');
  book.apply({ reset: true, complete: false, tokens: [admin.entry], removed: [] });
  assert.equal(book.verify(`Bearer ${admin.token}`).ok, false, 'half a table is not taken in');
  book.apply({ reset: false, complete: true, tokens: [consumer.entry], removed: [] });
  const verdict = book.verify(`bearer ${consumer.token}`);
  assert.ok(verdict.ok);
  assert.deepEqual(verdict.caller, { tokenId: consumer.entry.id, role: 'consumer', tenant: 'ta', node: '' });
  assert.ok(book.verify(`Bearer ${admin.token}`).ok);
  // A right id with a wrong secret, a malformed token, another scheme.
  const forged = `mlf_${admin.entry.id}_${'A'.repeat(43)}`;
  for (const header of [`Bearer ${forged}`, 'Bearer mlf_nope', `Basic ${admin.token}`, '']) assert.equal(book.verify(header).ok, false, header);
  clock.advance(60_000);
  assert.equal(book.verify(`Bearer ${consumer.token}`).ok, false, 'expired, though remembered');
  book.apply({ reset: false, complete: true, tokens: [], removed: [admin.entry.id] });
  assert.equal(book.verify(`Bearer ${admin.token}`).ok, false, 'revoked');
  // A new full table replaces the old one whole.
  const fresh = mintGatewayToken('developer', 'tb');
  book.apply({ reset: true, complete: true, tokens: [fresh.entry], removed: [] });
  assert.ok(book.verify(`Bearer ${fresh.token}`).ok);
  assert.equal(book.size, 1);
});

function record(id: string, role: Role, overrides: Partial<TokenRecord> = {}): TokenRecord {
  return { id, tenant: role === 'join' || role === 'node' ? '' : 'ta', role, node: role === 'node' ? 'n1' : '', description: '', createdAtMs: 0, createdBy: 'x', revokedAtMs: 0, expiresAtMs: 0, secretHash: 'ab'.repeat(32), ...overrides };
}

test('the leader sends gateways user tokens and node credentials, never join tokens, revoked or expired ones, in bounded pieces', () => {
  const now = 5_000;
  const records = [
    record('a', 'admin'),
    record('c', 'consumer', { expiresAtMs: 9_000 }),
    record('n', 'node'),
    record('j', 'join'),
    record('r', 'developer', { revokedAtMs: 1 }),
    record('e', 'consumer', { expiresAtMs: 4_000 }),
  ];
  const [whole, ...more] = tokenTablePieces(records, now);
  assert.equal(more.length, 0);
  assert.deepEqual(whole!.tokens.map((t) => t.id), ['a', 'c', 'n']);
  assert.ok(whole!.reset && whole!.complete);
  assert.equal(gatewayToken(records[1]!, now)!.secretSha256, 'ab'.repeat(32));
  const many = Array.from({ length: 5 }, (_, i) => record(`t${i}`, 'consumer'));
  const pieces = tokenTablePieces(many, now, 2);
  assert.deepEqual(pieces.map((p) => [p.reset, p.complete, p.tokens.length]), [[true, false, 2], [false, false, 2], [false, true, 1]]);
  assert.deepEqual(tokenTablePieces([], now), [{ reset: true, complete: true, tokens: [], removed: [] }], 'an empty table is still a table');
  assert.deepEqual(tokenChange(record('r', 'developer', { revokedAtMs: 1 }), now), { reset: false, complete: true, tokens: [], removed: ['r'] });
  assert.equal(tokenChange(record('j', 'join'), now), undefined);
  assert.deepEqual(tokenChange(record('a', 'admin'), now)!.tokens.map((t) => t.id), ['a']);
});

test('a deployment scaled to zero (holds, no endpoints) is its tenant\'s alone unless its route says public', () => {
  const asleep = { ...route('acme', 'sleepy', []), holds: true };
  assert.equal(routeFor([asleep], as('consumer', 'acme'), 'sleepy', undefined), asleep);
  assert.equal(status(() => routeFor([asleep], as('consumer', 'globex'), 'sleepy', undefined)), 404, 'another tenant: as for a missing model');
  assert.equal(status(() => routeFor([asleep], anonymous, 'sleepy', undefined)), 401);
  const open = { ...asleep, public: true };
  assert.equal(routeFor([open], as('consumer', 'globex'), 'sleepy', undefined), open);
  assert.equal(routeFor([open], anonymous, 'sleepy', undefined), open);
});
