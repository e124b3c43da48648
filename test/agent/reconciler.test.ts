// The agent's reconciler: a desired allocation is pulled into the cache, started with the right
// task, probed until ready and reported at each step; tasks end as completed or failed, are
// removed when no longer desired (a job's stopped and kept with its logs for a while first,
// across restarts too), are adopted (never started twice) by a restarted agent, and
// are never re-run when they vanish. Logs stream back in chunks. Against a fake driver, a real
// model cache and real HTTP servers; and once end to end with the real process driver.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { ProcessDriver } from '../../agent/drivers/process-driver.js';
import type { Driver } from '../../agent/drivers/driver.js';
import { LocalState } from '../../agent/local-state.js';
import { LogStreams, LOG_CHUNK_BYTES } from '../../agent/log-streams.js';
import { ModelCache, type BlobSource, type PullRequest } from '../../agent/model-cache.js';
import { Bitfield } from '../../shared/pieces.js';
import type { OutputPushRequest } from '../../agent/job-output.js';
import { Reconciler, type ReconcilerOptions, type ReconcilerTiming } from '../../agent/reconciler.js';
import { InvalidArgumentError, NotFoundError, UnavailableError } from '../../shared/errors.js';
import { silentLogger } from '../../shared/log.js';
import type { Allocation, AllocationStatus } from '../../shared/proto.js';
import type { LogData } from '../../shared/gen/mlfleet/v1/LogData.js';
import type { RunBlob, RunSpec } from '../../shared/workloads.js';
import { until } from '../helpers/eventually.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakeDriver } from '../helpers/fake-driver.js';
import { freePort } from '../helpers/net.js';
import { tempDir } from '../helpers/processes.js';

const ADVERTISE = '10.0.0.5';
const FAST: Partial<ReconcilerTiming> = {
  resyncMs: 50,
  readinessIntervalMs: 20,
  livenessIntervalMs: 50,
  probeTimeoutMs: 500,
  reportDebounceMs: 5,
};

/** The piece fetcher in memory: whole blobs by digest, written in one piece. */
class MemoryBlobSource implements BlobSource {
  private readonly blobs = new Map<string, Buffer>();

  add(kind: 'model' | 'dataset', name: string, content: string, mountPath: string): RunBlob {
    const bytes = Buffer.from(content);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    this.blobs.set(digest, bytes);
    return { kind, ref: `acme/${name}:1`, name, version: 1, digest, sizeBytes: bytes.length, directory: false, mountPath };
  }

  async pull(request: PullRequest): Promise<void> {
    const content = this.blobs.get(request.digest);
    if (!content) throw new NotFoundError(`no model or dataset has content ${request.digest}`);
    await request.handle.write(content, 0, content.length, 0);
    await request.handle.datasync();
    const progress = { pieceBytes: Math.max(1, content.length), bitfield: Bitfield.full(content.length > 0 ? 1 : 0) };
    request.onProgress(progress);
    request.onCheckpoint(progress);
  }
}

function runSpec(overrides: Partial<RunSpec> = {}): RunSpec {
  return {
    image: 'mlfleet/test:1',
    command: [],
    env: {},
    port: 0,
    readinessPath: '',
    readinessTimeoutMs: 5_000,
    model: undefined,
    datasets: [],
    rank: 0,
    worldSize: 1,
    ...overrides,
  };
}

function allocation(id: string, spec: Partial<RunSpec> = {}, extra: Partial<Allocation> = {}): Allocation {
  return {
    id,
    kind: 'deployment',
    workload: 'web',
    tenant: 'acme',
    resources: { cpuMillis: 500, memoryBytes: 256 * 1024 * 1024, gpus: 1, gpuMemoryBytes: 0, nicMbps: 0 },
    gpuIndexes: [1],
    hostPort: 0,
    specJson: JSON.stringify(runSpec(spec)),
    modRevision: 1,
    ...extra,
  };
}

interface Agent {
  reconciler: Reconciler;
  state: LocalState;
  cache: ModelCache;
  /** Every report the reconciler made, in order. */
  reports: AllocationStatus[][];
  /** Persists and hands over a desired set, as the agent does. */
  desire(revision: number, allocations: Allocation[]): void;
  /** The states `id` was reported in, in order. */
  states(id: string): string[];
  close(): Promise<void>;
}

/** A reconciler over a data dir, as the agent opens it; closed in t.after() unless closed before. */
function agent(t: TestContext, dataDir: string, driver: Driver, source: BlobSource, timing: Partial<ReconcilerTiming> = FAST, extra: Partial<ReconcilerOptions> = {}): Agent {
  const state = LocalState.open(dataDir);
  const cache = ModelCache.open({ dir: path.join(dataDir, 'cache'), db: state.database, maxBytes: 1024 ** 3, source });
  const reports: AllocationStatus[][] = [];
  const reconciler = new Reconciler({ driver, cache, state, advertiseHost: ADVERTISE, onStatus: (changed) => reports.push(changed), timing, log: silentLogger(), ...extra });
  reconciler.start();
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      await reconciler.close();
      await cache.close();
      state.close();
    })());
  t.after(close);
  return {
    reconciler,
    state,
    cache,
    reports,
    desire(revision, allocations) {
      const set = { revision, allocations };
      if (state.saveDesired(set)) reconciler.setDesired(set);
    },
    states: (id) => reports.flat().filter((s) => s.id === id).map((s) => s.state),
    close,
  };
}

/**
 * Reports carry each allocation's latest state, so a burst of changes within the debounce
 * window is one report: what was reported is `steps` in order, some left out, ending with the last.
 */
