// The pull and push benchmarks' baseline (issue 15): the same file from a plain Node `http`
// server, fetched with one undici GET and hashed inline with SHA-256, the bytes then dropped:
// the verification limit of one stream on this machine. `serve FILE` prints its port;
// `fetch URL` prints the bytes received and their digest.
import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';

const [mode, arg] = process.argv.slice(2);

if (mode === 'serve') {
  const file = arg!;
  const size = statSync(file).size;
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-length': size, 'content-type': 'application/octet-stream' });
    createReadStream(file, { highWaterMark: 1 << 20 }).pipe(res);
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`port ${(server.address() as AddressInfo).port}\n`));
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
} else if (mode === 'fetch') {
  const { body } = await request(arg!, { highWaterMark: 1 << 20 } as Parameters<typeof request>[1]);
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    hash.update(chunk);
  }
  process.stdout.write(`bytes ${bytes} sha256:${hash.digest('hex')}\n`);
}
