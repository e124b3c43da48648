// What keeps a host's files to their owners (issue 13): the agent's data dir 0700 and agent.db
// with its WAL 0600 (also when an older agent left them looser); process-driver tasks run as
// --task-user and read neither the agent's data dir nor a coordinator's admin token; an agent
// whose Docker engine does not answer refuses to start instead of falling back to processes;
// --join-token on a command line is warned against.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { it, type TestContext } from 'node:test';
import type { Task } from '../../agent/drivers/driver.js';
import { ProcessDriver } from '../../agent/drivers/process-driver.js';
import { LocalState } from '../../agent/local-state.js';
import { compileAgentOptions } from '../../agent/options.js';
import { DEFAULT_TASK_USER, lookupUser, processTaskUser } from '../../agent/task-user.js';
import { MlfleetError } from '../../shared/errors.js';
import { silentLogger } from '../../shared/log.js';
import { eventually } from '../helpers/eventually.js';
import { REPO_ROOT, tempDir } from '../helpers/processes.js';
import { logs } from './driver-checks.js';

const RUN = `${process.pid}-${randomBytes(3).toString('hex')}`;

function mode(file: string): number {
  return statSync(file).mode & 0o7777;
}

it("makes the agent's data dir 0700 and agent.db with its WAL files 0600, also when they were looser", (t) => {
  const dir = path.join(tempDir(t, 'mlfleet-local-state-'), 'agent');
  const first = LocalState.open(dir);
  first.setMeta('nodeCredential', 'secret');
  assert.equal(mode(dir), 0o700);
  for (const name of ['agent.db', 'agent.db-wal', 'agent.db-shm']) assert.equal(mode(path.join(dir, name)), 0o600, name);
  first.close();
  // As an older agent left them.
  chmodSync(dir, 0o755);
  for (const name of readdirSync(dir).filter((n) => n.startsWith('agent.db'))) chmodSync(path.join(dir, name), 0o644);
  const again = LocalState.open(dir);
  t.after(() => again.close());
  again.setMeta('nodeCredential', 'secret');
  assert.equal(mode(dir), 0o700);
  for (const name of readdirSync(dir).filter((n) => n.startsWith('agent.db'))) assert.equal(mode(path.join(dir, name)), 0o600, name);
});

/** The task user the install steps create, made here when missing (the tests run as root). */
function ensureTaskUser(): void {
  if (lookupUser(DEFAULT_TASK_USER)) return;
  try {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', DEFAULT_TASK_USER], { stdio: 'pipe' });
  } catch (err) {
    if (!lookupUser(DEFAULT_TASK_USER)) throw err; // another test file made it meanwhile otherwise
  }
}

const SNOOP = `const fs = require('fs');
const tryIt = (f) => { try { f(); return 'ok'; } catch (err) { return err.code; } };
console.log(JSON.stringify({
  uid: process.getuid(), gid: process.getgid(), groups: process.getgroups(),
  agentDb: tryIt(() => fs.readFileSync(process.env.AGENT_DIR + '/agent.db')),
  agentDir: tryIt(() => fs.readdirSync(process.env.AGENT_DIR)),
  adminToken: tryIt(() => fs.readFileSync(process.env.COORDINATOR_DIR + '/admin-token')),
  model: tryIt(() => fs.readFileSync(process.env.AGENT_DIR + '/cache/model.onnx')),
  work: tryIt(() => fs.writeFileSync('scratch', 'x')),
  home: process.env.HOME === process.cwd() ? 'work' : process.env.HOME,
}));`;

