// `npm run bench -- gateway [--quick]`: inference through an agent's gateway — checking each
// request's bearer token as it does in production — against the same requests straight to the
// replica and through a peer, Debian's nginx as a reverse proxy with a keepalive upstream (one
// process, `master_process off`, as the gateway is one), in the same run: the same model on the
// reference ONNX runtime, the same client. Latency with one request at a time (p50/p99), and
// throughput with 16 in flight; each measured twice, alternating, and the better kept. Two
// models: the example linear model, whose inference costs next to nothing (so the figures are
// HTTP alone, a proxy's worst case), and a 512-wide dense layer, a small model that does some
// work. Client, proxy and replica share this machine's cores; CPU per request is reported for
// each process.
// Goal: the gateway adds <= 0.5 ms at p50 over direct and keeps >= 80% of nginx's throughput.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { encodeModel } from '../../agent/stacks/onnx/onnx-model.js';
import { generateToken } from '../../shared/auth.js';
import { denseModel, exampleModels } from '../../scripts/onnx/example-models.js';
import { freePort } from '../helpers/net.js';
import { cpuTimes } from './lib/proc.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const quick = process.argv.includes('--quick');
const seconds = quick ? 2 : 5;
const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-gateway-bench-'));
const children: ChildProcess[] = [];

/** The consumer token every request carries: the gateway checks it, the others pass it by. */
const { token } = generateToken();
const NGINX = '/usr/sbin/nginx';

function node(script: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  children.push(child);
  return child;
}

