// Jobs on real Docker through real agents, with the runtime image (node inside, scripts run by
// `node -e`): a gang of 3 waits, holding nothing anywhere, while one of three hosts is short of
// memory, then runs once a host with room joins, its workers meeting on their tenant's network
// by their peer aliases; a killed worker fails its gang's attempt as a whole, the other worker's container is
// stopped but kept with its logs, and the retry resumes from what the attempt saved in
// /checkpoint on that host; a job past its deadline fails and its container is stopped, kept with
// its logs. (Cancel stopping a job's container: docker-fleet.test.ts.)
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { AllocationInfo, Job } from '../../shared/proto.js';
import { dockerFleet, type Fleet } from '../helpers/docker-fleet.js';
import { eventually } from '../helpers/eventually.js';
import { mlfleetctl } from '../helpers/mlfleetctl.js';

const GiB = 2 ** 30;

/**
 * Each worker checks what it was told, then they meet: rank 0 listens on PORT (the peer port in
 * its container, which its peers on this host dial at its alias on the tenant network), the others connect to
 * MASTER_ADDR:MASTER_PORT (retrying until rank 0 listens) and are welcomed.
 */
const RENDEZVOUS = `const net = require('net');
const e = process.env, rank = Number(e.MLFLEET_RANK), size = Number(e.MLFLEET_WORLD_SIZE), peers = (e.MLFLEET_PEERS || '').split(',');
const fail = (why) => { console.error('rank', rank, why); process.exit(3); };
if (size !== 3 || peers.length !== size || peers[0] !== e.MASTER_ADDR + ':' + e.MASTER_PORT) fail('was told ' + JSON.stringify(e));
console.log('rank', rank, 'of', size, 'peers', e.MLFLEET_PEERS);
if (rank === 0) {
  const met = [];
  const server = net.createServer((s) => s.setEncoding('utf8').once('data', (hello) => {
    met.push(hello);
    s.end('welcome, ' + hello);
    if (met.length === size - 1) { console.log('rank 0 met', met.sort().join(', ')); server.close(); }
  })).listen(Number(e.PORT));
} else {
  const giveUp = Date.now() + 30000;
  const connect = () => {
    let answered = false;
    const s = net.connect(Number(e.MASTER_PORT), e.MASTER_ADDR).setEncoding('utf8');
    s.on('connect', () => s.write('rank ' + rank));
    s.on('data', (reply) => { answered = true; console.log('rank', rank, 'heard', reply); });
    s.on('error', () => {});
    s.on('close', () => { if (answered) return; if (Date.now() > giveUp) fail('could not reach rank 0'); setTimeout(connect, 200); });
  };
  connect();
}`;

/**
 * Attempt 1 saves its step to /checkpoint (whole or not at all: written aside, then renamed) and
 * trains on until killed; a later attempt resumes from it.
 */
const CHECKPOINTED = `const fs = require('fs'), path = require('path');
const e = process.env, saved = path.join(e.MLFLEET_CHECKPOINT_PATH, 'step');
if (e.MLFLEET_ATTEMPT === '1') {
  // Said first (stdout is a pipe: written at once), so a saved checkpoint means it was said.
  console.log('rank', e.MLFLEET_RANK, 'attempt 1 saving step', 100 + Number(e.MLFLEET_RANK));
  fs.writeFileSync(saved + '.part', String(100 + Number(e.MLFLEET_RANK)));
  fs.renameSync(saved + '.part', saved);
  setInterval(() => {}, 1000);
} else if (!fs.existsSync(saved)) {
  console.error('attempt', e.MLFLEET_ATTEMPT, 'found no checkpoint'); process.exit(4);
} else {
  console.log('rank', e.MLFLEET_RANK, 'attempt', e.MLFLEET_ATTEMPT, 'resumed at step', fs.readFileSync(saved, 'utf8'));
}`;

