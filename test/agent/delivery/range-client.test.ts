// The range client (agent/delivery/range-client.ts): ranged GETs read straight into a caller's
// buffer, against a real Node http server and raw sockets that misbehave.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { MAX_HEAD_BYTES, parseResponseHead, RangeClient } from '../../../agent/delivery/range-client.js';

const blob = randomBytes(9 * 1024 * 1024 + 123);

describe('parseResponseHead', () => {
  it('reads the status, headers (lower-case, repeated ones joined), length and keep-alive', () => {
    const head = parseResponseHead('HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\nX-A: 1\r\nx-a: 2\r\nContent-Range: bytes 0-9/20');
    assert.equal(head.statusCode, 206);
    assert.equal(head.contentLength, 10);
    assert.equal(head.headers['x-a'], '1, 2');
    assert.equal(head.headers['content-range'], 'bytes 0-9/20');
    assert.equal(head.keepAlive, true);
  });

  it('keeps a connection only when the body has a length and the server allows it', () => {
    assert.equal(parseResponseHead('HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: close').keepAlive, false);
    assert.equal(parseResponseHead('HTTP/1.0 200 OK\r\ncontent-length: 1').keepAlive, false);
    assert.equal(parseResponseHead('HTTP/1.0 200 OK\r\ncontent-length: 1\r\nconnection: keep-alive').keepAlive, true);
    const chunked = parseResponseHead('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5');
    assert.equal(chunked.contentLength, undefined);
    assert.equal(chunked.keepAlive, false);
  });

  it('refuses what is not a response head', () => {
    assert.throws(() => parseResponseHead('HTTP/2 200'), /status line/);
    assert.throws(() => parseResponseHead('SSH-2.0-OpenSSH'), /status line/);
    assert.throws(() => parseResponseHead('HTTP/1.1 200 OK\r\ncontent-length: -1'), /content-length/);
    assert.throws(() => parseResponseHead('HTTP/1.1 200 OK\r\ncontent-length: 1e3'), /content-length/);
    assert.throws(() => parseResponseHead('HTTP/1.1 200 OK\r\nno colon here'), /malformed/);
    assert.throws(() => parseResponseHead('HTTP/1.1 200 OK\r\nbad name: x'), /malformed/);
  });
});

