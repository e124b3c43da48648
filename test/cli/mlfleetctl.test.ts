// mlfleetctl as users run it: the compiled binary in a child process, against fake
// coordinators on real ports. Checks the stable -o json fields, yaml and table output, and
// the exit codes (0 ok, 1 request failed, 2 bad usage).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import { sampleNode, silentServer } from '../helpers/fake-coordinator.js';
import { CLI, coordinator, mlfleetctl, tempHome as home } from '../helpers/mlfleetctl.js';


const heartbeat = Date.parse('2024-05-01T12:00:00.000Z');

function fleet() {
  return [
    sampleNode('gpu-1', {
      lastHeartbeatMs: heartbeat,
      labels: { zone: 'a', gpu: 'h100' },
      cache: [
        { digest: `sha256:${'1'.repeat(64)}`, sizeBytes: 3 * 2 ** 30, inUse: true },
        { digest: `sha256:${'2'.repeat(64)}`, sizeBytes: 512, inUse: false },
      ],
    }),
    sampleNode('cpu-1', {
      lastHeartbeatMs: 0,
      status: 'down',
      labels: {},
      capacity: { cpuMillis: 8_000, memoryBytes: 32 * 2 ** 30, gpus: [], nics: [], disks: [] },
      allocated: null,
    }),
  ];
}

test('nodes ls -o json prints the stable fields as an array', async (t) => {
  const leader = await coordinator(t, { role: 'leader', nodes: fleet() });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'nodes', 'ls', '-o', 'json']);

  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stderr, '');
  const nodes = JSON.parse(run.stdout) as unknown[];
  assert.ok(Array.isArray(nodes));
  assert.deepEqual(nodes[0], {
    name: 'gpu-1',
    status: 'ready',
    cordoned: false,
    address: '10.0.0.7:7780',
    labels: { gpu: 'h100', zone: 'a' },
    capacity: {
      cpuMillis: 32_000,
      memoryBytes: 256 * 2 ** 30,
      gpus: [
        { index: 0, uuid: 'GPU-0a1b2c3d', model: 'NVIDIA H100 80GB HBM3', memoryBytes: 80 * 2 ** 30 },
        { index: 1, uuid: 'GPU-4e5f6a7b', model: 'NVIDIA H100 80GB HBM3', memoryBytes: 80 * 2 ** 30 },
      ],
      nics: [{ name: 'eth0', speedMbps: 25_000 }],
    },
    allocated: { cpuMillis: 4_000, memoryBytes: 16 * 2 ** 30, gpus: 1, gpuMemoryBytes: 80 * 2 ** 30, nicMbps: 0 },
    lastHeartbeat: '2024-05-01T12:00:00.000Z',
    cacheEntries: 2,
    cacheBytes: 3 * 2 ** 30 + 512,
  });
  assert.deepEqual(nodes[1], {
    name: 'cpu-1',
    status: 'down',
    cordoned: false,
    address: '10.0.0.7:7780',
    labels: {},
    capacity: { cpuMillis: 8_000, memoryBytes: 32 * 2 ** 30, gpus: [], nics: [] },
    allocated: { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, nicMbps: 0 },
    lastHeartbeat: null,
    cacheEntries: 0,
    cacheBytes: 0,
  });
});

test('-o yaml prints the same object as -o json', async (t) => {
  const leader = await coordinator(t, { role: 'leader', nodes: fleet() });
  const env = { MLFLEET_COORDINATOR: leader.address };
  const json = await mlfleetctl(t, ['nodes', 'show', 'gpu-1', '-o', 'json'], env);
  const yaml = await mlfleetctl(t, ['-o', 'yaml', 'nodes', 'show', 'gpu-1'], env);

  assert.equal(yaml.code, 0, yaml.stderr);
  assert.deepEqual(YAML.parse(yaml.stdout), JSON.parse(json.stdout));
  assert.match(yaml.stdout, /^name: gpu-1$/m);
});

test('the table lists each node on one aligned row', async (t) => {
  const leader = await coordinator(t, { role: 'leader', nodes: fleet() });
  const run = await mlfleetctl(t, ['nodes', 'ls'], { MLFLEET_COORDINATOR: leader.address });

  assert.equal(run.code, 0, run.stderr);
  const lines = run.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /^NAME\s+STATUS\s+CORDONED\s+CPU\s+MEMORY\s+GPUS\s+ADDRESS\s+HEARTBEAT$/);
  assert.match(lines[1]!, /^gpu-1\s+ready\s+no\s+4\/32\s+16Gi\/256Gi\s+1\/2\s+10\.0\.0\.7:7780\s+.+ ago$/);
  assert.match(lines[2]!, /^cpu-1\s+down\s+no\s+0\/8\s+0\/32Gi\s+0\/0\s+10\.0\.0\.7:7780\s+never$/);
  assert.equal(lines[1]!.indexOf('ready'), lines[0]!.indexOf('STATUS'));
});

