// Runs every compiled test file (dist/test/**/*.test.js) under node:test, or only those whose
// path contains one of the arguments: `npm test -- store agent/inventory`. Fault tests run last,
// one at a time. `--unit` narrows the set to the unit tests listed in test/unit-tests.txt (no
// daemon, no native module), which run on any Node: `node22 scripts/run-tests.mjs --unit`.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
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
// that keeps its lease under a flood) must not depend on which other file shares the cores.
const isFault = (file) => path.relative(testDir, file).startsWith(`faults${path.sep}`);
const phases = [
  { files: files.filter((f) => !isFault(f)), concurrency: 2 },
  { files: files.filter(isFault), concurrency: 1 },
].filter((phase) => phase.files.length > 0);
let status = 0;
for (const phase of phases) {
  const result = spawnSync(
    process.execPath,
    ['--test', '--test-timeout=120000', `--test-concurrency=${phase.concurrency}`, '--test-reporter=spec', ...phase.files],
    { stdio: 'inherit', cwd: root },
  );
  status ||= result.status ?? 1;
}
process.exit(status);
