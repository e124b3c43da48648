// `mlfleetctl tokens …` as users run it, and the bearer token every command sends: the
// secret is printed once by `tokens create`, never by `tokens ls`; the token from --token or
// $HOME/.config/mlfleet/token reaches the coordinator as `authorization: Bearer <token>`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TokenRecord } from '../helpers/fake-coordinator.js';
import { coordinator, homeWithToken, mlfleetctl } from '../helpers/mlfleetctl.js';

const DAY = 86_400_000;
const created = Date.parse('2024-05-01T12:00:00.000Z');

function token(id: string, overrides: Partial<TokenRecord> = {}): TokenRecord {
  return {
    id,
    tenant: 'acme',
    role: 'developer',
    node: '',
    description: 'ci pipeline',
    createdAtMs: created,
    createdBy: 'tok-admin',
    revokedAtMs: 0,
    expiresAtMs: 0,
    singleUse: false,
    usedAtMs: 0,
    usedBy: '',
    ...overrides,
  };
}

function inventory(): TokenRecord[] {
  return [
    token('tok-dev'),
    token('tok-old', { revokedAtMs: created + DAY, description: 'leaked' }),
    token('tok-node', { tenant: '', role: 'node', node: 'gpu-1', description: '', createdBy: 'tok-join', expiresAtMs: created + 30 * DAY }),
    token('tok-beta', { tenant: 'beta', role: 'consumer' }),
  ];
}

test('tokens create -o json prints the id and the secret, with tenant, role and expiry', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const before = Date.now();
  const run = await mlfleetctl(t, [
    '--coordinator', leader.address, 'tokens', 'create', '--tenant', 'acme', '--role', 'developer', '--description', 'ci', '--ttl', '30d', '-o', 'json',
  ]);

  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stderr, '');
  assert.deepEqual(leader.callsTo('CreateToken')[0]?.request, { tenant: 'acme', role: 'developer', description: 'ci', ttlMs: 30 * DAY, singleUse: false });
  const out = JSON.parse(run.stdout) as Record<string, string>;
  assert.deepEqual(Object.keys(out).sort(), ['expiresAt', 'id', 'role', 'tenant', 'token']);
  assert.equal(out.id, 'tok-1');
  assert.equal(out.token, leader.secrets.get('tok-1'));
  assert.equal(out.tenant, 'acme');
  assert.equal(out.role, 'developer');
  const expires = Date.parse(out.expiresAt!);
  assert.ok(expires >= before + 30 * DAY && expires <= Date.now() + 30 * DAY, out.expiresAt);
});

test('tokens create prints the secret in the table and warns once on stderr that it will not be shown again', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'tokens', 'create', '--tenant', 'acme', '--role', 'admin']);

  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^ID:\s+tok-1$/m);
  assert.match(run.stdout, /^Tenant:\s+acme$/m);
  assert.match(run.stdout, /^Role:\s+admin$/m);
  assert.match(run.stdout, /^Expires:\s+never$/m);
  assert.match(run.stdout, /^Token:\s+mlf_secret_1$/m);
  assert.equal(run.stderr.split('\n').filter((line) => line.length > 0).length, 1);
  assert.match(run.stderr, /^mlfleetctl: the token is shown only this once/);
  assert.deepEqual(leader.callsTo('CreateToken')[0]?.request, { tenant: 'acme', role: 'admin', description: '', ttlMs: 0, singleUse: false });
});

test('a join token is created without a tenant', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'tokens', 'create', '--role', 'join', '--ttl', '12h', '-o', 'json']);

  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(leader.callsTo('CreateToken')[0]?.request, { tenant: '', role: 'join', description: '', ttlMs: 12 * 3_600_000, singleUse: false });
  assert.equal((JSON.parse(run.stdout) as { tenant: string }).tenant, '');
});

