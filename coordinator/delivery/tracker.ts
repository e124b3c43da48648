// The leader as tracker (docs/delivery.md, "Pulling into an agent's cache"): which nodes are
// fetching which blob now, and, for a node that Locates a blob, which other nodes it may read
// pieces from and its share of the seed. Pure: time and randomness come from the caller; the
// nodes are whatever the registry holds at the call. Lives only while this coordinator leads.
import type { Random } from '../../shared/clock.js';

/** A node's fetch is forgotten this long after its last Locate of the blob (agents re-Locate every few seconds). */
export const FETCH_EXPIRY_MS = 15_000;
/** Peers handed out per Locate at most: enough to spread the load, few enough to keep answers small. */
export const MAX_PEERS = 16;

/** What the tracker needs to know of a node (the registry's NodeView, narrowed). */
export interface TrackerNode {
  name: string;
  /** Its gateway's host:port (Hello.address); '' when it gave none. */
  address: string;
  status: 'ready' | 'down';
  cordoned: boolean;
  draining: boolean;
  /** Hello.peer_upload_mbps: 0 when the agent serves no pieces. */
  peerUploadMbps: number;
  /** Its last cache report: blobs it holds whole. */
  cache: readonly { digest: string }[];
}

export interface PeerChoice {
  node: string;
  address: string;
  /** It holds the whole blob (else it is fetching it: ask for its bitfield). */
  complete: boolean;
  /** Fetching it: its rank among the fetchers (as `rank` counts them). */
  rank?: number;
}

export interface SourceDecision {
  peers: PeerChoice[];
  /** The requester's place among the nodes fetching the blob now, by when they started. */
  rank: number;
  /** How many nodes are fetching it now (the requester included); at least 1. */
  fetchers: number;
}

interface Fetch {
  startedAtMs: number;
  lastLocateMs: number;
}

export class FetchTracker {
  /** digest → node → its fetch. */
  private readonly fetching = new Map<string, Map<string, Fetch>>();

  constructor(
    private readonly random: Random = Math.random,
    private readonly expiryMs = FETCH_EXPIRY_MS,
  ) {}

  /** `node` Located `digest` at `now`: it is fetching it (since its first Locate, unless that one expired). */
  record(node: string, digest: string, now: number): void {
    let nodes = this.fetching.get(digest);
    if (!nodes) {
      nodes = new Map();
      this.fetching.set(digest, nodes);
    }
    const fetch = nodes.get(node);
    if (fetch && now - fetch.lastLocateMs < this.expiryMs) fetch.lastLocateMs = now;
    else nodes.set(node, { startedAtMs: now, lastLocateMs: now });
  }

  /** The node's session ended: it fetches nothing any more (it Locates again when it is back). */
  forget(node: string): void {
    for (const [digest, nodes] of this.fetching) {
      nodes.delete(node);
      if (nodes.size === 0) this.fetching.delete(digest);
    }
  }

  /** The node reported its cache: the blobs listed there are done fetching. */
  cacheReported(node: string, cache: readonly { digest: string }[]): void {
    for (const { digest } of cache) {
      const nodes = this.fetching.get(digest);
      if (!nodes) continue;
      nodes.delete(node);
      if (nodes.size === 0) this.fetching.delete(digest);
    }
  }

  /** Nodes fetching `digest` at `now`, first started first (expired ones are dropped). */
  fetchersOf(digest: string, now: number): string[] {
    const nodes = this.fetching.get(digest);
    if (!nodes) return [];
    for (const [node, fetch] of nodes) if (now - fetch.lastLocateMs >= this.expiryMs) nodes.delete(node);
    if (nodes.size === 0) this.fetching.delete(digest);
    return [...nodes].sort((a, b) => a[1].startedAtMs - b[1].startedAtMs || a[0].localeCompare(b[0])).map(([node]) => node);
  }

  /** Blobs with a fetch in progress (for tests and metrics). */
  get size(): number {
    return this.fetching.size;
  }

  /**
   * Where `requester` may read `digest` from peers: nodes holding it whole (in their last cache
   * report) first, then nodes fetching it; never the requester itself, nor a node that is down,
   * cordoned or draining, serves no pieces, or gave no address. At most MAX_PEERS, picked at
   * random, holders preferred. `rank`/`fetchers` count the fetchers others can read from (the
   * ones that would be listed) plus the requester: a fetcher nobody can read from would take a
   * share of the seed that reaches no one else.
   */
  sources(requester: string, digest: string, now: number, nodes: Iterable<TrackerNode>): SourceDecision {
    const byName = new Map<string, TrackerNode>();
    for (const node of nodes) byName.set(node.name, node);
    const holders: PeerChoice[] = [];
    for (const node of byName.values()) {
      if (node.name === requester || !canServe(node)) continue;
      if (node.cache.some((entry) => entry.digest === digest)) holders.push({ node: node.name, address: node.address, complete: true });
    }
    const fetchers: PeerChoice[] = [];
    const counted: string[] = [];
    for (const name of this.fetchersOf(digest, now)) {
      const node = byName.get(name);
      if (node?.cache.some((entry) => entry.digest === digest)) continue; // done: its cache lists the blob
      if (name === requester) {
        counted.push(name);
        continue;
      }
      if (!node || !canServe(node)) continue;
      fetchers.push({ node: name, address: node.address, complete: false, rank: counted.length });
      counted.push(name);
    }
    const peers = this.pick(holders, MAX_PEERS);
    peers.push(...this.pick(fetchers, MAX_PEERS - peers.length));
    // A requester not recorded (a user, or a node that has not Located yet) comes last.
    if (!counted.includes(requester)) counted.push(requester);
    return { peers, rank: counted.indexOf(requester), fetchers: counted.length };
  }

  /** Up to `count` of `choices`, at random (a partial Fisher–Yates shuffle). */
  private pick(choices: PeerChoice[], count: number): PeerChoice[] {
    const out = [...choices];
    const n = Math.min(Math.max(0, count), out.length);
    for (let i = 0; i < n; i++) {
      const j = i + Math.floor(this.random() * (out.length - i));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out.slice(0, n);
  }
}

/** Whether other nodes may be sent to `node` for pieces. */
function canServe(node: TrackerNode): boolean {
  return node.status === 'ready' && !node.cordoned && !node.draining && node.peerUploadMbps > 0 && node.address !== '';
}
