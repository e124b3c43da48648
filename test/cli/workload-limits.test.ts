// The CLI checks the same object limits as the coordinator (shared/limits.ts) before it sends
// anything, and measures a workload file before it parses it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseWorkloadFile, WorkloadFileError } from '../../shared/workload-spec.js';
import { LIMITS, parseBoundedJson } from '../../shared/limits.js';

function problems(content: string): readonly string[] {
  try {
    parseWorkloadFile(content, 'w.yaml');
  } catch (err) {
    assert.ok(err instanceof WorkloadFileError, `a WorkloadFileError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('the file was accepted');
}

const deployment = (extra: string) => `kind: Deployment\nname: web\nspec:\n  model: m\n  image: mlfleet/runtime:0.1.0\n${extra}`;

test('an environment over its limits is refused in the file, naming the field and the limit', () => {
  const many = Array.from({ length: LIMITS.envVars + 1 }, (_, i) => `    V${i}: x`).join('\n');
  assert.match(problems(deployment(`  env:\n${many}\n`)).join('\n'), /spec\.env: has 257 variables, over the limit of 256/);
  const big = Array.from({ length: 5 }, (_, i) => `    V${i}: ${'x'.repeat(30_000)}`).join('\n');
  assert.match(problems(deployment(`  env:\n${big}\n`)).join('\n'), /spec\.env: is \d+ bytes in all, over the limit of 128 KiB/);
  const long = `    V: ${'x'.repeat(LIMITS.envValueBytes + 1)}`;
  assert.match(problems(deployment(`  env:\n${long}\n`)).join('\n'), /spec\.env\.V: must be at most 32768 characters/);
});

test('a command and constraints over their limits are refused', () => {
  const args = Array.from({ length: 9 }, () => `    - ${'a'.repeat(8000)}`).join('\n');
  assert.match(problems(deployment(`  command:\n${args}\n`)).join('\n'), /spec\.command: is \d+ bytes in all, over the limit of 64 KiB/);
  const labels = Array.from({ length: 65 }, (_, i) => `    l${i}: x`).join('\n');
  assert.match(problems(deployment(`  constraints:\n${labels}\n`)).join('\n'), /spec\.constraints: has 65 entries, over the limit of 64/);
});

test('a workload file over 4 MiB is refused before it is parsed', () => {
  const content = deployment(`  command: [${'"a",'.repeat(LIMITS.workloadFileBytes / 4)} "b"]\n`);
  const [problem] = problems(content);
  assert.match(problem!, /w\.yaml: is \d+ bytes, over the limit of 4 MiB for a workload file/);
});

test('JSON from outside is measured before it is parsed', () => {
  assert.deepEqual(parseBoundedJson('{"a":1}', 'the spec'), { a: 1 });
  assert.throws(() => parseBoundedJson(`"${'x'.repeat(2 * 2 ** 20)}"`, 'the spec'), /the spec is 2097154 bytes, over the limit of 1 MiB/);
  assert.throws(() => parseBoundedJson(`"${'é'.repeat(400_000)}"`, 'the spec', 600_000), /over the limit/);
});
