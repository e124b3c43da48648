// What blob replication between coordinators decides, without I/O (DESIGN principle 13): which
// blobs the registry references, which of them this coordinator lacks, in which order to ask
// the peers, and whether a push may be recorded with the copies it got. The I/O that applies
// these decisions is blob-peers.ts.
import type { ArtifactRecord } from '../registry/artifact-record.js';

/** A coordinator as registered under keys.coordinatorsPrefix. */
export interface PeerMember {
  id: string;
  address: string;
}

/** Every blob a version of any artifact names, with its size (what a fetch verifies). */
export function referencedBlobs(records: Iterable<ArtifactRecord>): Map<string, number> {
  const blobs = new Map<string, number>();
  for (const record of records) for (const version of record.versions) blobs.set(version.digest, version.sizeBytes);
  return blobs;
}

/** The referenced blobs not held here, smallest first (many small ones fill fastest). */
export function missingBlobs(referenced: Map<string, number>, held: (digest: string) => boolean): { digest: string; sizeBytes: number }[] {
  return [...referenced]
    .filter(([digest]) => !held(digest))
    .map(([digest, sizeBytes]) => ({ digest, sizeBytes }))
    .sort((a, b) => a.sizeBytes - b.sizeBytes || (a.digest < b.digest ? -1 : 1));
}

/**
 * The other coordinators, in the order to try them: a rotation by `start` (a random or
 * round-robin number) so that copies spread over the peers instead of all landing on the first.
 */
export function peerOrder(members: PeerMember[], selfId: string, start: number): PeerMember[] {
  const others = members.filter((m) => m.id !== selfId && m.address !== '').sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  if (others.length === 0) return others;
  const at = ((Math.floor(start) % others.length) + others.length) % others.length;
  return [...others.slice(at), ...others.slice(0, at)];
}

/**
 * Whether a pushed blob may be recorded. A coordinator alone in the cluster records it with its
 * one copy (the README says so); with peers registered, only once one of them holds a copy,
 * else the push is refused as unavailable and nothing is recorded.
 */
export function pushVerdict(peers: number, copiedTo: number): 'record' | 'refuse' {
  if (peers === 0) return 'record';
  return copiedTo >= 1 ? 'record' : 'refuse';
}
