// ModelService and DatasetService: one implementation, parameterized by kind. Artifacts live in
// the caller's tenant; admins may name another tenant; anyone else naming one gets NOT_FOUND.
// Agents (node credentials) download blobs by digest for the allocations they run.
import type * as grpc from '@grpc/grpc-js';
import { ARTIFACT_FORMATS, parseRef } from '../../shared/artifact-ref.js';
import { InvalidArgumentError, NotFoundError } from '../../shared/errors.js';
import type { ArtifactVersion, DownloadResponse } from '../../shared/proto.js';
import { assertWellFormed, validate } from '../../shared/validation.js';
import type { FencedWriter } from '../node-registry.js';
import type { ArtifactKind } from '../registry/artifact-record.js';
import { toProtoArtifact, toProtoVersion, toSummary } from '../registry/artifact-record.js';
import type { ArtifactRegistry, Resolved } from '../registry/artifact-registry.js';
import { drainedOrCancelled, type CallContext, type RpcEdge } from './rpc.js';
import {
  deleteVersionSchema,
  downloadSchema,
  getArtifactSchema,
  listArtifactsSchema,
  pushHeaderSchema,
  resolveSchema,
  setAliasSchema,
} from './schemas.js';
import { tenantOf } from './tenant-service.js';

export interface ArtifactServiceDeps {
  edge: RpcEdge;
  registry: ArtifactRegistry;
  /** The leader's fenced writer; throws NotLeaderError on a follower (blobs live with the leader). */
  writer(): FencedWriter;
}

interface PushMessage {
  msg?: 'header' | 'chunk';
  header?: unknown;
  chunk?: Buffer;
}

const NO_METADATA = { type: '', inputFormat: '', outputFormat: '', accuracy: 0, labels: {}, sourceJob: '', sourceDatasets: [] };


export function artifactService(kind: ArtifactKind, deps: ArtifactServiceDeps): grpc.UntypedServiceImplementation {
  const { edge, registry } = deps;
  const service = kind === 'model' ? 'ModelService' : 'DatasetService';
  const headerSchema = pushHeaderSchema(ARTIFACT_FORMATS[kind]);

  const push = async (call: grpc.ServerReadableStream<PushMessage, ArtifactVersion>, context: CallContext): Promise<ArtifactVersion> => {
    const writer = deps.writer();
    const messages = call[Symbol.asyncIterator]() as AsyncIterator<PushMessage>;
    const first = await messages.next();
    if (first.done) throw new InvalidArgumentError('the push sent nothing: its first message must be the header');
    assertWellFormed(first.value, 'push message');
    if (first.value.msg !== 'header') throw new InvalidArgumentError('the first message of a push must be its header');
    const header = validate(headerSchema, first.value.header, 'push header');
    const tenant = tenantOf(context.principal, '');
    context.target = `${kind}/${header.name}`;
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
    const { record, version } = await registry.push(
      writer,
      {
        kind,
        tenant,
        createdBy: context.principal.tokenId,
        name: header.name,
        format: header.format,
        directory: header.directory,
        sizeBytes: header.sizeBytes,
        digest: header.digest,
        metadata: header.metadata ?? NO_METADATA,
      },
      chunks(),
    );
    context.target = `${kind}/${header.name}:${version.version}`;
    return toProtoVersion(record, version);
  };

  const download = async (
    request: { ref: string; digest: string; offset: number; tenant: string },
    { principal }: CallContext,
    call: grpc.ServerWritableStream<unknown, DownloadResponse>,
  ): Promise<void> => {
    let found: Resolved | undefined;
    if (request.digest) {
      // A node fetches whatever an allocation placed on it needs, whichever tenant owns it.
      found = await registry.findByDigest(kind, request.digest, principal.role === 'node' ? undefined : tenantOf(principal, request.tenant));
      if (!found) throw new NotFoundError(`no ${kind} version has content ${request.digest}`);
    } else {
      if (principal.role === 'node') throw new InvalidArgumentError('agents download by digest');
      found = await registry.resolve(kind, tenantOf(principal, request.tenant), parseRef(request.ref));
    }
    const { version } = found;
    if (request.offset > version.sizeBytes) {
      throw new InvalidArgumentError(`offset ${request.offset} is past the end of the content (${version.sizeBytes} bytes)`);
    }
    call.write({ version: toProtoVersion(found.record, version) });
    const bytes = await registry.blobs.read(version.digest, request.offset);
    try {
      for await (const chunk of bytes as AsyncIterable<Buffer>) {
        if (call.cancelled) return;
        if (!call.write({ chunk })) await drainedOrCancelled(call);
      }
    } finally {
      bytes.destroy();
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
  };
}