function ended(f: Fleet, name: string, timeoutMs: number): Promise<Job> {
  return f.jobWhen(name, `${name} ended`, timeoutMs, (j) => ['succeeded', 'failed', 'cancelled'].includes(j.status));
}

/** The allocation's container has been stopped (exited), and is kept. */
async function stopped(f: Fleet, allocation: string, what: string): Promise<void> {
  await eventually(what, 30_000, async () => ((await f.containers(allocation)).map((c) => c.State).join() === 'exited' ? true : undefined));
}

test('a gang of 3 waits, holding nothing, while a host is short of memory, then runs when a host with room joins, its workers meeting on their tenant network', async (t) => {
  const f = await dockerFleet(t);
  await Promise.all([f.agent('gang-a'), f.agent('gang-b'), f.agent('gang-small', { memory: '16Gi' })]);
  // 40Gi a worker: the 64Gi hosts fit one each, the 16Gi one none.
  await f.api.call('JobService', 'RunJob', { spec: { name: 'ddp', image: f.image, command: ['node', '-e', RENDEZVOUS], workers: 3, resources: { cpuMillis: 250, memoryBytes: 40 * GiB } } });
  const waiting = await f.jobWhen('ddp', 'the gang pending with a reason', 10_000, (j) => j.message.startsWith('waiting for capacity'));
  t.diagnostic(waiting.message);
  assert.equal(waiting.status, 'pending');
  assert.match(waiting.message, /memory/);
  // A few passes later it still waits, and holds nothing anywhere.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  assert.equal((await f.job('ddp')).status, 'pending');
  const held = await f.api.call<{ allocations: AllocationInfo[] }>('AllocationService', 'ListAllocations', { workload: 'ddp', all: true });
  assert.deepEqual(held.allocations, [], 'a gang that cannot be placed whole places no worker');
  for (const node of ['gang-a', 'gang-b', 'gang-small']) {
    const allocated = (await f.client.getNode(node)).allocated;
    assert.equal((allocated?.memoryBytes ?? 0) + (allocated?.cpuMillis ?? 0), 0, `${node} holds nothing`);
  }
  const containers = await f.docker.listContainers({ all: true, filters: { label: ['mlfleet.workload=ddp'] } });
  assert.deepEqual(containers.filter((c) => c.Labels['mlfleet.node']?.startsWith('gang-')), [], 'no container');

  await f.agent('gang-d');
  const done = await ended(f, 'ddp', 60_000);
  assert.equal(done.status, 'succeeded', done.message);
  const workers = [...done.allocations].sort((a, b) => a.rank - b.rank);
  assert.deepEqual(workers.map((w) => w.rank), [0, 1, 2]);
  assert.deepEqual(workers.map((w) => w.node).sort(), ['gang-a', 'gang-b', 'gang-d'], 'one worker on each host with room');
  // On one host they meet on their tenant's network, each named by its host port (peerAlias).
  const peers = workers.map((w) => `mlfleet-peer-${w.hostPort}:29500`).join(',');
  const logs = await Promise.all(workers.map(async (w) => (await f.api.logs(w.id)).toString()));
  for (const [rank, output] of logs.entries()) assert.match(output, new RegExp(`^rank ${rank} of 3 peers ${peers}$`, 'm'));
  assert.match(logs[0]!, /^rank 0 met rank 1, rank 2$/m);
  assert.match(logs[1]!, /^rank 1 heard welcome, rank 1$/m);
  assert.match(logs[2]!, /^rank 2 heard welcome, rank 2$/m);
});

