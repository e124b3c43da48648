// DeliveryService.Locate (docs/delivery.md, "Pulling into an agent's cache"): where a blob's
// bytes can be read and its piece manifest. Users name a version of their tenant, or a digest
// one of their tenant's versions has, and are sent to the bucket (presigned; with the S3 blob
// store) and the coordinator. Nodes name a digest they
// may fetch and also get the peers holding or fetching it (the tracker, tracker.ts), the seed
// (the coordinator, or the bucket through a presigned URL), a grant to show those peers, and
// their share of the seed; their Locate records them as fetching it. A read: audits nothing.
import type * as grpc from '@grpc/grpc-js';
import { parseRef } from '../../shared/artifact-ref.js';
import { DIGEST_PATTERN, blobUrl, signGrant, type GrantKeys } from '../../shared/blob-http.js';
import { InvalidArgumentError, NotFoundError } from '../../shared/errors.js';
import type { BlobLocation, BlobSourceInfo as BlobSource } from '../../shared/proto.js';
import { z } from '../../shared/validation.js';
import type { Principal } from '../auth/token-registry.js';
import type { NodeView } from '../node-record.js';
import type { ArtifactKind } from '../registry/artifact-record.js';
import { toProtoVersion } from '../registry/artifact-record.js';
import type { ArtifactRegistry, Resolved } from '../registry/artifact-registry.js';
import type { RpcEdge } from '../api/rpc.js';
import { resolveSchema } from '../api/schemas.js';
import { tenantOf } from '../api/tenant-service.js';
import type { PieceManifests } from './manifests.js';
import type { FetchTracker, TrackerNode } from './tracker.js';

/** How long a grant lets a node read a blob from peers. */
export const GRANT_TTL_MS = 10 * 60_000;
/** Grant expiries are whole minutes (see locate()). */
const GRANT_ROUND_MS = 60_000;
/** Ask again this soon while others fetch the blob or peers have it (fresh peers and bitfields)… */
export const REFRESH_BUSY_MS = 2_000;
/** …else this soon: well within the tracker's expiry (15 s), so a long fetch stays recorded. */
export const REFRESH_QUIET_MS = 10_000;

export const locateSchema = z
  .object({
    kind: z.enum(['', 'model', 'dataset']),
    ref: z.union([z.literal(''), resolveSchema.shape.ref]),
    digest: z.union([z.literal(''), z.string().regex(DIGEST_PATTERN, 'must be sha256:<64 hex digits>')]),
    tenant: resolveSchema.shape.tenant,
  })
  .refine((r) => (r.ref === '') !== (r.digest === ''), { message: 'give exactly one of ref and digest', path: ['ref'] })
  .refine((r) => r.ref === '' || r.kind !== '', { message: 'give the kind (model or dataset) of the version the ref names', path: ['kind'] });

export type LocateRequest = z.infer<typeof locateSchema>;

/** A presigned GET of a blob's object in the bucket (coordinator/blobs/s3-direct.ts). */
export type PresignGet = (digest: string) => Promise<{ url: string; expiresAtMs: number }>;

export interface LocateDeps {
  edge: RpcEdge;
  artifacts: ArtifactRegistry;
  manifests: PieceManifests;
  /** Whether a node may fetch a blob: one of its allocations uses it, or it was told to prefetch it (as Download). */
  nodeMayFetch(node: string, digest: string): boolean;
  /** The leader's tracker; throws NotLeaderError on a follower. */
  tracker(): FetchTracker;
  /** The leader's nodes as they stand. */
  nodes(): Iterable<NodeView>;
  /** The coordinator's blob base URL (Coordinator.blobBaseUrl). */
  blobBaseUrl(): string;
  grantKeys: GrantKeys;
  /** With the S3 blob store: nodes read from the bucket through this instead of the coordinator. Undefined: the coordinator serves. */
  presignGet?: PresignGet | undefined;
  now(): number;
  /** Counts a Locate (mlfleet_coordinator_locates_total). */
  counted?(caller: 'node' | 'user'): void;
}

/** The Locate handler, for DeliveryService's registration. */
export function locateHandler(deps: LocateDeps): grpc.handleUnaryCall<unknown, BlobLocation> {
  return deps.edge.unary('DeliveryService.Locate', locateSchema, async (request, { principal }) => {
    if (principal.role === 'node') {
      deps.counted?.('node');
      return locateForNode(deps, request, principal.node);
    }
    deps.counted?.('user');
    return locateForUser(deps, request, principal);
  });
}

