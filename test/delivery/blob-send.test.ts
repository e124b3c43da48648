// sendRange and its BufferPool (shared/blob-send.ts), which both the coordinator's blob routes and
// the agents' peer routes send with: real HTTP responses, a reader over a buffer.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { BufferPool, SEND_BUFFER_BYTES, sendRange } from '../../shared/blob-send.js';

const blob = randomBytes(5 * SEND_BUFFER_BYTES + 777);

/** A reader over `bytes` from `start`, that may end early (a file cut short). */
function reader(bytes: Buffer, start: number, endAt = bytes.length) {
  let at = start;
  return {
    read: async (buffer: Buffer, offset: number, length: number) => {
      const n = Math.max(0, Math.min(length, endAt - at));
      bytes.copy(buffer, offset, at, at + n);
      at += n;
      return n;
    },
  };
}

describe('sendRange', () => {
  let server: http.Server;
  let base: string;
  const pool = new BufferPool(3);
  const events: string[] = [];
  let sent = 0;
  let failures: string[] = [];
  /** For each view response: whether, when sendRange returned, the socket was done with every byte. */
  const viewsDone: Promise<boolean>[] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      const start = Number(url.searchParams.get('start') ?? 0);
      const end = Number(url.searchParams.get('end') ?? blob.length);
      const cut = url.searchParams.get('cut') ? start + Number(url.searchParams.get('cut')) : blob.length;
      res.writeHead(200, { 'content-length': end - start });
      const source = reader(blob, start, cut);
      // view=1: the bytes are sent where they lie (a piece kept in memory), no pooled buffer.
      if (url.searchParams.get('view')) {
        let at = start;
        Object.assign(source, {
          view: (length: number) => {
            const bytes = blob.subarray(at, Math.min(at + length, cut));
            at += bytes.length;
            return bytes;
          },
        });
      }
      const sending = sendRange(pool, source, end - start, res, {
        onSent: (n) => (sent += n),
        beforeRead: async (n) => {
          events.push(`read ${n}`);
        },
      });
      if (url.searchParams.get('view')) viewsDone.push(sending.then(() => res.writableFinished || res.destroyed));
      sending.catch((err: Error) => {
        failures.push(err.message);
        res.destroy();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => {
    server.closeAllConnections();
    server.close();
  });

  it('sends the range in MiB reads, each after beforeRead, and counts what the socket took', async () => {
    events.length = 0;
    sent = 0;
    const res = await request(`${base}/?start=100&end=${3 * SEND_BUFFER_BYTES + 50}`);
    const body = Buffer.from(await res.body.arrayBuffer());
    assert.ok(body.equals(blob.subarray(100, 3 * SEND_BUFFER_BYTES + 50)));
    assert.deepEqual(events, [`read ${SEND_BUFFER_BYTES}`, `read ${SEND_BUFFER_BYTES}`, `read ${SEND_BUFFER_BYTES - 50}`]);
    assert.equal(sent, body.length);
  });

  it('sends bytes already in memory where they lie, and returns only once the socket is done with them (or the client has gone)', async () => {
    sent = 0;
    viewsDone.length = 0;
    const res = await request(`${base}/?view=1&start=7&end=${4 * SEND_BUFFER_BYTES}`);
    const body = Buffer.from(await res.body.arrayBuffer());
    assert.ok(body.equals(blob.subarray(7, 4 * SEND_BUFFER_BYTES)));
    assert.equal(sent, body.length);
    assert.deepEqual(await Promise.all(viewsDone), [true], 'every write was done when it returned');
    // A client that reads a little and goes away: sendRange still returns.
    const gone = await request(`${base}/?view=1`);
    for await (const chunk of gone.body) if ((chunk as Buffer).length > 0) break;
    gone.body.destroy();
    assert.equal((await Promise.all(viewsDone)).length, 2);
  });

  it("reads and writes in the pool's buffer size, made by its allocator", async () => {
    const made: number[] = [];
    const big = new BufferPool(2, (bytes) => (made.push(bytes), Buffer.alloc(bytes)), 2 * SEND_BUFFER_BYTES);
    const reads: number[] = [];
    const one = http.createServer((req, res) => {
      res.writeHead(200, { 'content-length': blob.length });
      void sendRange(big, reader(blob, 0), blob.length, res, { onSent: () => undefined, beforeRead: async (n) => void reads.push(n) });
    });
    await new Promise<void>((resolve) => one.listen(0, '127.0.0.1', resolve));
    try {
      const res = await request(`http://127.0.0.1:${(one.address() as AddressInfo).port}/`);
      assert.ok(Buffer.from(await res.body.arrayBuffer()).equals(blob));
    } finally {
      one.closeAllConnections();
      one.close();
    }
    assert.deepEqual(reads, [2 * SEND_BUFFER_BYTES, 2 * SEND_BUFFER_BYTES, SEND_BUFFER_BYTES + 777]);
    assert.ok(made.length >= 1 && made.length <= 2, `${made.length} buffers made for a pool of 2`);
    assert.ok(made.every((bytes) => bytes === 2 * SEND_BUFFER_BYTES));
  });

  it('serves more responses at once than the pool has buffers, and they all complete', async () => {
    const bodies = await Promise.all(
      Array.from({ length: 8 }, async () => Buffer.from(await (await request(`${base}/`)).body.arrayBuffer())),
    );
    for (const body of bodies) assert.ok(body.equals(blob));
  });

  it('cuts a response whose file ends short, rather than ending it as if whole', async () => {
    failures = [];
    const res = await request(`${base}/?cut=${SEND_BUFFER_BYTES + 10}`);
    await assert.rejects(res.body.arrayBuffer());
    assert.match(failures[0] ?? '', /ended \d+ bytes short/);
  });

  it('gives its buffers back when the client goes away mid-body', async () => {
    // Clients that read nothing and leave: afterwards the three buffers serve whole bodies again.
    for (let i = 0; i < 4; i++) {
      const res = await request(`${base}/`);
      res.body.destroy();
    }
    const bodies = await Promise.all(Array.from({ length: 3 }, async () => Buffer.from(await (await request(`${base}/`)).body.arrayBuffer())));
    for (const body of bodies) assert.ok(body.equals(blob));
  });
});

describe('sendRange with a read still filling a buffer when its client goes', () => {
  it('keeps that buffer until the read ends, so no other response gets bytes written into it late', async () => {
    const pool = new BufferPool(1);
    let finishSlowRead: (() => void) | undefined;
    const server = http.createServer((req, res) => {
      const slow = req.url === '/slow';
      const fill = slow ? 0xaa : 0xbb;
      res.writeHead(200, { 'content-length': 1024 });
      const reader = {
        read: (buffer: Buffer, offset: number, length: number) =>
          new Promise<number>((resolve) => {
            const done = () => {
              buffer.fill(fill, offset, offset + length); // as a file read lands in the buffer
              resolve(length);
            };
            if (slow) finishSlowRead = done;
            else done();
          }),
      };
      void sendRange(pool, reader, 1024, res, { onSent: () => undefined }).catch(() => res.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      // The head goes out with the first bytes, which the slow read holds back: the client leaves first.
      const leave = new AbortController();
      const slow = request(`${base}/slow`, { signal: leave.signal }).catch(() => undefined);
      while (!finishSlowRead) await new Promise((resolve) => setTimeout(resolve, 5));
      leave.abort();
      await slow;
      await new Promise((resolve) => setTimeout(resolve, 50)); // the server sees the client go
      let answered = false;
      const other = request(`${base}/other`).then(async (res) => {
        const bytes = Buffer.from(await res.body.arrayBuffer());
        answered = true;
        return bytes;
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(answered, false, 'the only buffer is still being read into: the other response waits for it');
      finishSlowRead(); // the slow read lands only now
      const body = await other;
      assert.equal(body.length, 1024);
      assert.ok(body.every((b) => b === 0xbb), 'the other response sent only its own bytes');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe('BufferPool', () => {
  it('makes at most its count of buffers; a taker waits for one given back, or stops once its client is gone', async () => {
    const pool = new BufferPool(2);
    const a = (await pool.acquire(() => false))!;
    const b = (await pool.acquire(() => false))!;
    assert.equal(a.length, SEND_BUFFER_BYTES);
    let gone = false;
    const waiting = pool.acquire(() => gone);
    const later = pool.acquire(() => false);
    pool.release(a);
    assert.equal(await waiting, a, 'the first waiter takes the buffer given back');
    gone = true;
    pool.release(b);
    assert.equal(await later, b);
    const stopped = pool.acquire(() => gone);
    pool.wakeAll();
    assert.equal(await stopped, undefined);
  });
});