function assertSteps(reported: string[], steps: string[]): void {
  assert.equal(reported.at(-1), steps.at(-1), `the last report is ${steps.at(-1)}: ${reported.join(' → ')}`);
  let at = 0;
  for (const state of reported) {
    at = steps.indexOf(state, at);
    assert.ok(at >= 0, `${reported.join(' → ')} follows ${steps.join(' → ')}`);
  }
}

function reachState(a: Agent, id: string, state: string): Promise<true> {
  return until(`${id} to be ${state}`, () => a.reconciler.status(id)?.state === state);
}

/** An HTTP server on loopback `port` answering `path` with whatever `status()` says. */
async function server(t: TestContext, port: number, path: string, status: () => number = () => 200): Promise<http.Server> {
  const srv = http.createServer((req, res) => {
    res.writeHead(req.url === path ? status() : 404);
    res.end();
  });
  await new Promise<void>((resolve) => srv.listen(port, '127.0.0.1', resolve));
  t.after(() => closeServer(srv));
  return srv;
}

function closeServer(srv: http.Server): Promise<void> {
  srv.closeAllConnections();
  return new Promise((resolve) => (srv.listening ? srv.close(() => resolve()) : resolve()));
}

test('a desired allocation is pulled, then started once with its mounts, environment, port and GPUs', async (t) => {
  const source = new MemoryBlobSource();
  const model = source.add('model', 'bert', 'model weights', '/model');
  const train = source.add('dataset', 'train-set', 'rows', '/data/train-set');
  const driver = new FakeDriver('docker');
  const a = agent(t, tempDir(t), driver, source);

  a.desire(1, [allocation('web-1', { port: 8080, model, datasets: [train], env: { THREADS: '2' } }, { hostPort: 31001, gpuIndexes: [2, 3] })]);
  await reachState(a, 'web-1', 'running');

  assert.equal(driver.started.length, 1);
  const task = driver.started[0]!;
  assert.deepEqual(
    task.mounts.map((m) => [m.containerPath, m.readOnly, path.basename(m.hostPath)]),
    [
      ['/model', true, model.digest.slice(7)],
      ['/data/train-set', true, train.digest.slice(7)],
    ],
  );
  assert.deepEqual(task.env, {
    MLFLEET_ALLOCATION_ID: 'web-1',
    MLFLEET_RANK: '0',
    MLFLEET_WORLD_SIZE: '1',
    MLFLEET_MODEL_PATH: '/model',
    MLFLEET_MODEL_NAME: model.name,
    MLFLEET_MODEL_VERSION: '1',
    MLFLEET_DATASET_TRAIN_SET: '/data/train-set',
    PORT: '8080',
    THREADS: '2',
  });
  assert.equal(task.hostPort, 31001);
  assert.deepEqual(task.gpuIndexes, [2, 3]);
  assert.equal(task.cpuMillis, 500);
  assert.equal(task.memoryBytes, 256 * 1024 * 1024);
  assert.deepEqual([task.kind, task.workload, task.tenant], ['deployment', 'web', 'acme']);
  assert.deepEqual(
    a.cache.entries().map((e) => e.inUse),
    [true, true],
    'the model and the dataset are held while the task exists',
  );

  await until('the running report', () => a.states('web-1').includes('running'));
  assertSteps(a.states('web-1'), ['pulling', 'starting', 'running']);
  const status = a.reconciler.status('web-1')!;
  assert.equal(status.endpoint, `${ADVERTISE}:31001`);
  // No readiness path: running is where it stays.
  await a.reconciler.sync();
  assert.equal(a.reconciler.status('web-1')?.state, 'running');
});

test('under the process driver a task reads the cache on the host and listens on its host port', async (t) => {
  const source = new MemoryBlobSource();
  const model = source.add('model', 'bert', 'model weights', '/model');
  const driver = new FakeDriver('process');
  const a = agent(t, tempDir(t), driver, source);

  a.desire(1, [allocation('web-1', { port: 8080, model }, { hostPort: 31002 })]);
  await reachState(a, 'web-1', 'running');
  const task = driver.started[0]!;
  assert.equal(task.env.PORT, '31002');
  assert.equal(task.env.MLFLEET_MODEL_PATH, task.mounts[0]!.hostPath);
  assert.equal(path.basename(task.env.MLFLEET_MODEL_PATH!), model.digest.slice(7));
});

test('a server becomes ready once its readiness path answers 200, and goes back to running when it stops answering', async (t) => {
  const port = await freePort();
  let answer = 503;
  const srv = await server(t, port, '/v2/health/ready', () => answer);
  const driver = new FakeDriver();
  const a = agent(t, tempDir(t), driver, new MemoryBlobSource());

  a.desire(1, [allocation('web-1', { port: 8080, readinessPath: '/v2/health/ready', readinessTimeoutMs: 30_000 }, { hostPort: port })]);
  await reachState(a, 'web-1', 'running');
  assert.equal(a.reconciler.status('web-1')?.state, 'running', 'not ready while the server answers 503');
  answer = 200;
  await reachState(a, 'web-1', 'ready');
  assert.equal(a.reconciler.status('web-1')?.endpoint, `${ADVERTISE}:${port}`);

  await closeServer(srv);
  await reachState(a, 'web-1', 'running');
  assert.match(a.reconciler.status('web-1')!.reason, /^stopped answering: GET \/v2\/health\/ready failed: ECONNREFUSED/);
  assert.deepEqual(driver.removed, [], 'an unhealthy server is reported, not stopped: the coordinator decides');
});

