// `mlfleetctl deploy`'s canary and automatic-rollback flags, and `deployments promote` /
// `rollback`, run as users run them: bad values are usage errors naming the flag; good ones
// become the spec the coordinator keeps, the same as the YAML `rollout` fields give, and
// `deployments show` renders them; promote and rollback with nothing to do say why and exit 1.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { Command, CommanderError } from 'commander';
import { registerDeployCommand } from '../../scripts/cli/commands/deploy.js';
import type { Deployment } from '../../shared/proto.js';
import { eventually } from '../helpers/eventually.js';
import { mlfleetctl, type Run } from '../helpers/mlfleetctl.js';
import { tempDir } from '../helpers/processes.js';
import { workloadCluster } from '../helpers/workload-cluster.js';

function ok(run: Run, what: string): string {
  assert.equal(run.code, 0, `${what}: exit ${run.code}\n${run.stderr}`);
  return run.stdout;
}

async function deployUsageError(args: string[]): Promise<string> {
  let stderr = '';
  const program = new Command('mlfleetctl').exitOverride().configureOutput({ writeOut: () => undefined, writeErr: (text) => (stderr += text) });
  registerDeployCommand(program);
  try {
    await program.parseAsync(['deploy', 'web', '--model', 'm', '--stack', 'onnx', ...args], { from: 'user' });
  } catch (err) {
    assert.ok(err instanceof CommanderError, `a usage error, got ${String(err)}`);
    return stderr;
  }
  return assert.fail(`accepted: ${args.join(' ')}`);
}

test('each bad canary or rollback flag is a usage error naming the flag', async () => {
  const cases: [string[], RegExp][] = [
    [['--canary', '0%'], /--canary must be from 1% to 99%, got 0%/],
    [['--canary', '100'], /--canary must be from 1% to 99%, got 100%/],
    [['--canary', 'half'], /--canary "half" is not a whole percentage/],
    [['--canary', '12.5%'], /--canary "12.5%" is not a whole percentage/],
    [['--max-error-rate', '200%'], /--max-error-rate must be from 0.1% to 100%/],
    [['--max-p99-ratio', '0.5'], /--max-p99-ratio "0.5" must be a ratio from 1 to 1000/],
    [['--max-p99-ratio', 'x'], /--max-p99-ratio "x" is not a number/],
    [['--watch', '0s'], /--watch must be more than 0/],
    [['--watch', '2d'], /--watch must be at most 24h/],
    [['--min-requests', '0'], /--min-requests/],
  ];
  for (const [flags, message] of cases) assert.match(await deployUsageError(flags), message, flags.join(' '));
});

test('deploy --canary and the rollback flags send the same policy as the YAML fields; show renders it; promote and rollback with nothing to do exit 1 saying why', async (t) => {
  const c = await workloadCluster(t);
  const ctl = (...args: string[]) => mlfleetctl(t, ['--coordinator', c.address, ...args], { MLFLEET_TOKEN: c.admin });
  const body = Buffer.from('model sentiment');
  await eventually('the model is pushed', 10_000, () =>
    c.client.push('model', { name: 'sentiment', format: 'onnx', sizeBytes: body.length }, Readable.from([body])).then(
      () => true,
      (err: { code?: string }) => (err.code === 'UNAVAILABLE' ? undefined : Promise.reject(err)),
    ),
  );
  ok(await ctl('deploy', 'web', '--model', 'sentiment', '--stack', 'onnx', '--replicas', '4', '--canary', '10%', '--max-error-rate', '2%', '--max-p99-ratio', '3', '--watch', '30s', '--min-requests', '50'), 'deploy');
  const flagged = await c.client.getDeployment('web');
  assert.deepEqual(flagged.spec?.rollout, { maxSurge: 1, maxUnavailable: 0, canaryPercent: 10, maxErrorRate: 0.02, maxP99Ratio: 3, watchMs: 30000, minRequests: 50, autoRollbackOff: false });
  const text = ok(await ctl('deployments', 'show', 'web'), 'show');
  assert.match(text, /Rollout:\s+max surge 1, max unavailable 0; canary 10%; automatic rollback past \+2\.0% errors or 3× p99 \(after 50 requests\), watched 30 s/);
  assert.match(text, /Last good:\s+none yet/);
  const json = JSON.parse(ok(await ctl('-o', 'json', 'deployments', 'show', 'web'), 'show -o json')) as Record<string, unknown>;
  assert.deepEqual(
    { canary: json.canary, autoRollback: json.autoRollback, lastGoodVersion: json.lastGoodVersion, pinned: json.pinned },
    { canary: { percent: 10, readyReplicas: 0 }, autoRollback: { maxErrorRate: 0.02, maxP99Ratio: 3, watchMs: 30_000, minRequests: 50 }, lastGoodVersion: 0, pinned: false },
  );

  const file = path.join(tempDir(t), 'web.yaml');
  writeFileSync(file, `kind: Deployment\nname: web2\nspec:\n  model: sentiment\n  stack: onnx\n  replicas: 4\n  rollout:\n    canaryPercent: 10\n    maxErrorRate: 0.02\n    maxP99Ratio: 3\n    watch: 30s\n    minRequests: 50\n`);
  ok(await ctl('apply', '-f', file), 'apply');
  assert.deepEqual((await c.client.getDeployment('web2')).spec?.rollout, flagged.spec?.rollout);

  ok(await ctl('deploy', 'web3', '--model', 'sentiment', '--stack', 'onnx', '--no-auto-rollback'), 'deploy --no-auto-rollback');
  assert.equal((await c.client.getDeployment('web3')).spec?.rollout?.autoRollbackOff, true);
  assert.match(ok(await ctl('deployments', 'show', 'web3'), 'show'), /automatic rollback off/);
  assert.equal((JSON.parse(ok(await ctl('-o', 'json', 'deployments', 'show', 'web3'), 'show -o json')) as { autoRollback: unknown }).autoRollback, null);

  const promote = await ctl('deployments', 'promote', 'web');
  assert.equal(promote.code, 1, promote.stderr);
  assert.match(promote.stderr, /has no canary to promote/);
  const rollback = await ctl('deployments', 'rollback', 'web');
  assert.equal(rollback.code, 1, rollback.stderr);
  assert.match(rollback.stderr, /no last good version to roll back to/);
  const d: Deployment = await c.client.getDeployment('web');
  assert.equal(d.generation, flagged.generation, 'a refused promote or rollback changes nothing');
});
