// Fanout benchmark (issue 15): one model pushed to a coordinator, then 16 real agent processes
// on this machine (process driver, each its own data dir and gateway port) all asked at once to
// prefetch it. Measures the time until the last agent has it in its cache (GetNode) and the
// coordinator's egress (its /metrics `mlfleet_coordinator_blob_sent_bytes_total`), with peer
// sharing on (agents serve each other pieces) and off (`--peer-upload-mbps 0` on every agent),
// each from a fresh start, and the bytes each agent received by source and gave to peers (its
// heartbeat's delivery counters, as GetNode shows them).
// Goals (issue 15): with sharing on, the coordinator sends at most 1.3 copies (egress / size),
// and the last agent has the model within 1.1x the time it takes with sharing off (on one host
// both modes share the same cores; on a network, sharing is what lets a fleet scale).
//   npm run bench -- fanout             1 GiB, 16 agents
//   npm run bench -- fanout --quick     256 MiB, 16 agents
//   npm run bench -- fanout --agents 8  fewer agents
//   npm run bench -- fanout --rounds 3  three rounds (the time ratio is their median)
//   npm run bench -- fanout --warm      each fleet first pulls a 64 MiB model, not timed
//                                       (agents that have pulled before: code compiled)
//   npm run bench -- fanout --logs DIR  keeps every process's log under DIR
// Before the rounds, one fanout with sharing off is run and not counted. On a VM whose free
// memory goes back to the host (virtio_balloon free page reporting), the first 17 GiB of page
// cache a fanout writes after boot are pages the host must fault in again, and pages freed a
// moment before are not: measured on this machine, whichever mode ran first took 1.4-1.5x as
// long as the other. The warm-up leaves both modes the same memory to write into; the rounds
// alternate which mode goes first (round 1: on, then off).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, createWriteStream, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { callUnary, method } from '../helpers/raw-grpc.js';
import { cpuTimes, since, type CpuTimes } from './lib/proc.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const quick = process.argv.includes('--quick');
const agentsFlag = process.argv.indexOf('--agents');
const agentCount = agentsFlag >= 0 ? Number(process.argv[agentsFlag + 1]) : 16;
if (!Number.isInteger(agentCount) || agentCount < 1 || agentCount > 64) throw new Error('--agents takes a whole number from 1 to 64');
const warm = process.argv.includes('--warm');
const logsFlag = process.argv.indexOf('--logs');
const logsDir = logsFlag >= 0 ? path.resolve(process.argv[logsFlag + 1] ?? '') : undefined;
if (logsFlag >= 0 && !process.argv[logsFlag + 1]) throw new Error('--logs takes a directory');
const roundsFlag = process.argv.indexOf('--rounds');
const rounds = roundsFlag >= 0 ? Number(process.argv[roundsFlag + 1]) : 1;
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 9) throw new Error('--rounds takes a whole number from 1 to 9');
const sizeBytes = (quick ? 256 : 1024) * 2 ** 20;
/** The whole fanout must finish within this long, or the run fails saying which agents lack the model. */
const FANOUT_TIMEOUT_MS = (quick ? 5 : 15) * 60_000;
/** The goals: coordinator egress with sharing on, in copies of the model; time on / time off. */
const MAX_EGRESS_RATIO = 1.3;
const MAX_TIME_RATIO = 1.1;
const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-fanout-bench-'));
const children: ChildProcess[] = [];
const model = path.join(dir, 'model.onnx');
const warmModel = path.join(dir, 'warm.onnx');
const WARM_BYTES = 64 * 2 ** 20;

/** Random bytes: incompressible, like weights. */
function writeRandom(file: string, bytes: number): void {
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(8 * 2 ** 20);
  for (let written = 0; written < bytes; written += block.length) writeSync(fd, randomFillSync(block));
  closeSync(fd);
}

interface Delivery {
  fromPeersBytes: number;
  fromCoordinatorBytes: number;
  fromS3Bytes: number;
  toPeersBytes: number;
  corruptPieces: number;
}

interface ModeResult {
  sharing: boolean;
  seconds: number;
  /** Bytes the coordinator sent, from its /metrics; null when it has no such counter. */
  egressBytes: number | null;
  egressRatio: number | null;
  /** Summed over the agents. */
  delivery: Delivery;
  fromCoordinatorMiB: number[];
  cpuSeconds: number;
  cpuSplit: { coordinator: { total: number; system: number }; agents: { total: number; system: number } };
  /** Seconds from the prefetches until each agent had the model, slowest last. */
  perAgentSeconds: number[];
}

