// The README's start command: a coordinator on SQLite and an agent for this host in one
// process. `mlfleetctl nodes ls` then shows this host with its real capacity; operator
// actions work through the real CLI; Ctrl-C stops everything and exits 0.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { defaultNodeName } from '../../agent/node-name.js';
import { RUNTIME_IMAGE } from '../helpers/images.js';
import { REPO_ROOT, tempDir } from '../helpers/processes.js';

const run = promisify(execFile);

/** Starts `npm start`'s program with its state, HOME and ports of its own; resolves once it is up. */
async function startLocalCluster(t: TestContext, env: Record<string, string> = {}) {
  const dir = tempDir(t);
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist/scripts/local-cluster.js')], {
    env: {
      ...process.env,
      HOME: dir,
      MLFLEET_DATA_DIR: path.join(dir, 'state'),
      MLFLEET_LISTEN: '127.0.0.1:0',
      MLFLEET_HTTP_LISTEN: '127.0.0.1:0',
      MLFLEET_AGENT_HTTP_LISTEN: '127.0.0.1:0',
      MLFLEET_GATEWAY_LISTEN: '127.0.0.1:0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(() => child.kill('SIGKILL'));
  const output: string[] = [];
  const lines = createInterface({ input: child.stdout! });
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start banner: ${output.join('\n')}`)), 20_000);
    lines.on('line', (line) => {
      output.push(line);
      const match = /coordinator\s+gRPC (\S+)/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
  });
  // No --token: the CLI finds the admin token the local cluster wrote to ~/.config/mlfleet/token.
  const ctl = (...args: string[]) =>
    run(process.execPath, [path.join(REPO_ROOT, 'dist/scripts/mlfleetctl.js'), '--coordinator', address, ...args], { env: { ...process.env, HOME: dir } });
  return { dir, child, exited, output, address, ctl };
}

test('the local cluster shows this host in nodes ls and stops cleanly on Ctrl-C', async (t) => {
  const { dir, child, exited, output, address, ctl } = await startLocalCluster(t);
  assert.equal(statSync(path.join(dir, '.config/mlfleet/token')).mode & 0o777, 0o600, 'the token file is private');
  const name = defaultNodeName();
  let nodes: { name: string; status: string; capacity: { cpuMillis: number; memoryBytes: number } }[] = [];
  for (let i = 0; i < 100 && nodes.length === 0; i++) {
    nodes = JSON.parse((await ctl('nodes', 'ls', '-o', 'json')).stdout);
    if (nodes.length === 0) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(nodes.length, 1);
  assert.equal(nodes[0]!.name, name);
  assert.equal(nodes[0]!.status, 'ready');
  assert.equal(nodes[0]!.capacity.cpuMillis, os.cpus().length * 1000, 'real CPU count');
  assert.equal(nodes[0]!.capacity.memoryBytes, os.totalmem(), 'real memory');

  const status = JSON.parse((await ctl('cluster', 'status', '-o', 'json')).stdout);
  assert.equal(status.store, 'sqlite');
  assert.equal(status.leader, address);

  await ctl('nodes', 'drain', name);
  const drained = JSON.parse((await ctl('nodes', 'show', name, '-o', 'json')).stdout);
  assert.deepEqual([drained.status, drained.cordoned], ['draining', true]);
  await ctl('nodes', 'uncordon', name);
  const back = JSON.parse((await ctl('nodes', 'show', name, '-o', 'json')).stdout);
  assert.deepEqual([back.status, back.cordoned], ['ready', false]);

  child.kill('SIGINT');
  assert.equal(await exited, 0, 'Ctrl-C exits 0');
  assert.ok(output.some((line) => line.includes('stopped')), output.join('\n'));
  assert.ok(!output.some((line) => line.includes('keep')), 'no workload, nothing said to keep running');
});

test('on Ctrl-C the local cluster names the container that keeps serving and the command that stops it', async (t) => {
  const node = `local-stop-${process.pid}`;
  const { dir, exited, child, output, ctl } = await startLocalCluster(t, { MLFLEET_NAME: node });
  const ours = async () => (await run('docker', ['ps', '-aq', '--filter', `label=mlfleet.node=${node}`])).stdout.split('\n').filter(Boolean);
  t.after(async () => {
    const left = await ours();
    if (left.length > 0) await run('docker', ['rm', '-f', ...left]);
  });
  const model = path.join(dir, 'model.bin');
  writeFileSync(model, 'not really a model');
  await ctl('models', 'push', 'm', model);
  await ctl('deploy', 'web', '--model', 'm', '--image', RUNTIME_IMAGE, '--cpu', '100m', '--', 'node', '-e', 'setInterval(() => {}, 1 << 30)');
  let running: { id: string; status: string }[] = [];
  for (let i = 0; i < 600 && running.length === 0; i++) {
    const allocations: { id: string; status: string }[] = JSON.parse((await ctl('ps', '-o', 'json')).stdout);
    running = allocations.filter((a) => a.status === 'running' || a.status === 'ready');
    if (running.length === 0) await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.equal(running.length, 1, 'the replica runs');

  child.kill('SIGINT');
  assert.equal(await exited, 0, 'Ctrl-C exits 0');
  const text = output.join('\n');
  assert.match(text, /1 container of this cluster keeps running/);
  assert.ok(text.includes(`deployment allocation ${running[0]!.id}`), text);
  const command = /to stop and remove them: (docker rm -f .*)$/m.exec(text)?.[1];
  assert.ok(command, text);

  // What it says is true: the container still runs after the stop, and the command stops it.
  const [container] = await ours();
  assert.ok(container, 'the container outlived the cluster');
  assert.equal((await run('docker', ['inspect', '-f', '{{.State.Running}}', container])).stdout.trim(), 'true');
  await run('bash', ['-c', command]);
  assert.deepEqual(await ours(), [], 'the command removed it');
});
