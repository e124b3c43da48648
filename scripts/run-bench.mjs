// `npm run bench -- NAME [--quick] [args…]`: runs the compiled benchmark dist/test/bench/NAME.js.
// A benchmark's last line of output is one JSON object with its figures.
import { existsSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const benchDir = path.join(root, 'dist', 'test', 'bench');
const [name, ...rest] = process.argv.slice(2);
const available = existsSync(benchDir)
  ? readdirSync(benchDir).filter((f) => /^[a-z0-9-]+\.js$/.test(f)).map((f) => f.replace(/\.js$/, ''))
  : [];
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- NAME [--quick]\nbenchmarks: ${available.join(', ') || '(none built)'}`);
  process.exit(2);
}
const result = spawnSync(process.execPath, [path.join(benchDir, `${name}.js`), ...rest], { stdio: 'inherit', cwd: root });
process.exit(result.status ?? 1);
