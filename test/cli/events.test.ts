// `mlfleetctl events --audit` as users run it: newest first, the stable -o json fields, the
// filters in the request; and `events` without --audit is bad usage until the live stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import YAML from 'yaml';
import type { AuditEventRecord } from '../helpers/fake-coordinator.js';
import { coordinator, mlfleetctl } from '../helpers/mlfleetctl.js';

const start = Date.parse('2024-05-01T12:00:00.000Z');

function event(id: number, overrides: Partial<AuditEventRecord> = {}): AuditEventRecord {
  return {
    id,
    timeMs: start + id * 1000,
    tokenId: 'tok-admin',
    role: 'admin',
    tenant: 'ops',
    method: 'NodeService.CordonNode',
    target: 'node/gpu-1',
    result: 'OK',
    message: '',
    peer: '10.0.0.9:51234',
    ...overrides,
  };
}

function trail(): AuditEventRecord[] {
  return [
    event(1, { method: 'TenantService.CreateTenant', target: 'tenant/acme' }),
    event(2, { tokenId: 'tok-dev', role: 'developer', tenant: 'acme', method: 'TenantService.SetTenantQuota', target: 'tenant/acme', result: 'PERMISSION_DENIED', message: 'only admins change quotas' }),
    event(3),
  ];
}

test('events --audit -o json lists the stable fields, newest first', async (t) => {
  const leader = await coordinator(t, { role: 'leader', auditEvents: trail() });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'events', '--audit', '-o', 'json']);

  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(leader.callsTo('ListAuditEvents')[0]?.request, { tenant: '', limit: 100, beforeId: 0, pageToken: '' });
  const events = JSON.parse(run.stdout) as { id: number }[];
  assert.deepEqual(
    events.map((e) => e.id),
    [3, 2, 1],
  );
  assert.deepEqual(events[1], {
    id: 2,
    time: '2024-05-01T12:00:02.000Z',
    tokenId: 'tok-dev',
    role: 'developer',
    tenant: 'acme',
    method: 'TenantService.SetTenantQuota',
    target: 'tenant/acme',
    result: 'PERMISSION_DENIED',
    message: 'only admins change quotas',
    peer: '10.0.0.9:51234',
  });
});

test('events --audit passes --tenant and --limit to the coordinator', async (t) => {
  const leader = await coordinator(t, { role: 'leader', auditEvents: trail() });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'events', '--audit', '--tenant', 'ops', '--limit', '1', '-o', 'json']);

  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(leader.callsTo('ListAuditEvents')[0]?.request, { tenant: 'ops', limit: 1, beforeId: 0, pageToken: '' });
  assert.deepEqual(
    (JSON.parse(run.stdout) as { id: number }[]).map((e) => e.id),
    [3],
  );
});

test('events --audit follows the pages up to --limit, printing each entry once, in order, in the same -o json and -o yaml shapes', async (t) => {
  const many = Array.from({ length: 2500 }, (_, i) => event(i + 1, { target: `node/n-${i + 1}` }));
  const leader = await coordinator(t, { role: 'leader', auditEvents: many });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'events', '--audit', '--limit', '2100', '-o', 'json']);

  assert.equal(run.code, 0, run.stderr);
  const requests = leader.callsTo('ListAuditEvents').map((c) => c.request as { limit: number; pageToken: string });
  assert.deepEqual(requests.map((r) => [r.limit, r.pageToken]), [[1000, ''], [1000, '1501'], [100, '501']]);
  const expected = many.slice(400).reverse().map((e) => ({ ...e, time: new Date(e.timeMs).toISOString() })).map(({ timeMs: _, ...e }) => e);
  assert.equal(run.stdout, `${JSON.stringify(expected.map((e) => ({ id: e.id, time: e.time, tokenId: e.tokenId, role: e.role, tenant: e.tenant, method: e.method, target: e.target, result: e.result, message: e.message, peer: e.peer })), null, 2)}\n`);

  const yaml = await mlfleetctl(t, ['--coordinator', leader.address, 'events', '--audit', '--limit', '1500', '-o', 'yaml']);
  assert.equal(yaml.code, 0, yaml.stderr);
  const listed = YAML.parse(yaml.stdout) as { id: number }[];
  assert.deepEqual(listed.map((e) => e.id), many.slice(1000).reverse().map((e) => e.id));

  const empty = await coordinator(t, { role: 'leader', auditEvents: [] });
  const none = await mlfleetctl(t, ['--coordinator', empty.address, 'events', '--audit', '-o', 'json']);
  assert.equal(none.stdout, '[]\n');
});

test('the audit table shows who did what to what, and why it failed', async (t) => {
  const leader = await coordinator(t, { role: 'leader', auditEvents: trail() });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'events', '--audit']);

  assert.equal(run.code, 0, run.stderr);
  const lines = run.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 4);
  assert.match(lines[0]!, /^TIME\s+TENANT\s+TOKEN\s+ROLE\s+METHOD\s+TARGET\s+RESULT\s+MESSAGE$/);
  assert.match(lines[1]!, /^2024-05-01T12:00:03.000Z\s+ops\s+tok-admin\s+admin\s+NodeService\.CordonNode\s+node\/gpu-1\s+OK$/);
  assert.match(
    lines[2]!,
    /^2024-05-01T12:00:02.000Z\s+acme\s+tok-dev\s+developer\s+TenantService\.SetTenantQuota\s+tenant\/acme\s+PERMISSION_DENIED\s+only admins change quotas$/,
  );
  assert.equal(lines[2]!.indexOf('PERMISSION_DENIED'), lines[0]!.indexOf('RESULT'));
});

test('events without --audit, or with a bad --limit, is bad usage (exit 2)', async (t) => {
  const leader = await coordinator(t, { role: 'leader', auditEvents: trail() });
  const cases: [string[], RegExp][] = [
    [['events', '--limit', '5'], /--limit goes with --audit; the live stream takes --replay/],
    [['events', '--audit', '--no-follow'], /--no-follow goes with the live stream, not --audit/],
    [['events', '--audit', '--limit', '0'], /--limit must be more than 0/],
    [['events', '--audit', '--limit', '5000000'], /--limit must be at most 1000000/],
    [['events', '--audit', '--limit', 'many'], /--limit "many" is not a whole number/],
  ];
  for (const [args, message] of cases) {
    const run = await mlfleetctl(t, ['--coordinator', leader.address, ...args]);
    assert.equal(run.code, 2, `mlfleetctl ${args.join(' ')} → ${run.code}: ${run.stderr}`);
    assert.match(run.stderr, message, args.join(' '));
    assert.equal(run.stdout, '');
  }
  assert.deepEqual(leader.calls, []);
});