test('a join token expires after 24h unless --ttl says otherwise; --single-use makes the first join use it up', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const plain = await mlfleetctl(t, ['--coordinator', leader.address, 'tokens', 'create', '--role', 'join', '-o', 'json']);
  const once = await mlfleetctl(t, ['--coordinator', leader.address, 'tokens', 'create', '--role', 'join', '--single-use', '--ttl', '1h', '-o', 'json']);
  const admin = await mlfleetctl(t, ['--coordinator', leader.address, 'tokens', 'create', '--role', 'admin', '--tenant', 'acme', '-o', 'json']);

  for (const run of [plain, once, admin]) assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(leader.callsTo('CreateToken').map((c) => c.request), [
    { tenant: '', role: 'join', description: '', ttlMs: DAY, singleUse: false },
    { tenant: '', role: 'join', description: '', ttlMs: 3_600_000, singleUse: true },
    { tenant: 'acme', role: 'admin', description: '', ttlMs: 0, singleUse: false },
  ]);
  assert.notEqual((JSON.parse(plain.stdout) as { expiresAt: string | null }).expiresAt, null);
  assert.equal((JSON.parse(admin.stdout) as { expiresAt: string | null }).expiresAt, null);
});

test('tokens ls shows a single-use join token as single-use until a node uses it, then the node that did', async (t) => {
  const leader = await coordinator(t, {
    role: 'leader',
    tokens: [
      token('tok-once', { tenant: '', role: 'join', description: 'rack 4', singleUse: true }),
      token('tok-used', { tenant: '', role: 'join', description: 'rack 5', singleUse: true, usedAtMs: created + DAY, usedBy: 'gpu-7' }),
    ],
  });
  const table = await mlfleetctl(t, ['--coordinator', leader.address, 'tokens', 'ls']);
  const json = await mlfleetctl(t, ['--coordinator', leader.address, 'tokens', 'ls', '-o', 'json']);

  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  assert.match(lines[1]!, /^tok-once\s+-\s+join\s+-\s+single-use\s+.+ ago\s+never\s+rack 4$/);
  assert.match(lines[2]!, /^tok-used\s+-\s+join\s+-\s+used\(gpu-7\)\s+.+ ago\s+never\s+rack 5$/);
  const list = JSON.parse(json.stdout) as Array<{ id: string; singleUse: boolean; usedAt: string | null; usedBy: string }>;
  assert.deepEqual(list.map((x) => [x.id, x.singleUse, x.usedAt, x.usedBy]), [
    ['tok-once', true, null, ''],
    ['tok-used', true, '2024-05-02T12:00:00.000Z', 'gpu-7'],
  ]);
});

test('tokens ls -o json prints the stable fields and never a secret', async (t) => {
  const leader = await coordinator(t, { role: 'leader', tokens: inventory() });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'tokens', 'ls', '-o', 'json']);

  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(leader.callsTo('ListTokens')[0]?.request, { tenant: '', includeRevoked: false });
  const list = JSON.parse(run.stdout) as Record<string, unknown>[];
  assert.deepEqual(
    list.map((t) => t.id),
    ['tok-dev', 'tok-node', 'tok-beta'],
  );
  assert.deepEqual(list[0], {
    id: 'tok-dev',
    tenant: 'acme',
    role: 'developer',
    node: '',
    description: 'ci pipeline',
    createdAt: '2024-05-01T12:00:00.000Z',
    createdBy: 'tok-admin',
    revokedAt: null,
    expiresAt: null,
    singleUse: false,
    usedAt: null,
    usedBy: '',
  });
  assert.deepEqual(list[1], {
    id: 'tok-node',
    tenant: '',
    role: 'node',
    node: 'gpu-1',
    description: '',
    createdAt: '2024-05-01T12:00:00.000Z',
    createdBy: 'tok-join',
    revokedAt: null,
    expiresAt: '2024-05-31T12:00:00.000Z',
    singleUse: false,
    usedAt: null,
    usedBy: '',
  });
  assert.ok(list.every((t) => !('token' in t)));
});

test('tokens ls passes --tenant and --all, and the table shows each token\'s state', async (t) => {
  const leader = await coordinator(t, { role: 'leader', tokens: inventory() });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'tokens', 'ls', '--tenant', 'acme', '--all']);

  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(leader.callsTo('ListTokens')[0]?.request, { tenant: 'acme', includeRevoked: true });
  const lines = run.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /^ID\s+TENANT\s+ROLE\s+NODE\s+STATE\s+CREATED\s+EXPIRES\s+DESCRIPTION$/);
  assert.match(lines[1]!, /^tok-dev\s+acme\s+developer\s+-\s+active\s+.+ ago\s+never\s+ci pipeline$/);
  assert.match(lines[2]!, /^tok-old\s+acme\s+developer\s+-\s+revoked\s+.+ ago\s+never\s+leaked$/);
  assert.equal(lines[1]!.indexOf('active'), lines[0]!.indexOf('STATE'));
});

