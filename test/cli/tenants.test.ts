// `mlfleetctl tenants …` as users run it: quota flags in human units arrive in base units,
// -o json has the stable fields, the table reads "used / limit", bad values are usage errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TenantRecord } from '../helpers/fake-coordinator.js';
import { coordinator, mlfleetctl } from '../helpers/mlfleetctl.js';

const GiB = 2 ** 30;
const TiB = 2 ** 40;
const created = Date.parse('2024-05-01T12:00:00.000Z');

function acme(): TenantRecord {
  return {
    name: 'acme',
    description: 'the vision team',
    quota: { cpuMillis: 64_000, memoryBytes: 512 * GiB, gpus: 8, gpuMemoryBytes: 640 * GiB, storageBytes: 0, maxDeployments: 20 },
    usage: { cpuMillis: 4_500, memoryBytes: 16 * GiB, gpus: 1, gpuMemoryBytes: 80 * GiB, storageBytes: 3 * GiB, deployments: 2 },
    createdAtMs: created,
  };
}

function unlimited(name: string): TenantRecord {
  return { name, description: '', quota: null, usage: null, createdAtMs: created };
}

test('tenants create sends every quota flag in base units', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const run = await mlfleetctl(t, [
    '--coordinator', leader.address, 'tenants', 'create', 'acme', '--description', 'the vision team',
    '--cpu', '500m', '--memory', '512Gi', '--gpus', '8', '--gpu-memory', '640Gi', '--storage', '2Ti', '--max-deployments', '20',
    '-o', 'json',
  ]);

  assert.equal(run.code, 0, run.stderr);
  const quota = { cpuMillis: 500, memoryBytes: 549_755_813_888, gpus: 8, gpuMemoryBytes: 640 * GiB, storageBytes: 2 * TiB, maxDeployments: 20 };
  assert.deepEqual(leader.callsTo('CreateTenant')[0]?.request, { name: 'acme', description: 'the vision team', quota });
  const tenant = JSON.parse(run.stdout) as { createdAt: string };
  assert.match(tenant.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual(tenant, {
    name: 'acme',
    description: 'the vision team',
    quota,
    usage: { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, storageBytes: 0, deployments: 0 },
    createdAt: tenant.createdAt,
  });
});

test('tenants create without quota flags asks for no limits and says so in one line', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'tenants', 'create', 'beta', '--cpu', '64']);

  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'tenant beta created\n');
  assert.deepEqual(leader.callsTo('CreateTenant')[0]?.request, {
    name: 'beta',
    description: '',
    quota: { cpuMillis: 64_000, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, storageBytes: 0, maxDeployments: 0 },
  });
});

test('tenants show -o json prints the stable fields', async (t) => {
  const leader = await coordinator(t, { role: 'leader', tenants: [acme()] });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'tenants', 'show', 'acme', '-o', 'json']);

  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), {
    name: 'acme',
    description: 'the vision team',
    quota: { cpuMillis: 64_000, memoryBytes: 512 * GiB, gpus: 8, gpuMemoryBytes: 640 * GiB, storageBytes: 0, maxDeployments: 20 },
    usage: { cpuMillis: 4_500, memoryBytes: 16 * GiB, gpus: 1, gpuMemoryBytes: 80 * GiB, storageBytes: 3 * GiB, deployments: 2 },
    createdAt: '2024-05-01T12:00:00.000Z',
  });
  assert.deepEqual(leader.callsTo('GetTenant')[0]?.request, { name: 'acme' });
});

test('tenants show prints each resource as used / limit, 0 as unlimited', async (t) => {
  const leader = await coordinator(t, { role: 'leader', tenants: [acme()] });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'tenants', 'show', 'acme']);

  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^Name:\s+acme$/m);
  assert.match(run.stdout, /^Description:\s+the vision team$/m);
  assert.match(run.stdout, /^Created:\s+2024-05-01T12:00:00.000Z \(.+ ago\)$/m);
  assert.match(run.stdout, /^CPU:\s+4\.5 \/ 64$/m);
  assert.match(run.stdout, /^Memory:\s+16Gi \/ 512Gi$/m);
  assert.match(run.stdout, /^GPUs:\s+1 \/ 8$/m);
  assert.match(run.stdout, /^GPU memory:\s+80Gi \/ 640Gi$/m);
  assert.match(run.stdout, /^Storage:\s+3Gi \/ unlimited$/m);
  assert.match(run.stdout, /^Deployments:\s+2 \/ 20$/m);
});

