// `mlfleetctl deploy`'s autoscaling flags run as users run them: bad combinations are usage
// errors (exit 2) that never reach the coordinator; good ones become the spec `deployments show`
// reads back, the same spec as the YAML fields give, and `deployments ls` shows the bounds.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { Command, CommanderError } from 'commander';
import { registerDeployCommand } from '../../scripts/cli/commands/deploy.js';
import { eventually } from '../helpers/eventually.js';
import { mlfleetctl, type Run } from '../helpers/mlfleetctl.js';
import { tempDir } from '../helpers/processes.js';
import { workloadCluster } from '../helpers/workload-cluster.js';

/** A TCP listener that counts connections: bad usage must never reach the coordinator. */
async function listener(t: TestContext): Promise<{ address: string; connections: () => number }> {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, connections: () => connections };
}

function ok(run: Run, what: string): string {
  assert.equal(run.code, 0, `${what}: exit ${run.code}\n${run.stderr}`);
  return run.stdout;
}

/** `mlfleetctl deploy ARGS` parsed in this process, as mlfleetctl wires it: the usage error it ends with. */
async function deployUsageError(args: string[]): Promise<string> {
  let stderr = '';
  const program = new Command('mlfleetctl')
    .exitOverride()
    .configureOutput({ writeOut: () => undefined, writeErr: (text) => (stderr += text) });
  registerDeployCommand(program);
  try {
    await program.parseAsync(['deploy', 'web', '--model', 'm', '--stack', 'onnx', ...args], { from: 'user' });
  } catch (err) {
    assert.ok(err instanceof CommanderError, `a usage error, got ${String(err)}`);
    return stderr;
  }
  return assert.fail(`accepted: ${args.join(' ')}`);
}

