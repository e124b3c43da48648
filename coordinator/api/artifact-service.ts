// ModelService and DatasetService: one implementation, parameterized by kind. Artifacts live in
// the caller's tenant; admins may name another tenant; anyone else naming one gets NOT_FOUND.
// Agents (node credentials) download blobs by digest for the allocations they run.
import type * as grpc from '@grpc/grpc-js';
import { ARTIFACT_FORMATS, parseRef } from '../../shared/artifact-ref.js';
import { InvalidArgumentError, NotFoundError } from '../../shared/errors.js';
import type { ArtifactVersion, DownloadResponse } from '../../shared/proto.js';
import { assertWellFormed, validate } from '../../shared/validation.js';
import { Wakeup } from '../../shared/wakeup.js';
import type { BlobReader } from '../blobs/blob-store.js';
import type { FencedWriter } from '../node-registry.js';
import type { ArtifactKind } from '../registry/artifact-record.js';
import { toProtoArtifact, toProtoVersion, toSummary } from '../registry/artifact-record.js';
import type { ArtifactRegistry, PushContent, Resolved } from '../registry/artifact-registry.js';
import { drainedOrCancelled, messagesWithin, type CallContext, type RpcEdge } from './rpc.js';
import {
  deleteVersionSchema,
  downloadSchema,
  getArtifactSchema,
  listArtifactsSchema,
  pushHeaderSchema,
  resolveSchema,
  setAliasSchema,
  setRetentionSchema,
} from './schemas.js';
import { pushTarget, type JobOutputs } from './job-output-push.js';
import { tenantOf } from './tenant-service.js';

export interface ArtifactServiceDeps {
  edge: RpcEdge;
  registry: ArtifactRegistry;
  /** The leader's fenced writer; throws NotLeaderError on a follower (blobs live with the leader). */
  writer(): FencedWriter;
  /** Agents pushing a job's output: where it goes (the leader's workload controller). */
  jobOutputs?: JobOutputs;
  /** Whether a node may download a blob: one of its allocations uses it, or it was told to prefetch it. */
  nodeMayFetch?(node: string, digest: string): boolean;
}

interface PushMessage {
  msg?: 'header' | 'chunk';
  header?: unknown;
  chunk?: Buffer;
}

/**
 * Bytes per chunk message. Larger means fewer messages, but the agent holds up to 16 received
 * messages while it hashes and writes, and bytes held that long cost it full garbage
 * collections and resident memory.
 */
const CHUNK_BYTES = 256 << 10;
/** Chunk messages one download may have written and not yet sent, each in its own buffer. */
const CHUNKS_IN_FLIGHT = 4;
/** Room before a chunk's bytes for its header: the tag (1 byte) and the length (a varint, at most 5). */
export const CHUNK_HEADROOM = 6;
/** DownloadResponse.chunk: field 2, length-delimited. */
const CHUNK_TAG = (2 << 3) | 2;
/** A chunk message's bytes as DownloadResponse, encoded in place (see withEncodedChunks). */
const ENCODED = Symbol('encoded DownloadResponse');

/** A DownloadResponse holding `chunk`, which also carries its own encoding. */
export interface ChunkMessage {
  chunk: Buffer;
  [ENCODED]: Buffer;
}

