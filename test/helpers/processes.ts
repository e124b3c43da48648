// Real mlfleet daemons as child processes for integration tests: spawned from dist/, their
// JSON log lines parsed for the addresses they bound (port 0), killed and reaped in t.after().
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export interface LogLine {
  msg?: string;
  [field: string]: unknown;
}

export class Daemon {
  readonly lines: LogLine[] = [];
  private waiters: { test: (line: LogLine) => boolean; resolve: (line: LogLine) => void }[] = [];
  readonly exited: Promise<number | null>;

  constructor(readonly name: string, readonly child: ChildProcess) {
    createInterface({ input: child.stderr! }).on('line', (text) => {
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { msg: text };
      }
      this.lines.push(line);
      this.waiters = this.waiters.filter((w) => (w.test(line) ? (w.resolve(line), false) : true));
    });
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /** The first log line (past or future) that passes `test`. */
  waitFor(test: (line: LogLine) => boolean, timeoutMs = 15_000): Promise<LogLine> {
    const seen = this.lines.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no matching log line within ${timeoutMs} ms; last lines:\n${this.lines.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`)), timeoutMs);
      this.waiters.push({ test, resolve: (line) => (clearTimeout(timer), resolve(line)) });
    });
  }

  waitForMessage(msg: string, timeoutMs?: number): Promise<LogLine> {
    return this.waitFor((line) => line.msg === msg, timeoutMs);
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.running) this.child.kill(signal);
    await this.exited;
  }
}

export function tempDir(t: TestContext, prefix = 'mlfleet-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A Node program under dist/ in a process of its own. The daemons run as installed, through
 * their shebang and the Node flags it names (the coordinator's heap limit); other scripts
 * through this Node.
 */
export function spawnDaemon(t: TestContext, name: string, script: string, args: string[], env: NodeJS.ProcessEnv = {}): Daemon {
  const file = path.join(REPO_ROOT, 'dist', script);
  const installed = script === 'coordinator/main.js' || script === 'agent/main.js';
  const child = spawn(installed ? file : process.execPath, installed ? args : [file, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, MLFLEET_LOG_LEVEL: 'debug', ...env },
  });
  const daemon = new Daemon(name, child);
  t.after(() => daemon.kill('SIGKILL'));
  return daemon;
}

export interface StartedCoordinator extends Daemon {
  grpc: string;
  http: string;
}

/** A coordinator process on loopback ports chosen by the kernel. */
export async function startCoordinator(t: TestContext, name: string, args: string[]): Promise<StartedCoordinator> {
  const daemon = spawnDaemon(t, name, 'coordinator/main.js', [
    '--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--id', name, ...args,
  ]);
  const started = await daemon.waitForMessage('coordinator started');
  return Object.assign(daemon, { grpc: started.grpc as string, http: started.http as string });
}

/** Waits for the bootstrap files of whichever coordinator bootstrapped, among these data dirs. */
export async function bootstrapTokens(dataDirs: string[], timeoutMs = 15_000): Promise<{ admin: string; join: string; joinFile: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const dir of dataDirs) {
      const joinFile = path.join(dir, 'join-token');
      if (existsSync(joinFile)) {
        return { admin: readFileSync(path.join(dir, 'admin-token'), 'utf8').trim(), join: readFileSync(joinFile, 'utf8').trim(), joinFile };
      }
    }
    if (Date.now() > deadline) throw new Error(`no coordinator bootstrapped within ${timeoutMs} ms (looked in ${dataDirs.join(', ')})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A synthetic host: an agent with a capacity file, so tests control what the node has. */
export async function startAgent(t: TestContext, name: string, coordinators: string[], dataDir: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Daemon> {
  const inventory = path.join(dataDir, `${name}-inventory.json`);
  writeFileSync(inventory, JSON.stringify({ cpu: '16', memory: '64Gi', gpus: { count: 2, model: 'NVIDIA H100 80GB HBM3', memory: '80Gi' }, nics: [{ name: 'eth0', speedMbps: 25000 }] }));
  const daemon = spawnDaemon(t, name, 'agent/main.js', [
    '--name', name, '--coordinator', coordinators.join(','), '--data-dir', path.join(dataDir, name),
    '--http-listen', '127.0.0.1:0', '--gateway-listen', '127.0.0.1:0', '--inventory-file', inventory, '--driver', 'process',
    // Tasks run as this test's own user, as before --task-user: the isolation it brings is tested in process-driver.test.ts.
    '--task-user', os.userInfo().username, ...extra,
  ], env);
  // The process driver's task supervisors outlive their agent by design (a restarted agent adopts
  // them): once the test is over, they and their replicas go too, or they pile up on the host.
  t.after(() => killTasksUnder(path.join(dataDir, name)));
  // A loaded CI host (several suites, Chromium) takes well over the default 15 s to start an agent.
  await daemon.waitForMessage('agent started', 60_000);
  return daemon;
}

/** SIGKILLs the process group of every task supervisor whose task directory lies under `dataDir`. */
export function killTasksUnder(dataDir: string): void {
  const tasks = `${path.resolve(dataDir)}/tasks/`;
  for (const pid of readdirSync('/proc').filter((entry) => /^\d+$/.test(entry))) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile
    }
    if (!argv.some((arg) => arg.endsWith('process-supervisor.js')) || !argv.some((arg) => arg.startsWith(tasks))) continue;
    try {
      process.kill(-Number(pid), 'SIGKILL'); // it leads its task's process group
    } catch {
      // already gone
    }
  }
}
