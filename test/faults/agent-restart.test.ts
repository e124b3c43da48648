// Fault: an agent killed with SIGKILL in the middle of a prefetch (issue 14, item 10). A real
// coordinator and a real agent process; the agent reaches the coordinator through a loopback
// proxy that paces what flows to it, so the kill lands mid-download. The agent started again
// finishes the prefetch from its last checkpoint without anyone asking again.
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import net from 'node:net';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import { startLeader } from '../helpers/coordinator.js';
import { eventually } from '../helpers/eventually.js';
import { startAgent, tempDir } from '../helpers/processes.js';

const MODEL_BYTES = 40 * 1024 * 1024;
/** What the proxy lets through towards the agent: the model takes about 2.5 s. */
const BYTES_PER_SECOND = 16 * 1024 * 1024;

/** A TCP proxy to `target` on a loopback port, pacing the bytes sent back to the client. */
async function pacedProxy(t: TestContext, target: string, bytesPerSecond: number): Promise<string> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, host);
    sockets.add(client).add(upstream);
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      client.write(chunk);
      upstream.pause();
      const timer = setTimeout(() => (timers.delete(timer), upstream.resume()), (chunk.length / bytesPerSecond) * 1000);
      timers.add(timer);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const timer of timers) clearTimeout(timer);
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

test('an agent killed with SIGKILL mid-prefetch resumes it after a restart without being asked', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t);
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  t.after(() => client.close());
  const body = randomBytes(MODEL_BYTES);
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  await client.push('model', { name: 'big', format: 'other', sizeBytes: body.length }, Readable.from([body]));

  const proxy = await pacedProxy(t, coordinator.address, BYTES_PER_SECOND);
  const first = await startAgent(t, 'edge-1', [proxy], dir, ['--join-token', join]);
  await eventually('node edge-1 ready', 15_000, async () => ((await client.getNode('edge-1').catch(() => undefined))?.status === 'ready' ? true : undefined));

  await client.prefetchModel('edge-1', 'big');
  const checkpoint = await first.waitFor((line) => line.msg === 'download checkpoint' && Number(line.syncedBytes) > 0, 20_000);
  await first.kill('SIGKILL');
  const killedAt = Date.now();
  const checkpointed = Number(checkpoint.syncedBytes);
  assert.ok(checkpointed < MODEL_BYTES, `killed mid-way (checkpoint at ${checkpointed} of ${MODEL_BYTES})`);
  assert.ok(!first.lines.some((line) => line.msg === 'cached'), 'the prefetch had not finished when the agent was killed');

  // Started again, straight to the coordinator; nobody asks for the model again.
  const second = await startAgent(t, 'edge-1', [coordinator.address], dir);
  const resumed = await second.waitFor((line) => line.msg === 'resuming a download' && line.digest === digest, 20_000);
  assert.ok(Number(resumed.offset) >= checkpointed, `resumed from ${String(resumed.offset)}, not from zero (checkpoint at ${checkpointed})`);
  const node = await eventually('the model in the node\'s cache', 30_000, async () => {
    const current = await client.getNode('edge-1');
    return current.cache.some((entry) => entry.digest === digest) ? current : undefined;
  });
  t.diagnostic(`prefetch killed at ${checkpointed} of ${MODEL_BYTES} bytes; cached ${Date.now() - killedAt} ms after the kill, resumed from ${String(resumed.offset)}`);
  assert.equal(Number(node.cache.find((entry) => entry.digest === digest)!.sizeBytes), MODEL_BYTES);
  assert.ok(second.lines.some((line) => line.msg === 'resuming unfinished prefetches'));
});