test('each bad autoscaling flag or combination is a usage error naming the flag', async () => {
  const cases: [string[], RegExp][] = [
    [['--replicas', '2', '--max-replicas', '4'], /give --replicas \(a fixed size\) or --max-replicas \(autoscaled between bounds\), not both/],
    [['--replicas', '2', '--min-replicas', '1'], /give --replicas \(a fixed size\) or --min-replicas \(autoscaled/],
    [['--min-replicas', '5', '--max-replicas', '4'], /--min-replicas 5 is above --max-replicas 4/],
    [['--max-replicas', '4', '--target-concurrency', '0'], /--target-concurrency must be more than 0 and at most 100000, got 0/],
    [['--max-replicas', '4', '--target-concurrency', '-1'], /--target-concurrency "-1" is not a number/],
    [['--max-replicas', '4', '--target-concurrency', 'lots'], /--target-concurrency "lots" is not a number/],
    [['--max-replicas', '4', '--target-concurrency', '100001'], /--target-concurrency must be more than 0 and at most 100000, got 100001/],
    [['--target-concurrency', '2'], /--target-concurrency applies to an autoscaled deployment only: give --max-replicas too/],
    [['--scale-to-zero-after', '5m'], /--scale-to-zero-after applies to an autoscaled deployment only: give --max-replicas too/],
    [['--min-replicas', '2'], /--min-replicas applies to an autoscaled deployment only: give --max-replicas too/],
    [['--min-replicas', '1', '--max-replicas', '4', '--scale-to-zero-after', '5m'], /--scale-to-zero-after removes the last replica, which --min-replicas 1 keeps/],
    [['--max-replicas', '1001'], /--max-replicas must be between 1 and 1000, got 1001/],
    [['--max-replicas', '0'], /--max-replicas must be between 1 and 1000, got 0/],
    [['--min-replicas', '1001', '--max-replicas', '4'], /--min-replicas must be between 0 and 1000, got 1001/],
    [['--max-replicas', '4', '--scale-to-zero-after', 'soon'], /--scale-to-zero-after "soon" is not a duration/],
    [['--max-replicas', '4', '--scale-to-zero-after', '0s'], /--scale-to-zero-after must be more than 0; leave it out to keep the last replica/],
    [['--max-replicas', '4', '--scale-to-zero-after', '31d'], /--scale-to-zero-after must be at most 30d, got 31d/],
  ];
  for (const [flags, message] of cases) assert.match(await deployUsageError(flags), message, flags.join(' '));
});

test('mlfleetctl deploy with bad autoscaling exits 2 and never reaches the coordinator', async (t) => {
  const target = await listener(t);
  const deploy = ['deploy', 'web', '--model', 'm', '--stack', 'onnx'];
  const cases: [string[], RegExp][] = [
    [['--replicas', '2', '--max-replicas', '4'], /give --replicas \(a fixed size\) or --max-replicas/],
    [['--scale-to-zero-after', '5m'], /--scale-to-zero-after applies to an autoscaled deployment only/],
    [['--max-replicas', '4', '--target-concurrency', '0'], /--target-concurrency must be more than 0/],
  ];
  for (const [flags, message] of cases) {
    const args = [...deploy, ...flags];
    const run = await mlfleetctl(t, ['--coordinator', target.address, ...args]);
    assert.equal(run.code, 2, `mlfleetctl ${args.join(' ')} → ${run.code}: ${run.stderr}`);
    assert.match(run.stderr, message, args.join(' '));
    assert.equal(run.stdout, '', args.join(' '));
  }
  assert.equal(target.connections(), 0, 'no usage error may connect to the coordinator');
});

test('deploy --help lists the autoscaling flags', async (t) => {
  const help = ok(await mlfleetctl(t, ['deploy', '--help']), 'deploy --help');
  for (const flag of ['--min-replicas <n>', '--max-replicas <n>', '--target-concurrency <x>', '--scale-to-zero-after <duration>']) assert.ok(help.includes(flag), `${flag} in:\n${help}`);
});

interface ShownJson {
  replicas: number;
  autoscaling: { minReplicas: number; maxReplicas: number; targetConcurrency: number; scaleToZeroAfterMs: number } | null;
}

test('deploy with autoscaling flags and apply with the YAML fields send the same bounds; ls and show render them', async (t) => {
  const c = await workloadCluster(t);
  const ctl = (...args: string[]) => mlfleetctl(t, ['--coordinator', c.address, ...args], { MLFLEET_TOKEN: c.admin });
  const body = Buffer.from('model sentiment');
  // A push in the leader's first moments may find it still settling in (UNAVAILABLE): push again.
  await eventually('the model is pushed', 10_000, () =>
    c.client.push('model', { name: 'sentiment', format: 'onnx', sizeBytes: body.length }, Readable.from([body])).then(
      () => true,
      (err: { code?: string }) => (err.code === 'UNAVAILABLE' ? undefined : Promise.reject(err)),
    ),
  );

  ok(await ctl('deploy', 'web', '--model', 'sentiment', '--stack', 'onnx', '--max-replicas', '6', '--target-concurrency', '2.5', '--scale-to-zero-after', '5m'), 'deploy');
  const shown = JSON.parse(ok(await ctl('-o', 'json', 'deployments', 'show', 'web'), 'show')) as ShownJson;
  assert.equal(shown.replicas, 1, 'an autoscaled deployment starts at max(min, 1)');
  assert.deepEqual(shown.autoscaling, { minReplicas: 0, maxReplicas: 6, targetConcurrency: 2.5, scaleToZeroAfterMs: 300_000 });
  const text = ok(await ctl('deployments', 'show', 'web'), 'show');
  assert.match(text, /Autoscaling:\s+0–6 replicas, target 2\.5 in flight per replica; to zero after 5m0s without a request/);

  const file = path.join(tempDir(t), 'web.yaml');
  writeFileSync(file, 'kind: Deployment\nname: api\nspec:\n  model: sentiment\n  stack: onnx\n  minReplicas: 2\n  maxReplicas: 5\n');
  ok(await ctl('apply', '-f', file), 'apply');
  const applied = JSON.parse(ok(await ctl('-o', 'json', 'deployments', 'show', 'api'), 'show api')) as ShownJson;
  assert.equal(applied.replicas, 2);
  assert.deepEqual(applied.autoscaling, { minReplicas: 2, maxReplicas: 5, targetConcurrency: 4, scaleToZeroAfterMs: 0 });

  ok(await ctl('deploy', 'fixed', '--model', 'sentiment', '--stack', 'onnx', '--replicas', '2'), 'deploy fixed');
  const ls = ok(await ctl('deployments', 'ls'), 'ls');
  assert.match(ls, /^api\s+sentiment\s+1\s+0\/2 \(2–5 auto\)/m);
  assert.match(ls, /^web\s+sentiment\s+1\s+0\/1 \(0–6 auto\)/m);
  assert.match(ls, /^fixed\s+sentiment\s+1\s+0\/2\s/m);
});
