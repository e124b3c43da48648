// A job's result, from this host to the leader: once a task whose /output is wanted has exited
// 0 (rank 0 of a job with an output model, or any partition of a job with an output dataset),
// the reconciler hands its /output directory here, and it goes up through ModelService.Push or
// DatasetService.Push with this node's credential, naming the job allocation (the coordinator
// checks that the allocation is placed on this node in the job's current attempt, and picks the
// tenant, the name and the lineage itself: coordinator/api/job-output-push.ts). For a model, a
// directory holding exactly one regular file sends that file; any other content goes as the
// deterministic tar `models push DIR` sends, so the same output gets the same digest. A
// partition's output is always the directory's tar, empty or not, so its file names survive
// into the dataset the leader assembles from every partition's part.
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { inferPathFormat } from '../shared/artifact-ref.js';
import { setBearer } from '../shared/auth.js';
import { pushResumable, uploadKey } from '../shared/blob-upload.js';
import { CoordinatorClient } from '../shared/client.js';
import type { TlsMaterial } from '../shared/tls.js';
import { FailedPreconditionError, MlfleetError, ResourceExhaustedError, UnavailableError, fromGrpcError } from '../shared/errors.js';
import { mlfleetV1, type ArtifactVersion, type PushHeader } from '../shared/proto.js';
import { packDirectory, packDirectoryFrom, tarDigest } from '../shared/tar.js';
import type { RunOutput } from '../shared/workloads.js';

export interface OutputPushRequest {
  allocationId: string;
  /** The host directory the task saw as /output. */
  dir: string;
  /** Rank 0 of a job with an output model: the model. */
  output?: RunOutput;
  /** A partition of a job with an output dataset: the dataset its output is a part of. */
  dataset?: string;
}

/**
 * Pushes a finished job's output; resolves with the version it became (0 for a partition's part:
 * the leader makes the version once every partition's is in). A transient error (isTransient):
 * try again later.
 */
export type OutputPusher = (request: OutputPushRequest, signal: AbortSignal) => Promise<number>;

/**
 * Worth trying again: the leader is away or moving (UNAVAILABLE, NOT_LEADER), or it waits for
 * the job's other workers to finish first.
 */
export function isTransient(err: unknown): boolean {
  // A push shed because the tenant had its share of uploads in flight comes with a retry hint
  // (a quota's RESOURCE_EXHAUSTED has none): it is tried again, not the job failed.
  const shed = err instanceof ResourceExhaustedError && err.retryAfterMs !== undefined;
  return MlfleetError.is(err) && (err.code === 'UNAVAILABLE' || err.code === 'NOT_LEADER' || shed);
}

export interface CoordinatorOutputPusherOptions {
  /** The leader the session is connected to, if any. */
  leader: () => string | undefined;
  token: () => string | undefined;
  credentials: grpc.ChannelCredentials;
  /** The agent's TLS material, for the upload's HTTPS (the same as its gRPC credentials'). */
  tls?: TlsMaterial | undefined;
}

/** Bytes per chunk message, as `models push` sends them. */
const CHUNK_BYTES = 1 << 20;

/** What /output holds, ready to send. */
export interface OutputContent {
  directory: boolean;
  sizeBytes: number;
  /** sha256:<hex>, computed for a directory's tar; '' for a file (the coordinator hashes it anyway). */
  digest: string;
  format: string;
  open(): Readable;
  /** The bytes from `start` (a resumed upload). */
  openFrom(start: number): Readable | AsyncIterable<Buffer>;
}

/** Looks at the output directory: one regular file is sent as it is, anything else as a tar. */
export async function outputContent(dir: string, format: string): Promise<OutputContent> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  if (entries.length === 0) throw new FailedPreconditionError('the job exited 0 but wrote nothing to its output directory (/output, MLFLEET_OUTPUT_PATH)');
  if (entries.length === 1 && entries[0]!.isFile()) {
    const file = path.join(dir, entries[0]!.name);
    const stat = await fs.stat(file);
    if (stat.size === 0) throw new FailedPreconditionError(`the job's only output, ${entries[0]!.name}, is empty`);
    return {
      directory: false,
      sizeBytes: stat.size,
      digest: '',
      format: format || (await inferPathFormat('model', file, false)),
      open: () => createReadStream(file, { highWaterMark: CHUNK_BYTES }),
      openFrom: (start) => createReadStream(file, { highWaterMark: CHUNK_BYTES, start }),
    };
  }
  return directoryContent(dir, format || (await inferPathFormat('model', dir, true)));
}

