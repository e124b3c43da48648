// The PUT of a push (shared/blob-upload.ts) against servers that misbehave: one that answers
// before the body is sent (a refusal; the coordinator does not read a refused PUT's body), and
// one that drops the connection half way. A refusal ends the push promptly with the server's
// words, reading no more of the file; a drop resumes from the offset the server holds.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { pushResumable } from '../../shared/blob-upload.js';
import type { CoordinatorClient } from '../../shared/client.js';
import { UnauthenticatedError } from '../../shared/errors.js';
import type { ArtifactVersion, PushHeader, PushTicket } from '../../shared/proto.js';
import { tempDir } from '../helpers/processes.js';

const SIZE = 64 * 1024 * 1024;

async function server(t: TestContext, handler: http.RequestListener): Promise<string> {
  const s = http.createServer(handler);
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    s.closeAllConnections();
    s.close();
  });
  return `http://127.0.0.1:${(s.address() as { port: number }).port}/v1/uploads/u1`;
}

/** Only what pushResumable asks of the coordinator's gRPC side: a ticket to `url`. */
function client(url: string): CoordinatorClient {
  const ticket = { uploadId: 'u1', url, offset: 0, partUrls: [], partBytes: 0, partsDone: [] } as unknown as PushTicket;
  return {
    beginPush: async () => ticket,
    commitPush: async () => ({}) as ArtifactVersion,
  } as unknown as CoordinatorClient;
}

function upload(t: TestContext, url: string) {
  const file = path.join(tempDir(t), 'model.bin');
  writeFileSync(file, randomBytes(SIZE));
  let progress = 0;
  const header = { name: 'm', format: 'onnx', directory: false, sizeBytes: SIZE, digest: '' } as unknown as PushHeader;
  return {
    run: () =>
      pushResumable({
        client: client(url),
        kind: 'model',
        header,
        uploadKey: '',
        open: () => {
          throw new Error('a file is read by the PUT itself');
        },
        file,
        token: 'secret',
        onProgress: (bytes) => (progress = bytes),
      }),
    progress: () => progress,
  };
}

test('a PUT refused before its body is sent ends at once with the server\'s words', async (t) => {
  let bodyBytes = 0;
  const url = await server(t, (req, res) => {
    // As the coordinator refuses a PUT: the answer at once, then what arrives is dropped for a
    // moment before the connection closes (coordinator/delivery/blob-routes.ts lingerThenClose).
    res.writeHead(401, { 'content-type': 'text/plain' }).end('this token may not push here\n');
    req.on('data', (chunk: Buffer) => (bodyBytes += chunk.length));
    setTimeout(() => req.socket.destroy(), 2_000).unref();
  });
  const push = upload(t, url);
  const started = Date.now();
  await assert.rejects(push.run(), (err: unknown) => {
    assert.ok(err instanceof UnauthenticatedError, String(err));
    assert.match(err.message, /this token may not push here/);
    return true;
  });
  assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
  assert.ok(push.progress() < SIZE, `sent ${push.progress()} of ${SIZE} bytes after the refusal`);
  assert.ok(bodyBytes < SIZE, `the server got ${bodyBytes} bytes of the refused body`);
});

test('a PUT whose connection drops half way: the push asks where the upload stands (HEAD) and PUTs the rest from there', async (t) => {
  // The first PUT is read to 16 MiB, then its connection is dropped; HEAD says 16 MiB; the
  // second PUT starts there and is read to the end.
  let stored = 0;
  const puts: number[] = [];
  const url = await server(t, (req, res) => {
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'upload-offset': String(stored) }).end();
      return;
    }
    const from = Number(req.headers['upload-offset']);
    puts.push(from);
    assert.equal(from, stored);
    req.on('data', (chunk: Buffer) => {
      stored += chunk.length;
      if (puts.length === 1 && stored >= 16 * 1024 * 1024) req.socket.destroy();
    });
    req.on('end', () => res.writeHead(204, { 'upload-offset': String(stored) }).end());
  });
  await upload(t, url).run();
  assert.equal(stored, SIZE);
  assert.equal(puts.length, 2);
  assert.ok(puts[1]! >= 16 * 1024 * 1024, `the second PUT started at ${puts[1]}`);
});
