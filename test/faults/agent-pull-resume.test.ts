// A prefetch into a real agent's cache, cut by kill -9 of the agent, is taken up again by the
// agent when it starts (issue 14) and resumes with the pieces it had verified (issue 15): the coordinator's blob bytes reach the agent through a loopback proxy
// (the coordinator's --http-advertise) that holds them to a trickle, the agent is killed with
// SIGKILL once a good part of the model went through, and the agent started again on the same
// data dir finishes it asking the coordinator for less than the whole model.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import { eventually } from '../helpers/eventually.js';
import { metricValue } from '../helpers/metrics.js';
import { CLI, runScript } from '../helpers/mlfleetctl.js';
import { freePort, throttlingProxy } from '../helpers/net.js';
import { bootstrapTokens, startAgent, startCoordinator, tempDir } from '../helpers/processes.js';

const MiB = 1024 * 1024;
const SIZE = 96 * MiB;

const sentBytes = (httpAddress: string) => metricValue(httpAddress, 'mlfleet_coordinator_blob_sent_bytes_total');

test('a prefetch cut by kill -9 of the agent resumes after a restart without being asked, from its verified pieces, never from zero', { timeout: 90_000 }, async (t) => {
  const dir = tempDir(t);
  const proxyPort = await freePort();
  const coordinator = await startCoordinator(t, 'c1', ['--store', `sqlite:${dir}/c.db`, '--data-dir', `${dir}/c1`, '--http-advertise', `127.0.0.1:${proxyPort}`]);
  const httpPort = Number(coordinator.http.split(':').at(-1));
  const proxy = await throttlingProxy(proxyPort, () => httpPort);
  t.after(() => proxy.close());
  const tokens = await bootstrapTokens([`${dir}/c1`]);
  const ctl = (...args: string[]) => runScript(t, CLI, ['--coordinator', coordinator.grpc, ...args], { MLFLEET_TOKEN: tokens.admin });
  const client = new CoordinatorClient([coordinator.grpc], { token: tokens.admin });
  t.after(() => client.close());

  const model = path.join(dir, 'model.onnx');
  writeFileSync(model, randomBytes(SIZE));
  const digest = `sha256:${createHash('sha256').update(readFileSync(model)).digest('hex')}`;
  const pushed = await ctl('-o', 'json', 'models', 'push', 'big', model);
  assert.equal(pushed.code, 0, pushed.stderr);

  const args = ['--join-token-file', tokens.joinFile, '--cache-max-bytes', '1Gi'];
  const first = await startAgent(t, 'resumer', [coordinator.grpc], dir, args);
  await eventually('the node to be ready', 15_000, async () => ((await client.listNodes({ status: 'ready' })).nodes.length === 1 ? true : undefined));
  proxy.state.downBytesPerSecond = 24 * MiB;
  const before = await sentBytes(coordinator.http);
  assert.equal((await ctl('nodes', 'prefetch', 'resumer', 'big')).code, 0);
  // Killed once at least a third went through and a checkpoint recorded pieces.
  await eventually('a third of the model to reach the agent', 20_000, async () => ((await sentBytes(coordinator.http)) - before >= SIZE / 3 ? true : undefined), { intervalMs: 50 });
  await first.waitForMessage('download checkpoint', 10_000);
  await first.kill('SIGKILL');
  const firstRun = (await sentBytes(coordinator.http)) - before;
  assert.ok(firstRun < SIZE, `the first run was cut before the end (${firstRun} bytes sent)`);

  proxy.state.downBytesPerSecond = 0;
  const restart = await sentBytes(coordinator.http);
  const second = await startAgent(t, 'resumer', [coordinator.grpc], dir);
  const resumed = await second.waitForMessage('resuming a download', 15_000);
  assert.ok(Number(resumed.piecesHeld) > 0, `it resumed with the pieces it had recorded (${String(resumed.piecesHeld)})`);
  await eventually('the restarted agent to finish the pull by itself', 30_000, async () => {
    const node = await client.getNode('resumer');
    return node.status === 'ready' && node.cache.some((e) => e.digest === digest) ? true : undefined;
  });
  const secondRun = (await sentBytes(coordinator.http)) - restart;
  assert.ok(secondRun < SIZE, `the restarted agent fetched ${secondRun} bytes: less than the whole ${SIZE}`);
  assert.ok(secondRun >= SIZE - firstRun, `it fetched at least what the first run had not (${secondRun} of ${SIZE - firstRun})`);
  assert.ok(second.lines.some((line) => line.msg === 'resuming unfinished prefetches'), 'the agent took the prefetch up by itself');
  const cached = path.join(dir, 'resumer', 'cache', 'blobs', digest.slice('sha256:'.length));
  assert.equal(`sha256:${createHash('sha256').update(readFileSync(cached)).digest('hex')}`, digest, 'the cached model is the pushed one');
});
