// The process driver with real child processes: a task's port, environment and GPUs, exit
// codes, idempotent starts, adoption by a new driver (a restarted agent), exit codes recorded
// while no agent runs, bounded logs with tail and follow, stopping a task while keeping it with its
// log, and removal of the whole process group.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type { Task } from '../../agent/drivers/driver.js';
import { ProcessDriver } from '../../agent/drivers/process-driver.js';
import { MlfleetError } from '../../shared/errors.js';
import { silentLogger } from '../../shared/log.js';
import type { RunSpec } from '../../shared/workloads.js';
import { eventually } from '../helpers/eventually.js';
import { freePort } from '../helpers/net.js';
import { assertTailThenFollow, get, linesThenAfterTheCall, logs } from './driver-checks.js';

const RUN = `${process.pid}-${randomBytes(3).toString('hex')}`;
const NODE = `test-node-${RUN}`;
const DRIVER_MODULE = new URL('../../agent/drivers/process-driver.js', import.meta.url).href;
const LOG_MODULE = new URL('../../shared/log.js', import.meta.url).href;
let ids = 0;

function spec(command: string[]): RunSpec {
  return {
    image: 'ignored/by-the-process-driver:1',
    command,
    env: {},
    port: 0,
    readinessPath: '',
    readinessTimeoutMs: 30_000,
    model: undefined,
    datasets: [],
    rank: 0,
    worldSize: 1,
  };
}

function task(command: string[], overrides: Partial<Task> = {}): Task {
  return {
    allocationId: `alloc-${RUN}-${++ids}`,
    kind: 'job',
    workload: 'echo',
    tenant: 'acme',
    spec: spec(command),
    cpuMillis: 0,
    memoryBytes: 0,
    gpuIndexes: [],
    hostPort: 0,
    mounts: [],
    env: {},
    ...overrides,
  };
}

/** `node -e SCRIPT` on the host. */
function node(script: string): string[] {
  return [process.execPath, '-e', script];
}

/**
 * A data dir that is removed after the test, every task in it stopped first (its process group
 * killed): after hooks run in the order they were added, so this one does both.
 */
