// DeliveryService's push half (docs/delivery.md "Uploads"): BeginPush opens (or finds again) a
// resumable upload whose bytes arrive over HTTP (blob-routes.ts), CommitPush publishes it
// through the same path as ModelService/DatasetService.Push (publishPush: header validation,
// quotas, job outputs, replication to a peer coordinator, audit) and saves its piece manifest.
// The handlers are returned as a map, so that Locate (locate-service.ts) joins them in one
// service: serve(v1.DeliveryService.service, { ...pushHandlers(deps), ...locateHandlers(…) }).
// With the S3 blob store (Uploads.direct), BeginPush starts a multipart upload in the bucket and
// hands out presigned part URLs; CommitPush completes it from the parts' ETags, the leader reads
// it back to verify it (s3-direct.ts), and it is published through the same publishPush without
// its bytes being written again (directWriter).
import type * as grpc from '@grpc/grpc-js';
import { ARTIFACT_FORMATS } from '../../shared/artifact-ref.js';
import { UPLOADS_PATH } from '../../shared/blob-http.js';
import type { ArtifactVersion, PushTicket } from '../../shared/proto.js';
import { validate, z } from '../../shared/validation.js';
import type { FencedWriter } from '../node-registry.js';
import { publishPush } from '../api/artifact-service.js';
import type { JobOutputs } from '../api/job-output-push.js';
import { pushTarget } from '../api/job-output-push.js';
import type { RpcEdge } from '../api/rpc.js';
import { pushHeaderSchema } from '../api/schemas.js';
import type { BlobWriter } from '../blobs/blob-store.js';
import { MAX_PARTS, type DirectUpload, type S3DirectAccess, type VerifiedBlob } from '../blobs/s3-direct.js';
import { FailedPreconditionError } from '../../shared/errors.js';
import type { ArtifactRegistry } from '../registry/artifact-registry.js';
import type { PieceManifests } from './manifests.js';
import { UPLOAD_EXPIRY_MS, type Uploads } from './uploads.js';

export interface PushServiceDeps {
  edge: RpcEdge;
  registry: ArtifactRegistry;
  /** The leader's fenced writer; throws NotLeaderError on a follower. */
  writer(): FencedWriter;
  /** The leader's unfinished uploads. */
  uploads(): Uploads;
  manifests: PieceManifests;
  /** Base URL of this coordinator's blob routes (Coordinator.blobBaseUrl). */
  blobBaseUrl(): string;
  jobOutputs?: JobOutputs;
  now(): number;
}

export const beginPushSchema = z.object({
  kind: z.enum(['model', 'dataset']),
  header: z.unknown(),
  uploadKey: z.string().max(128, 'must be at most 128 characters').regex(/^[A-Za-z0-9_-]*$/, 'must be letters, digits, - and _'),
});

export const commitPushSchema = z.object({
  uploadId: z.string().regex(/^[0-9a-f]{32}$/, 'must be an upload id from BeginPush'),
  partEtags: z.array(z.string().max(1024, 'an ETag must be at most 1024 characters')).max(MAX_PARTS, `an upload has at most ${MAX_PARTS} parts`),
});

/**
 * A blob writer over a direct upload whose bytes are in the bucket already: its commit
 * completes the multipart upload with `etags` and verifies it (completeDirectUpload: stored
 * under sha256/ only when it matches what was declared), its abort aborts the upload. So the
 * registry publishes it as it publishes a coordinator upload ({ written }), without the bytes
 * passing through the coordinator again. `verified` is told the digest and piece manifest.
 */
export function directWriter(direct: S3DirectAccess, upload: DirectUpload, etags: readonly string[], verified: (blob: VerifiedBlob) => void): BlobWriter {
  let completed = false;
  return {
    write: () => Promise.reject(new FailedPreconditionError("a direct upload's bytes are in the bucket; nothing is written through the coordinator")),
    bytesWritten: upload.sizeBytes,
    commit: async (expected) => {
      const blob = await direct.completeDirectUpload(upload, etags, { sizeBytes: expected?.sizeBytes ?? upload.sizeBytes, ...(expected?.digest ? { digest: expected.digest } : {}) });
      completed = true;
      verified(blob);
      return { digest: blob.digest, sizeBytes: blob.sizeBytes };
    },
    // After a failed completion too: its parts go (best effort; completeDirectUpload removed any object it made).
    abort: async () => {
      if (!completed) await direct.abortDirectUpload(upload).catch(() => undefined);
    },
  };
}