let logCount = 0;
/** The last lines each process logged, by its log name: said when a fanout times out, with or without --logs. */
const tails = new Map<string, string[]>();
const TAIL_LINES = 12;

/** `log`: the name its log is kept under (--logs), and its tail under. */
function start(program: string, args: string[], env: Record<string, string> = {}, log?: string): ChildProcess {
  const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.push(child);
  if (log) {
    const tail: string[] = [];
    tails.set(log, tail);
    let partial = '';
    child.stderr!.on('data', (data: Buffer) => {
      const lines = (partial + data.toString()).split('\n');
      partial = lines.pop() ?? '';
      tail.push(...lines.map((l) => l.slice(0, 600)));
      tail.splice(0, Math.max(0, tail.length - TAIL_LINES));
    });
  }
  if (logsDir && log) {
    logCount += 1;
    mkdirSync(logsDir, { recursive: true });
    child.stderr!.pipe(createWriteStream(path.join(logsDir, `${String(logCount).padStart(3, '0')}-${log}.log`)));
  }
  return child;
}

function exited(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null ? Promise.resolve(child.exitCode) : new Promise((resolve) => child.once('exit', resolve));
}

async function stopAll(): Promise<void> {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  await Promise.all(children.map(exited));
  children.length = 0;
}

function line(child: ChildProcess, stream: 'stdout' | 'stderr', test: (l: string) => boolean, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for output')), timeoutMs);
    const lines = createInterface({ input: child[stream]! });
    lines.on('line', (l) => {
      if (!test(l)) return;
      clearTimeout(timer);
      lines.close();
      child[stream]!.resume();
      resolve(l);
    });
    child.once('exit', () => reject(new Error(`process exited (${child.exitCode}) before: ${test.toString().slice(0, 80)}`)));
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round3 = (n: number) => Math.round(n * 1000) / 1000;

/** The coordinator's blob egress counter, or null when its /metrics has none (the blob routes not merged yet). */
async function coordinatorEgress(httpAddress: string): Promise<number | null> {
  try {
    const res = await fetch(`http://${httpAddress}/metrics`);
    if (!res.ok) return null;
    const text = await res.text();
    let total: number | null = null;
    for (const l of text.split('\n')) {
      const match = /^mlfleet_coordinator_blob_sent_bytes_total(?:\{[^}]*\})?\s+([0-9.eE+]+)$/.exec(l);
      if (match) total = (total ?? 0) + Number(match[1]);
    }
    return total;
  } catch {
    return null;
  }
}

function cpuSplit(times: CpuTimes): { total: number; system: number } {
  return { total: round3(times.user + times.system), system: round3(times.system) };
}

/** `models push NAME FILE` with the CLI; resolves with the digest. */
async function pushModel(grpc: string, admin: string, name: string, file: string): Promise<string> {
  const push = start(path.join(root, 'dist/scripts/mlfleetctl.js'), ['--coordinator', grpc, '-o', 'json', 'models', 'push', name, file], { MLFLEET_TOKEN: admin });
  let pushed = '';
  push.stdout!.on('data', (d: Buffer) => (pushed += d));
  push.stderr!.resume();
  if ((await exited(push)) !== 0) throw new Error(`models push ${name} failed`);
  return (JSON.parse(pushed) as { digest: string }).digest;
}

/** Asks every agent at once to prefetch `ref`; resolves with the seconds until each had `digest` in its cache. */
/** `logOf`: an agent's (or 'coordinator') log name, whose tail a timeout prints. */
async function prefetchAll(grpc: string, admin: string, names: string[], ref: string, digest: string, logOf: (name: string) => string): Promise<Map<string, number>> {
  const getNode = method('NodeService.GetNode');
  const t0 = process.hrtime.bigint();
  const asked = await Promise.all(names.map((node) => callUnary(grpc, method('NodeService.PrefetchModel'), { node, ref }, admin)));
  const refused = asked.findIndex((a) => a.answer !== 'OK');
  if (refused >= 0) throw new Error(`prefetch of ${ref} on ${names[refused]}: ${asked[refused]!.answer} ${asked[refused]!.details}`);
  const doneAt = new Map<string, number>();
  const deadline = Date.now() + FANOUT_TIMEOUT_MS;
  while (doneAt.size < names.length) {
    if (Date.now() > deadline) {
      const lacking = names.filter((n) => !doneAt.has(n));
      for (const name of ['coordinator', ...lacking]) console.error(`--- last lines of ${name}:\n${(tails.get(logOf(name)) ?? []).join('\n')}`);
      throw new Error(`after ${FANOUT_TIMEOUT_MS / 1000} s these agents still lack ${ref}: ${lacking.join(', ')}`);
    }
    await Promise.all(
      names
        .filter((n) => !doneAt.has(n))
        .map(async (name) => {
          const answer = await callUnary(grpc, getNode, { name }, admin);
          const cache = (answer.response as { cache?: { digest: string }[] } | undefined)?.cache ?? [];
          if (cache.some((e) => e.digest === digest)) doneAt.set(name, Number(process.hrtime.bigint() - t0) / 1e9);
        }),
    );
    await sleep(50);
  }
  return doneAt;
}

