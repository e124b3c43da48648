// A push killed (SIGKILL) at ~90% resumes: the real mlfleetctl pushes a 48 MiB file to a real
// coordinator through a loopback proxy that throttles the upload (so the kill lands mid-body),
// is killed once ~90% of the bytes went through, and the same command run again sends only the
// rest (asserted on the bytes the proxy carried and on the coordinator's received-bytes
// counter), says it resumed, and makes a version with the file's digest. And a PUT whose
// connection is cut half way asks the coordinator where it stands and goes on from there.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { request } from 'undici';
import { startLeader } from '../helpers/coordinator.js';
import { CLI, mlfleetctl, tempHome } from '../helpers/mlfleetctl.js';
import { freePort, throttlingProxy as proxy } from '../helpers/net.js';
import { tempDir } from '../helpers/processes.js';

const MiB = 1024 * 1024;
const SIZE = 48 * MiB;

async function receivedBytes(httpAddress: string): Promise<number> {
  const text = await (await request(`http://${httpAddress}/metrics`)).body.text();
  return Number(/^mlfleet_coordinator_upload_received_bytes_total (\d+)/m.exec(text)?.[1] ?? NaN);
}

/** A coordinator whose upload URLs lead through a throttling proxy, a SIZE file of random bytes, and a HOME. */
async function setup(t: TestContext) {
  const proxyPort = await freePort();
  let httpPort = 0;
  const relay = await proxy(proxyPort, () => httpPort);
  t.after(() => relay.close());
  const { coordinator, admin } = await startLeader(t, { electionTtlMs: 15_000, httpAdvertise: `127.0.0.1:${proxyPort}` });
  httpPort = Number(coordinator.httpAddress.split(':').at(-1));
  const file = path.join(tempDir(t), 'model.onnx');
  const bytes = randomBytes(SIZE);
  await writeFile(file, bytes);
  return { relay, coordinator, admin, file, bytes, home: await tempHome(t) };
}

test('a push killed with SIGKILL at ~90% resumes from the coordinator’s offset when run again', { timeout: 60_000 }, async (t) => {
  const { relay, coordinator, admin, file, bytes, home } = await setup(t);
  const args = ['--coordinator', coordinator.address, '--token', admin, '-o', 'json', 'models', 'push', 'big', file];

  // First run: throttled to ~24 MiB/s, killed once ~90% of the file went through the proxy.
  relay.state.bytesPerSecond = 24 * MiB;
  const child = spawn(CLI, args, { env: { PATH: process.env.PATH ?? '', HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let firstErr = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => (firstErr += c));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  const deadline = Date.now() + 30_000;
  while (relay.state.upstreamBytes < 0.9 * SIZE) {
    assert.ok(Date.now() < deadline, `the push did not reach 90% in 30 s (${relay.state.upstreamBytes} bytes): ${firstErr}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  const firstBytes = relay.state.upstreamBytes;
  assert.ok(firstBytes < SIZE, 'the first run was killed before it sent everything');

  // Second run, full speed: only the rest travels.
  relay.state.bytesPerSecond = 0;
  relay.state.upstreamBytes = 0;
  const receivedBefore = await receivedBytes(coordinator.httpAddress);
  const second = await mlfleetctl(t, args, { HOME: home });
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, /resuming the upload: .* of .* already on the coordinator/);
  const version = JSON.parse(second.stdout) as { digest: string; version: number; sizeBytes: number };
  assert.equal(version.digest, `sha256:${createHash('sha256').update(bytes).digest('hex')}`);
  assert.equal(Number(version.sizeBytes), SIZE);
  const resent = relay.state.upstreamBytes;
  const received = (await receivedBytes(coordinator.httpAddress)) - receivedBefore;
  assert.ok(resent < 0.2 * SIZE, `the second run sent ${resent} bytes of ${SIZE}`);
  assert.ok(received > 0 && received < 0.2 * SIZE, `the coordinator received ${received} bytes the second time`);
});

test('a PUT whose connection is cut half way goes on from the coordinator’s offset in the same run', { timeout: 60_000 }, async (t) => {
  const { relay, coordinator, admin, file, bytes, home } = await setup(t);
  relay.state.bytesPerSecond = 24 * MiB;
  const pushing = mlfleetctl(t, ['--coordinator', coordinator.address, '--token', admin, '-o', 'json', 'models', 'push', 'cut', file], { HOME: home });
  const deadline = Date.now() + 30_000;
  while (relay.state.upstreamBytes < 0.5 * SIZE) {
    assert.ok(Date.now() < deadline, `the push did not reach half way in 30 s (${relay.state.upstreamBytes} bytes)`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  for (const socket of relay.state.sockets) socket.destroy();
  relay.state.bytesPerSecond = 0;

  const pushed = await pushing;
  assert.equal(pushed.code, 0, pushed.stderr);
  const version = JSON.parse(pushed.stdout) as { digest: string };
  assert.equal(version.digest, `sha256:${createHash('sha256').update(bytes).digest('hex')}`);
  // What the coordinator kept was not sent again: about one copy went through the proxy.
  assert.ok(relay.state.upstreamBytes < 1.2 * SIZE, `${relay.state.upstreamBytes} bytes went through the proxy for ${SIZE}`);
  assert.equal(await receivedBytes(coordinator.httpAddress), SIZE);
});
