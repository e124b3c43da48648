// A node's desired set on the wire (DESIGN principle 4: "sent as changes or bounded pieces, never
// one message that grows with the node"). The leader cuts a set into pieces of bounded size —
// the first with `reset`, the last with `complete` — and the agent gathers them and applies the
// set only once it is whole, so a session never carries a message near gRPC's limits however
// many allocations the node runs. Pure: no I/O, both ends use it.
import type { Allocation__Output as Allocation } from './gen/mlfleet/v1/Allocation.js';
import { LIMITS } from './limits.js';

export interface DesiredSet {
  revision: number;
  allocations: Allocation[];
}

export interface DesiredPiece extends DesiredSet {
  reset: boolean;
  complete: boolean;
}

/** Bytes an allocation takes on the wire, from above: its spec plus a margin for the other fields. */
export function allocationBytes(a: Allocation): number {
  return Buffer.byteLength(a.specJson) + a.id.length + a.workload.length + a.tenant.length + a.kind.length + 8 * a.gpuIndexes.length + 128;
}

/**
 * The set in pieces of at most `maxBytes` each (an allocation larger than that goes alone; the
 * API's spec limit keeps it far smaller). An empty set is one piece, so the agent learns of it.
 */
export function desiredPieces(set: DesiredSet, maxBytes: number = LIMITS.desiredPieceBytes): DesiredPiece[] {
  const pieces: DesiredPiece[] = [];
  let current: Allocation[] = [];
  let bytes = 0;
  for (const allocation of set.allocations) {
    const size = allocationBytes(allocation);
    if (current.length > 0 && bytes + size > maxBytes) {
      pieces.push({ revision: set.revision, allocations: current, reset: pieces.length === 0, complete: false });
      current = [];
      bytes = 0;
    }
    current.push(allocation);
    bytes += size;
  }
  pieces.push({ revision: set.revision, allocations: current, reset: pieces.length === 0, complete: true });
  return pieces;
}

/**
 * The agent's side: gathers pieces into whole sets. A piece that does not follow its set's
 * first piece (a session that broke mid-set, a revision that changed) is dropped with what was
 * gathered; the leader sends the whole set again on the next session.
 */
export class DesiredAssembler {
  private gathering: DesiredSet | undefined;

  /** The whole set when `piece` completes one; undefined while pieces are missing. */
  add(piece: DesiredPiece): DesiredSet | undefined {
    if (piece.reset) this.gathering = { revision: piece.revision, allocations: [] };
    const set = this.gathering;
    if (!set || set.revision !== piece.revision) {
      this.gathering = undefined;
      return undefined;
    }
    for (const allocation of piece.allocations) set.allocations.push(allocation);
    if (!piece.complete) return undefined;
    this.gathering = undefined;
    return set;
  }
}
