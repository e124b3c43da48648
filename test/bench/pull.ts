// Pull benchmark (issue 4): a model pushed to the coordinator is pulled into an agent's cache
// (gRPC download from an offset, hashed while it streams, verified, published by rename) and
// compared, in the same run, with a baseline that sends the same bytes from disk through a
// plain gRPC stream into a file with no hashing or verification. Reports the throughput of
// each, their ratio, and the agent's peak RSS during the pull; and, to tell where the time
// goes, the CPU seconds of each process and the phases of the pull.
// Goal: ratio >= 0.85 and agent RSS < 150 MB.
//   npm run bench -- pull            1 GiB
//   npm run bench -- pull --quick    256 MiB
import { spawn, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { callUnary, method } from '../helpers/raw-grpc.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const quick = process.argv.includes('--quick');
const sizeBytes = (quick ? 256 : 1024) * 2 ** 20;
const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-pull-bench-'));
const children: ChildProcess[] = [];

function node(script: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  return start(process.execPath, [script, ...args], env);
}

/** A program run as installed, through its shebang and the Node flags it names there. */
function start(program: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.push(child);
  return child;
}

function line(child: ChildProcess, stream: 'stdout' | 'stderr', test: (l: string) => boolean, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for output')), timeoutMs);
    createInterface({ input: child[stream]! }).on('line', (l) => {
      if (test(l)) {
        clearTimeout(timer);
        resolve(l);
      }
    });
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null ? Promise.resolve(child.exitCode) : new Promise((resolve) => child.once('exit', resolve));
}

function rssBytes(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

type CpuTimes = { user: number; system: number };
const since = (before: CpuTimes, after: CpuTimes): CpuTimes => ({ user: after.user - before.user, system: after.system - before.system });
const total = (times: CpuTimes) => round2(times.user + times.system);

/** User and system CPU seconds a process has used so far, from /proc; 0 once it is gone. */
function cpuTimes(pid: number): CpuTimes {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 }; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return { user: 0, system: 0 };
  }
}

const round2 = (n: number) => Math.round(n * 100) / 100;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

