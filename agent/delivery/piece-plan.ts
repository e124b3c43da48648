// Which piece an agent fetches next, and from where (docs/delivery.md, "Pulling into an agent's
// cache"). Pure: the piece fetcher (piece-fetcher.ts) hands it a snapshot of what it holds,
// what is in flight, what each source has and how busy it is, and applies the answer.
//  - A piece some peer holds comes from a peer: the least busy one holding it, at random among
//    equals, so pieces spread over peers.
//  - A piece no peer holds comes from the seed (the coordinator or the bucket) when
//    `piece % fetchers == rank`, so N agents starting together cost the seed about one copy;
//    or when it has waited longer than `stallMs` (the peer meant to fetch it is slow or gone)
//    and it is this agent's turn: one agent per stall period takes a stalled piece over (four
//    stall times when its owner is a listed peer, which is then only slow);
//    or when nobody else is fetching (fetchers <= 1, or no peer is listed at all).
//  - This agent's own share of the seed comes first: every other agent waits for those pieces.
//    But not while a listed peer's bitfield is still unknown (it is being asked for): that peer
//    may hold the very pieces, and asking the seed for them would cost it a second copy.
//  - A piece peers hold but are all busy serving waits for them, up to BUSY_STALLS × stallMs:
//    a busy peer frees up long before the seed would be the better source.
//  - Alone, an agent takes pieces in order (the whole-digest check then follows the download);
//    among others, each starts at its own place (its rank's share of the blob) and wraps, so
//    that N agents do not all ask the same peers for the same first pieces. Given a `window`
//    (the fetcher can keep that many pieces in memory), an agent among others instead takes only
//    the `window` pieces from its first missing one, in order: its shares of the seed there
//    first, then what peers hold. The agents then move through the blob together, and each piece
//    is asked of a peer while that peer still has it in memory, and waits in memory for its turn
//    in the whole digest (piece-memory.ts): nothing is read back from the disk.
//  - A source that sent a corrupt copy of a piece is not asked for that piece again; a source
//    that failed recently is not asked at all.
//  - At most `maxInFlight` pieces at once, at most `source.limit` from one source.
import type { Bitfield } from '../../shared/pieces.js';

export type PlanSourceKind = 'peer' | 'coordinator' | 's3';

export interface PlanSource {
  /** Unique among the sources (the URL will do). */
  id: string;
  kind: PlanSourceKind;
  /** Peers: the pieces it holds ('complete': all); undefined while not known yet. Seeds: ignored. */
  pieces: Bitfield | 'complete' | undefined;
  /** Pieces being fetched from it now. */
  inFlight: number;
  /** The most pieces fetched from it at once. */
  limit: number;
  /** Peers fetching the blob: their rank among the fetchers, whose share of the seed they bring. */
  rank?: number | undefined;
}

export interface PlanInput {
  pieceCount: number;
  /** Pieces verified and written. */
  held: Bitfield;
  /** Pieces being fetched now. */
  inFlight: Pick<ReadonlySet<number>, 'has' | 'size'>;
  /** Peers first, then the seeds, best first. */
  sources: readonly PlanSource[];
  rank: number;
  fetchers: number;
  now: number;
  /** When each missing piece was first found waiting (see PlanResult.waiting). */
  waitingSince: ReadonlyMap<number, number>;
  /** How long a piece waits for a peer before the seed is asked for it. */
  stallMs: number;
  /** Per piece: the sources that sent it corrupt. */
  corruptFrom: ReadonlyMap<number, ReadonlySet<string>>;
  /** Sources that failed recently (errors, refusals): not used now. */
  failed: ReadonlySet<string>;
  maxInFlight: number;
  /**
   * The count of fetchers may still grow (the pull began among others and has not located again
   * yet): the seed is asked only for stalled pieces, not yet for this agent's share, which would
   * be cut from a count that is about to change.
   */
  settling?: boolean;
  /** Among others: fetch only this many pieces from the first missing one, in order (see above). */
  window?: number | undefined;
  /** In [0, 1): which of equally busy peers. Injected, for tests. */
  random: () => number;
}

export interface PlanResult {
  /** The piece to fetch next and the source's id; undefined when nothing should start now. */
  next: { piece: number; source: string } | undefined;
  /**
   * Missing pieces seen that could not be scheduled (no peer has them and they are not this
   * agent's share of the seed): the caller records when each was first seen, for the stall rule.
   */
  waiting: number[];
}

/** At most this many waiting pieces are reported per call: the ones nearest to being fetched. */
const MAX_WAITING = 64;
/** A piece whose holders are all busy waits this many stall times before the seed is asked. */
const BUSY_STALLS = 4;
/** A piece whose owner (the fetcher whose share it is) is listed and alive waits this many. */
const OWNER_STALLS = 4;