export function artifactService(kind: ArtifactKind, deps: ArtifactServiceDeps): grpc.UntypedServiceImplementation {
  const { edge, registry } = deps;
  const service = kind === 'model' ? 'ModelService' : 'DatasetService';
  const headerSchema = pushHeaderSchema(ARTIFACT_FORMATS[kind]);

  const push = async (call: grpc.ServerReadableStream<PushMessage, ArtifactVersion>, context: CallContext): Promise<ArtifactVersion> => {
    const writer = deps.writer();
    const messages = messagesWithin(call, edge.uploadIdleMs, 'the push');
    const first = await messages.next();
    if (first.done) throw new InvalidArgumentError('the push sent nothing: its first message must be the header');
    assertWellFormed(first.value, 'push message');
    if (first.value.msg !== 'header') throw new InvalidArgumentError('the first message of a push must be its header');
    const header = validate(headerSchema, first.value.header, 'push header');
    async function* chunks(): AsyncIterable<Buffer> {
      for (;;) {
        const next = await messages.next();
        if (next.done) return;
        assertWellFormed(next.value, 'push chunk');
        if (next.value.msg !== 'chunk') throw new InvalidArgumentError('only the first message of a push may be a header; the rest must be chunks');
        if (!next.value.chunk || next.value.chunk.length === 0) throw new InvalidArgumentError('a push chunk must not be empty');
        yield next.value.chunk;
      }
    }
    return publishPush(kind, deps, writer, context, header, chunks());
  };

  const download = async (
    request: { ref: string; digest: string; offset: number; tenant: string },
    { principal }: CallContext,
    call: grpc.ServerWritableStream<unknown, DownloadResponse>,
  ): Promise<void> => {
    let found: Resolved | undefined;
    if (request.digest) {
      // A node fetches what an allocation placed on it needs (or the leader told it to
      // prefetch), whichever tenant owns it, and nothing else: any other digest is not found,
      // exactly like one no version has.
      const node = principal.role === 'node';
      if (node && !deps.nodeMayFetch?.(principal.node, request.digest)) throw new NotFoundError(`no ${kind} version has content ${request.digest}`);
      found = await registry.findByDigest(kind, request.digest, node ? undefined : tenantOf(principal, request.tenant));
      if (!found) throw new NotFoundError(`no ${kind} version has content ${request.digest}`);
    } else {
      if (principal.role === 'node') throw new InvalidArgumentError('agents download by digest');
      found = await registry.resolve(kind, tenantOf(principal, request.tenant), parseRef(request.ref));
    }
    const { version } = found;
    if (request.offset > version.sizeBytes) {
      throw new InvalidArgumentError(`offset ${request.offset} is past the end of the content (${version.sizeBytes} bytes)`);
    }
    // Not held here (pushed through another coordinator that has since gone): from a peer first.
    await registry.fetchMissing?.(version.digest, version.sizeBytes);
    call.write({ version: toProtoVersion(found.record, version) });
    const reader = await registry.blobs.openReader(version.digest, request.offset);
    try {
      await sendChunks(reader, version.sizeBytes - request.offset, call);
    } finally {
      await reader.close();
    }
  };

  return {
    Push: edge.clientStream(`${service}.Push`, push),
    ListArtifacts: edge.unary(`${service}.ListArtifacts`, listArtifactsSchema, async ({ tenant }, { principal }) => {
      return { artifacts: (await registry.list(kind, tenantOf(principal, tenant))).map(toSummary) };
    }),
    GetArtifact: edge.unary(`${service}.GetArtifact`, getArtifactSchema, async ({ name, tenant }, { principal }) => {
      return toProtoArtifact(await registry.get(kind, tenantOf(principal, tenant), name));
    }),
    Resolve: edge.unary(`${service}.Resolve`, resolveSchema, async ({ ref, tenant }, { principal }) => {
      const { record, version } = await registry.resolve(kind, tenantOf(principal, tenant), parseRef(ref));
      return toProtoVersion(record, version);
    }),
    Download: edge.serverStream(`${service}.Download`, downloadSchema, download),
    SetAlias: edge.unary(
      `${service}.SetAlias`,
      setAliasSchema,
      async ({ name, alias, version, tenant }, { principal }) =>
        toProtoArtifact(await registry.setAlias(deps.writer(), kind, tenantOf(principal, tenant), name, alias, version)),
      ({ name, alias, version }) => `${kind}/${name}@${alias}=${version}`,
    ),
    DeleteVersion: edge.unary(
      `${service}.DeleteVersion`,
      deleteVersionSchema,
      async ({ name, version, tenant }, { principal }) =>
        toProtoArtifact(await registry.deleteVersion(deps.writer(), kind, tenantOf(principal, tenant), name, version)),
      ({ name, version }) => `${kind}/${name}:${version}`,
    ),
    ...(kind === 'model'
      ? {
          SetRetention: edge.unary(
            `${service}.SetRetention`,
            setRetentionSchema,
            async ({ name, tenant, keep, keepAliased, off }, { principal }) =>
              toProtoArtifact(await registry.setRetention(deps.writer(), tenantOf(principal, tenant), name, off ? undefined : { keep, keepAliased })),
            ({ name, keep, keepAliased, off }) => `${kind}/${name} retention=${off ? 'off' : `keep ${keep}${keepAliased ? ' (aliased kept)' : ''}`}`,
          ),
        }
      : {}),
  };
}

/** A push header as pushHeaderSchema validated it. */
export type ValidPushHeader = ReturnType<ReturnType<typeof pushHeaderSchema>['parse']>;

/**
 * Stores a push's content where its header and caller say (pushTarget: a version of the
 * caller's tenant, a job's output model, or a partition's part) and answers with the version
 * (version 0 for a part). The gRPC Push and DeliveryService.CommitPush both publish here.
 */
