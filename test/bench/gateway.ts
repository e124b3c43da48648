// `npm run bench -- gateway [--quick]`: inference through an agent's gateway against inference
// straight to the replica — the same model on the reference ONNX runtime, the same client, the
// same run. Latency with one request at a time (p50/p99), and throughput with 16 in flight; each
// measured twice, alternating, and the better kept. Two models: the example linear model, whose
// inference costs next to nothing (so the figures are HTTP alone, a proxy's worst case), and a
// 512-wide dense layer, a small model that does some work. Client, gateway and replica share
// this machine's cores: the throughput ratio is the replica's and client's CPU per request over
// theirs plus the gateway's.
// Goal: the gateway adds <= 0.5 ms at p50 and keeps >= 85% of direct throughput.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { encodeModel } from '../../agent/stacks/onnx/onnx-model.js';
import { denseModel, exampleModels } from '../../scripts/onnx/example-models.js';
import { freePort } from '../helpers/net.js';
import { cpuTimes } from './lib/proc.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const quick = process.argv.includes('--quick');
const seconds = quick ? 2 : 5;
const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-gateway-bench-'));
const children: ChildProcess[] = [];

function node(script: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  children.push(child);
  return child;
}

function firstLine(child: ChildProcess, prefix = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      if (!line.startsWith(prefix)) return;
      lines.close();
      resolve(line);
    });
    child.once('exit', (code) => reject(new Error(`${child.spawnargs.join(' ')} exited with ${code}`)));
  });
}

function ready(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    http.get(url, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    }).on('error', () => resolve(false));
  });
}

/** CPU milliseconds (user + system) a process has used so far. */
function cpuMs(child: ChildProcess): number {
  const { user, system } = cpuTimes(child.pid!);
  return (user + system) * 1000;
}

interface Load {
  requests: number;
  errors: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU microseconds per request of the client, the replica and (through it) the gateway. */
  cpuUsPerRequest: { client: number; replica: number; gateway?: number };
}

/** A load run against `url`, with the CPU each process (client, replica, gateway) spent on it. */
async function load(url: string, concurrency: number, replica: ChildProcess, gateway?: ChildProcess): Promise<Load> {
  const before = { replica: cpuMs(replica), gateway: gateway ? cpuMs(gateway) : 0 };
  const child = node(path.join(here, 'lib/http-load.js'), [url, String(concurrency), String(seconds * 1000), path.join(dir, 'request.json')]);
  const result = JSON.parse(await firstLine(child)) as Omit<Load, 'cpuUsPerRequest'> & { cpuMs: number };
  const perRequest = (ms: number) => Math.round((ms * 1000) / Math.max(result.requests, 1));
  const { cpuMs: clientMs, ...rest } = result;
  return {
    ...rest,
    cpuUsPerRequest: {
      client: perRequest(clientMs),
      replica: perRequest(cpuMs(replica) - before.replica),
      ...(gateway ? { gateway: perRequest(cpuMs(gateway) - before.gateway) } : {}),
    },
  };
}

/** A model the bench serves, and the request it sends. */
interface Case {
  name: string;
  what: string;
  model: Uint8Array;
  request: unknown;
}

const DENSE = 512;
const CASES: Case[] = [
  {
    name: 'linear',
    what: 'the example linear model (2×3 in, 2×1 out): next to no inference, so what is left is HTTP: the worst case for a proxy',
    model: exampleModels()['linear.onnx']!,
    request: { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 3], data: [1, 2, 3, 4, 5, 6] }] },
  },
  {
    name: `dense-${DENSE}`,
    what: `a ${DENSE}×${DENSE} dense layer (1×${DENSE} in and out, about 5 KB of JSON each way): a small model that does some work`,
    model: encodeModel(denseModel(DENSE)),
    request: { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, DENSE], data: Array.from({ length: DENSE }, (_, i) => (i % 13) / 13) }] },
  },
];

interface Result {
  direct: { p50Ms: number; p99Ms: number; rps: number };
  gateway: { p50Ms: number; p99Ms: number; rps: number };
  addedP50Ms: number;
  throughputRatio: number;
  /** In the throughput runs kept. */
  cpuUsPerRequest: { direct: Load['cpuUsPerRequest']; gateway: Load['cpuUsPerRequest'] };
  errors: number;
}

