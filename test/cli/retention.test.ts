// `mlfleetctl models retention` and `models show` against a real coordinator: setting keep N
// removes older versions and says which, `show` reports the retention, --off clears it, and
// bad usage exits 2 before anything is sent.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { startLeader } from '../helpers/coordinator.js';
import { mlfleetctl } from '../helpers/mlfleetctl.js';

test('models retention sets, shows and clears a model retention; bad usage exits 2', async (t) => {
  const { coordinator, admin } = await startLeader(t);
  const dir = await mkdtemp(path.join(tmpdir(), 'mlfleet-retention-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const run = (...args: string[]) => mlfleetctl(t, ['--coordinator', coordinator.address, '--token', admin, ...args]);
  for (let i = 1; i <= 4; i++) {
    await writeFile(path.join(dir, 'm.onnx'), `model bytes ${i}`);
    const pushed = await run('models', 'push', 'm', path.join(dir, 'm.onnx'));
    assert.equal(pushed.code, 0, pushed.stderr);
  }
  const alias = await run('models', 'alias', 'm', 'production', '1');
  assert.equal(alias.code, 0, alias.stderr);

  const set = await run('models', 'retention', 'm', '--keep', '2');
  assert.equal(set.code, 0, set.stderr);
  assert.equal(set.stdout.trim(), 'model m: keep 2 newest (aliased versions count, and are never removed); removed version(s) 2');

  const shown = await run('models', 'show', 'm');
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /Retention:\s+keep 2 newest \(aliased versions count, and are never removed\)/);
  const json = JSON.parse((await run('models', 'show', 'm', '-o', 'json')).stdout) as { versions: Array<{ version: number }>; retention: unknown };
  assert.deepEqual(json.versions.map((v) => v.version), [1, 3, 4]);
  assert.deepEqual(json.retention, { keep: 2, keepAliased: false });

  const aliased = await run('models', 'retention', 'm', '--keep', '1', '--keep-aliased', '-o', 'json');
  assert.equal(aliased.code, 0, aliased.stderr);
  const after = JSON.parse(aliased.stdout) as { versions: Array<{ version: number }>; retention: unknown };
  assert.deepEqual(after.versions.map((v) => v.version), [1, 4]);
  assert.deepEqual(after.retention, { keep: 1, keepAliased: true });

  for (const args of [[], ['--keep', '0'], ['--keep', '10001'], ['--keep', 'two'], ['--keep', '2', '--off'], ['--off', '--keep-aliased']]) {
    const bad = await run('models', 'retention', 'm', ...args);
    assert.equal(bad.code, 2, `models retention m ${args.join(' ')} → ${bad.code}: ${bad.stderr}`);
    assert.ok(bad.stderr.length > 0);
  }
  const missing = await run('models', 'retention', 'nope', '--keep', '1');
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /model "nope" not found/);
  assert.deepEqual((JSON.parse((await run('models', 'show', 'm', '-o', 'json')).stdout) as { retention: unknown }).retention, { keep: 1, keepAliased: true }, 'bad usage changed nothing');

  const off = await run('models', 'retention', 'm', '--off');
  assert.equal(off.code, 0, off.stderr);
  assert.equal(off.stdout.trim(), 'model m: keep all');
  assert.doesNotMatch((await run('models', 'show', 'm')).stdout, /Retention/, 'a model that keeps every version reads as before');
  const datasets = await run('datasets', 'retention', 'm', '--keep', '1');
  assert.equal(datasets.code, 2, 'retention is for models only');
});