async function fanout(sharing: boolean, label = ''): Promise<ModeResult> {
  const runDir = mkdtempSync(path.join(dir, sharing ? 'on-' : 'off-'));
  const coordinator = start(path.join(root, 'dist/coordinator/main.js'), [
    '--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--store', `sqlite:${runDir}/c.db`, '--data-dir', `${runDir}/coordinator`,
  ], {}, `${path.basename(runDir)}-coordinator`);
  const started = JSON.parse(await line(coordinator, 'stderr', (l) => l.includes('coordinator started'))) as { grpc: string; http: string };
  await line(coordinator, 'stderr', (l) => l.includes('elected leader'));
  const admin = readFileSync(`${runDir}/coordinator/admin-token`, 'utf8').trim();
  const digest = await pushModel(started.grpc, admin, 'bench', model);
  const warmDigest = warm ? await pushModel(started.grpc, admin, 'warm', warmModel) : undefined;

  // A 20 Gbit/s NIC in the inventory: sharing on caps each agent's uploads at 10 Gbit/s.
  const inventory = path.join(runDir, 'inventory.json');
  writeFileSync(inventory, JSON.stringify({ cpu: '8', memory: '32Gi', nics: [{ name: 'lo', speedMbps: 20_000 }] }));
  const names = Array.from({ length: agentCount }, (_, i) => `fan-${String(i).padStart(2, '0')}`);
  const agents = names.map((name) =>
    start(path.join(root, 'dist/agent/main.js'), [
      '--name', name, '--coordinator', started.grpc, '--data-dir', `${runDir}/${name}`, '--http-listen', '127.0.0.1:0', '--gateway-listen', '127.0.0.1:0',
      '--join-token-file', `${runDir}/coordinator/join-token`, '--inventory-file', inventory, '--driver', 'process', '--cache-max-bytes', '8Gi',
      // It runs no task: any user will do, and the bench needs no system user made for it.
      '--task-user', os.userInfo().username,
      ...(sharing ? [] : ['--peer-upload-mbps', '0']),
    ], {}, `${path.basename(runDir)}-${name}`),
  );
  await Promise.all(agents.map((agent) => line(agent, 'stderr', (l) => l.includes('connected to the leader'))));
  await sleep(500);
  const logOf = (name: string) => `${path.basename(runDir)}-${name}`;
  if (warmDigest) await prefetchAll(started.grpc, admin, names, 'warm:1', warmDigest, logOf);

  const egress0 = await coordinatorEgress(started.http);
  const getNode = method('NodeService.GetNode');
  const busy0 = busyCpuSeconds();
  const coordinatorCpu0 = cpuTimes(coordinator.pid!);
  const agentCpu0 = agents.map((agent) => cpuTimes(agent.pid!));
  const doneAt = await prefetchAll(started.grpc, admin, names, 'bench:1', digest, logOf);
  const seconds = Math.max(...doneAt.values());
  // The machine's CPU seconds (all processes) until the last agent had it: on one host both
  // modes share the same cores, so this says what sharing costs in work, apart from waiting.
  const cpuSeconds = round3(busyCpuSeconds() - busy0);
  const coordinatorCpu = since(coordinatorCpu0, cpuTimes(coordinator.pid!));
  const agentCpu = agents.map((agent, i) => since(agentCpu0[i]!, cpuTimes(agent.pid!)));
  const sum = (times: CpuTimes[]) => ({ user: times.reduce((n, t) => n + t.user, 0), system: times.reduce((n, t) => n + t.system, 0) });
  // Of those, the coordinator's and the agents' (all together), and of each the kernel's part.
  const split = { coordinator: cpuSplit(coordinatorCpu), agents: cpuSplit(sum(agentCpu)) };
  const egress1 = await coordinatorEgress(started.http);
  // The counters arrive with heartbeats (1 s apart by default): one more beat before reading them.
  await sleep(1_500);
  const delivery: Delivery = { fromPeersBytes: 0, fromCoordinatorBytes: 0, fromS3Bytes: 0, toPeersBytes: 0, corruptPieces: 0 };
  // Per agent, in pieces' worth of MiB: how the seed's share spread over the fleet.
  const fromCoordinatorMiB: number[] = [];
  for (const name of names) {
    const node = (await callUnary(started.grpc, getNode, { name }, admin)).response as { delivery?: Partial<Record<keyof Delivery, number | string>> } | undefined;
    for (const key of Object.keys(delivery) as (keyof Delivery)[]) delivery[key] += Number(node?.delivery?.[key] ?? 0);
    fromCoordinatorMiB.push(Math.round(Number(node?.delivery?.fromCoordinatorBytes ?? 0) / 2 ** 20));
  }
  const egressBytes = egress0 === null || egress1 === null ? null : egress1 - egress0;
  const result: ModeResult = {
    sharing,
    seconds: round3(seconds),
    egressBytes,
    egressRatio: egressBytes === null ? null : round3(egressBytes / sizeBytes),
    delivery,
    fromCoordinatorMiB,
    cpuSeconds,
    cpuSplit: split,
    perAgentSeconds: [...doneAt.values()].sort((a, b) => a - b).map(round3),
  };
  console.log(
    `${label}sharing ${sharing ? 'on ' : 'off'}: last of ${agentCount} agents had the model after ${result.seconds} s; coordinator egress ${egressBytes === null ? 'unknown (no mlfleet_coordinator_blob_sent_bytes_total)' : `${(egressBytes / 2 ** 20).toFixed(0)} MiB (${result.egressRatio} x the model)`}; received ${JSON.stringify(delivery)}; cpu s ${JSON.stringify(split)}`,
  );
  await stopAll();
  rmSync(runDir, { recursive: true, force: true });
  return result;
}