test("a killed worker fails its gang's attempt as a whole, and the retry resumes from the checkpoint saved on that host", async (t) => {
  const f = await dockerFleet(t);
  // Checkpoints stay on the host that saved them: one host, so the retry lands where attempt 1 ran.
  await f.agent('ckpt');
  await f.api.call('JobService', 'RunJob', { spec: { name: 'resume', image: f.image, command: ['node', '-e', CHECKPOINTED], workers: 2, maxRetries: 1, retryBackoffMs: 4_000 } });
  const saved = (rank: number) => path.join(f.dataDir('ckpt'), 'checkpoints', 'default', 'resume', `rank-${rank}`, 'step');
  const first = await f.jobWhen(
    'resume',
    'both workers running, each with its checkpoint saved',
    60_000,
    (j) => j.allocations.length === 2 && j.allocations.every((a) => a.status === 'running') && existsSync(saved(0)) && existsSync(saved(1)),
  );
  const [rank0, rank1] = [...first.allocations].sort((a, b) => a.rank - b.rank);
  const [killed] = await f.containers(rank1!.id);
  assert.ok(killed, "rank 1's container");
  await f.docker.getContainer(killed.Id).kill();

  // The whole attempt fails: rank 0's container is stopped and kept, exited, for its logs (as the
  // killed one is, as ended jobs' containers are), and the job waits out its backoff saying why,
  // with each worker's end.
  await stopped(f, rank0!.id, "rank 0's container of attempt 1 stopped");
  assert.deepEqual((await f.containers(rank1!.id)).map((c) => c.State), ['exited']);
  const failed = await f.jobWhen('resume', "rank 0's stop reported", 5_000, (j) => j.allocations.some((a) => a.rank === 0 && a.status !== 'running'));
  assert.equal(failed.status, 'pending', failed.message);
  assert.match(failed.message, /^attempt 1 failed \(worker 1 exited with code 137\); retrying in 4s$/);
  const byRank = [...failed.allocations].sort((a, b) => a.rank - b.rank).map((a) => [a.rank, a.status, a.exitCode]);
  assert.deepEqual(byRank, [[0, 'stopped', 0], [1, 'failed', 137]]);
  const shown = await mlfleetctl(t, ['--coordinator', f.address, 'jobs', 'show', 'resume'], { MLFLEET_TOKEN: f.admin });
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /^Message:\s+attempt 1 failed \(worker 1 exited with code 137\); retrying in 4s$/m);
  assert.match(shown.stdout, /^ {2}0\s+[0-9a-f]{8}\s+ckpt\s+stopped\s+-\s/m);
  assert.match(shown.stdout, /^ {2}1\s+[0-9a-f]{8}\s+ckpt\s+failed: exited with code 137\s+137\s/m);
  // What a user debugging the failed attempt reads: the stopped rank's output, from its host.
  assert.match((await f.api.logs(rank0!.id)).toString(), /^rank 0 attempt 1 saving step 100$/m);
  assert.match((await f.api.logs(rank1!.id)).toString(), /^rank 1 attempt 1 saving step 101$/m);

  const done = await ended(f, 'resume', 60_000);
  assert.equal(done.status, 'succeeded', done.message);
  assert.equal(done.attempts, 2);
  for (const w of done.allocations) {
    assert.match((await f.api.logs(w.id)).toString(), new RegExp(`rank ${w.rank} attempt 2 resumed at step ${100 + w.rank}`));
  }
});

test('a job past its deadline fails saying so, and its container is stopped, kept with its logs', async (t) => {
  const f = await dockerFleet(t);
  await f.agent('late');
  await f.api.call('JobService', 'RunJob', { spec: { name: 'slow', image: f.image, command: ['node', '-e', "console.log('still at epoch 1'); setInterval(() => {}, 1000)"], workers: 1, deadlineMs: 3_000 } });
  const running = await f.jobWhen('slow', 'slow running', 60_000, (j) => j.allocations[0]?.status === 'running');
  const worker = running.allocations[0]!;
  assert.equal((await f.containers(worker.id)).length, 1);
  const done = await ended(f, 'slow', 20_000);
  assert.equal(done.status, 'failed');
  assert.equal(done.message, 'stopped: its deadline of 3s passed');
  await stopped(f, worker.id, "the job's container stopped");
  assert.match((await f.api.logs(worker.id)).toString(), /^still at epoch 1$/m);
  assert.ok((await f.api.events('job/slow')).some((e) => e.type === 'DeadlineExceeded'));
});