try {
  // Random bytes: incompressible, like weights.
  const model = path.join(dir, 'model.onnx');
  const fd = openSync(model, 'w');
  const block = Buffer.alloc(8 * 2 ** 20);
  for (let written = 0; written < sizeBytes; written += block.length) writeSync(fd, randomFillSync(block));
  closeSync(fd);

  // Baseline: plain gRPC stream, disk to disk, no verification.
  const plain = path.join(here, 'lib/plain-stream.js');
  const server = node(plain, ['serve', model]);
  const port = (await line(server, 'stdout', (l) => l.startsWith('port'))).split(' ')[1]!;
  const b0 = process.hrtime.bigint();
  const serverCpu0 = cpuTimes(server.pid!);
  const fetch = node(plain, ['fetch', `127.0.0.1:${port}`, path.join(dir, 'baseline.out')]);
  // Sampled while it runs: a process that has exited has no /proc entry to read.
  let fetchCpu = { user: 0, system: 0 };
  const fetchSampler = setInterval(() => {
    const now = cpuTimes(fetch.pid!);
    if (now.user + now.system > fetchCpu.user + fetchCpu.system) fetchCpu = now;
  }, 20);
  await exited(fetch);
  const baselineSeconds = Number(process.hrtime.bigint() - b0) / 1e9;
  clearInterval(fetchSampler);
  const serverCpu = since(serverCpu0, cpuTimes(server.pid!));
  server.kill('SIGTERM');
  rmSync(path.join(dir, 'baseline.out'), { force: true });

  // mlfleet: coordinator, push, agent, prefetch into the cache.
  const coordinator = start(path.join(root, 'dist/coordinator/main.js'), [
    '--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--store', `sqlite:${dir}/c.db`, '--data-dir', `${dir}/coordinator`,
  ]);
  const started = JSON.parse(await line(coordinator, 'stderr', (l) => l.includes('coordinator started'))) as { grpc: string };
  await line(coordinator, 'stderr', (l) => l.includes('elected leader'));
  coordinator.stderr!.resume();
  const admin = readFileSync(`${dir}/coordinator/admin-token`, 'utf8').trim();
  const push = start(path.join(root, 'dist/scripts/mlfleetctl.js'), ['--coordinator', started.grpc, '-o', 'json', 'models', 'push', 'bench', model], { MLFLEET_TOKEN: admin });
  let pushed = '';
  push.stdout!.on('data', (d: Buffer) => (pushed += d));
  push.stderr!.resume();
  if ((await exited(push)) !== 0) throw new Error('models push failed');
  const digest = (JSON.parse(pushed) as { digest: string }).digest;

  const inventory = path.join(dir, 'inventory.json');
  writeFileSync(inventory, JSON.stringify({ cpu: '8', memory: '32Gi' }));
  const agent = start(path.join(root, 'dist/agent/main.js'), [
    '--name', 'bench-node', '--coordinator', started.grpc, '--data-dir', `${dir}/agent`, '--http-listen', '127.0.0.1:0',
    '--join-token-file', `${dir}/coordinator/join-token`, '--inventory-file', inventory, '--driver', 'process', '--cache-max-bytes', '8Gi',
  ]);
  await line(agent, 'stderr', (l) => l.includes('connected to the leader'));
  // The agent's own log times split the pull into phases: the command reaching it, the transfer
  // (fetch, hash, write, verify, publish) and the cache report reaching GetNode.
  const agentLog = new Map<string, number>();
  createInterface({ input: agent.stderr! }).on('line', (l) => {
    try {
      const entry = JSON.parse(l) as { msg?: string; time?: string };
      if (entry.msg && entry.time && !agentLog.has(entry.msg)) agentLog.set(entry.msg, Date.parse(entry.time));
    } catch {
      // not a log line
    }
  });
  await sleep(500);
  const idleRss = rssBytes(agent.pid!);

  let peakRss = idleRss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssBytes(agent.pid!))), 50);
  const getNode = method('NodeService.GetNode');
  const coordinatorCpu0 = cpuTimes(coordinator.pid!);
  const agentCpu0 = cpuTimes(agent.pid!);
  const p0 = process.hrtime.bigint();
  const p0Ms = Date.now();
  const prefetch = await callUnary(started.grpc, method('NodeService.PrefetchModel'), { node: 'bench-node', ref: 'bench:1' }, admin);
  if (prefetch.answer !== 'OK') throw new Error(`prefetch: ${prefetch.answer} ${prefetch.details}`);
  for (;;) {
    const answer = await callUnary(started.grpc, getNode, { name: 'bench-node' }, admin);
    const cache = (answer.response as { cache?: { digest: string }[] } | undefined)?.cache ?? [];
    if (cache.some((e) => e.digest === digest)) break;
    await sleep(20);
  }
  const pullSeconds = Number(process.hrtime.bigint() - p0) / 1e9;
  const seenMs = Date.now();
  const coordinatorCpu = since(coordinatorCpu0, cpuTimes(coordinator.pid!));
  const agentCpu = since(agentCpu0, cpuTimes(agent.pid!));
  clearInterval(sampler);
  const startedMs = agentLog.get('downloading') ?? p0Ms;
  const cachedMs = agentLog.get('cached') ?? seenMs;

  const mib = sizeBytes / 2 ** 20;
  const result = {
    bench: 'pull',
    sizeMiB: mib,
    baselineMiBps: Number((mib / baselineSeconds).toFixed(1)),
    pullMiBps: Number((mib / pullSeconds).toFixed(1)),
    ratio: Number((baselineSeconds / pullSeconds).toFixed(3)),
    agentIdleRssMiB: Math.round(idleRss / 2 ** 20),
    agentPeakRssMiB: Math.round(peakRss / 2 ** 20),
    // CPU seconds each side spent: what the throughput costs, less noisy than wall time on a busy host.
    cpuSeconds: { baselineServer: total(serverCpu), baselineClient: total(fetchCpu), coordinator: total(coordinatorCpu), agent: total(agentCpu) },
    // Of those, the seconds spent in the kernel: copying into the page cache, socket writes.
    systemSeconds: { baselineServer: round2(serverCpu.system), baselineClient: round2(fetchCpu.system), coordinator: round2(coordinatorCpu.system), agent: round2(agentCpu.system) },
    phasesMs: { command: startedMs - p0Ms, transfer: cachedMs - startedMs, report: seenMs - cachedMs },
  };
  console.log(`baseline ${result.baselineMiBps} MiB/s, verified pull into the agent cache ${result.pullMiBps} MiB/s (ratio ${result.ratio}); agent RSS peak ${result.agentPeakRssMiB} MiB; phases ${JSON.stringify(result.phasesMs)}; cpu s ${JSON.stringify(result.cpuSeconds)}, system ${JSON.stringify(result.systemSeconds)}`);
  console.log(JSON.stringify({ ...result, goalMet: result.ratio >= 0.85 && result.agentPeakRssMiB < 150 }));
} finally {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  await Promise.all(children.map(exited));
  rmSync(dir, { recursive: true, force: true });
}