test('nodes ls passes --status and --selector to the coordinator', async (t) => {
  const leader = await coordinator(t, { role: 'leader', nodes: fleet() });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'nodes', 'ls', '--status', 'ready', '--selector', 'zone=a,gpu=h100', '-o', 'json']);

  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(
    (JSON.parse(run.stdout) as { name: string }[]).map((n) => n.name),
    ['gpu-1'],
  );
  assert.deepEqual(leader.callsTo('ListNodes')[0]?.request, { status: 'ready', selector: { zone: 'a', gpu: 'h100' }, limit: 0, after: '' });
});

test('nodes show prints a key: value block with GPUs and NICs', async (t) => {
  const leader = await coordinator(t, { role: 'leader', nodes: fleet() });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'nodes', 'show', 'gpu-1']);

  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^Name:\s+gpu-1$/m);
  assert.match(run.stdout, /^Labels:\s+gpu=h100,zone=a$/m);
  assert.match(run.stdout, /^Last heartbeat:\s+2024-05-01T12:00:00.000Z \(.+ ago\)$/m);
  assert.match(run.stdout, /^GPUs:\s+1 of 2 allocated$/m);
  assert.match(run.stdout, /^\s+1\s+GPU-4e5f6a7b\s+NVIDIA H100 80GB HBM3\s+80Gi$/m);
  assert.match(run.stdout, /^\s+eth0\s+25000 Mbps$/m);
});

test('nodes show lists what the node\'s cache holds, in the table and in -o json', async (t) => {
  const resnet = `sha256:${'a'.repeat(64)}`;
  const bert = `sha256:${'b'.repeat(64)}`;
  const nodes = [sampleNode('gpu-1', { cache: [{ digest: resnet, sizeBytes: 100 * 2 ** 20, inUse: false }, { digest: bert, sizeBytes: 2 * 2 ** 30, inUse: true }] }), sampleNode('cpu-1', { cache: [] })];
  const leader = await coordinator(t, { role: 'leader', nodes });

  const table = await mlfleetctl(t, ['--coordinator', leader.address, 'nodes', 'show', 'gpu-1']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^Cache:\s+2 blobs, 2\.1Gi$/m);
  assert.match(table.stdout, new RegExp(`^\\s+${resnet}\\s+100Mi\\s+no$`, 'm'));
  assert.match(table.stdout, new RegExp(`^\\s+${bert}\\s+2Gi\\s+yes$`, 'm'));

  const json = await mlfleetctl(t, ['--coordinator', leader.address, 'nodes', 'show', 'gpu-1', '-o', 'json']);
  assert.deepEqual(JSON.parse(json.stdout).cache, [
    { digest: resnet, sizeBytes: 100 * 2 ** 20, inUse: false },
    { digest: bert, sizeBytes: 2 * 2 ** 30, inUse: true },
  ]);

  const empty = await mlfleetctl(t, ['--coordinator', leader.address, 'nodes', 'show', 'cpu-1']);
  assert.match(empty.stdout, /^Cache:\s+<empty>$/m);
});

test('nodes show prints what the agent\'s deliveries moved (by source, to peers, corrupt pieces), and -o json has them as delivery', async (t) => {
  const delivery = { fromPeersBytes: 3 * 2 ** 30, fromCoordinatorBytes: 512 * 2 ** 20, fromS3Bytes: 0, toPeersBytes: 6 * 2 ** 30, corruptPieces: 2 };
  const nodes = [sampleNode('gpu-1', { delivery }), sampleNode('cpu-1')];
  const leader = await coordinator(t, { role: 'leader', nodes });

  const table = await mlfleetctl(t, ['--coordinator', leader.address, 'nodes', 'show', 'gpu-1']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^Received:\s+3Gi from peers, 512Mi from the coordinator, 0B? from S3$/m);
  assert.match(table.stdout, /^Sent to peers:\s+6Gi$/m);
  assert.match(table.stdout, /^Corrupt pieces:\s+2$/m);
  const json = await mlfleetctl(t, ['--coordinator', leader.address, 'nodes', 'show', 'gpu-1', '-o', 'json']);
  assert.deepEqual(JSON.parse(json.stdout).delivery, delivery);

  const silent = await mlfleetctl(t, ['--coordinator', leader.address, 'nodes', 'show', 'cpu-1', '-o', 'json']);
  assert.equal(JSON.parse(silent.stdout).delivery, null);
  assert.match((await mlfleetctl(t, ['--coordinator', leader.address, 'nodes', 'show', 'cpu-1'])).stdout, /^Received:\s+not reported yet$/m);
});

test('nodes show of an unknown node fails with the NOT_FOUND message and exit 1', async (t) => {
  const leader = await coordinator(t, { role: 'leader', nodes: fleet() });
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'nodes', 'show', 'nope']);

  assert.equal(run.code, 1);
  assert.equal(run.stdout, '');
  assert.equal(run.stderr, 'mlfleetctl: node "nope" not found; list nodes with mlfleetctl nodes ls\n');
});

test('an unreachable coordinator fails with exit 1 and one line naming it', async (t) => {
  const run = await mlfleetctl(t, ['--coordinator', '127.0.0.1:1', 'nodes', 'ls']);

  assert.equal(run.code, 1);
  assert.equal(run.stdout, '');
  assert.equal(run.stderr.split('\n').length, 2, `one line expected, got ${JSON.stringify(run.stderr)}`);
  assert.match(run.stderr, /^mlfleetctl: cannot reach coordinator at 127\.0\.0\.1:1 \(connection refused\)\n$/);
});