test('a server that never answers fails after its readiness timeout', async (t) => {
  const port = await freePort(); // nothing listens there
  const a = agent(t, tempDir(t), new FakeDriver(), new MemoryBlobSource());
  a.desire(1, [allocation('web-1', { port: 8080, readinessPath: '/v2/health/ready', readinessTimeoutMs: 300 }, { hostPort: port })]);
  await reachState(a, 'web-1', 'failed');
  const status = a.reconciler.status('web-1')!;
  assert.match(status.reason, /^not ready after 0\.3s \(GET \/v2\/health\/ready failed: ECONNREFUSED\)$/);
  assert.equal(status.endpoint, '');
});

test('a task that exits with 0 is completed, with any other code failed with the code as reason', async (t) => {
  const driver = new FakeDriver();
  const a = agent(t, tempDir(t), driver, new MemoryBlobSource());
  a.desire(1, [allocation('job-0', {}, { kind: 'job' }), allocation('job-1', {}, { kind: 'job' }), allocation('job-2', {}, { kind: 'job' })]);
  for (const id of ['job-0', 'job-1', 'job-2']) await reachState(a, id, 'running');

  driver.exit('job-0', 0);
  driver.exit('job-1', 2);
  driver.exit('job-2', 137, 'OOM killed');
  await reachState(a, 'job-0', 'completed');
  await reachState(a, 'job-1', 'failed');
  await reachState(a, 'job-2', 'failed');
  assert.deepEqual(
    (['job-0', 'job-1', 'job-2'] as const).map((id) => {
      const s = a.reconciler.status(id)!;
      return [s.state, s.exitCode, s.reason];
    }),
    [
      ['completed', 0, ''],
      ['failed', 2, 'exited with code 2'],
      ['failed', 137, 'exited with code 137 (OOM killed)'],
    ],
  );
  await until('reported', () => a.states('job-1').includes('failed'));
  await a.reconciler.sync();
  assert.equal(driver.started.length, 3, 'an ended task is never started again');
  assert.deepEqual(driver.removed, [], 'an ended task is kept (with its logs) until the allocation leaves the set');
});

test('an allocation removed from the set has its task removed, its cache lease released, and is reported stopped once', async (t) => {
  const source = new MemoryBlobSource();
  const model = source.add('model', 'bert', 'weights', '/model');
  const driver = new FakeDriver();
  const a = agent(t, tempDir(t), driver, source);
  a.desire(1, [allocation('web-1', { model }), allocation('web-2', { model })]);
  await reachState(a, 'web-1', 'running');
  await reachState(a, 'web-2', 'running');

  a.desire(2, [allocation('web-2', { model })]);
  await until('web-1 gone', () => a.reconciler.status('web-1') === undefined);
  assert.deepEqual(driver.removed, [{ allocationId: 'web-1', graceMs: 10_000 }]);
  assert.equal(driver.has('web-1'), false);
  assert.deepEqual(a.cache.entries().map((e) => e.inUse), [true], 'web-2 still holds the model');

  a.desire(3, []);
  await until('web-2 gone', () => a.reconciler.status('web-2') === undefined);
  assert.deepEqual(a.cache.entries().map((e) => e.inUse), [false], 'the last lease is released');
  await until('stopped reported', () => a.states('web-2').includes('stopped'));
  await a.reconciler.sync();
  await a.reconciler.sync();
  assert.deepEqual(a.states('web-1').filter((s) => s === 'stopped'), ['stopped'], 'stopped is reported once');
  assert.deepEqual(a.reconciler.statuses(), []);
  assert.deepEqual(a.state.runs(), new Map(), 'nothing is remembered of removed allocations');
});

test('a task found on the host that no desired allocation claims is removed', async (t) => {
  const driver = new FakeDriver();
  driver.existing('stale-1');
  const a = agent(t, tempDir(t), driver, new MemoryBlobSource());
  a.desire(4, []);
  await until('removed', () => !driver.has('stale-1'));
  await until('stopped reported', () => a.states('stale-1').includes('stopped'));
});

/** What a logs command for `id` sends back: the output and the eof's error. */
async function readLogs(driver: Driver, a: Agent, id: string): Promise<{ output: string; error: string }> {
  const { streams, sent, eof } = logStreams(driver, (allocation) => a.reconciler.has(allocation));
  try {
    streams.open('cmd', { allocation: id, tailBytes: 0, follow: true });
    await until('eof', () => eof('cmd') !== undefined);
    return { output: Buffer.concat(sent.filter((m) => !m.eof).map((m) => m.data as Buffer)).toString(), error: eof('cmd')!.error! };
  } finally {
    await streams.close();
  }
}

