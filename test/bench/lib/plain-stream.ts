// The pull benchmark's baseline: the same bytes from disk through a plain gRPC server stream
// into a file, with no hashing, no verification, no registry. `serve FILE` prints its port;
// `fetch ADDRESS DEST` copies and prints the bytes received.
import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';

const PATH = '/bench.Plain/Stream';
const identity = (b: Buffer) => b;
const [mode, a, b] = process.argv.slice(2);

if (mode === 'serve') {
  const server = new grpc.Server();
  server.addService(
    { Stream: { path: PATH, requestStream: false, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
    {
      Stream: async (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        for await (const chunk of createReadStream(a!, { highWaterMark: 1 << 20 })) {
          if (!call.write(chunk)) await once(call, 'drain');
        }
        call.end();
      },
    },
  );
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err;
    process.stdout.write(`port ${port}\n`);
  });
  process.on('SIGTERM', () => server.forceShutdown());
} else if (mode === 'fetch') {
  const client = new grpc.Client(a!, grpc.credentials.createInsecure());
  const call = client.makeServerStreamRequest(PATH, identity, identity, Buffer.alloc(0));
  const out = createWriteStream(b!);
  let bytes = 0;
  for await (const chunk of call as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  client.close();
  process.stdout.write(`bytes ${bytes}\n`);
}