test('the CLI follows a follower to the leader', async (t) => {
  const leader = await coordinator(t, { role: 'leader', nodes: fleet() });
  const follower = await coordinator(t, { role: 'follower', leader: leader.address });
  const run = await mlfleetctl(t, ['--coordinator', follower.address, 'nodes', 'cordon', 'gpu-1']);

  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'node gpu-1 cordoned\n');
  assert.equal(leader.nodes.get('gpu-1')?.cordoned, true);
  assert.equal(follower.callsTo('CordonNode').length, 1);
});

test('cordon, uncordon and drain print the node with -o json', async (t) => {
  const leader = await coordinator(t, { role: 'leader', nodes: fleet() });
  const env = { MLFLEET_COORDINATOR: leader.address };

  const drained = JSON.parse((await mlfleetctl(t, ['nodes', 'drain', 'gpu-1', '-o', 'json'], env)).stdout) as Record<string, unknown>;
  assert.equal(drained.status, 'draining');
  assert.equal(drained.cordoned, true);

  const uncordoned = await mlfleetctl(t, ['nodes', 'uncordon', 'gpu-1', '-o', 'json'], env);
  assert.equal(uncordoned.code, 0, uncordoned.stderr);
  assert.equal((JSON.parse(uncordoned.stdout) as Record<string, unknown>).cordoned, false);
});

test('cluster status -o json prints leader, coordinators, store and revision', async (t) => {
  const leader = await coordinator(t, { role: 'leader', revision: 1234 });
  leader.peers = [{ address: '127.0.0.1:7710', role: 'follower' }];
  const run = await mlfleetctl(t, ['--coordinator', leader.address, 'cluster', 'status', '-o', 'json']);

  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), {
    leader: leader.address,
    coordinators: [
      { address: leader.address, role: 'leader' },
      { address: '127.0.0.1:7710', role: 'follower' },
    ],
    store: 'sqlite',
    revision: 1234,
  });

  const table = await mlfleetctl(t, ['--coordinator', leader.address, 'cluster', 'status']);
  assert.match(table.stdout, new RegExp(`^Leader:\\s+${leader.address}$`, 'm'));
  assert.match(table.stdout, /^127\.0\.0\.1:7710\s+follower$/m);
});

test('the token comes from --token, MLFLEET_TOKEN, or ~/.config/mlfleet/token', async (t) => {
  const leader = await coordinator(t, { role: 'leader', token: 't0ken', nodes: fleet() });
  const base = ['--coordinator', leader.address, 'nodes', 'ls', '-o', 'json'];

  const denied = await mlfleetctl(t, base);
  assert.equal(denied.code, 1);
  assert.match(denied.stderr, /^mlfleetctl: a valid token is required/);

  assert.equal((await mlfleetctl(t, ['--token', 't0ken', ...base])).code, 0);
  assert.equal((await mlfleetctl(t, base, { MLFLEET_TOKEN: 't0ken' })).code, 0);

  const dir = await home(t);
  await mkdir(path.join(dir, '.config', 'mlfleet'), { recursive: true });
  await writeFile(path.join(dir, '.config', 'mlfleet', 'token'), 't0ken\n', { mode: 0o600 });
  const fromFile = await mlfleetctl(t, base, { HOME: dir });
  assert.equal(fromFile.code, 0, fromFile.stderr);
  assert.ok(leader.calls.every((c, i) => i === 0 || c.authorization === 'Bearer t0ken'));
});

test('bad usage exits 2', async (t) => {
  const cases = [
    ['frobnicate'],
    ['nodes'],
    ['nodes', 'explode'],
    ['nodes', 'show'],
    ['nodes', 'ls', '--no-such-flag'],
    ['nodes', 'ls', '--status', 'sleepy'],
    ['nodes', 'ls', '--selector', 'zone'],
    ['-o', 'xml', 'nodes', 'ls'],
    ['--coordinator', ' , ', 'nodes', 'ls'],
  ];
  for (const args of cases) {
    const run = await mlfleetctl(t, ['--coordinator', '127.0.0.1:1', ...args]);
    assert.equal(run.code, 2, `mlfleetctl ${args.join(' ')} → ${run.code}: ${run.stderr}`);
    assert.match(run.stderr, /^mlfleetctl: |Usage: /, args.join(' '));
  }
  const help = await mlfleetctl(t, ['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: mlfleetctl/);
});

test('Ctrl-C exits quietly with 130', async (t) => {
  const hung = await silentServer();
  t.after(() => hung.close());
  const child = spawn(process.execPath, [CLI, '--coordinator', hung.address, 'nodes', 'ls'], {
    env: { PATH: process.env.PATH ?? '', HOME: await home(t) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  // Interrupt while it waits for the coordinator that never answers.
  await hung.connected;
  child.kill('SIGINT');
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  assert.equal(code, 130);
  assert.equal(output, '');
});