test("a job allocation removed from the set has its task stopped and kept with its logs, holding nothing, until the retention since it ended has passed; a deployment's is removed at once", async (t) => {
  const clock = new FakeClock();
  const source = new MemoryBlobSource();
  const model = source.add('model', 'bert', 'weights', '/model');
  const dataDir = tempDir(t);
  const driver = new FakeDriver('docker', () => clock.now());
  const a = agent(t, dataDir, driver, source, { ...FAST, stoppedJobRetentionMs: 60_000 }, { dataDir, clock });
  const worker = (id: string) => allocation(id, { model, rank: 1, worldSize: 2 }, { kind: 'job', workload: 'train', hostPort: 31005 });
  a.desire(1, [worker('rank-1'), allocation('web-1', { model })]);
  await reachState(a, 'rank-1', 'running');
  await reachState(a, 'web-1', 'running');
  driver.print('rank-1', 'rank 1: NCCL watchdog timeout\n');

  // Its gang failed elsewhere: the coordinator stops it (and the deployment went too).
  a.desire(2, []);
  await reachState(a, 'rank-1', 'stopped');
  await until('web-1 removed', () => a.reconciler.status('web-1') === undefined);
  assert.deepEqual(driver.stopped, [{ allocationId: 'rank-1', graceMs: 10_000 }], 'stopped with the grace period');
  assert.deepEqual(driver.removed, [{ allocationId: 'web-1', graceMs: 10_000 }], "only the deployment's task is removed");
  assert.deepEqual((await driver.list()).map((task) => [task.allocationId, task.running]), [['rank-1', false]]);
  const status = a.reconciler.status('rank-1')!;
  assert.deepEqual([status.state, status.reason, status.endpoint], ['stopped', 'no longer in the desired set', '']);
  assert.deepEqual(a.cache.entries().map((e) => e.inUse), [false], 'the stopped task holds no cache lease');
  assert.equal(existsSync(path.join(dataDir, 'outputs', 'rank-1')), false, 'nor its output directory');
  assert.deepEqual(await readLogs(driver, a, 'rank-1'), { output: 'rank 1: NCCL watchdog timeout\n', error: '' }, 'its logs are read as before');

  // The retry takes its host port; the kept task is neither started again nor reported again.
  a.desire(3, [worker('retry-rank-1')]);
  await reachState(a, 'retry-rank-1', 'running');
  clock.advance(59_999);
  await a.reconciler.sync();
  assert.ok(driver.has('rank-1'), 'kept within the retention');
  assert.deepEqual(driver.started.map((task) => task.allocationId).sort(), ['rank-1', 'retry-rank-1', 'web-1']);
  assert.deepEqual(a.reconciler.statuses().map((s) => [s.id, s.state]), [['rank-1', 'stopped'], ['retry-rank-1', 'running']]);

  clock.advance(1);
  await a.reconciler.sync();
  await until('removed once the retention has passed', () => !a.reconciler.has('rank-1'));
  assert.deepEqual(driver.removed.map((r) => r.allocationId), ['web-1', 'rank-1']);
  assert.equal(driver.has('rank-1'), false);
  assert.deepEqual(await readLogs(driver, a, 'rank-1'), { output: '', error: 'allocation rank-1 is not on this node' });
  clock.advance(FAST.reportDebounceMs!);
  assert.deepEqual(a.states('rank-1').filter((s) => s === 'stopped'), ['stopped'], 'stopped is reported once');
  assert.deepEqual([...a.state.runs().keys()], ['retry-rank-1'], 'nothing is remembered of it');
});

test("a restarted agent keeps a job's stopped task until the retention since it ended, and stops (keeping) a job's task it finds running; an old one and a server's are removed at once", async (t) => {
  const clock = new FakeClock();
  const driver = new FakeDriver('docker', () => clock.now());
  const dataDir = tempDir(t);
  const timing = { ...FAST, stoppedJobRetentionMs: 60_000 };
  const first = agent(t, dataDir, driver, new MemoryBlobSource(), timing, { clock });
  first.desire(1, [allocation('rank-0', {}, { kind: 'job', workload: 'train' })]);
  await reachState(first, 'rank-0', 'running');
  driver.print('rank-0', 'rank 0: timed out waiting for rank 1\n');
  first.desire(2, []);
  await reachState(first, 'rank-0', 'stopped');
  await first.close();

  clock.advance(30_000);
  // Left by earlier agents: a job's task that ended long ago, one still running, and a server.
  driver.existing('old-job', { kind: 'job', running: false, exitCode: 0, finishedAtMs: clock.now() - 2 * 3_600_000 });
  driver.existing('running-job', { kind: 'job' });
  driver.existing('web-9', { kind: 'deployment' });
  const second = agent(t, dataDir, driver, new MemoryBlobSource(), timing, { clock });
  await until('the tasks found dealt with', () => !driver.has('old-job') && !driver.has('web-9') && second.reconciler.status('running-job')?.state === 'stopped');
  await second.reconciler.sync();
  await second.reconciler.sync();
  assert.deepEqual(driver.removed.map((r) => r.allocationId).sort(), ['old-job', 'web-9']);
  assert.deepEqual((await driver.list()).map((task) => [task.allocationId, task.running]), [['rank-0', false], ['running-job', false]]);
  assert.deepEqual(second.reconciler.statuses().map((s) => [s.id, s.state, s.reason]), [
    ['rank-0', 'stopped', 'no longer in the desired set'],
    ['running-job', 'stopped', 'no longer in the desired set'],
  ]);
  assert.deepEqual(await readLogs(driver, second, 'rank-0'), { output: 'rank 0: timed out waiting for rank 1\n', error: '' });

  // rank-0 ended 60s ago, running-job 30s ago.
  clock.advance(30_000);
  await second.reconciler.sync();
  await until('rank-0 removed', () => !driver.has('rank-0'));
  assert.ok(driver.has('running-job'));
  clock.advance(30_000);
  await second.reconciler.sync();
  await until('running-job removed', () => !driver.has('running-job'));
  assert.deepEqual(second.reconciler.statuses(), []);
  assert.equal(driver.started.length, 1, 'nothing was started again');
});

test('before any desired set has arrived, tasks on the host are left alone', async (t) => {
  const driver = new FakeDriver();
  driver.existing('web-1');
  const a = agent(t, tempDir(t), driver, new MemoryBlobSource());
  await a.reconciler.sync();
  await a.reconciler.sync();
  assert.deepEqual(driver.removed, []);
});

