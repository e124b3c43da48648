// The reconciler's cold-start phases: a start it launches is timed on its clock (pull, create,
// start, load) and the phases go out once, with the first `ready`; later readies, other states
// and adopted tasks carry none. Against the fake driver and a fake clock (exact figures), and
// once with the real process driver (plausible figures).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { ProcessDriver } from '../../agent/drivers/process-driver.js';
import type { Driver } from '../../agent/drivers/driver.js';
import { LocalState } from '../../agent/local-state.js';
import { ModelCache, type BlobSource, type PullRequest } from '../../agent/model-cache.js';
import { Reconciler, type ReconcilerTiming } from '../../agent/reconciler.js';
import type { Clock } from '../../shared/clock.js';
import { silentLogger } from '../../shared/log.js';
import { Bitfield } from '../../shared/pieces.js';
import type { Allocation, AllocationStatus, StartPhase } from '../../shared/proto.js';
import type { RunBlob } from '../../shared/workloads.js';
import { until } from '../helpers/eventually.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakeDriver } from '../helpers/fake-driver.js';
import { freePort } from '../helpers/net.js';
import { tempDir } from '../helpers/processes.js';

/** One model in memory; a pull takes `pullMs` on the clock the test moves. */
class SlowSource implements BlobSource {
  constructor(
    private readonly content: Buffer,
    private readonly onPull: () => void,
  ) {}

  blob(): RunBlob {
    const digest = `sha256:${createHash('sha256').update(this.content).digest('hex')}`;
    return { kind: 'model', ref: 'acme/m:1', name: 'm', version: 1, digest, sizeBytes: this.content.length, directory: false, mountPath: '/model' };
  }

  async pull(request: PullRequest): Promise<void> {
    this.onPull();
    await request.handle.write(this.content, 0, this.content.length, 0);
    await request.handle.datasync();
    const progress = { pieceBytes: this.content.length, bitfield: Bitfield.full(1) };
    request.onProgress(progress);
    request.onCheckpoint(progress);
  }
}

function allocation(id: string, hostPort: number, spec: Record<string, unknown>): Allocation {
  return {
    id,
    kind: 'deployment',
    workload: 'web',
    tenant: 'acme',
    resources: { cpuMillis: 500, memoryBytes: 2 ** 28, gpus: 0, gpuMemoryBytes: 0, nicMbps: 0 },
    gpuIndexes: [],
    hostPort,
    specJson: JSON.stringify({ image: 'mlfleet/test:1', command: [], env: {}, port: 8080, readinessPath: '/ready', readinessTimeoutMs: 30_000, datasets: [], rank: 0, worldSize: 1, ...spec }),
    modRevision: 1,
  };
}

function reconciler(t: TestContext, dataDir: string, driver: Driver, source: BlobSource, clock: Clock | undefined, timing: Partial<ReconcilerTiming>) {
  const state = LocalState.open(dataDir);
  const cache = ModelCache.open({ dir: path.join(dataDir, 'cache'), db: state.database, maxBytes: 2 ** 30, source });
  const reports: AllocationStatus[] = [];
  const started: StartPhase[][] = [];
  const r = new Reconciler({ driver, cache, state, advertiseHost: '10.0.0.5', onStatus: (changed) => reports.push(...changed), onStarted: (p) => started.push(p), clock, timing, log: silentLogger() });
  r.start();
  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      await r.close();
      await cache.close();
      state.close();
    })());
  t.after(close);
  return {
    r,
    reports,
    started,
    close,
    desire(revision: number, allocations: Allocation[]) {
      const set = { revision, allocations };
      if (state.saveDesired(set)) r.setDesired(set);
    },
  };
}

async function server(t: TestContext, port: number, answer: () => number): Promise<{ hits: number }> {
  const seen = { hits: 0 };
  const srv = http.createServer((req, res) => {
    seen.hits++;
    res.writeHead(req.url === '/ready' ? answer() : 404);
    res.end();
  });
  await new Promise<void>((resolve) => srv.listen(port, '127.0.0.1', resolve));
  t.after(() => {
    srv.closeAllConnections();
    return new Promise<void>((resolve) => srv.close(() => resolve()));
  });
  return seen;
}

