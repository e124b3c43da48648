// A push to the S3 bucket killed (SIGKILL) after some parts resumes with only the others: the
// real mlfleetctl pushes a 40 MiB file (5 parts) to a real coordinator whose bucket endpoint is
// a loopback HTTP proxy in front of s3rver. The proxy lets parts 1 and 2 through and holds every
// other part PUT; once the CLI's upload state lists two parts it is killed, and the same command
// run again PUTs exactly the parts the first run had not stored (counted at the proxy; s3rver
// cannot list parts, so this is the client's ETag file at work), and makes a version with the
// file's digest. No byte passes through the coordinator.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { eventually } from '../helpers/eventually.js';
import { CLI, mlfleetctl, tempHome } from '../helpers/mlfleetctl.js';
import { bootstrapTokens, startCoordinator, tempDir } from '../helpers/processes.js';
import { startS3 } from '../helpers/s3rver.js';

const MiB = 1024 * 1024;
const SIZE = 40 * MiB;

/** An HTTP proxy to `target` that records the part numbers of UploadPart PUTs answered, and holds those `hold` says to. */
async function s3Proxy(t: { after(fn: () => unknown): void }, target: string) {
  const state = { parts: [] as number[], hold: (_part: number) => false, held: new Set<http.ServerResponse>() };
  const upstream = new URL(target);
  const server = http.createServer((req, res) => {
    const part = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('partNumber') ?? 0);
    if (req.method === 'PUT' && part > 0 && state.hold(part)) {
      req.resume();
      state.held.add(res);
      return;
    }
    const forward = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      if (req.method === 'PUT' && part > 0 && answer.statusCode === 200) state.parts.push(part);
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const res of state.held) res.destroy();
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { state, endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function coordinatorBlobBytes(httpAddress: string): Promise<number> {
  const text = await (await request(`http://${httpAddress}/metrics`)).body.text();
  const lines = text.split('\n').filter((line) => /^mlfleet_coordinator_(blob_sent|upload_received)_bytes_total[ {]/.test(line));
  assert.ok(lines.length >= 2, `both counters are exported: ${lines.join('; ')}`);
  return lines.reduce((total, line) => total + Number(line.split(' ').at(-1)), 0);
}

test('a push to the bucket killed after two parts sends only the other parts when run again', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const s3 = await startS3(t);
  const bucket = await s3.newBucket(t);
  const proxy = await s3Proxy(t, s3.endpoint);
  const spec = `s3://${bucket}?endpoint=${encodeURIComponent(proxy.endpoint)}&region=us-east-1&accessKeyId=S3RVER&secretAccessKey=S3RVER`;
  const coordinator = await startCoordinator(t, 'c1', ['--store', `sqlite:${dir}/c.db`, '--data-dir', `${dir}/c1`, '--blob-store', spec]);
  const tokens = await bootstrapTokens([`${dir}/c1`]);

  const file = path.join(dir, 'model.onnx');
  const bytes = randomBytes(SIZE);
  await writeFile(file, bytes);
  const home = await tempHome(t);
  const cache = path.join(home, 'cache');
  const stateDir = path.join(cache, 'mlfleet', 'uploads');
  const env = { PATH: process.env.PATH ?? '', HOME: home, XDG_CACHE_HOME: cache };
  const args = ['--coordinator', coordinator.grpc, '--token', tokens.admin, '-o', 'json', 'models', 'push', 'resumed', file];

  // First run: parts 1 and 2 go through, the others are held; killed once it recorded two ETags.
  proxy.state.hold = (part) => part > 2;
  const child = spawn(CLI, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let firstErr = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => (firstErr += c));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  const stateFile = await eventually(`the CLI to record two parts (${firstErr})`, 30_000, async () => {
    const files = (() => {
      try {
        return readdirSync(stateDir).filter((f) => f.endsWith('.json'));
      } catch {
        return [];
      }
    })();
    if (files.length !== 1) return undefined;
    const full = path.join(stateDir, files[0]!);
    const state = JSON.parse(readFileSync(full, 'utf8')) as { etags: Record<string, string> };
    return Object.keys(state.etags).length === 2 ? full : undefined;
  });
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  assert.equal(statSync(stateFile).mode & 0o777, 0o600, 'the upload state is private to its user');
  assert.deepEqual(Object.keys((JSON.parse(readFileSync(stateFile, 'utf8')) as { etags: Record<string, string> }).etags).sort(), ['0', '1']);
  assert.deepEqual(proxy.state.parts.sort(), [1, 2]);

  // Second run: nothing held; only parts 3, 4 and 5 travel.
  proxy.state.hold = () => false;
  proxy.state.parts = [];
  const second = await mlfleetctl(t, args, env);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, /resuming the upload: 16MiB of 40MiB already in the bucket/);
  assert.deepEqual(proxy.state.parts.sort(), [3, 4, 5], 'the second run sent only the parts the first had not stored');
  const version = JSON.parse(second.stdout) as { digest: string; sizeBytes: number };
  assert.equal(version.digest, `sha256:${createHash('sha256').update(bytes).digest('hex')}`);
  assert.equal(Number(version.sizeBytes), SIZE);
  assert.deepEqual(readdirSync(stateDir).filter((f) => f.endsWith('.json')), [], 'the state of a finished push goes');
  assert.equal(await coordinatorBlobBytes(coordinator.http), 0, 'no blob byte went through the coordinator');
});