test('a restarted agent adopts the tasks it finds and starts none of them again', async (t) => {
  const source = new MemoryBlobSource();
  const model = source.add('model', 'bert', 'weights', '/model');
  const port = await freePort();
  await server(t, port, '/ready');
  const driver = new FakeDriver();
  const dataDir = tempDir(t);
  const desired = [allocation('web-1', { model, port: 8080, readinessPath: '/ready' }, { hostPort: port }), allocation('job-1', {}, { kind: 'job' })];

  const first = agent(t, dataDir, driver, source);
  first.desire(1, desired);
  await reachState(first, 'web-1', 'ready');
  await reachState(first, 'job-1', 'running');
  await first.close();
  assert.deepEqual(driver.removed, [], 'closing the agent stops no task');
  assert.ok(driver.has('web-1') && driver.has('job-1'));
  driver.exit('job-1', 0); // while no agent was watching

  const second = agent(t, dataDir, driver, source);
  await reachState(second, 'web-1', 'ready');
  await reachState(second, 'job-1', 'completed');
  assert.equal(driver.started.length, 2, 'nothing was started a second time');
  assert.deepEqual(second.cache.entries().map((e) => e.inUse), [true], 'the adopted task holds its model again');
});

test('a task this host started that has vanished fails the allocation and is not started again', async (t) => {
  const driver = new FakeDriver();
  const dataDir = tempDir(t);
  const first = agent(t, dataDir, driver, new MemoryBlobSource());
  first.desire(1, [allocation('web-1'), allocation('web-2')]);
  await reachState(first, 'web-1', 'running');
  await reachState(first, 'web-2', 'running');

  driver.vanish('web-1');
  await reachState(first, 'web-1', 'failed');
  assert.equal(first.reconciler.status('web-1')?.reason, 'its task disappeared');
  await first.close();

  // While the agent was away, the other one vanished too.
  driver.vanish('web-2');
  const second = agent(t, dataDir, driver, new MemoryBlobSource());
  await reachState(second, 'web-2', 'failed');
  await second.reconciler.sync();
  assert.equal(second.reconciler.status('web-2')?.reason, 'its task disappeared');
  assert.deepEqual(
    second.reconciler.statuses().map((s) => [s.id, s.state, s.reason]),
    [
      ['web-1', 'failed', 'its task disappeared'],
      ['web-2', 'failed', 'its task disappeared'],
    ],
  );
  assert.equal(driver.started.length, 2, 'neither was run again');
});

test('an allocation that failed stays failed across an agent restart, even while its task still runs', async (t) => {
  const driver = new FakeDriver();
  const dataDir = tempDir(t);
  const port = await freePort(); // nothing answers
  const first = agent(t, dataDir, driver, new MemoryBlobSource());
  first.desire(1, [allocation('web-1', { port: 8080, readinessPath: '/ready', readinessTimeoutMs: 200 }, { hostPort: port })]);
  await reachState(first, 'web-1', 'failed');
  await first.close();

  await server(t, port, '/ready'); // it would answer now
  const second = agent(t, dataDir, driver, new MemoryBlobSource());
  await until('adopted', () => second.reconciler.status('web-1') !== undefined);
  await second.reconciler.sync();
  await new Promise((resolve) => setTimeout(resolve, 150));
  assert.equal(second.reconciler.status('web-1')?.state, 'failed');
  assert.match(second.reconciler.status('web-1')!.reason, /^not ready after/);
});

test('the same desired set sent again starts nothing new', async (t) => {
  const driver = new FakeDriver();
  const a = agent(t, tempDir(t), driver, new MemoryBlobSource());
  const set = [allocation('web-1'), allocation('web-2')];
  a.desire(1, set);
  await reachState(a, 'web-1', 'running');
  await reachState(a, 'web-2', 'running');
  const reported = a.reports.flat().length;
  a.desire(1, set);
  a.desire(2, set);
  await a.reconciler.sync();
  await a.reconciler.sync();
  assert.equal(driver.started.length, 2);
  assert.equal(a.reports.flat().length, reported, 'and reports no change');
});

test('an older desired set arriving late changes nothing', async (t) => {
  const driver = new FakeDriver();
  const a = agent(t, tempDir(t), driver, new MemoryBlobSource());
  a.desire(5, [allocation('web-1')]);
  await reachState(a, 'web-1', 'running');
  a.reconciler.setDesired({ revision: 4, allocations: [] });
  await a.reconciler.sync();
  assert.equal(a.reconciler.status('web-1')?.state, 'running');
  assert.deepEqual(driver.removed, []);
});

test('a model the cache cannot get fails the allocation with the reason, and nothing is started', async (t) => {
  const model: RunBlob = {
    kind: 'model',
    ref: 'acme/missing:1',
    name: 'missing',
    version: 1,
    digest: `sha256:${'a'.repeat(64)}`,
    sizeBytes: 10,
    directory: false,
    mountPath: '/model',
  };
  const driver = new FakeDriver();
  const a = agent(t, tempDir(t), driver, new MemoryBlobSource());
  a.desire(1, [allocation('web-1', { model })]);
  await reachState(a, 'web-1', 'failed');
  assert.match(a.reconciler.status('web-1')!.reason, /^could not get model acme\/missing:1 \(sha256:a+\) into the cache: no model or dataset has content/);
  assert.deepEqual(driver.started, []);
  // The report follows the state (a missing digest now fails at once, before the report of pulling has gone).
  await until('the failed report', () => a.states('web-1').includes('failed'));
  assertSteps(a.states('web-1'), ['pulling', 'failed']);
});

