// Runs the compiled mlfleetctl the way users do — a child process with its own HOME, so a
// developer's ~/.config/mlfleet/token never leaks into a test — and starts fake coordinators
// that are closed when the test ends.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FakeCoordinator, type FakeCoordinatorOptions } from './fake-coordinator.js';

export const CLI = fileURLToPath(new URL('../../scripts/mlfleetctl.js', import.meta.url));

export type TestContext = { after(fn: () => unknown): void };

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** An empty directory removed after the test, to serve as HOME. */
export async function tempHome(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mlfleetctl-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A HOME whose ~/.config/mlfleet/token holds `token`, as an operator would set it up. */
export async function homeWithToken(t: TestContext, token: string): Promise<string> {
  const dir = await tempHome(t);
  await mkdir(path.join(dir, '.config', 'mlfleet'), { recursive: true });
  await writeFile(path.join(dir, '.config', 'mlfleet', 'token'), `${token}\n`, { mode: 0o600 });
  return dir;
}

/**
 * Runs a compiled script with `env` only (plus PATH and a fresh HOME); nothing else is inherited.
 * `input`, when given, is its stdin. The CLI runs as installed, through its shebang and the Node
 * flags it names; other scripts through this Node.
 */
export async function runScript(t: TestContext, script: string, args: string[], env: Record<string, string> = {}, input?: string): Promise<Run> {
  const installed = script === CLI;
  const child = spawn(installed ? script : process.execPath, installed ? args : [script, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: env.HOME ?? (await tempHome(t)), ...env },
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  child.stdin?.end(input);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c));
  });
  return { code, stdout, stderr };
}

/** `env` replaces the defaults (PATH and a fresh HOME) and adds to them; nothing else is inherited. */
export function mlfleetctl(t: TestContext, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runScript(t, CLI, args, env);
}

export async function coordinator(t: TestContext, options: FakeCoordinatorOptions): Promise<FakeCoordinator> {
  const fake = await FakeCoordinator.start(options);
  t.after(() => fake.close());
  return fake;
}