test('tenants ls lists each tenant on one aligned row', async (t) => {
  const leader = await coordinator(t, { role: 'leader', tenants: [unlimited('zeta'), acme()] });
  const json = await mlfleetctl(t, ['--coordinator', leader.address, 'tenants', 'ls', '-o', 'json']);
  const table = await mlfleetctl(t, ['--coordinator', leader.address, 'tenants', 'ls']);

  assert.equal(json.code, 0, json.stderr);
  const list = JSON.parse(json.stdout) as { name: string; quota: { cpuMillis: number } }[];
  assert.deepEqual(
    list.map((tenant) => tenant.name),
    ['acme', 'zeta'],
  );
  assert.equal(list[1]!.quota.cpuMillis, 0);

  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /^NAME\s+CPU\s+MEMORY\s+GPUS\s+GPU MEMORY\s+STORAGE\s+DEPLOYMENTS\s+DESCRIPTION$/);
  assert.match(lines[1]!, /^acme\s+4\.5 \/ 64\s+16Gi \/ 512Gi\s+1 \/ 8\s+80Gi \/ 640Gi\s+3Gi \/ unlimited\s+2 \/ 20\s+the vision team$/);
  assert.match(lines[2]!, /^zeta\s+0 \/ unlimited\s+0 \/ unlimited\s+0 \/ unlimited\s+0 \/ unlimited\s+0 \/ unlimited\s+0 \/ unlimited$/);
  assert.equal(lines[1]!.indexOf('16Gi'), lines[0]!.indexOf('MEMORY'));
});

test('tenants set-quota sends the limits given and the ones to clear', async (t) => {
  const leader = await coordinator(t, { role: 'leader', tenants: [acme()] });
  const run = await mlfleetctl(t, [
    '--coordinator', leader.address, 'tenants', 'set-quota', 'acme', '--cpu', '96', '--storage', '2Ti', '--clear', 'memory,max-deployments',
  ]);

  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(leader.callsTo('SetTenantQuota')[0]?.request, {
    name: 'acme',
    quota: { cpuMillis: 96_000, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, storageBytes: 2 * TiB, maxDeployments: 0 },
    clear: ['memory', 'deployments'],
  });
  // The answer is the tenant as it is now.
  assert.match(run.stdout, /^CPU:\s+4\.5 \/ 96$/m);
  assert.match(run.stdout, /^Memory:\s+16Gi \/ unlimited$/m);
  assert.match(run.stdout, /^GPUs:\s+1 \/ 8$/m);
  assert.match(run.stdout, /^Storage:\s+3Gi \/ 2Ti$/m);
  assert.match(run.stdout, /^Deployments:\s+2 \/ unlimited$/m);
});

test('a bad quota value is bad usage (exit 2) and never reaches the coordinator', async (t) => {
  const leader = await coordinator(t, { role: 'leader', tenants: [acme()] });
  const cases: [string[], RegExp][] = [
    [['tenants', 'create', 'x', '--cpu', 'lots'], /--cpu "lots" is not a CPU amount/],
    [['tenants', 'create', 'x', '--memory', '12XB'], /--memory "12XB" is not a size/],
    [['tenants', 'create', 'x', '--gpus', '1.5'], /--gpus "1.5" is not a whole number/],
    [['tenants', 'create', 'x', '--gpu-memory', '-1Gi'], /--gpu-memory "-1Gi" is not a size/],
    [['tenants', 'create', 'x', '--storage', '100Pi'], /--storage "100Pi" is too large/],
    [['tenants', 'create', 'x', '--max-deployments', 'ten'], /--max-deployments "ten" is not a whole number/],
    [['tenants', 'set-quota', 'acme', '--cpu', '0'], /--cpu must be more than 0; .*--clear/],
    [['tenants', 'set-quota', 'acme', '--clear', 'disk'], /"disk" is not one of cpu, memory, gpus, gpu-memory, storage, deployments/],
    [['tenants', 'set-quota', 'acme', '--gpus', '4', '--clear', 'gpus'], /--gpus and --clear gpus contradict each other/],
    [['tenants', 'set-quota', 'acme'], /nothing to change/],
    [['tenants', 'create'], /missing required argument 'name'/],
    [['tenants', 'show'], /missing required argument 'name'/],
  ];
  for (const [args, message] of cases) {
    const run = await mlfleetctl(t, ['--coordinator', leader.address, ...args]);
    assert.equal(run.code, 2, `mlfleetctl ${args.join(' ')} → ${run.code}: ${run.stderr}`);
    assert.match(run.stderr, /^mlfleetctl: /, args.join(' '));
    assert.match(run.stderr, message, args.join(' '));
    assert.equal(run.stdout, '');
  }
  assert.deepEqual(leader.calls, []);
});

test('tenants show of an unknown tenant fails with the NOT_FOUND message and exit 1', async (t) => {
  const leader = await coordinator(t, { role: 'leader' });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'tenants', 'show', 'nope']);

  assert.equal(run.code, 1);
  assert.equal(run.stdout, '');
  assert.equal(run.stderr, 'mlfleetctl: tenant "nope" not found; list tenants with mlfleetctl tenants ls\n');
});

test('tenant calls follow a follower\'s redirect to the leader', async (t) => {
  const leader = await coordinator(t, { role: 'leader', tenants: [acme()] });
  const follower = await coordinator(t, { role: 'follower', leader: leader.address });
  const run = await mlfleetctl(t, ['--coordinator', follower.address, 'tenants', 'ls', '-o', 'json']);

  assert.equal(run.code, 0, run.stderr);
  assert.equal(follower.callsTo('ListTenants').length, 1);
  assert.equal(leader.callsTo('ListTenants').length, 1);
});