export function planNextPiece(input: PlanInput): PlanResult {
  const waiting: number[] = [];
  if (input.inFlight.size >= input.maxInFlight) return { next: undefined, waiting };
  const usable = input.sources.filter((source) => !input.failed.has(source.id) && source.inFlight < source.limit);
  const listed = input.sources.filter((source) => source.kind === 'peer');
  const peers = listed.filter((source) => !input.failed.has(source.id));
  const seeds = usable.filter((source) => source.kind !== 'peer');
  // A peer that failed a moment ago still counts as fetching: its pieces wait for the stall rule.
  const alone = input.fetchers <= 1 || listed.length === 0;
  const fetchers = Math.max(1, input.fetchers);

  const windowed = !alone && input.window !== undefined;
  const start = alone ? 0 : windowed ? firstMissing(input.held) : Math.floor(((input.rank % fetchers) * input.pieceCount) / fetchers);
  // Pieces looked at, from `start` (wrapping when not windowed).
  const span = windowed ? Math.max(0, Math.min(Math.max(1, input.window!), input.pieceCount - start)) : input.pieceCount;
  const unknown = peers.some((peer) => peer.pieces === undefined);
  // A stalled piece passes from agent to agent, one stall period each (the next rank after its
  // owner's first, and so on), instead of every waiting agent asking the seed for it at once;
  // after a full round anyone may.
  const turn = (piece: number, waited: number, period: number): boolean => {
    const periods = Math.floor(waited / period);
    if (periods < 1) return false;
    if (periods >= fetchers) return true;
    return (piece + periods) % fetchers === input.rank % fetchers;
  };
  if (!alone && !unknown && !input.settling) {
    // This agent's share, first: the pieces no peer holds yet that the others wait for it to bring.
    for (let step = 0; step < span; step += 1) {
      const piece = (start + step) % input.pieceCount;
      if (piece % fetchers !== input.rank % fetchers || input.held.has(piece) || input.inFlight.has(piece)) continue;
      const corrupt = input.corruptFrom.get(piece);
      if (peers.some((peer) => !corrupt?.has(peer.id) && holds(peer, piece))) continue;
      const seed = seeds.find((source) => !corrupt?.has(source.id));
      if (seed) return { next: { piece, source: seed.id }, waiting };
      break;
    }
  }
  // The shares whose owner is listed among the peers (piece % fetchers): asked once, not per piece.
  // Windowed, an owner brings its share only as its own window reaches it: one far behind (its
  // first missing piece a window or more before the piece) is not waited for as a live one.
  const liveOwners = new Map<number, number>();
  for (const peer of peers) {
    if (peer.rank === undefined) continue;
    const reach = !windowed || peer.pieces === undefined || peer.pieces === 'complete' ? input.pieceCount : firstMissing(peer.pieces) + input.window!;
    liveOwners.set(peer.rank % fetchers, Math.max(reach, liveOwners.get(peer.rank % fetchers) ?? 0));
  }
  // Runs every tick and after every piece, over every missing piece and every peer: it counts
  // holders without making arrays, and makes one only for a piece with a free holder.
  for (let step = 0; step < span; step += 1) {
    const piece = (start + step) % input.pieceCount;
    if (input.held.has(piece) || input.inFlight.has(piece)) continue;
    const corrupt = input.corruptFrom.get(piece);
    const allowed = (source: PlanSource) => !corrupt?.has(source.id);

    let holders = 0;
    let freeHolders: PlanSource[] | undefined;
    for (const peer of peers) {
      if (!allowed(peer) || !holds(peer, piece)) continue;
      holders += 1;
      if (peer.inFlight < peer.limit) (freeHolders ??= []).push(peer);
    }
    if (freeHolders) return { next: { piece, source: leastBusy(freeHolders, input.random).id }, waiting };

    const since = input.waitingSince.get(piece);
    const waited = since === undefined ? 0 : input.now - since;
    const ours = piece % fetchers === input.rank % fetchers;
    // Peers hold it but are busy: wait for them, longer than for a piece nobody has.
    // Nobody holds it: its owner brings it; while the owner is listed (and answering) it is
    // only slow, and is given longer before others take its piece over.
    const ownerLive = (liveOwners.get(piece % fetchers) ?? -1) > piece;
    const seedMay =
      holders > 0
        ? turn(piece, waited, BUSY_STALLS * input.stallMs)
        : alone || (ours && !unknown && !input.settling) || turn(piece, waited, (ownerLive ? OWNER_STALLS : 1) * input.stallMs);
    if (seedMay) {
      const seed = seeds.find(allowed);
      if (seed) return { next: { piece, source: seed.id }, waiting };
    }
    if (waiting.length < MAX_WAITING) waiting.push(piece);
  }
  return { next: undefined, waiting };
}

/** The first piece not held (the count when all are). */
function firstMissing(held: Bitfield): number {
  for (let piece = 0; piece < held.size; piece += 1) if (!held.has(piece)) return piece;
  return held.size;
}

function holds(peer: PlanSource, piece: number): boolean {
  return peer.pieces === 'complete' || (peer.pieces !== undefined && peer.pieces.has(piece));
}

function leastBusy(sources: PlanSource[], random: () => number): PlanSource {
  const least = Math.min(...sources.map((source) => source.inFlight));
  const equals = sources.filter((source) => source.inFlight === least);
  return equals[Math.min(equals.length - 1, Math.floor(random() * equals.length))]!;
}
