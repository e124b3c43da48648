// The audit trail cannot be drowned: with a real coordinator (SQLite), a consumer's flood of
// refused calls leaves the admins' entries, entries that echo a huge input are stored cut to a
// bound, ListAuditEvents pages through everything exactly once, and a tenant sees only its own.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { CoordinatorClient } from '../../shared/client.js';
import type { AuditEvent } from '../../shared/proto.js';
import { SqliteStore } from '../../shared/store/sqlite-store.js';
import { startLeader } from '../helpers/coordinator.js';
import { eventually } from '../helpers/eventually.js';
import { mlfleetctl } from '../helpers/mlfleetctl.js';
import { tempDir } from '../helpers/processes.js';

const quota = { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, storageBytes: 0, maxDeployments: 0 };

async function setUp(t: TestContext, dataDir?: string) {
  // A flood of calls on two shared cores can starve a 1 s election lease: keep leading.
  const leader = await startLeader(t, { electionTtlMs: 15_000, ...(dataDir ? { dataDir } : {}) });
  const client = (token: string) => {
    const c = new CoordinatorClient([leader.coordinator.address], { token });
    t.after(() => c.close());
    return c;
  };
  const admin = client(leader.admin);
  await admin.createTenant({ name: 'alpha', description: '', quota });
  await admin.createTenant({ name: 'beta', description: '', quota });
  const token = async (role: string, tenant: string) => client((await admin.createToken({ tenant, role, description: `${role} of ${tenant}`, ttlMs: 0 })).token);
  return { leader, admin, token };
}

async function everything(client: CoordinatorClient, tenant = ''): Promise<AuditEvent[]> {
  const all: AuditEvent[] = [];
  for await (const page of client.auditEventPages({ tenant })) all.push(...page);
  return all;
}

/** The audit rows as stored, straight from the coordinator's SQLite file. */
function storedAudit(dir: string): { key: string; bytes: number }[] {
  const db = new Database(`${dir}/c.db`, { readonly: true });
  try {
    return db.prepare<[], { key: string; bytes: number }>("SELECT key, length(value) AS bytes FROM kv WHERE key >= '/mlfleet/audit/' AND key < '/mlfleet/audit0'").all();
  } finally {
    db.close();
  }
}

async function settled(what: string, count: () => Promise<number> | number): Promise<number> {
  let last = -1;
  return eventually(what, 60_000, async () => {
    const now = await count();
    const stable = now === last;
    last = now;
    if (stable) return now;
    await new Promise((resolve) => setTimeout(resolve, 300));
    return undefined;
  });
}

test("a consumer's 10,000 refused calls leave the admins' earlier entries readable", async (t) => {
  const { leader, admin, token } = await setUp(t);
  const consumer = await token('consumer', 'alpha');
  await admin.setTenantQuota({ name: 'beta', quota: { ...quota, gpus: 4 }, clear: [] });
  await settled('the admin entries stored', () => storedAudit(leader.dir).length);
  const before = (await everything(admin)).filter((e) => e.role === 'admin');
  assert.ok(before.length >= 4, `admin entries: ${before.map((e) => e.method).join(', ')}`);

  const flood = 10_300;
  for (let i = 0; i < flood; i += 200) {
    await Promise.all(
      Array.from({ length: Math.min(200, flood - i) }, (_, j) =>
        assert.rejects(consumer.createTenant({ name: `x${i + j}`, description: '', quota }), { code: 'PERMISSION_DENIED' }),
      ),
    );
  }
  const stored = await settled('the flood stored and trimmed', () => storedAudit(leader.dir).length);
  assert.ok(stored <= 10_000 + 200 + before.length, `the consumer's ring is trimmed to its own bound (${stored} stored)`);

  const run = await mlfleetctl(t, ['--coordinator', leader.coordinator.address, '--token', leader.admin, 'events', '--audit', '--limit', '20000', '-o', 'json']);
  assert.equal(run.code, 0, run.stderr);
  const listed = JSON.parse(run.stdout) as { id: number; role: string; method: string; tenant: string }[];
  assert.deepEqual(
    listed.filter((e) => e.role === 'admin').map((e) => e.id),
    before.map((e) => e.id),
    'every admin entry from before the flood is still listed',
  );
  const refused = listed.filter((e) => e.role === 'consumer');
  assert.ok(refused.length >= 10_000 && refused.length < flood, `the consumer keeps its newest entries (${refused.length})`);
  assert.ok(refused.every((e) => e.method === 'TenantService.CreateTenant' && e.tenant === 'alpha'));
});

test('refused calls that echo a 3.5 MB field are stored cut to a bound, and the trail still lists', async (t) => {
  const { leader, admin } = await setUp(t);
  const huge = 'x'.repeat(3_500_000);
  for (let i = 0; i < 10; i++) {
    const err = await admin.applyDeployment({ name: `web${i}`, model: huge, stack: 'onnx', replicas: 1 } as never).then(
      () => assert.fail('a 3.5 MB model name was accepted'),
      (e: Error & { code: string }) => e,
    );
    assert.equal(err.code, 'INVALID_ARGUMENT');
    assert.ok(Buffer.byteLength(err.message) < 2048, `the error quotes the input cut (${Buffer.byteLength(err.message)} bytes)`);
    assert.match(err.message, /bytes cut\]/);
  }
  await settled('the entries stored', () => storedAudit(leader.dir).length);
  const rows = storedAudit(leader.dir);
  assert.ok(rows.every((r) => r.bytes < 2048), `every stored entry is under 2 KiB (largest ${Math.max(...rows.map((r) => r.bytes))})`);

  const refused = (await everything(admin)).filter((e) => e.method === 'DeploymentService.ApplyDeployment');
  assert.equal(refused.length, 10);
  for (const e of refused) {
    assert.equal(e.result, 'INVALID_ARGUMENT');
    assert.ok(Buffer.byteLength(e.message) <= 1024, `message ${Buffer.byteLength(e.message)} bytes`);
    assert.match(e.message, /^invalid ApplyDeployment request: spec\.model: name "xxx+… \[\d+ bytes cut\]/);
  }
});