test('a task the driver cannot start fails the allocation with the driver\'s reason', async (t) => {
  const driver = new FakeDriver();
  driver.failStart('web-1', new Error('image mlfleet/test:1 is not in this host\'s Docker engine'));
  const a = agent(t, tempDir(t), driver, new MemoryBlobSource());
  a.desire(1, [allocation('web-1')]);
  await reachState(a, 'web-1', 'failed');
  assert.equal(a.reconciler.status('web-1')?.reason, "image mlfleet/test:1 is not in this host's Docker engine");
});

test('an allocation removed while it is starting has its task removed once the start returns', async (t) => {
  const driver = new FakeDriver();
  const open = driver.holdStarts();
  const a = agent(t, tempDir(t), driver, new MemoryBlobSource());
  a.desire(1, [allocation('web-1')]);
  await reachState(a, 'web-1', 'starting');
  a.desire(2, []);
  await a.reconciler.sync();
  open();
  await until('web-1 gone', () => a.reconciler.status('web-1') === undefined);
  assert.equal(driver.started.length, 1);
  assert.equal(driver.has('web-1'), false);
});

test('closing the reconciler stops no task, and a start under way finishes and is adopted by the next agent', async (t) => {
  const driver = new FakeDriver();
  const dataDir = tempDir(t);
  const first = agent(t, dataDir, driver, new MemoryBlobSource());
  first.desire(1, [allocation('web-1'), allocation('web-2')]);
  await reachState(first, 'web-1', 'running');
  await first.reconciler.sync();

  const open = driver.holdStarts();
  first.desire(2, [allocation('web-1'), allocation('web-2'), allocation('web-3')]);
  await reachState(first, 'web-3', 'starting');
  const closed = first.close();
  open();
  await closed;
  assert.deepEqual(driver.removed, []);
  assert.ok(driver.has('web-1') && driver.has('web-2') && driver.has('web-3'));

  const second = agent(t, dataDir, driver, new MemoryBlobSource());
  for (const id of ['web-1', 'web-2', 'web-3']) await reachState(second, id, 'running');
  assert.equal(driver.started.length, 3, 'each was started once');
});

test('every status change is reported, and the full set is there for the next hello', async (t) => {
  const driver = new FakeDriver();
  const a = agent(t, tempDir(t), driver, new MemoryBlobSource());
  a.desire(1, [allocation('web-1'), allocation('job-1', {}, { kind: 'job' })]);
  await reachState(a, 'web-1', 'running');
  await reachState(a, 'job-1', 'running');
  driver.exit('job-1', 0);
  await reachState(a, 'job-1', 'completed');
  const hello = a.reconciler.statuses();
  assert.deepEqual(
    hello.map((s) => [s.id, s.state]),
    [
      ['job-1', 'completed'],
      ['web-1', 'running'],
    ],
  );
  assert.ok(hello.every((s) => s.updatedAtMs > 0));
  await until('all reported', () => a.states('job-1').at(-1) === 'completed');
  assert.ok(a.reports.every((report) => report.length > 0));
});

// ---- logs ------------------------------------------------------------------------------

function logStreams(driver: Driver, knows: (id: string) => boolean) {
  const sent: LogData[] = [];
  const streams = new LogStreams({ driver, knows, send: (data) => sent.push(data), log: silentLogger() });
  return { streams, sent, eof: (commandId: string) => sent.find((m) => m.commandId === commandId && m.eof) };
}

test('a logs command streams the output in chunks of at most 64 KiB, then eof', async (t) => {
  const driver = new FakeDriver();
  const a = agent(t, tempDir(t), driver, new MemoryBlobSource());
  a.desire(1, [allocation('job-1', {}, { kind: 'job' })]);
  await reachState(a, 'job-1', 'running');
  const output = Buffer.alloc(150 * 1024, 'x');
  driver.print('job-1', output);
  const { streams, sent, eof } = logStreams(driver, (id) => a.reconciler.has(id));
  t.after(() => streams.close());

  streams.open('cmd-1', { allocation: 'job-1', tailBytes: 0, follow: false });
  await until('eof', () => eof('cmd-1') !== undefined);
  const chunks = sent.filter((m) => !m.eof);
  assert.deepEqual(chunks.map((m) => (m.data as Buffer).length), [LOG_CHUNK_BYTES, LOG_CHUNK_BYTES, 150 * 1024 - 2 * LOG_CHUNK_BYTES]);
  assert.deepEqual(Buffer.concat(chunks.map((m) => m.data as Buffer)), output);
  assert.equal(eof('cmd-1')?.error, '');
  assert.ok(sent.every((m) => m.commandId === 'cmd-1'));
  assert.equal(sent.at(-1)?.eof, true, 'eof is the last message');

  // Followed: new output goes on flowing until the caller cancels.
  streams.open('cmd-2', { allocation: 'job-1', tailBytes: 10, follow: true });
  await until('the tail', () => sent.some((m) => m.commandId === 'cmd-2'));
  assert.deepEqual(sent.find((m) => m.commandId === 'cmd-2')?.data, Buffer.alloc(10, 'x'));
  driver.print('job-1', 'more\n');
  await until('new output', () => sent.some((m) => m.commandId === 'cmd-2' && (m.data as Buffer).toString() === 'more\n'));
  streams.cancel('cmd-2');
  await until('eof after cancel', () => eof('cmd-2') !== undefined);
  assert.equal(eof('cmd-2')?.error, '');
});

