// A real etcd for tests. With MLFLEET_TEST_ETCD set (comma-separated client URLs: CI runs one
// etcd for the whole run) every caller gets those endpoints and a key namespace of its own.
// Otherwise, or when a test asks for a dedicated one (to stop it, or to have its keys to
// itself), the `etcd` binary is spawned on free loopback ports with a temporary data dir, and
// stopped and removed in t.after(). Spawned etcds run with --heartbeat-interval 50
// --election-timeout 500, which lets them grant 1 s leases (the default flags grant no less
// than 2 s). Without either, the test fails: tests never skip.
import { freePort } from './net.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { EtcdStore } from '../../shared/store/etcd-store.js';

export interface TestEtcd {
  endpoints: string[];
  /** A key namespace of this caller's own, e.g. /mlfleet-test/1234-1-ab12cd/. */
  prefix: string;
  /** The --store spec: `etcd:ENDPOINTS?prefix=PREFIX`. */
  spec: string;
  /** A spawned etcd only: stops it now (to test an outage); t.after() does it anyway. */
  stop?: () => Promise<void>;
}

export interface StartEtcdOptions {
  /** Spawn an etcd for this test alone, even when MLFLEET_TEST_ETCD is set. */
  dedicated?: boolean;
}

const REQUIRED = 'etcd is required: install etcd-server or set MLFLEET_TEST_ETCD';
const HEALTHY_WITHIN_MS = 15_000;
let namespaces = 0;

export async function startEtcd(t: TestContext, options: StartEtcdOptions = {}): Promise<TestEtcd> {
  const prefix = `/mlfleet-test/${process.pid}-${++namespaces}-${randomBytes(3).toString('hex')}/`;
  const shared = process.env.MLFLEET_TEST_ETCD?.split(',').map((e) => e.trim()).filter(Boolean) ?? [];
  if (shared.length > 0 && !options.dedicated) {
    t.after(() => clearNamespace(shared, prefix));
    return { endpoints: shared, prefix, spec: `etcd:${shared.join(',')}?prefix=${prefix}` };
  }
  const etcd = await spawnEtcd();
  t.after(() => etcd.stop());
  return { endpoints: etcd.endpoints, prefix, spec: `etcd:${etcd.endpoints.join(',')}?prefix=${prefix}`, stop: () => etcd.stop() };
}

/** Leaves the shared etcd as it was found. */
async function clearNamespace(endpoints: string[], prefix: string): Promise<void> {
  const store = await EtcdStore.create({ endpoints, prefix });
  try {
    await store.txn([], [{ type: 'deletePrefix', prefix: '' }]);
  } finally {
    await store.close();
  }
}

interface SpawnedEtcd {
  endpoints: string[];
  stop(): Promise<void>;
}

async function spawnEtcd(): Promise<SpawnedEtcd> {
  let lastError: Error | undefined;
  // Free ports are found by binding port 0 and letting go: another process may take one in
  // between, so a failed start is retried on new ports.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await spawnEtcdOnce();
    } catch (err) {
      lastError = err as Error;
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
    }
  }
  throw new Error(`${REQUIRED} (${lastError?.message})`, { cause: lastError });
}

async function spawnEtcdOnce(): Promise<SpawnedEtcd> {
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-etcd-'));
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const child = spawn(
    'etcd',
    [
      '--name', 'test',
      '--data-dir', dataDir,
      '--listen-client-urls', client,
      '--advertise-client-urls', client,
      '--listen-peer-urls', peer,
      '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `test=${peer}`,
      '--heartbeat-interval', '50',
      '--election-timeout', '500',
      '--logger', 'zap',
      '--log-level', 'error',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2_000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const spawnError = new Promise<never>((_, reject) => child.once('error', reject));
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await terminate(child, exited);
      rmSync(dataDir, { recursive: true, force: true });
    })());
  try {
    await Promise.race([
      spawnError,
      exited.then(() => Promise.reject(new Error(`etcd exited during start: ${stderr.trim() || 'no output'}`))),
      waitHealthy(clientPort),
    ]);
  } catch (err) {
    await stop();
    throw err;
  }
  return { endpoints: [client], stop };
}

async function terminate(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(killer);
}


async function waitHealthy(port: number): Promise<void> {
  const deadline = Date.now() + HEALTHY_WITHIN_MS;
  while (Date.now() < deadline) {
    if (await healthy(port)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`etcd on port ${port} was not healthy within ${HEALTHY_WITHIN_MS} ms`);
}

/** GET /health, on a connection of its own that closes after (no keep-alive handle left). */
function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/health', agent: false, timeout: 1_000 }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve(response.statusCode === 200 && body.includes('"health":"true"')));
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(false));
  });
}