async function locateForUser(deps: LocateDeps, request: LocateRequest, principal: Principal): Promise<BlobLocation> {
  const tenant = tenantOf(principal, request.tenant);
  let found: Resolved | undefined;
  if (request.ref) {
    found = await deps.artifacts.resolve(request.kind as ArtifactKind, tenant, parseRef(request.ref));
  } else {
    found = await findByDigest(deps, request, tenant);
    if (!found) throw new NotFoundError(missing(request));
  }
  const base = await describe(deps, found);
  const now = deps.now();
  // With the S3 blob store the bucket (presigned) comes first, so the coordinator carries no bytes.
  const sources: BlobSource[] = [];
  if (deps.presignGet) {
    try {
      const { url, expiresAtMs } = await deps.presignGet(found.version.digest);
      sources.push({ kind: 's3', url, node: '', complete: true, expiresAtMs, fetcherRank: 0 });
    } catch (err) {
      // Not in the bucket (yet): the coordinator still serves it.
      if (!(err instanceof NotFoundError)) throw err;
    }
  }
  sources.push(coordinatorSource(deps, found.version.digest));
  return { ...base, sources, grant: '', grantExpiresAtMs: 0, rank: 0, fetchers: 1, refreshAtMs: now + REFRESH_QUIET_MS };
}

async function locateForNode(deps: LocateDeps, request: LocateRequest, node: string): Promise<BlobLocation> {
  if (!request.digest) throw new InvalidArgumentError('agents locate blobs by digest');
  // A digest the node may not fetch is not found, in the same words as one no version has.
  if (!deps.nodeMayFetch(node, request.digest)) throw new NotFoundError(missing(request));
  const found = await findByDigest(deps, request, undefined);
  if (!found) throw new NotFoundError(missing(request));
  const base = await describe(deps, found);
  const { digest } = found.version;
  const now = deps.now();
  const tracker = deps.tracker();
  tracker.record(node, digest, now);
  const decision = tracker.sources(node, digest, now, [...deps.nodes()].map(trackerNode));
  const sources: BlobSource[] = decision.peers.map((peer) => ({
    kind: 'peer',
    url: blobUrl(`http://${peer.address}`, digest),
    node: peer.node,
    complete: peer.complete,
    expiresAtMs: 0,
    fetcherRank: peer.rank === undefined ? 0 : peer.rank + 1,
  }));
  if (deps.presignGet) {
    const { url, expiresAtMs } = await deps.presignGet(digest);
    sources.push({ kind: 's3', url, node: '', complete: true, expiresAtMs, fetcherRank: 0 });
  } else {
    sources.push(coordinatorSource(deps, digest));
  }
  // Rounded up to the minute: Ed25519 signatures are deterministic, so every Locate of this node
  // and digest within a minute hands out the same grant, which peers then check only once.
  const grantExpiresAtMs = Math.ceil((now + GRANT_TTL_MS) / GRANT_ROUND_MS) * GRANT_ROUND_MS;
  const busy = decision.fetchers > 1 || decision.peers.length > 0;
  return {
    ...base,
    sources,
    grant: signGrant(deps.grantKeys, { node, digest, expiresAtMs: grantExpiresAtMs }),
    grantExpiresAtMs,
    rank: decision.rank,
    fetchers: decision.fetchers,
    refreshAtMs: now + (busy ? REFRESH_BUSY_MS : REFRESH_QUIET_MS),
  };
}

/** A version with this content, of the kind asked for (else of either kind), in `tenant` (undefined: any). */
async function findByDigest(deps: LocateDeps, request: LocateRequest, tenant: string | undefined): Promise<Resolved | undefined> {
  const kinds: ArtifactKind[] = request.kind ? [request.kind] : ['model', 'dataset'];
  for (const kind of kinds) {
    const found = await deps.artifacts.findByDigest(kind, request.digest, tenant);
    if (found) return found;
  }
  return undefined;
}

function missing(request: LocateRequest): string {
  return `no ${request.kind || 'model or dataset'} version has content ${request.digest}`;
}

/** What every caller gets: the version and the piece manifest. */
async function describe(deps: LocateDeps, found: Resolved): Promise<Pick<BlobLocation, 'version' | 'digest' | 'sizeBytes' | 'pieceBytes' | 'pieceHashes'>> {
  const { digest, sizeBytes } = found.version;
  // Not held here (pushed through another coordinator that has since gone): from a peer first.
  await deps.artifacts.fetchMissing?.(digest, sizeBytes);
  const manifest = await deps.manifests.get(digest, sizeBytes);
  return { version: toProtoVersion(found.record, found.version), digest, sizeBytes, pieceBytes: manifest.pieceBytes, pieceHashes: manifest.hashes };
}

function coordinatorSource(deps: LocateDeps, digest: string): BlobSource {
  return { kind: 'coordinator', url: blobUrl(deps.blobBaseUrl(), digest), node: '', complete: true, expiresAtMs: 0, fetcherRank: 0 };
}

/** The registry's view of a node, as the tracker needs it. */
export function trackerNode(view: NodeView): TrackerNode {
  const { record } = view;
  return {
    name: record.name,
    address: record.address,
    status: record.status,
    cordoned: record.cordoned,
    draining: record.draining,
    peerUploadMbps: view.peerUploadMbps ?? 0,
    cache: view.cache,
  };
}
