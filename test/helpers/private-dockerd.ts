// A Docker engine of a test's own: a dockerd on its own socket, data root, exec root (so its own
// managed containerd) and address pool, which the test may stop and start again without touching
// the machine's shared engine that other test files use at the same time. Its default bridge is
// one of its own, made here, and it runs without iptables rules: dockerd rewrites its iptables
// chains when it starts, and those chains are the shared engine's too. Published ports still
// work through docker-proxy, which is all loopback serving needs. Both engines live in the host's
// network namespace, and a dockerd starting again on its data root deletes the host's docker0
// (the shared engine's default bridge) whatever it is told: docker0 is put back as it was after
// each start and stop of this one. The fault suite runs one file at a time, so no other test
// has a container on docker0 meanwhile.
import { randomBytes } from 'node:crypto';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import Docker from 'dockerode';

export interface PrivateDockerd {
  /** DOCKER_HOST for processes that should use this engine. */
  host: string;
  docker: Docker;
  /** SIGTERM to dockerd, resolved once it has exited (it stops its containers first). */
  stop(): Promise<void>;
  /** dockerd again on the same roots, resolved once it answers. */
  start(): Promise<void>;
  /** Loads images from the shared engine into this one. */
  load(...images: string[]): Promise<void>;
}

const STOP_TIMEOUT_MS = 40_000;
const START_TIMEOUT_MS = 30_000;

/**
 * Starts a private dockerd; in t.after() it removes every container and network on it, stops it
 * and removes its directories.
 */
export async function startPrivateDockerd(t: TestContext, options: { addressPool?: string; bridgeAddress?: string } = {}): Promise<PrivateDockerd> {
  // A short path: the engine's and containerd's unix sockets live under it (108-byte limit).
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfd-'));
  for (const sub of ['data', 'exec']) mkdirSync(path.join(dir, sub));
  const socket = path.join(dir, 'docker.sock');
  const host = `unix://${socket}`;
  const logFile = path.join(dir, 'dockerd.log');
  // Its own default bridge (an interface name is at most 15 bytes), in its own address pool.
  const bridge = `mlfd${randomBytes(4).toString('hex')}`;
  const ip = (...args: string[]) => {
    const run = spawnSync('ip', args, { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`ip ${args.join(' ')} failed (the private dockerd needs root and iproute2): ${run.stderr || run.error?.message}`);
  };
  ip('link', 'add', bridge, 'type', 'bridge');
  ip('addr', 'add', options.bridgeAddress ?? '10.214.0.1/24', 'dev', bridge);
  ip('link', 'set', bridge, 'up');
  const docker0 = spawnSync('ip', ['-o', '-4', 'addr', 'show', 'dev', 'docker0'], { encoding: 'utf8' }).stdout.match(/inet (\S+)/)?.[1];
  /** Puts the shared engine's docker0 back, with its address, when this engine deleted it. */
  const restoreDocker0 = () => {
    if (!docker0 || spawnSync('ip', ['link', 'show', 'docker0']).status === 0) return;
    ip('link', 'add', 'docker0', 'type', 'bridge');
    ip('addr', 'add', docker0, 'dev', 'docker0');
    ip('link', 'set', 'docker0', 'up');
  };
  const docker = new Docker({ socketPath: socket });
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const logTail = () => {
    try {
      return readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '(no log)';
    }
  };

  const start = async () => {
    if (child) throw new Error('the private dockerd is already running');
    const out = openSync(logFile, 'a');
    const proc = spawn('dockerd', [
      '--host', host,
      '--data-root', path.join(dir, 'data'),
      '--exec-root', path.join(dir, 'exec'),
      '--pidfile', path.join(dir, 'docker.pid'),
      '--default-address-pool', options.addressPool ?? 'base=10.213.0.0/16,size=24',
      '--bridge', bridge,
      '--iptables=false',
      '--ip-masq=false',
    ], { stdio: ['ignore', out, out] });
    closeSync(out);
    child = proc;
    const spawned = new Promise<void>((resolve, reject) => {
      proc.once('spawn', resolve);
      proc.once('error', (err) => reject(new Error(`dockerd could not be started (is it installed, and is this test run as root?): ${err.message}`)));
    });
    exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    void exited.then(() => {
      if (child === proc) child = undefined;
    });
    await spawned;
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (!child) throw new Error(`the private dockerd exited while starting:\n${logTail()}`);
      try {
        await docker.ping();
        restoreDocker0();
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`the private dockerd did not answer on ${host} within ${START_TIMEOUT_MS / 1000}s:\n${logTail()}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  };

  const stop = async () => {
    const proc = child;
    if (!proc) return;
    proc.kill('SIGTERM');
    let killed = false;
    const timer = setTimeout(() => ((killed = true), proc.kill('SIGKILL')), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
    if (killed) stopOrphanedContainerd();
    restoreDocker0();
  };

  /** dockerd killed leaves the containerd it started running: that one (it runs on our exec root), by its pid. */
  const stopOrphanedContainerd = () => {
    try {
      const pid = Number(readFileSync(path.join(dir, 'exec', 'containerd', 'containerd.pid'), 'utf8').trim());
      if (pid > 0 && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir)) process.kill(pid, 'SIGTERM');
    } catch {
      // gone already
    }
  };

  t.after(async () => {
    if (child) {
      const containers = await docker.listContainers({ all: true }).catch(() => []);
      await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
      const networks = await docker.listNetworks().catch(() => []);
      const builtIn = new Set(['bridge', 'host', 'none']);
      await Promise.all(networks.filter((n) => !builtIn.has(n.Name)).map((n) => docker.getNetwork(n.Id).remove().catch(() => undefined)));
    }
    await stop();
    spawnSync('ip', ['link', 'del', bridge]);
    rmSync(dir, { recursive: true, force: true });
  });

  await start();
  return {
    host,
    docker,
    stop,
    start,
    load: async (...images) => {
      const shared = new Docker();
      for (const image of images) {
        const tar = await shared.getImage(image).get();
        const loading = (await docker.loadImage(tar)) as NodeJS.ReadableStream;
        await new Promise<void>((resolve, reject) => docker.modem.followProgress(loading, (err) => (err ? reject(err) : resolve())));
        await docker.getImage(image).inspect().catch((err: Error) => {
          throw new Error(`${image} was not loaded into the private dockerd: ${err.message}`);
        });
      }
    },
  };
}
