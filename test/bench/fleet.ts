// Fleet benchmark (issue 2): N simulated agents, in a few processes over real gRPC on
// loopback, stream heartbeats every 5 s to one coordinator (SQLite store, its own process).
// For each N it reports the coordinator's CPU (% of one core) and RSS over a steady-state
// window, and the p99 heartbeat-to-view lag from the coordinator's own summary metric.
// Goal: 5,000 agents at < 25% of one core and p99 lag < 200 ms.
//   npm run bench -- fleet            N = 1000 and 5000, 60 s windows
//   npm run bench -- fleet --quick    N = 1000 only, 20 s window (within a minute)
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { cpuTimes, rssBytes } from './lib/proc.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const quick = process.argv.includes('--quick');
const sizes = quick ? [1000] : [1000, 5000];
const windowSec = quick ? 20 : 60;
const warmupSec = quick ? 5 : 10;
const perProcess = 1250;

function cpuSeconds(pid: number): number {
  const { user, system } = cpuTimes(pid);
  return user + system;
}

function waitForLine(child: ChildProcess, stream: 'stdout' | 'stderr', test: (line: string) => boolean, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child[stream]! });
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${stream} output`)), timeoutMs);
    lines.on('line', (line) => {
      if (test(line)) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    child.once('exit', (code) => reject(new Error(`process exited with ${code}`)));
  });
}

async function metric(httpAddress: string, name: string): Promise<number> {
  const text = await (await fetch(`http://${httpAddress}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.split(' ').pop()) : NaN;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function run(n: number) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-bench-'));
  // Run as installed, through its shebang and the Node flags it names there.
  const coordinator = spawn(
    path.join(root, 'dist/coordinator/main.js'),
    ['--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0',
      '--store', `sqlite:${path.join(dir, 'c.db')}`, '--data-dir', dir, '--node-ttl', '15s', '--log-level', 'info'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const agents: ChildProcess[] = [];
  try {
    const started = JSON.parse(await waitForLine(coordinator, 'stderr', (l) => l.includes('coordinator started'), 15_000)) as { grpc: string; http: string };
    await waitForLine(coordinator, 'stderr', (l) => l.includes('elected leader'), 15_000);
    coordinator.stderr!.resume();
    const t0 = Date.now();
    for (let i = 0; i * perProcess < n; i++) {
      const count = Math.min(perProcess, n - i * perProcess);
      const joinToken = readFileSync(path.join(dir, 'join-token'), 'utf8').trim();
      agents.push(spawn(process.execPath, [path.join(here, 'lib/fleet-agents.js'), started.grpc, `sim${i}`, String(count), joinToken], { stdio: ['ignore', 'pipe', 'inherit'] }));
    }
    await Promise.all(agents.map((a) => waitForLine(a, 'stdout', (l) => l.startsWith('ready'), 300_000)));
    const connectSec = (Date.now() - t0) / 1000;
    const ready = await metric(started.http, 'mlfleet_nodes{status="ready"}');
    await sleep(warmupSec * 1000);
    const cpu0 = cpuSeconds(coordinator.pid!);
    const w0 = Date.now();
    await sleep(windowSec * 1000);
    const cpuPercent = ((cpuSeconds(coordinator.pid!) - cpu0) / ((Date.now() - w0) / 1000)) * 100;
    const p99 = await metric(started.http, 'mlfleet_heartbeat_lag_seconds{quantile="0.99"}');
    const p50 = await metric(started.http, 'mlfleet_heartbeat_lag_seconds{quantile="0.5"}');
    const result = {
      agents: n,
      readyNodes: ready,
      connectSeconds: Number(connectSec.toFixed(1)),
      coordinatorCpuPercent: Number(cpuPercent.toFixed(1)),
      coordinatorRssMiB: Math.round(rssBytes(coordinator.pid!) / 2 ** 20),
      lagP50Ms: Number((p50 * 1000).toFixed(1)),
      lagP99Ms: Number((p99 * 1000).toFixed(1)),
    };
    console.log(`N=${n}: cpu ${result.coordinatorCpuPercent}% of one core, rss ${result.coordinatorRssMiB} MiB, lag p50 ${result.lagP50Ms} ms p99 ${result.lagP99Ms} ms (connected in ${result.connectSeconds}s, ${ready} ready)`);
    return result;
  } finally {
    for (const a of agents) a.kill('SIGTERM');
    await Promise.all(agents.map((a) => new Promise((r) => (a.exitCode !== null ? r(null) : a.once('exit', r)))));
    coordinator.kill('SIGTERM');
    await new Promise((r) => (coordinator.exitCode !== null ? r(null) : coordinator.once('exit', r)));
    rmSync(dir, { recursive: true, force: true });
  }
}

const results = [];
for (const n of sizes) results.push(await run(n));
const largest = results[results.length - 1]!;
console.log(JSON.stringify({
  bench: 'fleet',
  heartbeatIntervalMs: 5000,
  windowSeconds: windowSec,
  results,
  goalMet: largest.agents >= 5000 ? largest.coordinatorCpuPercent < 25 && largest.lagP99Ms < 200 : null,
}));