/** nginx in front of `replica`: one process, keepalive connections to the upstream, no access log. */
async function startNginx(replica: string): Promise<{ child: ChildProcess; address: string }> {
  const port = await freePort();
  const prefix = mkdtempSync(path.join(dir, 'nginx-'));
  const temp = (name: string) => `${name} ${path.join(prefix, name)};`;
  writeFileSync(
    path.join(prefix, 'nginx.conf'),
    `master_process off;
daemon off;
worker_processes 1;
pid ${path.join(prefix, 'nginx.pid')};
error_log ${path.join(prefix, 'error.log')} warn;
events { worker_connections 1024; }
http {
  access_log off;
  ${temp('client_body_temp_path')} ${temp('proxy_temp_path')} ${temp('fastcgi_temp_path')} ${temp('uwsgi_temp_path')} ${temp('scgi_temp_path')}
  upstream replica { server ${replica}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://replica;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
    }
  }
}
`,
  );
  const child = spawn(NGINX, ['-p', prefix, '-c', path.join(prefix, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  const address = `127.0.0.1:${port}`;
  for (let i = 0; i < 100 && !(await ready(`http://${address}/v2/health/ready`)); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  return { child, address };
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
  /** CPU microseconds per request of the client, the replica and (through it) the proxy: the gateway or nginx. */
  cpuUsPerRequest: { client: number; replica: number; proxy?: number };
}

/** A load run against `url`, with the CPU each process (client, replica, proxy) spent on it. */
async function load(url: string, concurrency: number, replica: ChildProcess, proxy?: ChildProcess): Promise<Load> {
  const before = { replica: cpuMs(replica), proxy: proxy ? cpuMs(proxy) : 0 };
  const child = node(path.join(here, 'lib/http-load.js'), [url, String(concurrency), String(seconds * 1000), path.join(dir, 'request.json'), token]);
  const result = JSON.parse(await firstLine(child)) as Omit<Load, 'cpuUsPerRequest'> & { cpuMs: number };
  const perRequest = (ms: number) => Math.round((ms * 1000) / Math.max(result.requests, 1));
  const { cpuMs: clientMs, ...rest } = result;
  return {
    ...rest,
    cpuUsPerRequest: {
      client: perRequest(clientMs),
      replica: perRequest(cpuMs(replica) - before.replica),
      ...(proxy ? { proxy: perRequest(cpuMs(proxy) - before.proxy) } : {}),
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

interface Figures {
  p50Ms: number;
  p99Ms: number;
  rps: number;
}

interface Result {
  direct: Figures;
  nginx: Figures;
  gateway: Figures;
  /** Over direct, at p50, one request at a time. */
  addedP50Ms: { nginx: number; gateway: number };
  /** Throughput at 16 in flight: the gateway's over nginx's (the goal), and each over direct. */
  gatewayOverNginx: number;
  gatewayOverDirect: number;
  nginxOverDirect: number;
  /** In the throughput runs kept. */
  cpuUsPerRequest: { direct: Load['cpuUsPerRequest']; nginx: Load['cpuUsPerRequest']; gateway: Load['cpuUsPerRequest'] };
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
  const gatewayProc = node(path.join(here, 'lib/gateway-proc.js'), [c.name, replica, token]);
  const gateway = (await firstLine(gatewayProc, 'address ')).split(' ')[1]!;
  const nginx = await startNginx(replica);
  try {
    const path_ = `/v2/models/${c.name}/infer`;
    const targets = {
      direct: { url: `http://${replica}${path_}`, proxy: undefined },
      nginx: { url: `http://${nginx.address}${path_}`, proxy: nginx.child },
      gateway: { url: `http://${gateway}${path_}`, proxy: gatewayProc },
    };
    type Target = keyof typeof targets;
    for (const { url, proxy } of Object.values(targets)) await load(url, 4, server, proxy); // warm every path up
    const latency: Record<Target, Load[]> = { direct: [], nginx: [], gateway: [] };
    const throughput: Record<Target, Load[]> = { direct: [], nginx: [], gateway: [] };
    for (let round = 0; round < 2; round++) {
      for (const [name, { url, proxy }] of Object.entries(targets) as Array<[Target, (typeof targets)[Target]]>) {
        latency[name].push(await load(url, 1, server, proxy));
        throughput[name].push(await load(url, 16, server, proxy));
      }
    }
    const fastest = (runs: Load[]) => runs.reduce((a, b) => (a.p50Ms <= b.p50Ms ? a : b));
    const most = (runs: Load[]) => runs.reduce((a, b) => (a.rps >= b.rps ? a : b));
    const figures = (name: Target): Figures => ({ p50Ms: fastest(latency[name]).p50Ms, p99Ms: fastest(latency[name]).p99Ms, rps: most(throughput[name]).rps });
    const direct = figures('direct');
    const viaNginx = figures('nginx');
    const viaGateway = figures('gateway');
    const ratio = (a: number, b: number) => Number((a / b).toFixed(3));
    return {
      direct,
      nginx: viaNginx,
      gateway: viaGateway,
      addedP50Ms: { nginx: Number((viaNginx.p50Ms - direct.p50Ms).toFixed(3)), gateway: Number((viaGateway.p50Ms - direct.p50Ms).toFixed(3)) },
      gatewayOverNginx: ratio(viaGateway.rps, viaNginx.rps),
      gatewayOverDirect: ratio(viaGateway.rps, direct.rps),
      nginxOverDirect: ratio(viaNginx.rps, direct.rps),
      cpuUsPerRequest: { direct: most(throughput.direct).cpuUsPerRequest, nginx: most(throughput.nginx).cpuUsPerRequest, gateway: most(throughput.gateway).cpuUsPerRequest },
      errors: [...Object.values(latency), ...Object.values(throughput)].flat().reduce((sum, r) => sum + r.errors, 0),
    };
  } finally {
    for (const child of [server, gatewayProc, nginx.child]) child.kill('SIGTERM');
  }
}

try {
  const version = spawnSync(NGINX, ['-v'], { encoding: 'utf8' });
  if (version.error) throw new Error(`the gateway bench compares with nginx: install Debian's nginx (${version.error.message})`);
  const results: Record<string, Result & { goalMet: boolean }> = {};
  for (const c of CASES) {
    const r = await measure(c);
    results[c.name] = { ...r, goalMet: r.addedP50Ms.gateway <= 0.5 && r.gatewayOverNginx >= 0.8 && r.errors === 0 };
    console.log(`${c.name}: ${c.what}`);
    console.log(
      `  one at a time: direct p50 ${r.direct.p50Ms} ms p99 ${r.direct.p99Ms} ms; nginx p50 ${r.nginx.p50Ms} ms (+${r.addedP50Ms.nginx}); gateway p50 ${r.gateway.p50Ms} ms p99 ${r.gateway.p99Ms} ms (+${r.addedP50Ms.gateway} ms)`,
    );
    console.log(
      `  16 in flight: direct ${r.direct.rps} req/s, nginx ${r.nginx.rps} (${(r.nginxOverDirect * 100).toFixed(1)}% of direct), gateway ${r.gateway.rps} (${(r.gatewayOverDirect * 100).toFixed(1)}% of direct, ${(r.gatewayOverNginx * 100).toFixed(1)}% of nginx)`,
    );
    const cpu = (l: Load['cpuUsPerRequest']) => `client ${l.client} + ${l.proxy !== undefined ? `proxy ${l.proxy} + ` : ''}replica ${l.replica} µs`;
    console.log(`  CPU per request: direct ${cpu(r.cpuUsPerRequest.direct)}; nginx ${cpu(r.cpuUsPerRequest.nginx)}; gateway ${cpu(r.cpuUsPerRequest.gateway)}`);
  }
  console.log(JSON.stringify({ bench: 'gateway', seconds, cpus: os.cpus().length, nginx: (version.stderr || version.stdout).trim(), ...results }));
} finally {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode !== null ? Promise.resolve() : new Promise((resolve) => c.once('exit', resolve)))));
  rmSync(dir, { recursive: true, force: true });
}