function dataDirFor(t: TestContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-process-driver-'));
  t.after(async () => {
    const driver = new ProcessDriver({ dataDir: dir, node: NODE, log: silentLogger() });
    const tasks = existsSync(path.join(dir, 'tasks')) ? readdirSync(path.join(dir, 'tasks')) : [];
    await Promise.all(tasks.map((allocationId) => driver.remove(allocationId, 0)));
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

function driverFor(t: TestContext, options: { dataDir?: string; node?: string; logMaxBytes?: number } = {}): ProcessDriver {
  return new ProcessDriver({ dataDir: options.dataDir ?? dataDirFor(t), node: options.node ?? NODE, log: silentLogger(), logMaxBytes: options.logMaxBytes, pollMs: 50 });
}

async function exited(driver: ProcessDriver, allocationId: string, timeoutMs = 10_000) {
  return eventually(`${allocationId} exiting`, timeoutMs, async () => (await driver.list()).find((s) => s.allocationId === allocationId && !s.running), { intervalMs: 50 });
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

function recordOf(dataDir: string, allocationId: string): { pid: number } {
  return JSON.parse(readFileSync(path.join(dataDir, 'tasks', allocationId, 'task.json'), 'utf8')) as { pid: number };
}

const SERVER = `
require('http').createServer((req, res) => res.end(JSON.stringify({
  greeting: process.env.GREETING,
  gpus: process.env.CUDA_VISIBLE_DEVICES,
  secret: process.env.MLFLEET_TEST_AGENT_SECRET ?? null,
}))).listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening'));
`;

describe('a serving process', () => {
  it('answers on its host port with its environment and only its GPUs, and is started once', async (t) => {
    process.env.MLFLEET_TEST_AGENT_SECRET = 'the agent keeps this';
    t.after(() => delete process.env.MLFLEET_TEST_AGENT_SECRET);
    const dataDir = dataDirFor(t);
    const driver = driverFor(t, { dataDir });
    const hostPort = await freePort();
    const served = task(node(SERVER), { kind: 'deployment', hostPort, gpuIndexes: [1, 3], env: { PORT: String(hostPort), GREETING: 'hello from the host' } });
    await driver.start(served);
    const body = await eventually('the server answering', 10_000, async () => JSON.parse(await get(hostPort)) as Record<string, unknown>, { retryErrors: true, intervalMs: 50 });
    assert.deepEqual(body, { greeting: 'hello from the host', gpus: '1,3', secret: null });

    const { pid } = recordOf(dataDir, served.allocationId);
    await driver.start(served);
    await driver.start(served);
    assert.equal(recordOf(dataDir, served.allocationId).pid, pid);
    assert.equal(await logs(driver, served.allocationId), 'listening\n');
    const statuses = await driver.list();
    assert.equal(statuses.length, 1);
    assert.equal(statuses[0]!.running, true);
  });

  it("is adopted by a new driver on the same data dir, and ignored by another node's", async (t) => {
    const dataDir = dataDirFor(t);
    const driver = driverFor(t, { dataDir });
    const served = task(node('setInterval(() => {}, 1000)'), { kind: 'deployment' });
    await driver.start(served);

    const restarted = new ProcessDriver({ dataDir, node: NODE, log: silentLogger() });
    const [status] = await restarted.list();
    assert.equal(status?.allocationId, served.allocationId);
    assert.equal(status.running, true);
    assert.equal(status.exitCode, undefined);
    assert.ok(status.startedAtMs > Date.now() - 60_000 && status.startedAtMs <= Date.now());
    assert.deepEqual(await new ProcessDriver({ dataDir, node: 'another-node', log: silentLogger() }).list(), []);

    // The adopting driver can stop it.
    await restarted.remove(served.allocationId, 1_000);
    assert.deepEqual(await driver.list(), []);
  });
});

it('reports a task that exits 3 as exited with code 3', async (t) => {
  const driver = driverFor(t);
  const job = task(node('process.exit(3)'));
  await driver.start(job);
  const status = await exited(driver, job.allocationId);
  assert.equal(status.exitCode, 3);
  assert.ok(status.finishedAtMs >= status.startedAtMs && status.startedAtMs > 0);
});

it('reports a command that is not there as exit code 127, and says why in the log', async (t) => {
  const driver = driverFor(t);
  const job = task([`no-such-command-${RUN}`, '--flag']);
  await driver.start(job);
  assert.equal((await exited(driver, job.allocationId)).exitCode, 127);
  assert.match(await logs(driver, job.allocationId), new RegExp(`cannot run no-such-command-${RUN}`));
});

it('refuses a task without a command: there is no image to take one from', async (t) => {
  const driver = driverFor(t);
  await assert.rejects(driver.start(task([])), (err: Error) => MlfleetError.is(err) && err.code === 'INVALID_ARGUMENT' && /--driver docker/.test(err.message));
  assert.deepEqual(await driver.list(), []);
});

it('records the exit code of a task that ends after the agent that started it is gone', async (t) => {
  const dataDir = dataDirFor(t);
  const trigger = path.join(dataDir, 'go');
  const job = task(node(`setInterval(() => { if (require('fs').existsSync(${JSON.stringify(trigger)})) process.exit(5); }, 20)`));
  // A short-lived "agent": it starts the task and exits; the task must not keep it alive.
  const agent = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { ProcessDriver } = await import(${JSON.stringify(DRIVER_MODULE)});
       const { silentLogger } = await import(${JSON.stringify(LOG_MODULE)});
       await new ProcessDriver({ dataDir: process.argv[1], node: process.argv[2], log: silentLogger() }).start(JSON.parse(process.argv[3]));`,
      dataDir,
      NODE,
      JSON.stringify(job),
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const code = await new Promise<number | null>((resolve) => agent.once('exit', resolve));
  assert.equal(code, 0, 'the agent started the task and exited');

  const driver = driverFor(t, { dataDir });
  const [running] = await driver.list();
  assert.equal(running?.running, true, 'the task outlives its agent');
  writeFileSync(trigger, '');
  assert.equal((await exited(driver, job.allocationId)).exitCode, 5);
});

it('gives the last bytes of the log, and a followed log goes on with output written after the call', async (t) => {
  const dataDir = dataDirFor(t);
  const driver = driverFor(t, { dataDir });
  const trigger = path.join(dataDir, 'go');
  const job = task(node(linesThenAfterTheCall(trigger, 20)));
  await driver.start(job);
  await eventually('the first hundred lines', 10_000, async () => ((await logs(driver, job.allocationId)).includes('line-099\n') ? true : undefined), { intervalMs: 50 });

  await assertTailThenFollow(driver, job.allocationId, () => writeFileSync(trigger, ''));
});

it('ends a followed log when its signal aborts', async (t) => {
  const driver = driverFor(t);
  const served = task(node(`console.log('up'); setInterval(() => {}, 1000)`));
  await driver.start(served);
  await eventually('output', 10_000, async () => ((await logs(driver, served.allocationId)) ? true : undefined), { intervalMs: 50 });
  const controller = new AbortController();
  const seen: string[] = [];
  for await (const chunk of driver.logs(served.allocationId, { tailBytes: 0, follow: true, signal: controller.signal })) {
    seen.push(chunk.toString());
    setTimeout(() => controller.abort(), 100);
  }
  assert.deepEqual(seen, ['up\n']);
});

it('keeps at most two log files of the cap, with the newest output', async (t) => {
  const dataDir = dataDirFor(t);
  const cap = 64 * 1024;
  const driver = driverFor(t, { dataDir, logMaxBytes: cap });
  // About 1 MiB of numbered lines, then a last one.
  const job = task(node(`for (let i = 0; i < 40000; i++) console.log('output line ' + String(i).padStart(8, '0')); console.log('the end');`));
  await driver.start(job);
  assert.equal((await exited(driver, job.allocationId)).exitCode, 0);
  const dir = path.join(dataDir, 'tasks', job.allocationId);
  assert.ok(statSync(path.join(dir, 'output.log')).size <= cap);
  assert.equal(statSync(path.join(dir, 'output.log.1')).size, cap);
  const kept = await logs(driver, job.allocationId);
  assert.ok(kept.length <= 2 * cap && kept.length > cap, `${kept.length} bytes kept`);
  assert.ok(kept.endsWith('output line 00039999\nthe end\n'));
  assert.equal(await logs(driver, job.allocationId, 8), 'the end\n');
});

it('stops a task and keeps it: listed as ended with its kind and when, its log readable, its port free; one killed after the grace period says when too; stopping again is harmless', async (t) => {
  const dataDir = dataDirFor(t);
  const driver = driverFor(t, { dataDir });
  const hostPort = await freePort();
  const serve = (greeting: string) =>
    node(`require('http').createServer((q, r) => r.end('${greeting}')).listen(${hostPort}, '127.0.0.1', () => console.log('listening'));
      process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(143); });`);
  const polite = task(serve('first'), { hostPort });
  const stubborn = task(node(`process.on('SIGTERM', () => console.log('ignoring SIGTERM')); console.log('up'); setInterval(() => {}, 1000);`));
  await driver.start(polite);
  await driver.start(stubborn);
  await eventually('the server answering', 10_000, async () => get(hostPort), { retryErrors: true, intervalMs: 50 });
  await eventually('the stubborn one up', 10_000, async () => ((await logs(driver, stubborn.allocationId)) ? true : undefined), { intervalMs: 50 });

  const before = Date.now();
  await Promise.all([driver.stop(polite.allocationId, 5_000), driver.stop(stubborn.allocationId, 300)]);
  const after = Date.now();
  const listed = new Map((await driver.list()).map((s) => [s.allocationId, s]));
  const stopped = listed.get(polite.allocationId)!;
  assert.deepEqual([stopped.kind, stopped.running, stopped.exitCode], ['job', false, 143]);
  assert.ok(stopped.finishedAtMs >= before - 1_000 && stopped.finishedAtMs <= after + 1_000, 'it says when it ended');
  assert.equal(await logs(driver, polite.allocationId), 'listening\ngot SIGTERM\n');
  // SIGKILLed with its supervisor: no exit code, but the stop recorded when it ended.
  const killed = listed.get(stubborn.allocationId)!;
  assert.deepEqual([killed.kind, killed.running, killed.exitCode], ['job', false, undefined]);
  assert.ok(killed.finishedAtMs >= before - 1_000 && killed.finishedAtMs <= after + 1_000, 'it says when it was stopped');
  assert.equal(await logs(driver, stubborn.allocationId), 'up\nignoring SIGTERM\n');
  assert.equal(alive(recordOf(dataDir, stubborn.allocationId).pid), false);

  await new Promise((resolve) => setTimeout(resolve, 20));
  await driver.stop(stubborn.allocationId, 300);
  await driver.start(polite);
  const restarted = new ProcessDriver({ dataDir, node: NODE, log: silentLogger() });
  assert.deepEqual(
    new Map((await restarted.list()).map((s) => [s.allocationId, s])),
    listed,
    'stopping or starting again changes nothing (not even when it ended), and a restarted agent sees the same',
  );

  // A stopped task binds no port: the next one listens on it.
  const next = task(serve('second'), { hostPort });
  await driver.start(next);
  assert.equal(await eventually('the next task answering', 10_000, async () => ((await get(hostPort)) === 'second' ? 'second' : undefined), { retryErrors: true, intervalMs: 50 }), 'second');
});

it('stops the whole process group on remove (SIGKILL after the grace period), and removing again is harmless', async (t) => {
  const dataDir = dataDirFor(t);
  const driver = driverFor(t, { dataDir });
  const pidFile = path.join(dataDir, 'grandchild.pid');
  // The task ignores SIGTERM and leaves a grandchild of its own.
  const job = task(
    node(`
      process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
      const child = require('child_process').spawn('sleep', ['300'], { stdio: 'ignore' });
      require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(child.pid));
      setInterval(() => {}, 1000);`),
  );
  await driver.start(job);
  const grandchild = await eventually('the grandchild', 10_000, async () => (existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) || undefined : undefined), { intervalMs: 20 });
  const { pid: supervisor } = recordOf(dataDir, job.allocationId);
  assert.ok(alive(grandchild) && alive(supervisor));

  const started = Date.now();
  await driver.remove(job.allocationId, 300);
  assert.ok(Date.now() - started >= 300, 'it waited out the grace period');
  assert.equal(alive(grandchild), false, 'the grandchild is gone');
  assert.equal(alive(supervisor), false, 'the supervisor is gone');
  assert.equal(existsSync(path.join(dataDir, 'tasks', job.allocationId)), false, 'the task directory is gone');
  assert.deepEqual(await driver.list(), []);
  await driver.remove(job.allocationId, 300);
});
