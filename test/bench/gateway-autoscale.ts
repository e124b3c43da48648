// `npm run bench -- gateway-autoscale [--quick]`: what autoscaling costs the gateway on the
// request path (issue 16): the gateway's CPU per request with the load meter on (an autoscaled
// route: each inference counted, reports every second to a sink) against the same gateway with no
// load measured, in the same run: two gateway processes of the same build in front of one
// trivial replica (lib/trivial-replica.ts, so that the figures are the gateway's own work), the
// same client (lib/http-load.ts, 16 in flight, a bearer token checked per request). The runs
// alternate (off, on, off, on, …) and the medians are compared.
// Goal: CPU per request with the meter on within 10% of off (ratio <= 1.10).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { generateToken } from '../../shared/auth.js';
import { cpuTimes } from './lib/proc.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes('--quick');
const seconds = quick ? 2 : 4;
const rounds = quick ? 3 : 5;
const CONCURRENCY = 16;
const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-gateway-autoscale-bench-'));
const children: ChildProcess[] = [];
const { token } = generateToken();

function node(script: string, args: string[]): ChildProcess {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  return child;
}

function line(child: ChildProcess, prefix: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const onExit = (code: number | null) => reject(new Error(`${child.spawnargs.join(' ')} exited with ${code}`));
    lines.on('line', (text) => {
      if (!text.startsWith(prefix)) return;
      lines.close();
      child.off('exit', onExit);
      resolve(text.slice(prefix.length));
    });
    child.once('exit', onExit);
  });
}

const cpuSeconds = (child: ChildProcess) => {
  const { user, system } = cpuTimes(child.pid!);
  return user + system;
};

/** One load run through `gateway`: its CPU µs per request, and the client's figures. */
async function run(gateway: { child: ChildProcess; address: string }): Promise<{ cpuUs: number; rps: number; errors: number }> {
  const before = cpuSeconds(gateway.child);
  const client = node(path.join(here, 'lib/http-load.js'), [`http://${gateway.address}/v2/models/m/infer`, String(CONCURRENCY), String(seconds * 1000), path.join(dir, 'request.json'), token]);
  const result = JSON.parse(await line(client, '')) as { requests: number; errors: number; rps: number };
  const cpu = cpuSeconds(gateway.child) - before;
  return { cpuUs: Math.round((cpu * 1e6) / Math.max(1, result.requests)), rps: result.rps, errors: result.errors };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

try {
  writeFileSync(path.join(dir, 'request.json'), JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] }] }));
  const replica = node(path.join(here, 'lib/trivial-replica.js'), []);
  const replicaAddress = await line(replica, 'address ');
  const start = async (mode: string) => {
    const child = node(path.join(here, 'lib/gateway-proc.js'), ['m', replicaAddress, token, mode]);
    return { child, address: await line(child, 'address ') };
  };
  const off = await start('unmetered');
  const on = await start('autoscaled');
  // Warm both up (JIT, connection pools) before measuring.
  await run(off);
  await run(on);
  const figures = { off: [] as number[], on: [] as number[], rpsOff: [] as number[], rpsOn: [] as number[] };
  let errors = 0;
  for (let i = 0; i < rounds; i++) {
    const a = await run(off);
    const b = await run(on);
    figures.off.push(a.cpuUs);
    figures.on.push(b.cpuUs);
    figures.rpsOff.push(a.rps);
    figures.rpsOn.push(b.rps);
    errors += a.errors + b.errors;
    console.log(`round ${i + 1}: meter off ${a.cpuUs} µs CPU/request (${a.rps} req/s), on ${b.cpuUs} µs (${b.rps} req/s)`);
  }
  on.child.stdin!.write('\n');
  const reports = Number(await line(on.child, 'reports '));
  const ratio = median(figures.on) / median(figures.off);
  console.log(`gateway CPU per request, median of ${rounds}: meter off ${median(figures.off)} µs, on ${median(figures.on)} µs: ratio ${ratio.toFixed(3)} (goal <= 1.10); ${reports} load reports sent`);
  console.log(
    JSON.stringify({
      bench: 'gateway-autoscale',
      seconds,
      rounds,
      concurrency: CONCURRENCY,
      cpus: os.cpus().length,
      cpuUsPerRequest: { off: median(figures.off), on: median(figures.on) },
      rps: { off: median(figures.rpsOff), on: median(figures.rpsOn) },
      ratio: Number(ratio.toFixed(3)),
      loadReports: reports,
      errors,
      goalMet: ratio <= 1.1 && errors === 0 && reports > 0,
    }),
  );
} finally {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode !== null ? Promise.resolve() : new Promise((resolve) => c.once('exit', resolve)))));
  rmSync(dir, { recursive: true, force: true });
}