/**
 * A partition's output: always the directory's tar (an empty /output is an empty tar — a
 * partition may have nothing to write), so that the union the leader makes keeps the file names.
 */
export async function partContent(dir: string): Promise<OutputContent> {
  await fs.mkdir(dir, { recursive: true });
  return directoryContent(dir, 'other');
}

async function directoryContent(dir: string, format: string): Promise<OutputContent> {
  return { directory: true, ...(await tarDigest(dir)), format, open: () => packDirectory(dir), openFrom: (start) => packDirectoryFrom(dir, start) };
}

export function coordinatorOutputPusher(options: CoordinatorOutputPusherOptions): OutputPusher {
  return async ({ allocationId, dir, output, dataset }, signal) => {
    if (!output && dataset === undefined) throw new FailedPreconditionError('the job declares no output to push');
    const content = output ? await outputContent(dir, output.format) : await partContent(dir);
    const address = options.leader();
    if (!address) throw new UnavailableError('not connected to the leader; the output is pushed when the session is back');
    const header: PushHeader = {
      name: output ? output.model : dataset!,
      format: content.format,
      directory: content.directory,
      sizeBytes: content.sizeBytes,
      digest: content.digest,
      metadata: output?.metadata ?? null,
      jobAllocation: allocationId,
    };
    // Resumable (BeginPush, HTTP PUT, CommitPush): a push retried after a dropped connection
    // goes on from the bytes the leader kept. A leader without DeliveryService gets the gRPC Push.
    const client = new CoordinatorClient([address], { credentials: options.credentials, token: options.token() });
    try {
      const version = await pushResumable({
        client,
        kind: output ? 'model' : 'dataset',
        header,
        uploadKey: uploadKey({ path: `${allocationId}:${dir}`, sizeBytes: content.sizeBytes, mtimeMs: 0, coordinator: address, kind: output ? 'model' : 'dataset', name: header.name ?? '', digest: content.digest }),
        open: (start) => content.openFrom(start),
        token: options.token(),
        tls: options.tls,
        signal,
        fallback: () => grpcPush(options, address, output !== undefined, header, content, signal),
      });
      return version.version;
    } finally {
      client.close();
    }
  };
}

/** The push as one gRPC client stream (a leader without DeliveryService). */
async function grpcPush(options: CoordinatorOutputPusherOptions, address: string, model: boolean, header: PushHeader, content: OutputContent, signal: AbortSignal): Promise<ArtifactVersion> {
  {
    const service = model ? mlfleetV1().ModelService : mlfleetV1().DatasetService;
    const client = new service(address, options.credentials);
    const body = content.open();
    try {
      const version = await new Promise<ArtifactVersion>((resolve, reject) => {
        const call = client.push(setBearer(new grpc.Metadata(), options.token()), (err, value) => (err ? reject(fromGrpcError(err)) : resolve(value as ArtifactVersion)));
        const onAbort = () => call.cancel();
        signal.addEventListener('abort', onAbort, { once: true });
        call.on('status', () => signal.removeEventListener('abort', onAbort));
        void (async () => {
          try {
            call.write({ header });
            for await (const chunk of body as AsyncIterable<Buffer>) {
              for (let at = 0; at < chunk.length; at += CHUNK_BYTES) {
                if (!call.write({ chunk: chunk.subarray(at, at + CHUNK_BYTES) })) await new Promise((resume) => call.once('drain', resume));
              }
            }
            call.end();
          } catch (err) {
            call.cancel();
            reject(err as Error);
          }
        })();
      });
      return version;
    } finally {
      body.destroy();
      client.close();
    }
  }
}
