#!/usr/bin/env node
// `npm run screenshots`: the README's pictures of the web dashboard. Starts a local cluster
// (scripts/local-cluster.ts, in a scratch data directory and HOME, on free ports, with a
// two-GPU inventory), gives it a small demo workload through mlfleetctl — a tenant, a model
// with two versions and an alias, a dataset, a deployment, a job printing lines — then opens
// each page in Debian's chromium (MLFLEET_CHROMIUM: another binary) and writes a PNG per page
// to docs/screenshots/. The workload and the cluster are removed at the end.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Page } from 'puppeteer-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const out = path.join(root, 'docs', 'screenshots');
const version = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;

/** The demo model server: ready at once, answers every request with a fixed body. */
const SERVER = `require('http').createServer((req, res) => res.end(req.url === '/v2/health/ready' ? 'ready' : '{}')).listen(Number(process.env.PORT));`;
const TRAIN = `let step = 0; const t = setInterval(() => { console.log('epoch 1 step ' + step + ' loss ' + (2 / (1 + step++)).toFixed(4)); if (step > 400) clearInterval(t); }, 250);`;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`${path.basename(args[0] ?? command)} ${args.slice(1, 3).join(' ')}: ${stderr.trim()}`))));
  });
}

async function startCluster(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; driver: string }> {
  const child = spawn(process.execPath, [path.join(root, 'dist', 'scripts', 'local-cluster.js')], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  let driver = 'process';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the local cluster did not start within 60 s')), 60_000);
    child.once('exit', (code) => reject(new Error(`the local cluster exited with ${code}`)));
    lines.on('line', (line) => {
      const match = /driver (\w+)/.exec(line);
      if (match) driver = match[1]!;
      if (line.includes('try ')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return { child, driver };
}

async function shoot(page: Page, base: string, route: string, file: string, ready: string): Promise<void> {
  await page.goto(`${base}${route}`);
  await page.waitForSelector(ready, { timeout: 30_000 });
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  await page.screenshot({ path: path.join(out, file), fullPage: true });
  process.stdout.write(`wrote docs/screenshots/${file}\n`);
}

const scratch = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-screenshots-'));
let cluster: ChildProcess | undefined;
try {
  const [grpc, http, gateway, agentHttp] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const inventory = path.join(scratch, 'inventory.json');
  writeFileSync(inventory, JSON.stringify({ cpu: '16', memory: '64Gi', gpus: { count: 2, model: 'NVIDIA L4', memory: '24Gi' }, nics: [{ name: 'eth0', speedMbps: 25000 }] }));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: scratch,
    MLFLEET_DATA_DIR: path.join(scratch, 'data'),
    MLFLEET_NAME: 'demo-host',
    MLFLEET_LISTEN: `127.0.0.1:${grpc}`,
    MLFLEET_HTTP_LISTEN: `127.0.0.1:${http}`,
    MLFLEET_GATEWAY_LISTEN: `127.0.0.1:${gateway}`,
    MLFLEET_AGENT_HTTP_LISTEN: `127.0.0.1:${agentHttp}`,
    MLFLEET_INVENTORY_FILE: inventory,
    MLFLEET_COORDINATOR: `127.0.0.1:${grpc}`,
  };
  const started = await startCluster(env);
  cluster = started.child;
  const ctl = (...args: string[]) => run(process.execPath, [path.join(root, 'dist', 'scripts', 'mlfleetctl.js'), ...args], env);
  // Docker runs the demo in the runtime image (npm run images); the process driver runs this Node.
  const command = started.driver === 'docker' ? ['--image', `mlfleet/runtime:${version}`, '--', 'node'] : ['--image', 'unused', '--', process.execPath];
  const small = ['--cpu', '500m', '--memory', '128Mi'];
  const model = path.join(scratch, 'sentiment.onnx');
  writeFileSync(model, Buffer.alloc(3 << 20, 1));
  await ctl('models', 'push', 'sentiment', model);
  writeFileSync(model, Buffer.alloc(4 << 20, 2));
  await ctl('models', 'push', 'sentiment', model);
  await ctl('models', 'alias', 'sentiment', 'prod', '2');
  const data = path.join(scratch, 'reviews.csv');
  writeFileSync(data, 'text,label\ngreat,1\nawful,0\n');
  await ctl('datasets', 'push', 'reviews', data);
  await ctl('deploy', 'web', '--model', 'sentiment@prod', '--replicas', '2', ...small, ...command, '-e', SERVER);
  await ctl('jobs', 'run', 'train', ...small, ...command, '-e', TRAIN);
  const link = (JSON.parse(await ctl('dashboard', '-o', 'json', '--url', `http://127.0.0.1:${http}/`)) as { url: string }).url;
  const base = `http://127.0.0.1:${http}`;

  mkdirSync(out, { recursive: true });
  const browser = await puppeteer.launch({ executablePath: process.env.MLFLEET_CHROMIUM ?? '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'] });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 800 });
    await page.goto(link);
    await page.waitForSelector('header .who', { timeout: 30_000 });
    await shoot(page, base, '/deployments', 'deployments.png', 'tr[data-deployment=web][data-status=available]');
    await shoot(page, base, '/', 'overview.png', '[data-testid=node-row]');
    await shoot(page, base, '/nodes/demo-host', 'node.png', '[data-testid=node-detail]');
    await shoot(page, base, '/jobs/train', 'jobs.png', '[data-testid=logs]');
    await shoot(page, base, '/models/sentiment', 'models.png', 'tr[data-version]');
    await shoot(page, base, '/events', 'events.png', 'tr[data-event]');
    const allocation = await page.evaluate("fetch('/api/v1/allocations', { headers: { authorization: 'Bearer ' + sessionStorage.getItem('mlfleet.token') } }).then((r) => r.json()).then((b) => (Array.isArray(b) ? b : b.items)[0].id)");
    await shoot(page, base, `/allocations/${String(allocation)}`, 'allocation.png', '[data-testid=allocation-detail]');
  } finally {
    await browser.close();
  }
  await ctl('jobs', 'cancel', 'train').catch(() => undefined);
  await ctl('deployments', 'rm', 'web').catch(() => undefined);
  await new Promise((resolve) => setTimeout(resolve, 3_000));
} finally {
  if (cluster && cluster.exitCode === null) {
    cluster.kill('SIGINT');
    await new Promise((resolve) => cluster!.once('exit', resolve));
  }
  rmSync(scratch, { recursive: true, force: true });
}