try {
  writeRandom(model, sizeBytes);
  if (warm) writeRandom(warmModel, WARM_BYTES);

  await fanout(false, 'warm-up (not counted), ');
  const results: { on: ModeResult; off: ModeResult; timeRatio: number }[] = [];
  for (let round = 1; round <= rounds; round += 1) {
    const label = `round ${round}, `;
    const onFirst = round % 2 === 1;
    const first = await fanout(onFirst, label);
    const second = await fanout(!onFirst, label);
    const [on, off] = onFirst ? [first, second] : [second, first];
    results.push({ on, off, timeRatio: round3(on.seconds / off.seconds) });
  }
  const ratios = results.map((r) => r.timeRatio);
  const timeRatio = [...ratios].sort((a, b) => a - b)[Math.floor(ratios.length / 2)]!;
  // The round whose time ratio is the median: its figures stand for the bench.
  const { on, off } = results[ratios.indexOf(timeRatio)]!;
  const egressRatioOn = Math.max(...results.map((r) => r.on.egressRatio ?? Infinity));
  const summary = {
    bench: 'fanout',
    sizeMiB: sizeBytes / 2 ** 20,
    agents: agentCount,
    rounds,
    on,
    off,
    // Egress / model size with sharing on (the most of any round) and off, and the time on / the
    // time off: each round's, and their median (the higher of the middle two).
    egressRatioOn: Number.isFinite(egressRatioOn) ? egressRatioOn : null,
    egressRatioOff: off.egressRatio,
    timeRatios: ratios,
    timeRatio,
    goalMet: egressRatioOn <= MAX_EGRESS_RATIO && timeRatio <= MAX_TIME_RATIO,
  };
  console.log(`egress / size: on ${summary.egressRatioOn ?? 'unknown'}, off ${off.egressRatio ?? 'unknown'}; time on / off ${ratios.join(', ')} (median ${timeRatio})`);
  console.log(JSON.stringify(summary));
} finally {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}

/** CPU seconds the whole machine has spent busy (user, nice, system, irq, softirq), from /proc/stat. */
function busyCpuSeconds(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0] = fields;
  return (user + nice + system + irq + softirq) / 100;
}