test('the first ready carries the phases timed on the reconciler clock, once; later readies and adoptions carry none', async (t) => {
  const clock = new FakeClock();
  const driver = new FakeDriver('docker', () => clock.now());
  driver.during = (step) => clock.advance(step === 'create' ? 80 : 310);
  const source = new SlowSource(Buffer.from('weights'), () => clock.advance(500));
  const port = await freePort();
  // The first probe finds the server ready 1020 ms (of the test's clock) after it started.
  let loading = true;
  let answer = 200;
  await server(t, port, () => {
    if (loading) clock.advance(1_020);
    loading = false;
    return answer;
  });
  const dataDir = tempDir(t);
  const timing = { resyncMs: 60_000, readinessIntervalMs: 20, livenessIntervalMs: 5_000, reportDebounceMs: 5 };
  const a = reconciler(t, dataDir, driver, source, clock, timing);

  a.desire(1, [allocation('web-1', port, { model: source.blob() })]);
  await until('ready', () => a.r.status('web-1')?.state === 'ready');
  clock.advance(5);
  await until('ready reported', () => a.reports.some((s) => s.state === 'ready'));
  const ready = a.reports.filter((s) => s.state === 'ready');
  assert.deepEqual(ready[0]!.startPhases, [
    { phase: 'pull', seconds: 0.5 },
    { phase: 'create', seconds: 0.08 },
    { phase: 'start', seconds: 0.31 },
    { phase: 'load', seconds: 1.02 },
  ]);
  assert.deepEqual(a.started, [ready[0]!.startPhases]);
  assert.deepEqual(a.reports.filter((s) => s.state !== 'ready').map((s) => s.startPhases.length), a.reports.filter((s) => s.state !== 'ready').map(() => 0), 'no other state carries phases');

  // It stops answering, then answers again: ready again, without phases.
  answer = 503;
  clock.advance(5_000);
  await until('running again', () => a.r.status('web-1')?.state === 'running');
  answer = 200;
  clock.advance(5_000);
  await until('ready again', () => a.r.status('web-1')?.state === 'ready');
  clock.advance(5);
  await until('reported', () => a.reports.filter((s) => s.state === 'ready').length === 2);
  assert.deepEqual(a.reports.filter((s) => s.state === 'ready')[1]!.startPhases, []);
  assert.equal(a.started.length, 1);

  // A restarted agent adopts the task: its ready is not a start, and says no phases.
  await a.close();
  const b = reconciler(t, dataDir, driver, source, clock, timing);
  await until('adopted and ready', () => b.r.status('web-1')?.state === 'ready');
  clock.advance(5);
  await until('reported', () => b.reports.some((s) => s.state === 'ready'));
  assert.equal(driver.started.length, 1, 'adopted, not started again');
  assert.deepEqual(b.reports.filter((s) => s.state === 'ready').map((s) => s.startPhases), [[]]);
  assert.deepEqual(b.started, []);
});

const SERVER = `
const http = require('node:http');
const server = http.createServer((req, res) => { res.writeHead(req.url === '/ready' ? 200 : 404); res.end(); });
setTimeout(() => server.listen(Number(process.env.PORT), '127.0.0.1'), 300);
process.on('SIGTERM', () => { server.close(); process.exit(0); });
`;

test('with the process driver: every phase is there, and they add up to the start', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-start-phases-'));
  const driver = new ProcessDriver({ dataDir, node: 'node-1', log: silentLogger(), pollMs: 20 });
  const source = new SlowSource(Buffer.from('weights'), () => undefined);
  const port = await freePort();
  const a = reconciler(t, dataDir, driver, source, undefined, { resyncMs: 2_000, readinessIntervalMs: 20, reportDebounceMs: 5 });
  t.after(async () => {
    await a.close();
    for (const task of await driver.list()) await driver.remove(task.allocationId, 0);
    rmSync(dataDir, { recursive: true, force: true });
  });
  const began = Date.now();
  a.desire(1, [allocation('web-1', port, { command: [process.execPath, '-e', SERVER], model: source.blob() })]);
  await until('ready reported', () => a.reports.some((s) => s.state === 'ready'), 20_000);
  const took = (Date.now() - began) / 1000;
  const phases = a.reports.find((s) => s.state === 'ready')!.startPhases;
  assert.deepEqual(phases.map((p) => p.phase), ['pull', 'create', 'start', 'load']);
  const sum = phases.reduce((total, p) => total + p.seconds, 0);
  assert.ok(phases.every((p) => p.seconds >= 0), JSON.stringify(phases));
  assert.ok(sum <= took + 0.01 && sum >= took - 0.5, `phases add up to ${sum} s of a ${took} s start`);
  assert.ok(phases.find((p) => p.phase === 'load')!.seconds >= 0.25, 'load includes the server\'s 300 ms before it listens');
});