export function pushHandlers(deps: PushServiceDeps): Record<string, grpc.UntypedHandleCall> {
  const { edge } = deps;
  // What each commit published, for its audit entry (the request names only the upload).
  const committed = new Map<string, string>();

  const beginPush = async ({ kind, header: raw, uploadKey }: z.infer<typeof beginPushSchema>, { principal }: { principal: Parameters<Uploads['begin']>[0] }): Promise<PushTicket> => {
    const header = validate(pushHeaderSchema(ARTIFACT_FORMATS[kind]), raw ?? undefined, 'push header');
    // Refused now rather than after every byte has come: who may push this (the same check commits make).
    pushTarget(kind, principal, header, deps.jobOutputs);
    const uploads = deps.uploads();
    if (uploads.direct) {
      const { upload, ticket } = await uploads.beginDirect(principal, kind, header, uploadKey);
      return {
        uploadId: upload.id,
        url: '',
        offset: 0,
        partUrls: ticket.partUrls,
        partBytes: ticket.partBytes,
        partsDone: (ticket.partsDone ?? []).map((p) => p.index),
        expiresAtMs: Math.min(ticket.expiresAtMs, uploads.expiresAtMs(upload)),
      };
    }
    const upload = await uploads.begin(principal, kind, header, uploadKey);
    return {
      uploadId: upload.id,
      url: `${deps.blobBaseUrl()}${UPLOADS_PATH}${upload.id}`,
      offset: upload.offset,
      partUrls: [],
      partBytes: 0,
      partsDone: [],
      expiresAtMs: upload.lastActivityMs + UPLOAD_EXPIRY_MS,
    };
  };

  const commitDirect = async (uploadId: string, etags: readonly string[], context: Parameters<typeof publishPush>[3]): Promise<ArtifactVersion> => {
    const writer = deps.writer();
    const uploads = deps.uploads();
    const upload = uploads.takeDirect(uploadId, context.principal, etags.length);
    let verified: VerifiedBlob | undefined;
    const written = directWriter(uploads.direct!, upload.direct, etags, (blob) => (verified = blob));
    const version = await publishPush(upload.kind, deps, writer, context, upload.header, { written });
    committed.set(uploadId, context.target ?? '');
    // completeDirectUpload saved the manifest beside the blob; the leader keeps it at hand.
    if (verified && version.digest === verified.digest) deps.manifests.remember(verified.manifest);
    return version;
  };

  const commitPush = async ({ uploadId, partEtags }: z.infer<typeof commitPushSchema>, context: Parameters<typeof publishPush>[3]): Promise<ArtifactVersion> => {
    // Every direct upload has at least one part, so ETags tell the two kinds apart.
    if (partEtags.length > 0) return commitDirect(uploadId, partEtags, context);
    const writer = deps.writer();
    const { upload, manifest } = await deps.uploads().take(uploadId, context.principal);
    // The digest the blob writer committed these bytes under (their whole hash).
    let stored: string | undefined;
    const blob = upload.blob;
    const written: BlobWriter = {
      write: (chunk) => blob.write(chunk),
      get bytesWritten() {
        return blob.bytesWritten;
      },
      commit: async (expected) => {
        const result = await blob.commit(expected);
        stored = result.digest;
        return result;
      },
      abort: () => blob.abort(),
    };
    const version = await publishPush(upload.kind, deps, writer, context, upload.header, { written });
    committed.set(uploadId, context.target ?? '');
    // The pieces were hashed with the very bytes the blob writer committed under the published
    // digest (a repeated job-output push may answer with an earlier version's other content).
    if (stored !== undefined && version.digest === stored) {
      await deps.manifests.save({ ...manifest, digest: version.digest });
    }
    return version;
  };

  return {
    BeginPush: edge.unary('DeliveryService.BeginPush', beginPushSchema, beginPush),
    CommitPush: edge.unary('DeliveryService.CommitPush', commitPushSchema, commitPush, ({ uploadId }) => {
      const target = committed.get(uploadId);
      committed.delete(uploadId);
      return target || `upload/${uploadId}`;
    }),
  };
}

