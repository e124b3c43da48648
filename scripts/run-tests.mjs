// Runs every compiled test file (dist/test/**/*.test.js) under node:test, or only those whose
// path contains one of the arguments: `npm test -- store agent/inventory`.
import { readdirSync, statSync } from 'node:fs';
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

const filters = process.argv.slice(2);
const files = walk(testDir)
  .filter((file) => filters.length === 0 || filters.some((f) => path.relative(testDir, file).includes(f)))
  .sort();
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ') || '(all)'} under ${testDir}`);
  process.exit(2);
}
const result = spawnSync(
  process.execPath,
  ['--test', '--test-timeout=120000', '--test-concurrency=2', '--test-reporter=spec', ...files],
  { stdio: 'inherit', cwd: root },
);
process.exit(result.status ?? 1);
