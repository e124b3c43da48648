// Where the model cache gets blobs: the leader's Download RPC, by digest, with this node's
// credential, from an offset (so an interrupted download resumes). Blobs are content-addressed
// and shared by models and datasets; a digest no model has is asked of the dataset service.
import * as grpc from '@grpc/grpc-js';
import { setBearer } from '../shared/auth.js';
import { NotFoundError, UnavailableError, fromGrpcError } from '../shared/errors.js';
import { mlfleetV1, type DownloadResponse } from '../shared/proto.js';
import type { BlobSource } from './model-cache.js';

export interface CoordinatorBlobSourceOptions {
  /** The leader the session is connected to, if any. */
  leader: () => string | undefined;
  token: () => string | undefined;
  credentials: grpc.ChannelCredentials;
}

/**
 * The download's channel: a receive window of 512 KiB instead of HTTP/2's 64 KiB, with which
 * the coordinator stops four times per 256 KiB chunk to wait for the agent's window update
 * (measured: a quarter more of its CPU per GiB, and a plain reader 40% slower). Larger windows
 * gain little more and hold more received bytes in the agent's memory.
 */
const CHANNEL_OPTIONS: grpc.ChannelOptions = { 'grpc-node.flow_control_window': 512 << 10 };

/** DownloadResponse.chunk: field 2, length-delimited. */
const CHUNK_TAG = (2 << 3) | 2;

/**
 * Decodes a DownloadResponse; one that holds only a chunk (every message but the first) is a
 * view of the bytes received, past the header, instead of a pass through protobufjs.
 */
function decodeDownloadResponse(decode: (bytes: Buffer) => unknown): (bytes: Buffer) => DownloadResponse {
  return (bytes) => {
    if (bytes[0] === CHUNK_TAG) {
      let length = 0;
      let at = 1;
      for (let shift = 0; at < bytes.length && at <= 5; shift += 7) {
        const byte = bytes[at++]!;
        length += (byte & 0x7f) * 2 ** shift;
        if (byte < 0x80) {
          if (at + length === bytes.length) return { msg: 'chunk', chunk: bytes.subarray(at) };
          break;
        }
      }
    }
    return decode(bytes) as DownloadResponse;
  };
}

export function coordinatorBlobSource(options: CoordinatorBlobSourceOptions): BlobSource {
  return {
    async fetch(digest, offset, signal) {
      const address = options.leader();
      if (!address) throw new UnavailableError('not connected to the leader; the download starts when the session is back');
      const v1 = mlfleetV1();
      for (const Service of [v1.ModelService, v1.DatasetService]) {
        const client = new Service(address, options.credentials, CHANNEL_OPTIONS);
        const method = Service.service.Download;
        const call = client.makeServerStreamRequest(
          method.path,
          method.requestSerialize,
          decodeDownloadResponse(method.responseDeserialize),
          { digest, offset },
          setBearer(new grpc.Metadata(), options.token()),
        );
        const onAbort = () => call.cancel();
        signal.addEventListener('abort', onAbort, { once: true });
        const messages = call[Symbol.asyncIterator]() as AsyncIterator<DownloadResponse>;
        const release = () => {
          signal.removeEventListener('abort', onAbort);
          client.close();
        };
        let first: IteratorResult<DownloadResponse>;
        try {
          first = await messages.next();
        } catch (err) {
          release();
          const error = fromGrpcError(err as grpc.ServiceError);
          if (error instanceof NotFoundError && Service === v1.ModelService) continue;
          throw error;
        }
        if (first.done || first.value.msg !== 'version') {
          release();
          throw new UnavailableError(`the download of ${digest} did not start with its version`);
        }
        return (async function* chunks() {
          try {
            for (;;) {
              const next = await messages.next().catch((err: grpc.ServiceError) => {
                throw fromGrpcError(err);
              });
              if (next.done) return;
              if (next.value.chunk) yield next.value.chunk;
            }
          } finally {
            call.cancel();
            release();
          }
        })();
      }
      throw new NotFoundError(`no model or dataset has content ${digest}`);
    },
  };
}
