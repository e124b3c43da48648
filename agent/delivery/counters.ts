// What this agent's blob deliveries moved since it started: bytes received by source, pieces
// found corrupt, bytes given to peers. One instance per agent: the fetcher and the peer routes
// count into it; heartbeats (DeliveryCounters) and /metrics read it.
import type { DeliveryCounters as DeliveryCountersProto } from '../../shared/proto.js';

export type DeliverySourceKind = 'peer' | 'coordinator' | 's3';

export class DeliveryCounters {
  readonly receivedBytes: Record<DeliverySourceKind, number> = { peer: 0, coordinator: 0, s3: 0 };
  /** Pieces discarded because their SHA-256 did not match the manifest, by the source that sent them. */
  readonly corruptPieces: Record<DeliverySourceKind, number> = { peer: 0, coordinator: 0, s3: 0 };
  peerSentBytes = 0;

  received(source: DeliverySourceKind, bytes: number): void {
    this.receivedBytes[source] += bytes;
  }

  corrupt(source: DeliverySourceKind): void {
    this.corruptPieces[source] += 1;
  }

  sentToPeer(bytes: number): void {
    this.peerSentBytes += bytes;
  }

  toProto(): DeliveryCountersProto {
    return {
      fromPeersBytes: this.receivedBytes.peer,
      fromCoordinatorBytes: this.receivedBytes.coordinator,
      fromS3Bytes: this.receivedBytes.s3,
      toPeersBytes: this.peerSentBytes,
      corruptPieces: this.corruptPieces.peer + this.corruptPieces.coordinator + this.corruptPieces.s3,
    };
  }
}
