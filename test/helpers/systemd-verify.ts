// `systemd-analyze verify` on a unit file's text, for the unit tests and the install script's
// tests. No running systemd (PID 1) is needed.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';

function findSystemdAnalyze(): string {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/bin', '/bin', '/usr/sbin'];
  for (const dir of dirs.filter(Boolean)) {
    const candidate = path.join(dir, 'systemd-analyze');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  assert.fail(
    'systemd-analyze is not installed, so the unit files cannot be verified. Install it ' +
      '(Debian/Ubuntu: apt-get install systemd); this test fails rather than skips so that CI never ' +
      'ships unverified units.',
  );
}

/**
 * Verifies a unit given as text. verify insists that each Exec* binary exists and is
 * executable, and --root= needs a whole systemd tree, so `execPath` maps every Exec* binary
 * path to one that exists here (a stub, or the installed file under a scratch root); only the
 * path changes, not the arguments. Only verify's lines about this unit are returned: it also
 * loads dependencies (docker.service, network-online.target), whose warnings on a CI host are
 * not this project's.
 */
export async function verifyUnit(
  t: TestContext,
  name: string,
  text: string,
  execPath: (binary: string) => Promise<string>,
): Promise<{ status: number | null; output: string }> {
  const analyze = findSystemdAnalyze();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mlfleet-units-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const rewritten: string[] = [];
  for (const line of text.split('\n')) {
    // Exec lines: ExecStart=[-@:+!]/path args…
    const exec = /^(Exec[A-Za-z]*=[-@:+!]*)(\/\S+)(.*)$/.exec(line);
    rewritten.push(exec ? `${exec[1]}${await execPath(exec[2]!)}${exec[3]}` : line);
  }
  // The copy keeps the unit's file name: verify derives the unit's name and type from it.
  const copy = path.join(dir, name);
  await writeFile(copy, rewritten.join('\n'));
  const result = spawnSync(analyze, ['verify', '--man=no', '--generators=no', '--recursive-errors=no', copy], {
    encoding: 'utf8',
    env: { ...process.env, SYSTEMD_LOG_COLOR: '0', SYSTEMD_PAGER: 'cat' },
  });
  if (result.error) throw result.error;
  const output = `${result.stdout}${result.stderr}`
    .split('\n')
    .filter((l) => l.includes(name))
    .join('\n');
  return { status: result.status, output };
}
