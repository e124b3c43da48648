// The onnx stack's training runner (agent/stacks/onnx/train.ts): which script it runs, the
// arguments the script sees, its exit status passed on, and what it says when there is no script.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { findScript } from '../../agent/stacks/onnx/train.js';
import { tempDir } from '../helpers/processes.js';

const RUNNER = fileURLToPath(new URL('../../agent/stacks/onnx/train.js', import.meta.url));

function runner(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [RUNNER, ...args], (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }));
  });
}

test('a directory runs its train.mjs; a file runs itself; anything else is an error that says what to give', async (t) => {
  const dir = tempDir(t);
  const trainer = path.join(dir, 'trainer');
  mkdirSync(trainer);
  writeFileSync(path.join(trainer, 'train.mjs'), '');
  assert.equal(await findScript(trainer), path.join(trainer, 'train.mjs'));
  assert.equal(await findScript(path.join(trainer, 'train.mjs')), path.join(trainer, 'train.mjs'));

  const other = path.join(dir, 'other');
  mkdirSync(other);
  writeFileSync(path.join(other, 'fit.js'), '');
  await assert.rejects(findScript(other), /without a train\.mjs; it holds fit\.js: name one/);
  await assert.rejects(findScript(path.join(dir, 'missing.mjs')), /missing\.mjs does not exist/);
  await assert.rejects(findScript(undefined), /no training script: give its path as the job's command/);
});

test('the script sees itself as the program with the arguments after it, and its failure is the job\'s', async (t) => {
  const dir = tempDir(t);
  writeFileSync(path.join(dir, 'train.mjs'), 'console.log(JSON.stringify(process.argv.slice(1))); if (process.argv.includes("--fail")) throw new Error("diverged");');
  const ok = await runner([dir, '--epochs', '3']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(JSON.parse(ok.stdout), [path.join(dir, 'train.mjs'), '--epochs', '3']);

  const failed = await runner([dir, '--fail']);
  assert.notEqual(failed.code, 0);
  assert.match(failed.stderr, /diverged/);

  const none = await runner([path.join(dir, 'nope')]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /^mlfleet train: .*nope does not exist/m);
});