async function measure(c: Case): Promise<Result> {
  const modelFile = path.join(dir, `${c.name}.onnx`);
  writeFileSync(modelFile, c.model);
  writeFileSync(path.join(dir, 'request.json'), JSON.stringify(c.request));
  const port = await freePort();
  const server = node(path.join(root, 'dist/agent/stacks/onnx/server.js'), [], { MLFLEET_MODEL_PATH: modelFile, MLFLEET_MODEL_NAME: c.name, PORT: String(port) });
  const replica = `127.0.0.1:${port}`;
  for (let i = 0; i < 200 && !(await ready(`http://${replica}/v2/health/ready`)); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  const gatewayProc = node(path.join(here, 'lib/gateway-proc.js'), [c.name, replica]);
  const gateway = (await firstLine(gatewayProc, 'address ')).split(' ')[1]!;
  try {
    const path_ = `/v2/models/${c.name}/infer`;
    const direct = `http://${replica}${path_}`;
    const through = `http://${gateway}${path_}`;
    await load(direct, 4, server);
    await load(through, 4, server, gatewayProc); // warm both paths up
    const runs: Record<string, Load[]> = { directLatency: [], gatewayLatency: [], directThroughput: [], gatewayThroughput: [] };
    for (let round = 0; round < 2; round++) {
      runs.directLatency!.push(await load(direct, 1, server));
      runs.gatewayLatency!.push(await load(through, 1, server, gatewayProc));
      runs.directThroughput!.push(await load(direct, 16, server));
      runs.gatewayThroughput!.push(await load(through, 16, server, gatewayProc));
    }
    const best = (a: Load, b: Load, by: 'latency' | 'rps') => (by === 'latency' ? (a.p50Ms <= b.p50Ms ? a : b) : a.rps >= b.rps ? a : b);
    const pick = (name: string, by: 'latency' | 'rps') => runs[name]!.reduce((a, b) => best(a, b, by));
    const directLatency = pick('directLatency', 'latency');
    const gatewayLatency = pick('gatewayLatency', 'latency');
    const directThroughput = pick('directThroughput', 'rps');
    const gatewayThroughput = pick('gatewayThroughput', 'rps');
    return {
      direct: { p50Ms: directLatency.p50Ms, p99Ms: directLatency.p99Ms, rps: directThroughput.rps },
      gateway: { p50Ms: gatewayLatency.p50Ms, p99Ms: gatewayLatency.p99Ms, rps: gatewayThroughput.rps },
      addedP50Ms: Number((gatewayLatency.p50Ms - directLatency.p50Ms).toFixed(3)),
      throughputRatio: Number((gatewayThroughput.rps / directThroughput.rps).toFixed(3)),
      cpuUsPerRequest: { direct: directThroughput.cpuUsPerRequest, gateway: gatewayThroughput.cpuUsPerRequest },
      errors: Object.values(runs).flat().reduce((sum, r) => sum + r.errors, 0),
    };
  } finally {
    for (const child of [server, gatewayProc]) child.kill('SIGTERM');
  }
}

try {
  const results: Record<string, Result & { goalMet: boolean }> = {};
  for (const c of CASES) {
    const r = await measure(c);
    results[c.name] = { ...r, goalMet: r.addedP50Ms <= 0.5 && r.throughputRatio >= 0.85 && r.errors === 0 };
    console.log(`${c.name}: ${c.what}`);
    console.log(`  one at a time: direct p50 ${r.direct.p50Ms} ms p99 ${r.direct.p99Ms} ms; through the gateway p50 ${r.gateway.p50Ms} ms p99 ${r.gateway.p99Ms} ms (+${r.addedP50Ms} ms)`);
    console.log(`  16 in flight: direct ${r.direct.rps} req/s, through the gateway ${r.gateway.rps} req/s (${(r.throughputRatio * 100).toFixed(1)}%)`);
    const { direct, gateway } = r.cpuUsPerRequest;
    console.log(`  CPU per request: direct client ${direct.client} µs + replica ${direct.replica} µs; through the gateway client ${gateway.client} µs + gateway ${gateway.gateway} µs + replica ${gateway.replica} µs`);
  }
  console.log(JSON.stringify({ bench: 'gateway', seconds, cpus: os.cpus().length, ...results }));
} finally {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode !== null ? Promise.resolve() : new Promise((resolve) => c.once('exit', resolve)))));
  rmSync(dir, { recursive: true, force: true });
}
