// The admission decision alone: each caller's share of open calls, by kind, released however
// the call ends; agents counted per node; uploads also per tenant; refusals carry a hint.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Admission, DEFAULT_ADMISSION_LIMITS, type AdmissionLimits, type Caller } from '../../coordinator/api/admission.js';

const limits: AdmissionLimits = {
  perRole: {
    admin: { unary: 4, streams: 4 },
    developer: { unary: 3, streams: 3 },
    consumer: { unary: 2, streams: 2 },
    node: { unary: 2, streams: 2 },
    join: { unary: 1, streams: 1 },
  },
  uploadsPerTenant: 3,
  retryAfterMs: 250,
};

const consumer: Caller = { tokenId: 'c1', role: 'consumer', tenant: 'acme', node: '' };

function admitted(verdict: ReturnType<Admission['admit']>): () => void {
  assert.equal(verdict.ok, true, verdict.ok ? '' : verdict.reason);
  return (verdict as { release: () => void }).release;
}

test('a caller gets its role’s number of streams; the next is refused with a retry hint; a release makes room', () => {
  const admission = new Admission(limits);
  const first = admitted(admission.admit(consumer, 'stream'));
  admitted(admission.admit(consumer, 'stream'));
  const refused = admission.admit(consumer, 'stream');
  assert.equal(refused.ok, false);
  if (refused.ok) return;
  assert.equal(refused.retryAfterMs, 250);
  assert.match(refused.reason, /token c1 already has 2 streams open, the most a consumer may; retry after 250 ms/);
  first();
  first(); // a second release of the same call changes nothing
  admitted(admission.admit(consumer, 'stream'));
  assert.equal(admission.admit(consumer, 'stream').ok, false, 'the double release did not free a second place');
});

test('streams and unary calls are separate shares, and one caller’s share is not another’s', () => {
  const admission = new Admission(limits);
  admitted(admission.admit(consumer, 'stream'));
  admitted(admission.admit(consumer, 'stream'));
  admitted(admission.admit(consumer, 'unary'));
  admitted(admission.admit(consumer, 'unary'));
  assert.equal(admission.admit(consumer, 'unary').ok, false);
  // Same tenant and role, another token; and an admin.
  admitted(admission.admit({ ...consumer, tokenId: 'c2' }, 'stream'));
  admitted(admission.admit({ tokenId: 'a1', role: 'admin', tenant: 'acme', node: '' }, 'stream'));
  assert.equal(admission.inFlight(), 6);
});

test('a node’s share is its node’s, whichever credential it uses', () => {
  const admission = new Admission(limits);
  admitted(admission.admit({ tokenId: 'n1', role: 'node', tenant: '', node: 'gpu-1' }, 'stream'));
  admitted(admission.admit({ tokenId: 'n2', role: 'node', tenant: '', node: 'gpu-1' }, 'stream'));
  const refused = admission.admit({ tokenId: 'n3', role: 'node', tenant: '', node: 'gpu-1' }, 'stream');
  assert.equal(refused.ok, false);
  assert.match(refused.ok ? '' : refused.reason, /node gpu-1 already has 2 streams open/);
  admitted(admission.admit({ tokenId: 'n4', role: 'node', tenant: '', node: 'gpu-2' }, 'stream'));
});

test('uploads are bounded per tenant across tokens, count as streams of their caller, and release both', () => {
  const admission = new Admission(limits);
  const dev = (tokenId: string): Caller => ({ tokenId, role: 'developer', tenant: 'acme', node: '' });
  const a = admitted(admission.admit(dev('d1'), 'upload'));
  admitted(admission.admit(dev('d2'), 'upload'));
  admitted(admission.admit(dev('d3'), 'upload'));
  const refused = admission.admit(dev('d4'), 'upload');
  assert.equal(refused.ok, false);
  assert.match(refused.ok ? '' : refused.reason, /tenant acme already has 3 uploads in flight, the most a tenant may; retry after 250 ms/);
  // A refused upload took nothing: d4 still has all its streams.
  for (let i = 0; i < 3; i++) admitted(admission.admit(dev('d4'), 'stream'));
  admitted(admission.admit({ ...dev('o1'), tenant: 'other' }, 'upload'));
  a();
  admitted(admission.admit(dev('d5'), 'upload'));
  // d1's upload counted as one of its streams, and went with it.
  for (let i = 0; i < 3; i++) admitted(admission.admit(dev('d1'), 'stream'));
});

test('the default limits leave agents and admins room and bound every role', () => {
  for (const [role, share] of Object.entries(DEFAULT_ADMISSION_LIMITS.perRole)) {
    assert.ok(share.unary > 0 && share.unary <= 128 && share.streams > 0 && share.streams <= 128, role);
  }
  assert.ok(DEFAULT_ADMISSION_LIMITS.perRole.node.streams >= 4, 'a node: its session and a few downloads');
  assert.ok(DEFAULT_ADMISSION_LIMITS.retryAfterMs > 0);
});