test('a logs command for an allocation this host does not have ends at once with an error', async (t) => {
  const driver = new FakeDriver();
  const a = agent(t, tempDir(t), driver, new MemoryBlobSource());
  const { streams, sent, eof } = logStreams(driver, (id) => a.reconciler.has(id));
  t.after(() => streams.close());
  streams.open('cmd-1', { allocation: 'nope', tailBytes: 0, follow: true });
  await until('eof', () => eof('cmd-1') !== undefined);
  assert.deepEqual(sent.map((m) => [m.eof, m.error]), [[true, 'allocation nope is not on this node']]);

  // Desired but without a task yet: the driver says why.
  a.desire(1, [allocation('web-1')]);
  const release = driver.holdStarts();
  await reachState(a, 'web-1', 'starting');
  streams.open('cmd-2', { allocation: 'web-1', tailBytes: 0, follow: false });
  await until('eof', () => eof('cmd-2') !== undefined);
  assert.match(eof('cmd-2')?.error ?? '', /has no task/);
  release();
});

// ---- the real process driver -----------------------------------------------------------

const SERVER = `
const http = require('node:http');
const server = http.createServer((req, res) => { res.writeHead(req.url === '/v2/health/ready' ? 200 : 404); res.end(); });
server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening on ' + process.env.PORT + ' with ' + process.env.MLFLEET_MODEL_PATH));
process.on('SIGTERM', () => { server.close(); process.exit(0); });
`;

test('end to end with the process driver: a server reaches ready, and removal kills it', async (t) => {
  // One directory cleaned up in one hook, after the task is gone: the driver finds the task by it.
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-reconciler-'));
  const driver = new ProcessDriver({ dataDir, node: 'node-1', log: silentLogger(), pollMs: 20 });
  const source = new MemoryBlobSource();
  const model = source.add('model', 'echo', 'weights', '/model');
  const port = await freePort();
  const a = agent(t, dataDir, driver, source);
  t.after(async () => {
    await a.close();
    for (const task of await driver.list()) await driver.remove(task.allocationId, 0);
    rmSync(dataDir, { recursive: true, force: true });
  });

  a.desire(1, [allocation('web-1', { command: [process.execPath, '-e', SERVER], port: 8080, readinessPath: '/v2/health/ready', readinessTimeoutMs: 20_000, model }, { hostPort: port })]);
  await until('ready', () => a.reconciler.status('web-1')?.state === 'ready', 25_000);
  const [task] = await driver.list();
  assert.equal(task?.running, true);

  const { streams, sent, eof } = logStreams(driver, (id) => a.reconciler.has(id));
  t.after(() => streams.close());
  streams.open('cmd-1', { allocation: 'web-1', tailBytes: 0, follow: false });
  await until('eof', () => eof('cmd-1') !== undefined);
  const printed = Buffer.concat(sent.filter((m) => !m.eof).map((m) => m.data as Buffer)).toString();
  assert.match(printed, new RegExp(`listening on ${port} with .*${model.digest.slice(7)}`));

  a.desire(2, []);
  await until('removed', () => a.reconciler.status('web-1') === undefined, 15_000);
  assert.deepEqual(await driver.list(), []);
  await assert.rejects(
    new Promise((resolve, reject) => http.get({ host: '127.0.0.1', port, path: '/v2/health/ready', agent: false }, resolve).on('error', reject)),
    /ECONNREFUSED/,
    'the server is gone',
  );
  // Reports are debounced: the stopped one goes out a moment after the entry is forgotten.
  await until('stopped reported', () => a.states('web-1').includes('stopped'));
});

const OUTPUT = { model: 'sentiment', format: '', metadata: { type: '', inputFormat: '', outputFormat: '', accuracy: 0, labels: {}, sourceJob: '', sourceDatasets: [] } };

test('two attempts of the same job rank share one checkpoint directory on the host; each allocation gets its own output directory', async (t) => {
  const dataDir = tempDir(t);
  const driver = new FakeDriver('docker');
  const a = agent(t, dataDir, driver, new MemoryBlobSource(), FAST, { dataDir });
  const worker = (id: string, rank: number) => allocation(id, { rank, worldSize: 2 }, { kind: 'job', workload: 'train', tenant: 'acme' });
  a.desire(1, [worker('attempt1-rank0', 0), worker('attempt1-rank1', 1)]);
  await reachState(a, 'attempt1-rank0', 'running');
  await reachState(a, 'attempt1-rank1', 'running');
  const mounts = (id: string) => Object.fromEntries(driver.started.find((task) => task.allocationId === id)!.mounts.map((m) => [m.containerPath, m]));
  const first = mounts('attempt1-rank0');
  assert.equal(first['/checkpoint']?.hostPath, path.join(dataDir, 'checkpoints', 'acme', 'train', 'rank-0'));
  assert.equal(first['/checkpoint']?.readOnly, false);
  assert.equal(first['/output']?.hostPath, path.join(dataDir, 'outputs', 'attempt1-rank0'));
  assert.equal(first['/output']?.readOnly, false);
  assert.equal(mounts('attempt1-rank1')['/checkpoint']?.hostPath, path.join(dataDir, 'checkpoints', 'acme', 'train', 'rank-1'));
  const env = driver.started[0]!.env;
  assert.deepEqual([env.MLFLEET_OUTPUT_PATH, env.MLFLEET_CHECKPOINT_PATH], ['/output', '/checkpoint']);
  writeFileSync(path.join(first['/checkpoint']!.hostPath, 'step'), '500');

  // Attempt 1 fails and goes; attempt 2 lands on this host and finds the checkpoint.
  driver.exit('attempt1-rank0', 1);
  await reachState(a, 'attempt1-rank0', 'failed');
  a.desire(2, []);
  await until('attempt 1 stopped', () => a.reconciler.status('attempt1-rank0')?.state === 'stopped' && a.reconciler.status('attempt1-rank1')?.state === 'stopped');
  assert.equal(existsSync(first['/output']!.hostPath), false, "a stopped allocation's output directory goes with it, though its task is kept for its logs");
  a.desire(3, [worker('attempt2-rank0', 0)]);
  await reachState(a, 'attempt2-rank0', 'running');
  const second = mounts('attempt2-rank0');
  assert.equal(second['/checkpoint']?.hostPath, first['/checkpoint']?.hostPath, 'the same checkpoint directory');
  assert.equal(readFileSync(path.join(second['/checkpoint']!.hostPath, 'step'), 'utf8'), '500');
  assert.notEqual(second['/output']?.hostPath, first['/output']?.hostPath);
});