describe('RangeClient against a Node http server', () => {
  let server: http.Server;
  let base: string;
  const sockets = new Set<net.Socket>();
  let connections = 0;

  before(async () => {
    server = http.createServer((req, res) => {
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (req.url === '/missing') {
        res.writeHead(404, { 'content-type': 'text/plain', 'content-length': 12 }).end('no such blob');
        return;
      }
      if (req.url === '/chunked-error') {
        res.writeHead(403, { 'content-type': 'text/plain' });
        res.write('this node ');
        res.end('may not fetch it');
        return;
      }
      if (req.url === '/long-error') {
        res.writeHead(500, { 'content-type': 'text/plain' }).end('x'.repeat(100_000));
        return;
      }
      if (req.url === '/chunked') {
        res.writeHead(200);
        res.write('abc');
        res.end('def');
        return;
      }
      if (req.url === '/cut') {
        res.writeHead(206, { 'content-length': 1000 });
        res.write(blob.subarray(0, 100), () => res.socket?.destroy());
        return;
      }
      if (req.url === '/stall') {
        res.writeHead(206, { 'content-length': 1000 });
        res.write(blob.subarray(0, 10));
        return;
      }
      if (req.headers.authorization !== 'Bearer t0ken') {
        res.writeHead(401, { 'content-length': 11 }).end('who are you');
        return;
      }
      const start = m ? Number(m[1]) : 0;
      const end = m ? Number(m[2]) + 1 : blob.length;
      res.writeHead(m ? 206 : 200, { 'content-length': end - start, 'x-pieces': 'AQ==' }).end(blob.subarray(start, end));
    });
    server.on('connection', (socket) => {
      connections += 1;
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const auth = { authorization: 'Bearer t0ken' };

  it('reads a range straight into the buffer, tells of the bytes, and keeps the connection', async () => {
    const client = new RangeClient();
    const before = connections;
    const into = Buffer.alloc(8 * 1024 * 1024);
    let told = 0;
    const first = await client.get(new URL(`${base}/blob`), { ...auth, range: `bytes=1000-${1000 + into.length - 1}` }, into, AbortSignal.timeout(10_000), (n) => (told += n));
    assert.equal(first.statusCode, 206);
    assert.equal(first.received, into.length);
    assert.equal(told, into.length);
    assert.equal(first.headers['x-pieces'], 'AQ==');
    assert.ok(into.equals(blob.subarray(1000, 1000 + into.length)));
    // The last piece is shorter than the buffer.
    const tail = await client.get(new URL(`${base}/blob`), { ...auth, range: `bytes=${8 * 1024 * 1024}-${blob.length - 1}` }, into, AbortSignal.timeout(10_000));
    assert.equal(tail.received, blob.length - 8 * 1024 * 1024);
    assert.ok(into.subarray(0, tail.received).equals(blob.subarray(8 * 1024 * 1024)));
    assert.equal(connections - before, 1, 'the second GET went over the first one\'s connection');
    client.close();
  });

  it('answers an error status with its text, and the connection goes on', async () => {
    const client = new RangeClient();
    const before = connections;
    const into = Buffer.alloc(16);
    const missing = await client.get(new URL(`${base}/missing`), auth, into, AbortSignal.timeout(5_000));
    assert.deepEqual([missing.statusCode, missing.received, missing.text], [404, 0, 'no such blob']);
    const refused = await client.get(new URL(`${base}/blob`), {}, into, AbortSignal.timeout(5_000));
    assert.deepEqual([refused.statusCode, refused.text], [401, 'who are you']);
    assert.equal(connections - before, 1);
    // A long error body: its start is read, the connection closed rather than drained.
    const long = await client.get(new URL(`${base}/long-error`), auth, into, AbortSignal.timeout(5_000));
    assert.equal(long.statusCode, 500);
    assert.ok(long.text.length > 4000 && long.text.length <= 4096 && /^x+$/.test(long.text), `${long.text.length} characters`);
    // An error with no length (chunked): its text still comes, and the connection closes.
    const chunked = await client.get(new URL(`${base}/chunked-error`), auth, into, AbortSignal.timeout(5_000));
    assert.deepEqual([chunked.statusCode, chunked.text], [403, 'this node may not fetch it']);
    const after = await client.get(new URL(`${base}/blob`), { ...auth, range: 'bytes=0-15' }, into, AbortSignal.timeout(5_000));
    assert.ok(into.equals(blob.subarray(0, 16)));
    assert.equal(after.statusCode, 206);
    assert.equal(connections - before, 3);
    client.close();
  });

  it('refuses a body longer than the buffer, and writes nothing past it', async () => {
    const client = new RangeClient();
    const backing = Buffer.alloc(64, 0xee);
    const into = backing.subarray(0, 32);
    await assert.rejects(client.get(new URL(`${base}/blob`), { ...auth, range: 'bytes=0-63' }, into, AbortSignal.timeout(5_000)), /more than the 32 bytes/);
    assert.ok(backing.subarray(32).every((b) => b === 0xee));
    client.close();
  });

  it('refuses a body with no length, a body cut short, and one that stalls', async () => {
    const client = new RangeClient({ timeoutMs: 300 });
    const into = Buffer.alloc(1000);
    await assert.rejects(client.get(new URL(`${base}/chunked`), auth, into, AbortSignal.timeout(5_000)), /no content-length/);
    await assert.rejects(client.get(new URL(`${base}/cut`), auth, into, AbortSignal.timeout(5_000)), /closed/);
    const t0 = Date.now();
    await assert.rejects(client.get(new URL(`${base}/stall`), auth, into, AbortSignal.timeout(5_000)), /no bytes for 300 ms/);
    assert.ok(Date.now() - t0 < 3_000);
    client.close();
  });

  it('ends a GET at once when its signal aborts', async () => {
    const client = new RangeClient();
    const into = Buffer.alloc(1000);
    const controller = new AbortController();
    const pending = client.get(new URL(`${base}/stall`), auth, into, controller.signal);
    setTimeout(() => controller.abort(new Error('the pull ended')), 50);
    await assert.rejects(pending, /the pull ended/);
    await assert.rejects(client.get(new URL(`${base}/blob`), auth, into, controller.signal), /the pull ended/);
    client.close();
  });

  it('retries once on a new connection when a kept one was closed by the server', async () => {
    const client = new RangeClient({ idleMs: 60_000 });
    const into = Buffer.alloc(16);
    await client.get(new URL(`${base}/blob`), { ...auth, range: 'bytes=0-15' }, into, AbortSignal.timeout(5_000));
    // The server drops its idle connections (as its keep-alive timeout would).
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));
    into.fill(0);
    const again = await client.get(new URL(`${base}/blob`), { ...auth, range: 'bytes=16-31' }, into, AbortSignal.timeout(5_000));
    assert.equal(again.statusCode, 206);
    assert.ok(into.equals(blob.subarray(16, 32)));
    client.close();
  });

  it('refuses https, and header values that would split the request', async () => {
    const client = new RangeClient();
    const into = Buffer.alloc(16);
    await assert.rejects(client.get(new URL('https://127.0.0.1:1/'), {}, into, AbortSignal.timeout(1_000)), /plain http/);
    await assert.rejects(client.get(new URL(`${base}/blob`), { authorization: 'Bearer x\r\nx-evil: 1' }, into, AbortSignal.timeout(1_000)), /line break/);
    client.close();
  });
});

describe('RangeClient against servers that misbehave', () => {
  /** A server that answers every request with `answer` (raw bytes), then does what `then` says. */
  async function rawServer(answer: Buffer, then: 'keep' | 'close' = 'keep'): Promise<{ url: URL; close(): void }> {
    const server = net.createServer((socket) => {
      socket.once('data', () => {
        socket.write(answer);
        if (then === 'close') socket.end();
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/x`), close: () => server.close() };
  }

  it('refuses a head that never ends, garbage, and bytes past the content-length', async () => {
    const client = new RangeClient();
    const into = Buffer.alloc(64);
    const huge = await rawServer(Buffer.from(`HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(MAX_HEAD_BYTES + 10)}\r\n`));
    await assert.rejects(client.get(huge.url, {}, into, AbortSignal.timeout(5_000)), /response head over/);
    huge.close();
    const garbage = await rawServer(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n\r\n'));
    await assert.rejects(client.get(garbage.url, {}, into, AbortSignal.timeout(5_000)), /status line/);
    garbage.close();
    const extra = await rawServer(Buffer.from('HTTP/1.1 206 Partial Content\r\ncontent-length: 4\r\n\r\nabcdEXTRA'));
    await assert.rejects(client.get(extra.url, {}, into, AbortSignal.timeout(5_000)), /more than the answer's content-length/);
    extra.close();
    client.close();
  });

  it('does not keep a connection the server closes after answering', async () => {
    const client = new RangeClient();
    const into = Buffer.alloc(4);
    const closing = await rawServer(Buffer.from('HTTP/1.1 206 Partial Content\r\ncontent-length: 4\r\nconnection: close\r\n\r\nabcd'), 'close');
    const first = await client.get(closing.url, {}, into, AbortSignal.timeout(5_000));
    assert.equal(into.toString(), 'abcd');
    assert.equal(first.received, 4);
    into.fill(0);
    await client.get(closing.url, {}, into, AbortSignal.timeout(5_000));
    assert.equal(into.toString(), 'abcd');
    closing.close();
    client.close();
  });
});
