// scripts/install.sh against a scratch root: the tree, the entry points, the users (in the
// scratch root's etc/passwd, never this machine's), the config and units where systemd reads
// them, units that systemd-analyze verify accepts with their ExecStart resolved inside the
// root; a second run changes nothing, a new build replaces only what changed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  accessSync,
  constants,
  existsSync,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT, tempDir } from '../helpers/processes.js';
import { verifyUnit } from '../helpers/systemd-verify.js';

const run = promisify(execFile);
const SCRIPT = path.join(REPO_ROOT, 'scripts/install.sh');

function install(...args: string[]) {
  return run('bash', [SCRIPT, ...args], { maxBuffer: 16 * 2 ** 20 });
}

/** Every entry under dir with what a rewrite would change: type, mode, owner, size, times. */
function snapshot(dir: string): Map<string, string> {
  const entries = new Map<string, string>();
  const walk = (at: string) => {
    for (const name of readdirSync(at)) {
      const full = path.join(at, name);
      const s = lstatSync(full, { bigint: true });
      entries.set(path.relative(dir, full), [s.mode, s.uid, s.gid, s.size, s.mtimeNs, s.ctimeNs, s.nlink].join(' '));
      if (s.isDirectory()) walk(full);
    }
  };
  walk(dir);
  return entries;
}

test('install.sh puts the coordinator and the agent in a scratch root, and a second run changes nothing', async (t) => {
  const root = tempDir(t, 'mlfleet-root-');
  const tokenFile = path.join(tempDir(t), 'join-token');
  writeFileSync(tokenFile, 'join-secret-123\n');
  const hostPasswd = readFileSync('/etc/passwd', 'utf8');

  const first = await install('--coordinator', '--agent', '--task-user', '--root', root, '--join-token-file', tokenFile);
  assert.match(first.stdout, /mlfleet installed in/);
  assert.doesNotMatch(first.stdout, /join-secret/, 'the token is never printed');

  // The tree and the entry points, linked relatively so they resolve inside the root.
  for (const file of ['package.json', 'dist/coordinator/main.js', 'dist/agent/main.js', 'proto/mlfleet/v1/types.proto', 'node_modules/better-sqlite3/package.json']) {
    assert.ok(existsSync(path.join(root, 'opt/mlfleet', file)), file);
  }
  for (const [bin, target] of [['mlfleet-coordinator', 'dist/coordinator/main.js'], ['mlfleet-agent', 'dist/agent/main.js'], ['mlfleetctl', 'dist/scripts/mlfleetctl.js']] as const) {
    const link = path.join(root, 'usr/local/bin', bin);
    assert.ok(!path.isAbsolute(readlinkSync(link)), `${bin} is a relative link`);
    assert.equal(realpathSync(link), realpathSync(path.join(root, 'opt/mlfleet', target)));
    accessSync(link, constants.X_OK);
  }

  // Users and groups in the root's files, not this machine's.
  const passwd = readFileSync(path.join(root, 'etc/passwd'), 'utf8');
  const group = readFileSync(path.join(root, 'etc/group'), 'utf8');
  assert.match(passwd, /^mlfleet:x:\d+:\d+::\/nonexistent:\/usr\/sbin\/nologin$/m);
  assert.match(passwd, /^mlfleet-task:x:/m);
  assert.match(group, /^mlfleet:x:/m);
  assert.match(group, /^docker:x:/m);
  assert.equal(readFileSync('/etc/passwd', 'utf8'), hostPasswd, "this machine's users are untouched");

  // Config from the examples; the join token in a root-only environment file.
  for (const name of ['coordinator', 'agent']) {
    assert.equal(
      readFileSync(path.join(root, `etc/mlfleet/${name}.yaml`), 'utf8'),
      readFileSync(path.join(REPO_ROOT, `systemd/${name}.yaml.example`), 'utf8'),
    );
  }
  const envFile = path.join(root, 'etc/mlfleet/agent.env');
  assert.equal(readFileSync(envFile, 'utf8'), 'MLFLEET_JOIN_TOKEN=join-secret-123\n');
  assert.equal(statSync(envFile).mode & 0o777, 0o600);

  // The units where systemd reads an administrator's units, accepted by systemd-analyze verify
  // with each Exec* binary looked up inside the root (it must exist and be executable there).
  for (const unit of ['mlfleet-coordinator.service', 'mlfleet-agent.service']) {
    const installed = path.join(root, 'etc/systemd/system', unit);
    assert.equal(statSync(installed).mode & 0o777, 0o644);
    const text = readFileSync(installed, 'utf8');
    assert.equal(text.trimEnd(), readFileSync(path.join(REPO_ROOT, 'systemd', unit), 'utf8').trimEnd());
    const { status, output } = await verifyUnit(t, unit, text, async (binary) => {
      const inRoot = path.join(root, binary);
      accessSync(inRoot, constants.X_OK);
      return inRoot;
    });
    assert.equal(output, '', `systemd-analyze verify has something to say about the installed ${unit}`);
    assert.equal(status, 0);
  }

  // A second run changes nothing: not one file rewritten, not one time or mode touched.
  const before = snapshot(root);
  const second = await install('--coordinator', '--agent', '--task-user', '--root', root, '--join-token-file', tokenFile);
  assert.match(second.stdout, /nothing changed/);
  const after = snapshot(root);
  const differences = [...new Set([...before.keys(), ...after.keys()])].filter((k) => before.get(k) !== after.get(k));
  assert.deepEqual(differences, [], 'entries the second run touched');

  // An operator's edit to the config survives; a newer build replaces what changed and drops
  // what it no longer has.
  const config = path.join(root, 'etc/mlfleet/agent.yaml');
  writeFileSync(config, 'labels: {zone: a}\n');
  const stale = path.join(root, 'opt/mlfleet/dist/gone.js');
  writeFileSync(stale, '');
  const old = path.join(root, 'opt/mlfleet/dist/agent/options.js');
  writeFileSync(old, '// an older build\n');
  const backdated = new Date(Date.now() - 3_600_000);
  utimesSync(old, backdated, backdated);
  const third = await install('--agent', '--root', root);
  assert.match(third.stdout, /dist: 1 files copied, 1 removed/);
  assert.equal(readFileSync(config, 'utf8'), 'labels: {zone: a}\n');
  assert.ok(!existsSync(stale));
  assert.equal(readFileSync(old, 'utf8'), readFileSync(path.join(REPO_ROOT, 'dist/agent/options.js'), 'utf8'));
});

test('install.sh refuses bad arguments with a clear error and installs nothing', async (t) => {
  const root = tempDir(t, 'mlfleet-root-');
  for (const [args, message] of [
    [['--root', root], /give --coordinator, --agent or both/],
    [['--agent', '--root', root, '--bogus'], /unknown argument: --bogus/],
    [['--agent', '--root', root, '--prefix', 'opt/mlfleet'], /--prefix must be an absolute path/],
    [['--coordinator', '--root', root, '--join-token-file', '/nonexistent'], /--join-token-file is for --agent/],
    [['--agent', '--root', path.join(root, 'missing')], /--root is not a directory/],
    [['--agent', '--root'], /--root needs a value/],
  ] as const) {
    await assert.rejects(install(...args), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2, args.join(' '));
      assert.match(err.stderr, message);
      return true;
    });
  }
  assert.deepEqual(readdirSync(root), [], 'nothing was installed');
});