test('under the process driver the output and checkpoint directories are host paths; a deployment gets neither', async (t) => {
  const dataDir = tempDir(t);
  const driver = new FakeDriver('process');
  const a = agent(t, dataDir, driver, new MemoryBlobSource(), FAST, { dataDir });
  a.desire(1, [allocation('job-1', {}, { kind: 'job', workload: 'train' }), allocation('web-1', {}, { kind: 'deployment' })]);
  await reachState(a, 'job-1', 'running');
  await reachState(a, 'web-1', 'running');
  const job = driver.started.find((task) => task.allocationId === 'job-1')!;
  assert.equal(job.env.MLFLEET_OUTPUT_PATH, path.join(dataDir, 'outputs', 'job-1'));
  assert.equal(job.env.MLFLEET_CHECKPOINT_PATH, path.join(dataDir, 'checkpoints', 'acme', 'train', 'rank-0'));
  assert.ok(existsSync(job.env.MLFLEET_OUTPUT_PATH!) && existsSync(job.env.MLFLEET_CHECKPOINT_PATH!), 'both exist before the task starts');
  const web = driver.started.find((task) => task.allocationId === 'web-1')!;
  assert.equal(web.env.MLFLEET_OUTPUT_PATH, undefined);
  assert.equal(web.mounts.length, 0);
});

test("rank 0 of a job with an output model is completed only once its output is pushed, with the version; a failed push fails it; other ranks and failed tasks push nothing", async (t) => {
  const dataDir = tempDir(t);
  const driver = new FakeDriver('process');
  const pushes: OutputPushRequest[] = [];
  let answer: () => Promise<number> = async () => 7;
  const a = agent(t, dataDir, driver, new MemoryBlobSource(), { ...FAST, outputRetryMs: 20 }, {
    dataDir,
    pushOutput: async (request) => {
      pushes.push(request);
      return answer();
    },
  });
  const worker = (id: string, rank: number) => allocation(id, { rank, worldSize: 2, output: OUTPUT }, { kind: 'job', workload: id });
  a.desire(1, [worker('ok', 0), worker('rank1', 1), worker('crash', 0), worker('refused', 0)]);
  for (const id of ['ok', 'rank1', 'crash', 'refused']) await reachState(a, id, 'running');

  // The leader is away for the first two tries: the push is tried again.
  let tries = 0;
  answer = async () => {
    tries += 1;
    if (tries <= 2) throw new UnavailableError('not connected to the leader');
    return 7;
  };
  driver.exit('ok', 0);
  await reachState(a, 'ok', 'completed');
  assert.equal(a.reconciler.status('ok')?.outputVersion, 7);
  assert.equal(tries, 3);
  assert.deepEqual(pushes.map((p) => [p.allocationId, p.dir, p.output?.model]), Array(3).fill(['ok', path.join(dataDir, 'outputs', 'ok'), 'sentiment']));

  pushes.length = 0;
  driver.exit('rank1', 0);
  driver.exit('crash', 1);
  await reachState(a, 'rank1', 'completed');
  await reachState(a, 'crash', 'failed');
  assert.deepEqual(pushes, [], 'only rank 0 pushes, and only after exiting 0');
  assert.equal(a.reconciler.status('rank1')?.outputVersion, 0);

  answer = async () => {
    throw new InvalidArgumentError('the job exited 0 but wrote nothing to its output directory');
  };
  driver.exit('refused', 0);
  await reachState(a, 'refused', 'failed');
  assert.match(a.reconciler.status('refused')!.reason, /exited 0, but its output could not be pushed: .*wrote nothing/);
});

test("a job's checkpoints are removed once none of its allocations has been on the host for the retention; a job still here keeps them", async (t) => {
  const dataDir = tempDir(t);
  const driver = new FakeDriver('process');
  const a = agent(t, dataDir, driver, new MemoryBlobSource(), { ...FAST, checkpointRetentionMs: 300, checkpointSweepMs: 20 }, { dataDir });
  a.desire(1, [allocation('gone-1', {}, { kind: 'job', workload: 'gone' }), allocation('kept-1', {}, { kind: 'job', workload: 'kept' })]);
  await reachState(a, 'gone-1', 'running');
  await reachState(a, 'kept-1', 'running');
  const gone = path.join(dataDir, 'checkpoints', 'acme', 'gone');
  const kept = path.join(dataDir, 'checkpoints', 'acme', 'kept');
  a.desire(2, [allocation('kept-1', {}, { kind: 'job', workload: 'kept' })]);
  await reachState(a, 'gone-1', 'stopped');
  assert.ok(existsSync(gone), 'kept for a retry within the retention');
  await until('the checkpoints of the job that left are removed (its stopped task, kept for its logs, needs none)', () => !existsSync(gone));
  assert.ok(a.reconciler.has('gone-1'), 'its task is still kept');
  assert.ok(existsSync(kept));
});
