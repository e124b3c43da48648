// A gateway holding requests for a deployment scaled to zero, under pressure, in its own process
// (gateway-hold-child.ts): large bodies held stay in their sockets (the gateway's memory grows
// by about a megabyte per held request, not by the bodies' size); a flood beyond the queue gets
// 503 with Retry-After at once and never grows the queue past its bound; clients that give up
// while held leave it; and once a replica is ready, every request still held is answered whole.
// Bounded: 20 bodies of 8 MiB and 300 small requests over loopback.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { generateToken } from '../../shared/auth.js';
import { eventually } from '../helpers/eventually.js';
import { rssBytes } from '../bench/lib/proc.js';

const here = path.dirname(fileURLToPath(import.meta.url));

interface Answer {
  status: number;
  body: string;
  retryAfter: string | undefined;
}

test('a holding gateway under a flood: large held bodies stay in their sockets, the queue stays bounded, clients that leave free their slots, and the rest are answered once a replica is ready', async (t) => {
  const { token } = generateToken();
  const child = spawn(process.execPath, [path.join(here, 'gateway-hold-child.js'), token, '100'], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout });
  const waiting: Array<{ prefix: string; resolve: (line: string) => void }> = [];
  lines.on('line', (line) => {
    const at = waiting.findIndex((w) => line.startsWith(w.prefix));
    if (at >= 0) waiting.splice(at, 1)[0]!.resolve(line);
  });
  const next = (prefix: string) => new Promise<string>((resolve) => waiting.push({ prefix, resolve }));
  const address = (await next('address ')).split(' ')[1]!;
  const [host, port] = address.split(':') as [string, string];
  const held = async () => Number((await (child.stdin.write('held\n'), next('held '))).split(' ')[1]);

  const sockets = new Set<http.ClientRequest>();
  t.after(() => {
    for (const s of sockets) s.destroy();
  });
  const infer = (body: Buffer): { answer: Promise<Answer>; request: http.ClientRequest } => {
    let request!: http.ClientRequest;
    const answer = new Promise<Answer>((resolve) => {
      request = http.request(
        { host, port: Number(port), path: '/v2/models/m/infer', method: 'POST', agent: false, headers: { authorization: `Bearer ${token}`, 'content-length': body.length } },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, retryAfter: res.headers['retry-after'] as string | undefined }));
        },
      );
      request.on('error', () => resolve({ status: 0, body: '', retryAfter: undefined }));
      request.end(body);
    });
    sockets.add(request);
    return { answer, request };
  };

  // Large bodies, held: 20 × 8 MiB would be 160 MiB if the gateway took them in.
  const before = rssBytes(child.pid!);
  const big = Buffer.alloc(8 * 2 ** 20, 7);
  const bigDigest = createHash('sha256').update(big).digest('hex');
  const large = Array.from({ length: 20 }, () => infer(big));
  await eventually('20 large requests held', 20_000, async () => ((await held()) === 20 ? true : undefined));
  await new Promise((resolve) => setTimeout(resolve, 500));
  const grown = rssBytes(child.pid!) - before;
  assert.ok(grown < 64 * 2 ** 20, `held bodies stay in their sockets: the gateway grew by ${(grown / 2 ** 20).toFixed(1)} MiB`);

  // A flood of 300 small requests against the 80 places left.
  const small = Array.from({ length: 300 }, (_, i) => infer(Buffer.from(JSON.stringify({ inputs: [i] }))));
  await eventually('the queue full', 20_000, async () => ((await held()) === 100 ? true : undefined));
  // Those refused are answered at once; those held are still waiting 3 s later.
  const refusedAnswers = await Promise.all(small.map((s) => Promise.race([s.answer, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 3_000))])));
  const refused = refusedAnswers.filter((a): a is Answer => a !== undefined);
  assert.equal(refused.length, 220, 'all beyond the queue answered at once');
  for (const a of refused) {
    assert.equal(a.status, 503);
    assert.equal(a.retryAfter, '1');
    assert.match(a.body, /deployment acme\/web has no ready replica and 100 requests are already waiting/);
  }
  assert.equal(await held(), 100, 'the queue never grows past its bound');

  // 40 of the held small requests give up.
  const stillHeld = small.filter((_, i) => refusedAnswers[i] === undefined);
  assert.equal(stillHeld.length, 80);
  for (const s of stillHeld.slice(0, 40)) s.request.destroy();
  await eventually('the slots freed', 10_000, async () => ((await held()) === 60 ? true : undefined));

  // A replica is ready: the 60 left are answered, the large bodies arrive whole.
  const replica = http.createServer((req, res) => {
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    req.on('end', () => res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') })));
  });
  await new Promise<void>((resolve) => replica.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => replica.close(() => resolve())));
  child.stdin.write(`ready 127.0.0.1:${(replica.address() as AddressInfo).port}\n`);
  const largeAnswers = await Promise.all(large.map((l) => l.answer));
  for (const a of largeAnswers) {
    assert.equal(a.status, 200);
    assert.deepEqual(JSON.parse(a.body), { bytes: big.length, sha256: bigDigest });
  }
  const smallAnswers = await Promise.all(stillHeld.slice(40).map((s) => s.answer));
  assert.deepEqual(smallAnswers.map((a) => a.status), Array(40).fill(200));
  assert.equal(await held(), 0);
  child.stdin.end();
});