test('pages return every entry exactly once, newest first; a tenant sees only its own entries', async (t) => {
  const { admin, token } = await setUp(t);
  const alphaDev = await token('developer', 'alpha');
  const betaDev = await token('developer', 'beta');
  const alphaConsumer = await token('consumer', 'alpha');
  const refuse = (client: CoordinatorClient, n: number) =>
    Promise.all(Array.from({ length: n }, (_, i) => assert.rejects(client.createTenant({ name: `y${i}`, description: '', quota }), { code: 'PERMISSION_DENIED' })));
  await refuse(alphaDev, 40);
  await refuse(betaDev, 40);
  await refuse(alphaConsumer, 40);
  await admin.setTenantQuota({ name: 'alpha', quota: { ...quota, gpus: 4 }, clear: [] });
  const whole = await settled('the entries stored', async () => (await admin.listAuditEvents({ limit: 1000 })).events.length);
  const all = (await admin.listAuditEvents({ limit: 1000 })).events;
  assert.equal(all.length, whole);
  assert.ok(all.length >= 125);

  const paged: AuditEvent[] = [];
  let pageToken = '';
  let pages = 0;
  do {
    const page = await admin.listAuditEvents({ limit: 7, pageToken });
    assert.ok(page.events.length <= 7);
    paged.push(...page.events);
    pageToken = page.nextPageToken;
    pages++;
  } while (pageToken);
  assert.ok(pages >= 18, `${pages} pages`);
  assert.deepEqual(paged.map((e) => e.id), all.map((e) => e.id), 'every entry once, in the same order as one big page');
  assert.equal(new Set(paged.map((e) => e.id)).size, paged.length);
  for (let i = 1; i < paged.length; i++) assert.ok(paged[i - 1]!.timeMs >= paged[i]!.timeMs, 'newest first');

  const alphaSees = await everything(alphaDev);
  assert.deepEqual(alphaSees.map((e) => e.id), all.filter((e) => e.tenant === 'alpha').map((e) => e.id), "alpha's developer sees alpha's entries, all of them");
  assert.ok(alphaSees.some((e) => e.role === 'consumer') && !alphaSees.some((e) => e.tenant !== 'alpha'));
  const betaSees = await everything(betaDev);
  assert.equal(betaSees.length, 40);
  assert.ok(betaSees.every((e) => e.tenant === 'beta'));
  await assert.rejects(alphaDev.listAuditEvents({ tenant: 'beta', limit: 10 }), { code: 'NOT_FOUND' });
  await assert.rejects(admin.listAuditEvents({ pageToken: 'not-a-token' }), { code: 'INVALID_ARGUMENT', message: /pageToken: must be the nextPageToken of an earlier page/ });
});

test('entries stored before rings are listed, cut to the bounds, and moved into their rings', async (t) => {
  const dir = tempDir(t);
  const store = await SqliteStore.create(`${dir}/c.db`);
  const old = (timeMs: number, tenant: string, role: string, message: string) =>
    JSON.stringify({ tokenId: 'abcdef0123456789', role, tenant, method: 'TenantService.CreateTenant', target: 'tenant/z', result: 'PERMISSION_DENIED', message, peer: 'ipv4:127.0.0.1:1', timeMs });
  await store.put('/mlfleet/audit/001700000000000-0000000a', old(1_700_000_000_000, 'default', 'admin', 'old admin entry'));
  await store.put('/mlfleet/audit/001700000000001-0000000b', old(1_700_000_000_001, 'alpha', 'consumer', 'y'.repeat(3_500_000)));
  await store.close();

  const { leader, admin } = await setUp(t, dir);
  const listed = (await everything(admin)).filter((e) => e.timeMs < 1_700_000_001_000);
  assert.deepEqual(listed.map((e) => [e.timeMs, e.role, e.tenant]), [
    [1_700_000_000_001, 'consumer', 'alpha'],
    [1_700_000_000_000, 'admin', 'default'],
  ]);
  assert.ok(Buffer.byteLength(listed[0]!.message) <= 1024);
  await eventually('the old keys moved', 10_000, async () => (storedAudit(leader.dir).some((r) => /^\/mlfleet\/audit\/\d/.test(r.key)) ? undefined : true));
  assert.ok(storedAudit(leader.dir).every((r) => r.bytes < 2048));
  const after = (await everything(admin)).filter((e) => e.timeMs < 1_700_000_001_000);
  assert.deepEqual(after.map((e) => [e.timeMs, e.role, e.tenant, e.message.length <= 1024]), [
    [1_700_000_000_001, 'consumer', 'alpha', true],
    [1_700_000_000_000, 'admin', 'default', true],
  ]);
});