it("runs a process-driver task as --task-user, who reads neither the agent's data dir nor a coordinator's admin token", async (t) => {
  assert.equal(process.getuid?.(), 0, 'this test runs as root, as the agent does on a real host');
  ensureTaskUser();
  const user = processTaskUser(DEFAULT_TASK_USER, silentLogger())!;
  assert.ok(user.uid > 0);
  const base = tempDir(t, 'mlfleet-task-user-');
  chmodSync(base, 0o755);
  const agentDir = path.join(base, 'agent');
  const state = LocalState.open(agentDir);
  state.setMeta('nodeCredential', 'node-secret');
  t.after(() => state.close());
  mkdirSync(path.join(agentDir, 'cache'), { mode: 0o755 });
  writeFileSync(path.join(agentDir, 'cache', 'model.onnx'), 'model bytes', { mode: 0o644 });
  // A coordinator's data dir as bootstrap leaves it: readable dir, admin-token 0600.
  const coordinatorDir = path.join(base, 'coordinator');
  mkdirSync(coordinatorDir, { mode: 0o755 });
  writeFileSync(path.join(coordinatorDir, 'admin-token'), 'admin-secret', { mode: 0o600 });

  const driver = new ProcessDriver({ dataDir: agentDir, node: `host-${RUN}`, log: silentLogger(), taskUser: user, pollMs: 50 });
  assert.deepEqual([statSync(agentDir).gid, mode(agentDir)], [user.gid, 0o710], "the data dir lets the task user's group pass, and list nothing");
  const task: Task = {
    allocationId: `snoop-${RUN}`,
    kind: 'job',
    workload: 'snoop',
    tenant: 'acme',
    spec: { image: 'ignored:1', command: [process.execPath, '-e', SNOOP], env: {}, port: 0, readinessPath: '', readinessTimeoutMs: 30_000, model: undefined, datasets: [], rank: 0, worldSize: 1 },
    cpuMillis: 0,
    memoryBytes: 0,
    gpuIndexes: [],
    hostPort: 0,
    mounts: [],
    env: { AGENT_DIR: agentDir, COORDINATOR_DIR: coordinatorDir },
  };
  t.after(() => driver.remove(task.allocationId, 0));
  await driver.start(task);
  const status = await eventually('the task exiting', 15_000, async () => (await driver.list()).find((s) => s.allocationId === task.allocationId && !s.running));
  const output = await logs(driver, task.allocationId);
  assert.equal(status.exitCode, 0, output);
  assert.deepEqual(JSON.parse(output), {
    uid: user.uid,
    gid: user.gid,
    groups: [user.gid],
    agentDb: 'EACCES',
    agentDir: 'EACCES',
    adminToken: 'EACCES',
    model: 'ok',
    work: 'ok',
    home: 'work',
  });
  // Its directory: the driver's record and log stay the agent's; other users cannot even list it.
  const tasksDir = path.join(agentDir, 'tasks');
  assert.equal(mode(tasksDir), 0o710);
  assert.equal(mode(path.join(tasksDir, task.allocationId)), 0o710);
  const work = statSync(path.join(tasksDir, task.allocationId, 'work'));
  assert.deepEqual([work.uid, work.mode & 0o7777], [user.uid, 0o700]);
  assert.equal(statSync(path.join(tasksDir, task.allocationId, 'task.json')).uid, 0);
});

it('refuses a --task-user that does not exist, saying how to create it', () => {
  const missing = `no-such-user-${randomBytes(3).toString('hex')}`;
  assert.throws(
    () => processTaskUser(missing, silentLogger()),
    (err: Error) => MlfleetError.is(err) && err.code === 'FAILED_PRECONDITION' && err.message.includes(`useradd --system`) && err.message.includes(missing),
  );
  // The agent's own user: no switch, and no error (it is warned about loudly).
  assert.equal(processTaskUser(os.userInfo().username, silentLogger()), undefined);
});

it('refuses to start, saying what --driver process means, when the docker driver (the default) finds no engine', async (t) => {
  const dir = tempDir(t, 'mlfleet-no-docker-');
  const tokenFile = path.join(dir, 'join-token');
  writeFileSync(tokenFile, 'mlf_join_unused', { mode: 0o600 });
  const child = spawn(
    process.execPath,
    [path.join(REPO_ROOT, 'dist', 'agent', 'main.js'), '--name', 'no-docker', '--data-dir', path.join(dir, 'agent'), '--join-token-file', tokenFile,
      '--http-listen', '127.0.0.1:0', '--gateway-listen', '127.0.0.1:0', '--coordinator', '127.0.0.1:1'],
    { env: { ...process.env, DOCKER_HOST: `unix://${path.join(dir, 'dead.sock')}` }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdout.resume();
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(code, 1, stderr);
  assert.match(stderr, /the docker driver \(the default\) needs a Docker engine, and none answers at unix:\/\/.*dead\.sock/);
  assert.match(stderr, /--driver process, which runs tasks as plain processes of --task-user on this host, without containers: for trusted, single-tenant hosts only/);
});

it('warns against --join-token on the command line, and not against the file or the environment', async (t) => {
  const cli = await compileAgentOptions(['--driver', 'process', '--name', 'a', '--join-token', 'mlf_join_x']);
  assert.equal(cli.warnings.length, 1);
  assert.match(cli.warnings[0]!, /--join-token on the command line .* use --join-token-file PATH .* or MLFLEET_JOIN_TOKEN/);
  assert.equal(cli.driver, 'process');
  const file = path.join(tempDir(t), 'join-token');
  writeFileSync(file, 'mlf_join_x\n', { mode: 0o600 });
  assert.deepEqual((await compileAgentOptions(['--name', 'a', '--join-token-file', file])).warnings, []);
  const saved = process.env.MLFLEET_JOIN_TOKEN;
  process.env.MLFLEET_JOIN_TOKEN = 'mlf_join_x';
  t.after(() => (saved === undefined ? delete process.env.MLFLEET_JOIN_TOKEN : (process.env.MLFLEET_JOIN_TOKEN = saved)));
  const env = await compileAgentOptions(['--name', 'a']);
  assert.deepEqual(env.warnings, []);
  assert.equal(env.joinToken, 'mlf_join_x');
  // No --driver: docker, never a guess.
  assert.equal(env.driver, 'docker');
  assert.equal(env.taskUser, DEFAULT_TASK_USER);
});