test('tokens revoke sends the id and shows the token as revoked', async (t) => {
  const leader = await coordinator(t, { role: 'leader', tokens: inventory() });
  const table = await mlfleetctl(t, ['--coordinator', leader.address, 'tokens', 'revoke', 'tok-dev']);
  const json = await mlfleetctl(t, ['--coordinator', leader.address, 'tokens', 'revoke', 'tok-beta', '-o', 'json']);
  const missing = await mlfleetctl(t, ['--coordinator', leader.address, 'tokens', 'revoke', 'tok-nope']);

  assert.equal(table.code, 0, table.stderr);
  assert.equal(table.stdout, 'token tok-dev revoked\n');
  assert.deepEqual(leader.callsTo('RevokeToken')[0]?.request, { id: 'tok-dev' });
  assert.equal(json.code, 0, json.stderr);
  const revoked = JSON.parse(json.stdout) as { id: string; revokedAt: string | null };
  assert.equal(revoked.id, 'tok-beta');
  assert.match(revoked.revokedAt ?? '', /^\d{4}-\d\d-\d\dT/);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^mlfleetctl: token "tok-nope" not found/);
});

test('bad tokens usage exits 2 before any call', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const cases: [string[], RegExp][] = [
    [['tokens', 'create', '--tenant', 'acme'], /required option '--role <role>' not specified/],
    [['tokens', 'create', '--tenant', 'acme', '--role', 'root'], /Allowed choices are admin, developer, consumer, join/],
    [['tokens', 'create', '--role', 'consumer'], /a consumer token acts for a tenant; pass --tenant NAME/],
    [['tokens', 'create', '--role', 'join', '--tenant', 'acme'], /a join token belongs to no tenant/],
    [['tokens', 'create', '--tenant', 'acme', '--role', 'admin', '--ttl', '3w'], /--ttl "3w" is not a duration/],
    [['tokens', 'create', '--tenant', 'acme', '--role', 'admin', '--ttl', '0'], /--ttl must be more than 0/],
    [['tokens', 'revoke'], /missing required argument 'id'/],
    [['tokens', 'create', '--tenant', 'acme', '--role', 'developer', '--single-use'], /--single-use is for join tokens only/],
  ];
  for (const [args, message] of cases) {
    const run = await mlfleetctl(t, ['--coordinator', leader.address, ...args]);
    assert.equal(run.code, 2, `mlfleetctl ${args.join(' ')} → ${run.code}: ${run.stderr}`);
    assert.match(run.stderr, /^mlfleetctl: /, args.join(' '));
    assert.match(run.stderr, message, args.join(' '));
  }
  assert.deepEqual(leader.calls, []);
});

test('the token from --token reaches the coordinator as a bearer token', async (t) => {
  const leader = await coordinator(t, { role: 'leader', token: 's3cret', tokens: inventory() });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, '--token', 's3cret', 'tokens', 'ls', '-o', 'json']);

  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(
    leader.calls.map((c) => [c.method, c.authorization]),
    [['ListTokens', 'Bearer s3cret']],
  );
});

test('the token in $HOME/.config/mlfleet/token reaches the coordinator when no flag or env gives one', async (t) => {
  const leader = await coordinator(t, { role: 'leader', token: 'from-file', tenants: [] });
  const home = await homeWithToken(t, 'from-file');
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'tenants', 'ls', '-o', 'json'], { HOME: home });

  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(
    leader.calls.map((c) => [c.method, c.authorization]),
    [['ListTenants', 'Bearer from-file']],
  );

  // --token wins over the file; without either the call is refused.
  const flag = await mlfleetctl(t, ['--coordinator', leader.address, '--token', 'other', 'events', '--audit'], { HOME: home });
  assert.equal(flag.code, 1);
  assert.match(flag.stderr, /^mlfleetctl: a valid token is required/);
  assert.equal(leader.calls.at(-1)?.authorization, 'Bearer other');
  const none = await mlfleetctl(t, ['--coordinator', leader.address, 'tokens', 'ls']);
  assert.equal(none.code, 1);
  assert.equal(leader.calls.at(-1)?.authorization, undefined);
});
