// Oversized and malformed input on a real agent's HTTP routes — its inference gateway and its
// ops server — sent as raw bytes, the way an attacker would, not through a well-behaved client.
// Every request gets a clear 4xx (or the connection is closed), and the agent stays up and
// keeps answering.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { startLeader } from '../helpers/coordinator.js';
import { eventually } from '../helpers/eventually.js';
import { startAgent, tempDir } from '../helpers/processes.js';

/** Sends `raw` on a fresh connection; the status of the first answer (0 when the connection was closed without one). */
function send(address: string, raw: string | Buffer, timeoutMs = 5_000): Promise<number> {
  const [host, port] = address.split(':') as [string, string];
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), host);
    let answer = '';
    const done = () => {
      socket.destroy();
      const match = /^HTTP\/1\.1 (\d{3})/.exec(answer);
      resolve(match ? Number(match[1]) : 0);
    };
    socket.setTimeout(timeoutMs, done);
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      if (/\r\n\r\n/.test(answer)) done();
    });
    socket.on('error', done);
    socket.on('close', done);
    socket.write(raw, () => undefined);
  });
}

const request = (line: string, headers: Record<string, string> = {}, body = '') =>
  `${line}\r\nhost: x\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`;

test("oversized and malformed requests to a real agent's gateway and ops server get clear 4xx answers, and the agent stays up", async (t) => {
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t);
  const agent = await startAgent(t, 'edge', [coordinator.address], dir, ['--join-token', join]);
  const started = await agent.waitForMessage('agent started');
  const gateway = started.gateway as string;
  const ops = started.http as string;
  const bearer = { authorization: `Bearer ${admin}` };
  // Once the gateway has its routing table and tokens from the leader, it checks tokens.
  await eventually('the gateway is ready', 15_000, async () => ((await send(gateway, request('GET /v2/health/ready HTTP/1.1'))) === 200 ? true : undefined));
  const big = 'x'.repeat(100 * 1024);

  const cases: Array<[string, string | Buffer, number[]]> = [
    ['a target no URL parser takes', request('GET // HTTP/1.1', bearer), [400]],
    ['a malformed percent-encoding', request('POST /v2/models/%E0%A4%A/infer HTTP/1.1', { ...bearer, 'content-length': '2' }, '{}'), [400]],
    ['100 KiB of headers', request('GET /v2/models/m HTTP/1.1', { ...bearer, 'x-junk': big }), [431, 0]],
    ['a 100 KiB path', request(`GET /v2/models/${big} HTTP/1.1`, bearer), [431, 414, 0]],
    ['a 100 KiB token', request('GET /v2/models/m HTTP/1.1', { authorization: `Bearer ${big}` }), [431, 0]],
    ['a token that is not one', request('GET /v2/models/m HTTP/1.1', { authorization: 'Bearer mlf_zz' }), [401]],
    ['a terabyte declared', request('POST /v2/models/m/infer HTTP/1.1', { ...bearer, 'content-length': String(10 ** 12) }), [404, 413]],
    ['a length that is not a number', request('POST /v2/models/m/infer HTTP/1.1', { ...bearer, 'content-length': 'lots' }), [400]],
    ['binary garbage', Buffer.from([0, 1, 2, 3, 0xff, 0xfe, 13, 10, 13, 10]), [400, 0]],
    ['a truncated request line', 'GET\r\n\r\n', [400, 0]],
    ['a bad chunked body', request('POST /v2/models/m/infer HTTP/1.1', { ...bearer, 'transfer-encoding': 'chunked' }, 'zz\r\nnope\r\n'), [400, 404, 0]],
  ];
  const failures: string[] = [];
  for (const [what, raw, allowed] of cases) {
    const status = await send(gateway, raw);
    if (!allowed.includes(status)) failures.push(`gateway, ${what}: ${status}, expected one of ${allowed.join(', ')}`);
  }
  for (const [what, raw, allowed] of [
    ['a POST', request('POST /healthz HTTP/1.1', { 'content-length': '1' }, 'x'), [405]],
    ['a target no URL parser takes', request('GET // HTTP/1.1'), [404]],
    ['100 KiB of headers', request('GET /healthz HTTP/1.1', { 'x-junk': big }), [431, 0]],
    ['binary garbage', Buffer.from([0, 1, 2, 3, 13, 10, 13, 10]), [400, 0]],
  ] as Array<[string, string | Buffer, number[]]>) {
    const status = await send(ops, raw);
    if (!allowed.includes(status)) failures.push(`ops, ${what}: ${status}, expected one of ${allowed.join(', ')}`);
  }
  // The same, many at once.
  const flood = await Promise.all(Array.from({ length: 200 }, (_, i) => send(gateway, cases[i % cases.length]![1])));
  assert.equal(flood.length, 200);
  assert.deepEqual(failures, []);

  assert.equal(agent.child.exitCode, null, 'the agent is still running');
  assert.equal(await send(gateway, request('GET /v2/health/live HTTP/1.1')), 200);
  assert.equal(await send(ops, request('GET /healthz HTTP/1.1')), 200);
  assert.equal(await send(gateway, request('GET /v2 HTTP/1.1', bearer)), 200, 'and it still checks and answers tokens');
});
