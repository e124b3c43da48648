// `npm run bench -- gateway [--quick]`: inference through an agent's gateway against inference
// straight to the replica — the same model (the example linear model on the reference ONNX
// runtime), the same client, the same run. Latency with one request at a time (p50/p99), and
// throughput with 16 in flight; each measured twice, alternating, and the better kept.
// Goal: the gateway adds <= 0.5 ms at p50 and keeps >= 85% of direct throughput.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { exampleModels } from '../../scripts/onnx/example-models.js';
import { freePort } from '../helpers/net.js';

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

interface Load {
  requests: number;
  errors: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
}

async function load(url: string, concurrency: number): Promise<Load> {
  const child = node(path.join(here, 'lib/http-load.js'), [url, String(concurrency), String(seconds * 1000), path.join(dir, 'request.json')]);
  return JSON.parse(await firstLine(child)) as Load;
}

try {
  writeFileSync(path.join(dir, 'linear.onnx'), exampleModels()['linear.onnx']!);
  writeFileSync(path.join(dir, 'request.json'), JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 3], data: [1, 2, 3, 4, 5, 6] }] }));
  const port = await freePort();
  node(path.join(root, 'dist/agent/stacks/onnx/server.js'), [], { MLFLEET_MODEL_PATH: path.join(dir, 'linear.onnx'), MLFLEET_MODEL_NAME: 'linear', PORT: String(port) });
  const replica = `127.0.0.1:${port}`;
  for (let i = 0; i < 200 && !(await ready(`http://${replica}/v2/health/ready`)); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  const gateway = (await firstLine(node(path.join(here, 'lib/gateway-proc.js'), ['linear', replica]), 'address ')).split(' ')[1]!;
  const path_ = '/v2/models/linear/infer';
  const direct = `http://${replica}${path_}`;
  const through = `http://${gateway}${path_}`;
  await load(direct, 4);
  await load(through, 4); // warm both paths up

  const best = (a: Load, b: Load, by: 'latency' | 'rps') => (by === 'latency' ? (a.p50Ms <= b.p50Ms ? a : b) : a.rps >= b.rps ? a : b);
  const runs: Record<string, Load[]> = { directLatency: [], gatewayLatency: [], directThroughput: [], gatewayThroughput: [] };
  for (let round = 0; round < 2; round++) {
    runs.directLatency!.push(await load(direct, 1));
    runs.gatewayLatency!.push(await load(through, 1));
    runs.directThroughput!.push(await load(direct, 16));
    runs.gatewayThroughput!.push(await load(through, 16));
  }
  const pick = (name: string, by: 'latency' | 'rps') => runs[name]!.reduce((a, b) => best(a, b, by));
  const directLatency = pick('directLatency', 'latency');
  const gatewayLatency = pick('gatewayLatency', 'latency');
  const directThroughput = pick('directThroughput', 'rps');
  const gatewayThroughput = pick('gatewayThroughput', 'rps');
  const addedP50Ms = Number((gatewayLatency.p50Ms - directLatency.p50Ms).toFixed(3));
  const throughputRatio = Number((gatewayThroughput.rps / directThroughput.rps).toFixed(3));
  console.log(`one at a time: direct p50 ${directLatency.p50Ms} ms p99 ${directLatency.p99Ms} ms; through the gateway p50 ${gatewayLatency.p50Ms} ms p99 ${gatewayLatency.p99Ms} ms (+${addedP50Ms} ms)`);
  console.log(`16 in flight: direct ${directThroughput.rps} req/s, through the gateway ${gatewayThroughput.rps} req/s (${(throughputRatio * 100).toFixed(1)}%)`);
  const errors = Object.values(runs).flat().reduce((sum, r) => sum + r.errors, 0);
  console.log(JSON.stringify({
    bench: 'gateway',
    seconds,
    direct: { p50Ms: directLatency.p50Ms, p99Ms: directLatency.p99Ms, rps: directThroughput.rps },
    gateway: { p50Ms: gatewayLatency.p50Ms, p99Ms: gatewayLatency.p99Ms, rps: gatewayThroughput.rps },
    addedP50Ms,
    throughputRatio,
    errors,
    goalMet: addedP50Ms <= 0.5 && throughputRatio >= 0.85 && errors === 0,
  }));
} finally {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode !== null ? Promise.resolve() : new Promise((resolve) => c.once('exit', resolve)))));
  rmSync(dir, { recursive: true, force: true });
}
