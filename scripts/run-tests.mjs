// Runs every compiled test file (dist/test/**/*.test.js) under node:test, or only those whose
// path contains one of the arguments: `npm test -- store agent/inventory`. Fault tests run after
// the rest, one at a time, then the scale tests. `--unit` narrows the set to the unit tests listed
// in test/unit-tests.txt (no daemon, no native module), which run on any Node:
// `node22 scripts/run-tests.mjs --unit`.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const testDir = path.join(root, 'dist', 'test');

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? walk(full) : full.endsWith('.test.js') ? [full] : [];
  });
}

const args = process.argv.slice(2);
const unitOnly = args.includes('--unit');
const filters = args.filter((arg) => arg !== '--unit');
const unitList = path.join(root, 'test', 'unit-tests.txt');
const units = unitOnly
  ? readFileSync(unitList, 'utf8')
      .split('\n')
      .map((line) => line.replace(/#.*/, '').trim())
      .filter(Boolean)
      .map((source) => path.join(testDir, source.replace(/\.ts$/, '.js')))
  : [];
const compiled = walk(testDir);
const missing = units.filter((file) => !compiled.includes(file));
if (missing.length > 0) {
  console.error(`${unitList} names tests that are not built: ${missing.map((f) => path.relative(testDir, f)).join(', ')}`);
  process.exit(2);
}
const files = (unitOnly ? units : compiled)
  .filter((file) => filters.length === 0 || filters.some((f) => path.relative(testDir, file).includes(f)))
  .sort();
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ') || '(all)'}${unitOnly ? ' among the unit tests' : ''} under ${testDir}`);
  process.exit(2);
}
// The fault suite (test/faults: leader kills, floods, full disks) runs after the rest, one file
// at a time: each puts a bounded but real load on the machine, and what it measures (a leader
// that keeps its lease under a flood) must not depend on which other file shares the cores. The
// scale suite (test/scale: thousands of simulated agents) runs last, alone, with more time per
// file: it is one long test of the whole leader.
const under = (dir) => (file) => path.relative(testDir, file).startsWith(`${dir}${path.sep}`);
const isFault = under('faults');
const isScale = under('scale');
const phases = [
  { files: files.filter((f) => !isFault(f) && !isScale(f)), concurrency: 2, fileTimeoutMs: 120_000 },
  { files: files.filter(isFault), concurrency: 1, fileTimeoutMs: 120_000 },
  { files: files.filter(isScale), concurrency: 1, fileTimeoutMs: 300_000 },
].filter((phase) => phase.files.length > 0);
// Every test process loads the reaper: a file the runner ends at its timeout takes the processes
// it started with it, instead of leaving them to hold the runner's pipes open.
const reaper = path.join(testDir, 'helpers', 'reaper.js');
/** Ctrl-C or SIGTERM to this script: the phase running ends, and no other starts. */
let interrupted = false;

/**
 * One phase's runner, in a process group of its own. Should it outlive what its files may take
 * (a process it could not end), the group is ended: a hung phase is a failure, not a hung CI.
 */
function runPhase(phase) {
  const limitMs = Math.ceil(phase.files.length / phase.concurrency) * phase.fileTimeoutMs + 60_000;
  const child = spawn(
    process.execPath,
    ['--import', reaper, '--test', `--test-timeout=${phase.fileTimeoutMs}`, `--test-concurrency=${phase.concurrency}`, '--test-reporter=spec', ...phase.files],
    { stdio: 'inherit', cwd: root, detached: true },
  );
  const killGroup = (signal) => {
    try {
      process.kill(-child.pid, signal);
    } catch {
      // The group is gone.
    }
  };
  const stop = () => {
    interrupted = true;
    killGroup('SIGTERM');
  };
  process.once('SIGINT', stop).once('SIGTERM', stop);
  return new Promise((resolve) => {
    const watchdog = setTimeout(() => {
      console.error(`run-tests: the phase ran past ${limitMs / 1000} s; ending it`);
      killGroup('SIGTERM');
      setTimeout(() => killGroup('SIGKILL'), 10_000).unref();
    }, limitMs);
    child.once('exit', (code, signal) => {
      clearTimeout(watchdog);
      process.off('SIGINT', stop).off('SIGTERM', stop);
      // Whatever is left in the group (a file's daemon the reaper could not reach) goes too.
      killGroup('SIGKILL');
      resolve(code ?? (signal ? 1 : 0));
    });
  });
}

let status = 0;
for (const phase of phases) {
  // Every phase runs, whatever the one before gave, unless the run was interrupted.
  const code = await runPhase(phase);
  status ||= code;
  if (interrupted) process.exit(130);
}
process.exit(status);
