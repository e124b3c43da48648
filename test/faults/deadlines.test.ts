// Deadlines against real daemons: slowloris connections (a request head trickled a byte at a
// time, or nothing at all) to the coordinator's and the agent's ops servers and to the agent's
// inference gateway are closed within the header timeout, and the listeners keep answering;
// stalled pushes are cut after the coordinator's upload idle timeout, beyond the tenant's share
// are refused at once, and leave no temporary file or descriptor behind.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { DEFAULT_ADMISSION_LIMITS } from '../../coordinator/api/admission.js';
import { setBearer } from '../../shared/auth.js';
import { splitHostPort } from '../../shared/workloads.js';
import { HEADERS_TIMEOUT_MS } from '../../shared/http-server.js';
import { eventually } from '../helpers/eventually.js';
import { bootstrapTokens, startAgent, startCoordinator, tempDir } from '../helpers/processes.js';
import { method, statusName } from '../helpers/raw-grpc.js';

const PER_LISTENER = 300;
const SILENT = 50;
/** The header timeout, the once-a-second check, and room for a loaded machine. */
const CLOSED_WITHIN_MS = HEADERS_TIMEOUT_MS + 5_000;

interface Loris {
  closedAfterMs: Promise<number>;
  /**
   * Resolves Infinity `ms` after the connection was accepted (the same start as closedAfterMs:
   * on a loaded machine a connection may be accepted seconds after it was opened), or
   * NEVER_CONNECTED_MS after it was opened if it never is.
   */
  deadline(ms: number): Promise<number>;
  socket: net.Socket;
}

/** A connection the kernel has not accepted within this long counts as never closed. */
const NEVER_CONNECTED_MS = 60_000;

/** A connection that sends a request head one byte a second and never finishes it (or, silent, nothing). */
function loris(address: string, silent: boolean): Loris {
  const { host, port } = splitHostPort(address);
  let opened = Date.now();
  let connected = false;
  const socket = net.connect(Number(port), host);
  // Counted from the connection's acceptance: a SYN the loaded kernel dropped and resent is not the server's time.
  socket.once('connect', () => {
    opened = Date.now();
    connected = true;
  });
  socket.on('error', () => {});
  const head = 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(60);
  let sent = 0;
  const trickle = silent ? undefined : setInterval(() => {
    if (sent < head.length && !socket.destroyed) socket.write(head[sent++]!);
  }, 1_000);
  if (!silent) socket.once('connect', () => socket.write(head.slice(0, (sent = 20))));
  const closedAfterMs = new Promise<number>((resolve) =>
    socket.once('close', () => {
      clearInterval(trickle);
      resolve(Date.now() - opened);
    }),
  );
  const deadline = (ms: number) =>
    new Promise<number>((resolve) => {
      const never = setTimeout(() => resolve(Infinity), NEVER_CONNECTED_MS).unref();
      const arm = () => {
        clearTimeout(never);
        setTimeout(() => resolve(Infinity), Math.max(0, opened + ms - Date.now())).unref();
      };
      if (connected) arm();
      else socket.once('connect', arm);
    });
  return { closedAfterMs, deadline, socket };
}

async function healthy(address: string): Promise<number> {
  return (await fetch(`http://${address}/healthz`)).status;
}

test('slowloris connections to every HTTP listener are closed within the header timeout; stalled pushes are cut and leave nothing behind', { timeout: 90_000 }, async (t) => {
  const dir = tempDir(t);
  const coordinator = await startCoordinator(t, 'deadlines', ['--store', `sqlite:${dir}/c.db`, '--data-dir', dir, '--upload-idle-timeout', '2s']);
  const { admin, join } = await bootstrapTokens([dir]);
  const agent = await startAgent(t, 'node-a', [coordinator.grpc], tempDir(t), ['--join-token', join]);
  const started = await agent.waitForMessage('agent started');
  const listeners = { 'coordinator ops': coordinator.http, 'agent ops': started.http as string, gateway: started.gateway as string };

  // Stalled pushes, while the slow connections are open: the tenant's share is taken, the rest refused.
  const raw = new grpc.Client(coordinator.grpc, grpc.credentials.createInsecure());
  t.after(() => raw.close());
  const PUSH = method('ModelService.Push');
  const fds = () => readdirSync(`/proc/${coordinator.child.pid}/fd`).length;
  const fdsBefore = fds();
  const pushes = Array.from({ length: 100 }, (_, i) =>
    new Promise<grpc.ServiceError | null>((resolve) => {
      const call = raw.makeClientStreamRequest(PUSH.def.path, PUSH.def.requestSerialize, PUSH.def.responseDeserialize, setBearer(new grpc.Metadata(), admin), (err) => resolve(err));
      call.write({ header: { name: `stalled-${i}`, format: 'onnx', sizeBytes: 1_000_000 } });
      call.write({ chunk: Buffer.alloc(4096, 7) });
    }),
  );

  const all: { listener: string; silent: boolean; loris: Loris }[] = [];
  for (const [listener, address] of Object.entries(listeners)) {
    for (let i = 0; i < PER_LISTENER; i++) all.push({ listener, silent: i < SILENT, loris: loris(address, i < SILENT) });
  }
  t.after(() => {
    for (const { loris: l } of all) l.socket.destroy();
  });

  const answers = await Promise.all(pushes);
  const cut = answers.filter((e) => e && statusName(e.code) === 'DEADLINE_EXCEEDED');
  const refused = answers.filter((e) => e && statusName(e.code) === 'RESOURCE_EXHAUSTED');
  assert.equal(cut.length, DEFAULT_ADMISSION_LIMITS.uploadsPerTenant, 'the tenant’s share of uploads was cut after the idle timeout');
  assert.equal(refused.length, 100 - DEFAULT_ADMISSION_LIMITS.uploadsPerTenant, 'the rest were refused at once');
  assert.match(cut[0]!.details, /the push sent nothing for 2000 ms; it was ended/);
  await eventually('no temporary file is left', 5_000, async () => (readdirSync(path.join(dir, 'blobs', 'tmp')).length === 0 ? true : undefined));

  const closed = await Promise.all(all.map(async (c) => ({ ...c, ms: await Promise.race([c.loris.closedAfterMs, c.loris.deadline(CLOSED_WITHIN_MS + 5_000)]) })));
  const worst: Record<string, number> = {};
  for (const c of closed) worst[`${c.listener}${c.silent ? ' (silent)' : ''}`] = Math.max(worst[`${c.listener}${c.silent ? ' (silent)' : ''}`] ?? 0, c.ms);
  t.diagnostic(`worst time to close a slowloris connection, ms: ${JSON.stringify(worst)}`);
  console.log('slowloris closed after (worst, ms):', JSON.stringify(worst), 'coordinator fds before/after:', fdsBefore, fds());
  for (const [which, ms] of Object.entries(worst)) assert.ok(ms <= CLOSED_WITHIN_MS, `${which}: a slow connection stayed ${ms} ms (bound ${CLOSED_WITHIN_MS} ms)`);

  // The listeners kept answering, and the coordinator holds no more descriptors than before.
  assert.equal(await healthy(coordinator.http), 200);
  assert.equal(await healthy(started.http as string), 200);
  assert.equal((await fetch(`http://${started.gateway as string}/v2/health/live`)).status, 200);
  await eventually('the coordinator’s descriptors are back', 5_000, async () => (fds() <= fdsBefore + 5 ? true : undefined));
});
