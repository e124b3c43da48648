// Locate for the piece fetcher: the leader's DeliveryService.Locate, with this node's
// credential, on the channel the session uses (its address and TLS credentials).
import * as grpc from '@grpc/grpc-js';
import { setBearer } from '../../shared/auth.js';
import { UnavailableError, fromGrpcError } from '../../shared/errors.js';
import { mlfleetV1, type BlobLocation, type DeliveryServiceClient } from '../../shared/proto.js';
import type { DeliverySourceKind } from './counters.js';
import type { Location } from './piece-fetcher.js';

export interface LeaderLocatorOptions {
  /** The leader the session is connected to, if any. */
  leader: () => string | undefined;
  token: () => string | undefined;
  credentials: grpc.ChannelCredentials;
  /** A Locate that takes longer fails (the download is retried). Default 30 s. */
  timeoutMs?: number;
}

const KINDS = new Set<string>(['peer', 'coordinator', 's3']);

/** locate(digest, signal) for PieceFetcherOptions. */
export function leaderLocator(options: LeaderLocatorOptions): (digest: string, signal: AbortSignal) => Promise<Location> {
  let client: { address: string; client: DeliveryServiceClient } | undefined;
  return async (digest, signal) => {
    const address = options.leader();
    if (!address) throw new UnavailableError('not connected to the leader; the download starts when the session is back');
    if (client?.address !== address) {
      client?.client.close();
      client = { address, client: new (mlfleetV1().DeliveryService)(address, options.credentials) as unknown as DeliveryServiceClient };
    }
    const { client: service } = client;
    const answer = await new Promise<BlobLocation>((resolve, reject) => {
      const call = service.Locate(
        { digest },
        setBearer(new grpc.Metadata(), options.token()),
        { deadline: Date.now() + (options.timeoutMs ?? 30_000) },
        (err, value) => (err ? reject(fromGrpcError(err)) : resolve(value!)),
      );
      signal.addEventListener('abort', () => call.cancel(), { once: true });
    });
    return toLocation(answer);
  };
}

/** The proto's BlobLocation in the fetcher's terms; sources of a kind this agent does not know are left out. */
export function toLocation(answer: BlobLocation): Location {
  return {
    digest: answer.digest,
    sizeBytes: answer.sizeBytes,
    pieceBytes: answer.pieceBytes,
    pieceHashes: answer.pieceHashes,
    sources: answer.sources
      .filter((source) => KINDS.has(source.kind) && source.url !== '')
      .map((source) => ({ kind: source.kind as DeliverySourceKind, url: source.url, node: source.node || undefined, complete: source.complete, ...(source.fetcherRank > 0 ? { rank: source.fetcherRank - 1 } : {}) })),
    grant: answer.grant,
    rank: answer.rank,
    fetchers: answer.fetchers,
    refreshAtMs: answer.refreshAtMs,
  };
}