export async function publishPush(
  kind: ArtifactKind,
  deps: Pick<ArtifactServiceDeps, 'registry' | 'jobOutputs'>,
  writer: FencedWriter,
  context: CallContext,
  header: ValidPushHeader,
  content: PushContent,
): Promise<ArtifactVersion> {
  const { registry } = deps;
  let target;
  try {
    target = pushTarget(kind, context.principal, header, deps.jobOutputs);
  } catch (err) {
    if ('written' in content) await content.written.abort();
    throw err;
  }
  context.target = `${kind}/${header.name}`;
  if (target.kind === 'part') {
    const { node, allocation } = target;
    const part = await registry.pushPart({ tenant: target.tenant, sizeBytes: header.sizeBytes, digest: header.digest }, content, (blob) =>
      deps.jobOutputs!.recordPart(node, allocation, blob),
    );
    context.target = `${kind}/${header.name} (part from allocation ${allocation.slice(0, 8)})`;
    // Not a version (yet): version 0 says so; the job names the version once it is assembled.
    return { name: header.name, tenant: target.tenant, version: 0, digest: part.digest, sizeBytes: part.sizeBytes, format: header.format, directory: true, createdAtMs: 0, createdBy: context.principal.tokenId, metadata: null };
  }
  const { record, version } = await registry.push(
    writer,
    {
      kind,
      tenant: target.tenant,
      createdBy: context.principal.tokenId,
      name: header.name,
      format: header.format,
      directory: header.directory,
      sizeBytes: header.sizeBytes,
      digest: header.digest,
      metadata: target.metadata,
      ...(target.once ? { once: target.once } : {}),
    },
    content,
  );
  context.target = `${kind}/${header.name}:${version.version}`;
  return toProtoVersion(record, version);
}

/**
 * The service definition (ModelService or DatasetService, as registered with the server) with
 * Download's chunk messages sent as the handler encoded them, a view of the buffer the blob was
 * read into, instead of encoded again by protobufjs into a new buffer: per chunk, one
 * allocation and one copy less, and so fewer garbage collections. The bytes on the wire are the
 * same; other messages go through the generated serializer. grpc-js copies what a serializer
 * returns into its frame before it returns, so the buffer may be reused after the write.
 */
export function withEncodedChunks<S extends grpc.ServiceDefinition>(service: S): S {
  const download = service['Download'];
  if (!download) return service;
  const serialize = download.responseSerialize;
  const responseSerialize = (message: unknown) => (message as Partial<ChunkMessage>)[ENCODED] ?? serialize(message);
  return { ...service, Download: { ...download, responseSerialize } };
}

/**
 * Sends the reader's bytes as chunk messages through a few buffers used in turn, each read
 * into after room for the message header, so that nothing is allocated per chunk. A buffer is
 * reused once grpc-js reports its message written, by when it has copied it into its frame.
 */
async function sendChunks(reader: BlobReader, sizeBytes: number, call: grpc.ServerWritableStream<unknown, DownloadResponse>): Promise<void> {
  const chunkBytes = Math.min(CHUNK_BYTES, sizeBytes);
  const free: Buffer[] = [];
  let buffers = 0;
  const wakeup = new Wakeup();
  const ready = () => wakeup.wake();
  // A cancelled call never reports its pending writes: the wait for a buffer ends here instead.
  call.on('cancelled', ready);
  try {
    for (;;) {
      while (free.length === 0 && buffers === CHUNKS_IN_FLIGHT && !call.cancelled) await wakeup.wait();
      if (call.cancelled) return;
      let buffer = free.pop();
      if (!buffer) {
        buffer = Buffer.allocUnsafeSlow(CHUNK_HEADROOM + chunkBytes);
        buffers += 1;
      }
      const length = await reader.read(buffer, CHUNK_HEADROOM, chunkBytes);
      if (length === 0 || call.cancelled) return;
      const message = chunkMessage(buffer, length);
      const sent = buffer;
      const flowing = call.write(message, () => {
        free.push(sent);
        ready();
      });
      if (!flowing) await drainedOrCancelled(call);
    }
  } finally {
    call.off('cancelled', ready);
  }
}

/**
 * The chunk message for the `length` bytes at `buffer[CHUNK_HEADROOM]`: its header is written
 * into the room before them, so that its encoding is a view of the same buffer.
 */
export function chunkMessage(buffer: Buffer, length: number): ChunkMessage {
  const start = CHUNK_HEADROOM - 1 - varintLength(length);
  buffer[start] = CHUNK_TAG;
  writeVarint(buffer, start + 1, length);
  return { chunk: buffer.subarray(CHUNK_HEADROOM, CHUNK_HEADROOM + length), [ENCODED]: buffer.subarray(start, CHUNK_HEADROOM + length) };
}

function varintLength(value: number): number {
  let bytes = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    bytes += 1;
  }
  return bytes;
}

function writeVarint(buffer: Buffer, at: number, value: number): void {
  while (value >= 0x80) {
    buffer[at++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  buffer[at] = value;
}
