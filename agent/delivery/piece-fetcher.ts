// The agent's piece fetcher (docs/delivery.md, "Pulling into an agent's cache"): the model
// cache's BlobSource. It locates a blob (the leader answers with its piece manifest, the peers
// holding or fetching it, the seed, a grant, this agent's rank among the fetchers), asks
// incomplete peers for their bitfields, and GETs pieces with Range through one undici Pool per
// origin, several at once, as piece-plan.ts decides. Each piece is hashed in a worker thread
// and checked against the manifest before it is written at its offset in the partial file; a
// bad one is counted and fetched again from another source. Pieces written are checkpointed
// (fdatasync, then recorded by the cache) at most every second or every few pieces.
import type { FileHandle } from 'node:fs/promises';
import { Pool, type Dispatcher } from 'undici';
import { GRANT_HEADER, PIECES_HEADER, PIECES_SUFFIX, PIECE_BYTES_HEADER } from '../../shared/blob-http.js';
import { systemClock, type Clock } from '../../shared/clock.js';
import { FailedPreconditionError, InvalidArgumentError, MlfleetError, NotFoundError, UnavailableError } from '../../shared/errors.js';
import { silentLogger, type Logger } from '../../shared/log.js';
import { Bitfield, checkManifest, pieceCount, pieceHash, pieceRange, type PieceManifest } from '../../shared/pieces.js';
import type { TlsMaterial } from '../../shared/tls.js';
import { CorruptBlobError, type BlobSource, type PullRequest } from '../model-cache.js';
import type { DeliveryCounters, DeliverySourceKind } from './counters.js';
import { PieceWriter } from './direct-io.js';
import { KEPT_PIECES, PieceMemory, type KeptSlot } from './piece-memory.js';
import { WholeDigest, type Hashed, type HashPool } from './hash-pool.js';
import { planNextPiece, type PlanSource } from './piece-plan.js';
import { RangeClient, type RangeResponse } from './range-client.js';

/** Where a blob's bytes are: what the leader's Locate answers, in the fetcher's terms. */
export interface Location {
  digest: string;
  sizeBytes: number;
  pieceBytes: number;
  /** 32 bytes per piece. */
  pieceHashes: Buffer;
  sources: LocatedSource[];
  grant: string;
  rank: number;
  fetchers: number;
  /** Ask again before this time (ms since the epoch); 0: never. */
  refreshAtMs: number;
}

export interface LocatedSource {
  kind: DeliverySourceKind;
  /** The blob's URL; peers also serve <url>/pieces. s3: presigned. */
  url: string;
  node?: string;
  /** Peers: holds every piece. */
  complete?: boolean;
  /** Peers fetching the blob: their rank among the fetchers (whose share of the seed they bring). */
  rank?: number;
}

export interface PieceFetcherOptions {
  locate(digest: string, signal: AbortSignal): Promise<Location>;
  /** The node credential, shown to the coordinator and to peers. */
  token: () => string | undefined;
  /** The agent's TLS material, for https origins (CA, client certificate). */
  tls?: TlsMaterial | undefined;
  counters: DeliveryCounters;
  hashPool: HashPool;
  clock?: Clock;
  random?: () => number;
  log?: Logger;
  /** Pieces in flight for one blob. Default 4 (each holds a working buffer: see piece-memory.ts). */
  maxInFlight?: number;
  /** Pieces in flight from one peer. Default 2. */
  perPeer?: number;
  /** Pieces in flight from one seed (coordinator, bucket). Default 3. */
  perSeed?: number;
  /** How long a piece nobody holds waits for the peer whose share it is before the seed is asked for it. Default 3000 ms. */
  stallMs?: number;
  /** A checkpoint at most this long after a piece is written... Default 1000 ms. */
  checkpointMs?: number;
  /** ...or once this many pieces wait for one. Default 8. */
  checkpointPieces?: number;
  /** How often an incomplete peer's bitfield is asked for while the pull is starved (each piece it sends also carries it). Default 500 ms. */
  pollMs?: number;
}

/** A piece nobody holds waits at least this many piece times for the peer whose share it is. */
const STALL_PIECE_TIMES = 4;
/**
 * Settling (see PlanInput.settling) ends after this long whatever the counts say. In the 16-agent
 * fanout, freshly started agents' Locate answers took ~0.7-0.9 s each while their processes
 * warmed up: waiting for two that agree (up to 3 s) held every share of the seed back ~2 s.
 */
const MAX_SETTLE_MS = 1_000;
/**
 * Peers' bitfields asked for per pollMs, at most: every peer the leader lists (16 at most). A
 * starved pull (slots no piece could fill) learns of peers' new pieces no sooner than this: with
 * 4 per 1000 ms, the 16-agent fanout sat half idle for its first seconds.
 */
const POLLS_PER_INTERVAL = 16;
/** A pull locates again this soon after it starts, to learn of agents that started with it. */
const FIRST_RELOCATE_MS = 250;
/** A source that failed is left alone this long. */
const FAILED_MS = 2_000;
/** Failed piece requests in a row, with no piece arriving, before the pull gives up (retryable). */
const MAX_FAILURES_IN_A_ROW = 12;
/** Corrupt copies of one piece before the blob is given up as unobtainable. */
const MAX_CORRUPT_COPIES = 3;
const TICK_MS = 100;
const READ_BYTES = 1024 * 1024;

/** What a request to a peer shows it: the grant, and the pieces this agent holds (it learns them as from a poll). */
interface AsPeer {
  grant: string;
  pieces?: { bitfield: string; pieceBytes: number } | undefined;
}

interface SourceState extends PlanSource {
  located: LocatedSource;
  failedUntil: number;
  polling: boolean;
  polledAt: number;
}

/** Bad input from a source that only another source can mend: the piece is fetched again. */
class PieceRequestError extends Error {
  constructor(
    message: string,
    /** The pull stops: the seed refused (the digest is unknown, this node may not fetch it). */
    readonly fatal: MlfleetError | undefined = undefined,
    /** The bytes arrived but did not match the piece's hash: the source is avoided for that piece only. */
    readonly corrupt = false,
  ) {
    super(message);
  }
}

/** Writing the partial file failed (a full disk, say): the pull stops, whatever the source. */
class FileError extends Error {
  constructor(override readonly cause: unknown) {
    super((cause as Error).message);
  }
}

/** A blob's pieces kept in memory stay this long after its pull ends, for peers still fetching it. */
const KEPT_AFTER_PULL_MS = 10_000;

export class PieceFetcher implements BlobSource {
  /** Piece buffers, and the verified pieces kept in them, which peers are served from (peer-routes.ts). */
  readonly memory = new PieceMemory();
  private readonly pools = new Map<string, Pool>();
  /** Pulls under way, by digest (one per digest: the cache runs one download per digest). */
  private readonly pulls = new Map<string, Pull>();
  /** Pieces over plain http: read straight into the piece buffer (see range-client.ts). */
  private readonly ranges = new RangeClient();
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly log: Logger;

  constructor(private readonly options: PieceFetcherOptions) {
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.log = options.log ?? silentLogger();
  }

  /** The whole digest comes with the pieces (see WholeDigest): the cache need not read the file back. */
  readonly hashesWhole = true;

  /** Resolves with the SHA-256 (hex) of the whole file, or undefined if it could not be taken along (then the cache hashes the file). */
  async pull(request: PullRequest): Promise<string | undefined> {
    const location = await this.options.locate(request.digest, request.signal);
    const manifest = checkLocation(location, request);
    const pull = new Pull(this, request, location, manifest);
    this.pulls.set(request.digest, pull);
    try {
      return await pull.run();
    } finally {
      if (this.pulls.get(request.digest) === pull) this.pulls.delete(request.digest);
    }
  }

  async close(): Promise<void> {
    this.ranges.close();
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((pool) => pool.close().catch(() => undefined)));
  }

  // ---- for Pull ------------------------------------------------------------------------

  /** @internal */
  get settings() {
    const o = this.options;
    return {
      maxInFlight: o.maxInFlight ?? 4,
      perPeer: o.perPeer ?? 2,
      perSeed: o.perSeed ?? 3,
      stallMs: o.stallMs ?? 3_000,
      checkpointMs: o.checkpointMs ?? 1_000,
      checkpointPieces: o.checkpointPieces ?? 8,
      pollMs: o.pollMs ?? 500,
      clock: this.clock,
      random: this.random,
      log: this.log,
      counters: o.counters,
      hashPool: o.hashPool,
      locate: o.locate,
    };
  }

  /** @internal The GET of `url` (+ Range), with the credentials its kind takes. */
  async get(source: LocatedSource, url: URL, range: { start: number; end: number } | undefined, asPeer: AsPeer, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
    const target = this.target(source, url);
    return this.pool(target).request({ method: 'GET', path: `${target.pathname}${target.search}`, headers: this.headers(source, range, asPeer), signal, highWaterMark: READ_BYTES });
  }

  /**
   * @internal The GET of a piece's range of `url` into `into` (its length is the most taken);
   * `onData` is told of bytes as they arrive. Plain http reads straight into `into`; https goes
   * through undici, chunk by chunk.
   */
  async getInto(source: LocatedSource, url: URL, range: { start: number; end: number }, asPeer: AsPeer, signal: AbortSignal, into: Buffer, onData: (bytes: number) => void): Promise<RangeResponse> {
    const target = this.target(source, url);
    const headers = this.headers(source, range, asPeer);
    if (target.protocol === 'http:') return this.ranges.get(target, headers, into, signal, onData);
    const response = await this.pool(target).request({ method: 'GET', path: `${target.pathname}${target.search}`, headers, signal, highWaterMark: READ_BYTES });
    try {
      if (response.statusCode < 200 || response.statusCode >= 300) {
        const text = (await response.body.text().catch(() => '')).slice(0, 200);
        return { statusCode: response.statusCode, headers: flatHeaders(response.headers), received: 0, text };
      }
      let received = 0;
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        if (received + chunk.length > into.length) throw new Error(`sent more than the ${into.length} bytes asked for`);
        chunk.copy(into, received);
        received += chunk.length;
        onData(chunk.length);
      }
      return { statusCode: response.statusCode, headers: flatHeaders(response.headers), received, text: '' };
    } finally {
      if (!response.body.destroyed) response.body.destroy();
    }
  }

  private headers(source: LocatedSource, range: { start: number; end: number } | undefined, asPeer: AsPeer): Record<string, string> {
    const headers: Record<string, string> = {};
    if (range) headers.range = `bytes=${range.start}-${range.end - 1}`;
    if (source.kind !== 's3') {
      const token = this.options.token();
      if (token) headers.authorization = `Bearer ${token}`;
    }
    if (source.kind === 'peer') {
      if (asPeer.grant) headers[GRANT_HEADER] = asPeer.grant;
      if (asPeer.pieces) {
        headers[PIECES_HEADER] = asPeer.pieces.bitfield;
        headers[PIECE_BYTES_HEADER] = String(asPeer.pieces.pieceBytes);
      }
    }
    return headers;
  }

  /**
   * A peer fetching `digest` said which pieces it holds (PIECES_HEADER on its request to this
   * agent's peer routes): as good as a poll of it, for this agent's pull of the same blob.
   */
  learnPeerPieces(digest: string, node: string, headers: Record<string, string>): void {
    this.pulls.get(digest)?.learnFromPeer(node, headers);
  }

  /** A peer's gateway takes TLS and plain text on one port; agents with a certificate of their own speak mutual TLS to it, as the gateway hop does (the leader lists peers as http://). */
  private target(source: LocatedSource, url: URL): URL {
    const tls = this.options.tls;
    return source.kind === 'peer' && url.protocol === 'http:' && tls?.cert && tls.key ? new URL(`https://${url.host}${url.pathname}${url.search}`) : url;
  }

  private pool(url: URL): Pool {
    let pool = this.pools.get(url.origin);
    if (!pool) {
      const tls = this.options.tls;
      pool = new Pool(url.origin, {
        connections: 8,
        connect: url.protocol === 'https:' && tls ? { ca: tls.ca, cert: tls.cert, key: tls.key } : undefined,
        bodyTimeout: 30_000,
        headersTimeout: 30_000,
      });
      this.pools.set(url.origin, pool);
    }
    return pool;
  }
}

function checkLocation(location: Location, request: PullRequest): PieceManifest {
  if (location.digest !== request.digest) throw new UnavailableError(`the leader located ${location.digest} when asked for ${request.digest}`);
  if (location.sizeBytes !== request.sizeBytes) {
    throw new InvalidArgumentError(`${request.digest} is ${location.sizeBytes} bytes by the leader's account, not the ${request.sizeBytes} the allocation says`);
  }
  const manifest = { digest: location.digest, sizeBytes: location.sizeBytes, pieceBytes: location.pieceBytes, hashes: location.pieceHashes };
  checkManifest(manifest);
  if (location.sources.length === 0 && location.sizeBytes > 0) {
    throw new UnavailableError(`the leader knows no source for ${request.digest}`);
  }
  return manifest;
}

/** One blob being pulled. */
class Pull {
  private readonly count: number;
  /** Verified and written. */
  private readonly held: Bitfield;
  /** Verified, written and recorded after an fdatasync. */
  private readonly durable: Bitfield;
  /** Written since the last checkpoint began. */
  private unsynced: number[] = [];
  private lastCheckpointAt: number;
  private checkpointing: Promise<void> | undefined;
  private readonly inFlight = new Map<number, SourceState>();
  /** When each piece in flight was asked for. */
  private readonly requestedAt = new Map<number, number>();
  private readonly waitingSince = new Map<number, number>();
  private readonly corruptFrom = new Map<number, Set<string>>();
  private readonly corruptCopies = new Map<number, number>();
  private sources: SourceState[] = [];
  private location: Location;
  private failuresInARow = 0;
  /**
   * The count of fetchers may still change (the pull began moments ago): the share follows each
   * answer until two in a row agree; the seed waits for it while others fetch (PlanInput.settling).
   */
  private settling = true;
  /**
   * This agent's share of the seed (rank among fetchers), fixed once the count settles: agents
   * that finish and leave the count later must not move the shares of those still fetching,
   * whose view of who holds what lags (a moved share would ask the seed for pieces peers have).
   */
  private share: { rank: number; fetchers: number };
  private startedAt: number;
  /** How long a piece has been taking, from request to written (a moving average). */
  private pieceMs = 0;
  private relocating = false;
  private readonly settings;
  private readonly controller = new AbortController();
  private finished = false;
  private settle!: (err?: unknown) => void;
  /** Pieces this pull took from the seed (in order), and how many from peers: said when it ends. */
  private readonly seedPieces: number[] = [];
  private peerPieces = 0;
  /** Peers' bitfields asked for (GET …/pieces): said when it ends. */
  private polls = 0;
  /** The whole digest, taken from the pieces as they are verified (from run() on). */
  private whole!: WholeDigest;
  /**
   * The last piece's write; pieces are written one after another: writes into one file take
   * turns on its inode's lock anyway, and three at once spent ~0.2 CPU-s per GiB more spinning
   * on it (bench machine). Never rejects: a failure is its FileError.
   */
  private lastWrite: Promise<FileError | undefined> = Promise.resolve(undefined);
  private readonly writer: PieceWriter;
  /** Pieces whose kept buffers the hashing worker holds for their turn in the whole digest. */
  private readonly heldByWorker = new Map<number, KeptSlot>();

  constructor(
    private readonly fetcher: PieceFetcher,
    private readonly request: PullRequest,
    location: Location,
    private readonly manifest: PieceManifest,
  ) {
    this.settings = fetcher.settings;
    // Others may be asking at this very moment (a deployment starting on many hosts): ask again
    // soon, so that this agent's share of the seed is cut from the final count of fetchers
    // rather than from however many had asked before it.
    const soon = this.settings.clock.now() + FIRST_RELOCATE_MS;
    this.location = location.refreshAtMs <= 0 || location.refreshAtMs > soon ? { ...location, refreshAtMs: soon } : location;
    // Begun among others: its share of the seed waits until the count of fetchers settles.
    this.share = { rank: location.rank, fetchers: location.fetchers };
    this.startedAt = this.settings.clock.now();
    this.count = pieceCount(manifest.sizeBytes, manifest.pieceBytes);
    const resume = request.resume?.pieceBytes === manifest.pieceBytes && request.resume.bitfield.size === this.count ? request.resume.bitfield : undefined;
    this.writer = new PieceWriter(request.handle, request.direct);
    this.held = new Bitfield(this.count, resume?.bytes);
    this.durable = new Bitfield(this.count, resume?.bytes);
    this.lastCheckpointAt = this.settings.clock.now();
    this.setSources(location);
  }

  async run(): Promise<string | undefined> {
    const { signal } = this.request;
    signal.throwIfAborted();
    let wholeHex: string | undefined;
    const { manifest } = this;
    this.whole = new WholeDigest(this.settings.hashPool, { fd: this.request.handle.fd, ...(this.request.direct ? { directFd: this.request.direct.fd } : {}), sizeBytes: manifest.sizeBytes, pieceBytes: manifest.pieceBytes, pieceCount: this.count });
    const done = new Promise<void>((resolve, reject) => {
      this.settle = (err) => (err === undefined ? resolve() : reject(err));
    });
    const onAbort = () => this.finish(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    const ticker = setInterval(() => this.pump(), TICK_MS);
    this.request.onProgress({ pieceBytes: this.manifest.pieceBytes, bitfield: new Bitfield(this.count, this.held.bytes) });
    try {
      await this.whole.resumed((piece) => this.held.has(piece));
      this.pump();
      await done;
      // Every piece is written: make them durable and recorded before the cache reads them back.
      await this.checkpoint(true);
      wholeHex = await this.whole.finish();
      const { failure, piecesReadBack } = this.whole;
      if (wholeHex === undefined) this.settings.log.warn({ digest: this.manifest.digest, reason: failure }, 'the whole digest could not follow the pieces; the file is hashed again');
      else this.settings.log.info({ digest: this.manifest.digest, piecesReadBack }, 'whole digest taken with the pieces');
    } finally {
      clearInterval(ticker);
      signal.removeEventListener('abort', onAbort);
      this.controller.abort(signal.reason ?? new UnavailableError('the pull ended'));
      // Reads under way hold buffers and the file: let them end before the handle closes.
      while (this.inFlight.size > 0 || this.checkpointing) await new Promise((resolve) => setTimeout(resolve, 5));
      if (wholeHex === undefined) await this.whole.close();
      // The worker's digest has ended (or the worker has): it holds no buffer any more.
      for (const slot of this.heldByWorker.values()) slot.unpin();
      this.heldByWorker.clear();
      this.fetcher.memory.forget(this.manifest.digest, KEPT_AFTER_PULL_MS);
    }
    return wholeHex;
  }

  /** Ends the pull: done (no error) or failed. The first call counts. */
  private finish(err?: unknown): void {
    if (this.finished) return;
    this.finished = true;
    if (!err) {
      this.settings.log.info(
        { digest: this.manifest.digest, pieces: this.count, fromPeers: this.peerPieces, fromSeed: this.seedPieces.length, seedPieces: this.seedPieces.slice(0, 64), rank: this.share.rank, fetchers: this.share.fetchers, polls: this.polls, writtenDirect: this.writer.directBytes, writtenBuffered: this.writer.bufferedBytes },
        'pulled',
      );
    }
    this.settle(err);
  }

  private get now(): number {
    return this.settings.clock.now();
  }

  /** The sources of a (new) location; one already known keeps its state (the same object, which pieces in flight count down). */
  private setSources(location: Location): void {
    const previous = new Map(this.sources.map((source) => [source.id, source]));
    this.sources = location.sources.map((located) => {
      const old = previous.get(located.url);
      if (old) {
        old.located = located;
        old.rank = located.rank;
        if (located.kind === 'peer' && located.complete) old.pieces = 'complete';
        return old;
      }
      return {
        id: located.url,
        kind: located.kind,
        pieces: located.kind === 'peer' && located.complete ? 'complete' : undefined,
        inFlight: 0,
        limit: located.kind === 'peer' ? this.settings.perPeer : this.settings.perSeed,
        rank: located.rank,
        located,
        failedUntil: 0,
        polling: false,
        polledAt: 0,
      };
    });
  }

  /** Starts what the plan allows; also the periodic tick (stalls, polls, refresh, checkpoints). */
  private pump(): void {
    if (this.finished || this.controller.signal.aborted) return;
    const now = this.now;
    if (this.held.complete()) {
      if (this.inFlight.size === 0) this.finish();
      return;
    }
    this.maybeRelocate(now);
    if (this.unsynced.length > 0 && now - this.lastCheckpointAt >= this.settings.checkpointMs) void this.checkpoint(false).catch((err: unknown) => this.finish(err));
    const failed = new Set(this.sources.filter((source) => source.failedUntil > now).map((source) => source.id));
    let waitingNow: number[] = [];
    for (;;) {
      const { next, waiting } = planNextPiece({
        pieceCount: this.count,
        held: this.held,
        inFlight: this.inFlight,
        sources: this.sources,
        rank: this.share.rank,
        fetchers: this.share.fetchers,
        now,
        waitingSince: this.waitingSince,
        // Slower pieces (a busy network or host) mean the peer whose share a piece is needs longer too.
        stallMs: Math.max(this.settings.stallMs, STALL_PIECE_TIMES * this.pieceMs, 2 * this.oldestInFlightMs(now)),
        corruptFrom: this.corruptFrom,
        failed,
        maxInFlight: this.settings.maxInFlight,
        window: this.window,
        settling: this.settling && this.share.fetchers > 1,
        random: this.settings.random,
      });
      for (const piece of waiting) if (!this.waitingSince.has(piece)) this.waitingSince.set(piece, now);
      waitingNow = waiting;
      if (!next) break;
      const source = this.sources.find((candidate) => candidate.id === next.source)!;
      this.start(next.piece, source);
    }
    // Slots left free, and a piece waits that no peer is known to hold: newer bitfields may show
    // who has it. (One that peers hold waits for them to be free; asking again tells nothing.)
    const starved = this.inFlight.size < this.settings.maxInFlight && waitingNow.some((piece) => !this.sources.some((source) => source.kind === 'peer' && holds(source, piece)));
    for (const source of this.sources) this.maybePoll(source, now, starved);
  }

  /** How long the oldest piece in flight has been on its way (this agent's pieces are no faster than others'). */
  private oldestInFlightMs(now: number): number {
    let oldest = now;
    for (const at of this.requestedAt.values()) oldest = Math.min(oldest, at);
    return now - oldest;
  }

  private start(piece: number, source: SourceState): void {
    this.inFlight.set(piece, source);
    this.requestedAt.set(piece, this.now);
    source.inFlight += 1;
    const startedAt = this.now;
    this.fetchPiece(piece, source).then(
      () => {
        this.pieceMs = this.pieceMs === 0 ? this.now - startedAt : 0.8 * this.pieceMs + 0.2 * (this.now - startedAt);
        this.failuresInARow = 0;
        this.waitingSince.delete(piece);
      },
      (err: unknown) => this.pieceFailed(piece, source, err),
    ).finally(() => {
      this.inFlight.delete(piece);
      this.requestedAt.delete(piece);
      source.inFlight -= 1;
      this.pump();
    });
  }

  private pieceFailed(piece: number, source: SourceState, err: unknown): void {
    if (this.finished || this.controller.signal.aborted) return;
    if (err instanceof PieceRequestError && err.fatal && source.kind !== 'peer') return this.finish(err.fatal);
    if (err instanceof FileError) return this.finish(err.cause); // the disk, not the network
    if (!(err instanceof PieceRequestError && err.corrupt)) source.failedUntil = this.now + FAILED_MS;
    this.failuresInARow += 1;
    this.settings.log.debug({ digest: this.manifest.digest, piece, source: source.kind, node: source.located.node, err: (err as Error).message }, 'a piece request failed');
    if (this.failuresInARow >= MAX_FAILURES_IN_A_ROW) {
      this.finish(new UnavailableError(`the download of ${this.manifest.digest} failed ${this.failuresInARow} times in a row (last: ${(err as Error).message}); the next attempt resumes with the pieces it has`));
    }
  }

  private async fetchPiece(piece: number, source: SourceState): Promise<void> {
    const range = pieceRange(piece, this.manifest.sizeBytes, this.manifest.pieceBytes);
    const length = range.end - range.start;
    const { memory } = this.fetcher;
    const bytes = (await memory.take(this.manifest.pieceBytes, this.controller.signal)).subarray(0, length);
    // Once the piece is in the file, its buffer may become a kept one (keep()), no longer a working one.
    const buffer = { working: true };
    try {
      await this.fetchInto(piece, source, range, bytes);
      await this.verify(piece, source, bytes, buffer);
    } finally {
      if (buffer.working) memory.give(bytes);
    }
  }

  /**
   * Among peers, pieces are kept in memory once verified (piece-memory.ts): the hashing worker
   * may hold one for its turn in the whole digest, and peers fetching it are sent it from there.
   * Alone, nobody would ask, and pieces come in order.
   */
  private keepsPieces(): boolean {
    return this.sources.some((source) => source.kind === 'peer');
  }

  /** Pieces among peers are fetched in this window from the first missing (PlanInput.window): as many as can wait in memory. */
  private get window(): number | undefined {
    return this.keepsPieces() ? KEPT_PIECES + this.settings.maxInFlight : undefined;
  }

  private async fetchInto(piece: number, source: SourceState, range: { start: number; end: number }, bytes: Buffer): Promise<void> {
    const length = bytes.length;
    const count = (n: number) => this.settings.counters.received(source.kind, n);
    let response: RangeResponse;
    try {
      response = await this.fetcher.getInto(source.located, new URL(source.located.url), range, this.asPeer(), this.controller.signal, bytes, count);
    } catch (err) {
      throw new PieceRequestError(`${source.kind} ${source.located.node ?? source.located.url.split('?')[0]}, piece ${piece}: ${(err as Error).message}`);
    }
    const received = response.received;
    if (response.statusCode !== 206 && !(response.statusCode === 200 && length === this.manifest.sizeBytes)) {
      const text = response.text.slice(0, 200);
      const message = `${source.kind} ${source.located.node ?? source.located.url.split('?')[0]} answered ${response.statusCode} for piece ${piece}: ${text}`;
      const refused = response.statusCode === 401 || response.statusCode === 403;
      // A presigned URL that expired: ask the leader for fresh ones at once.
      if (source.kind === 's3' && refused && this.sources.includes(source)) this.location = { ...this.location, refreshAtMs: 1 };
      const fatal =
        source.kind === 's3' ? undefined : response.statusCode === 404 ? new NotFoundError(`${this.manifest.digest}: ${message}`) : refused ? new FailedPreconditionError(message) : undefined;
      throw new PieceRequestError(message, fatal);
    }
    if (source.kind === 'peer') this.learnPieces(source, response.headers);
    if (received !== length) throw new PieceRequestError(`${source.kind} sent ${received} of the ${length} bytes of piece ${piece}`);
    // Written, then hashed: the hashing worker then knows, as it takes each piece, that the piece
    // is in the file, and can leave one that is not next in order there, to read back in its
    // turn, without a word from this thread lagging behind (hash-worker.ts). A piece that turns
    // out corrupt leaves bytes in the file that no bitfield claims; its next copy overwrites them.
    // The write of one piece overlaps the hashing of the one before.
    const writing = this.lastWrite.then(() => this.writer.write(bytes, range.start)).then(
      () => undefined,
      (err: unknown) => new FileError(err),
    );
    this.lastWrite = writing;
    const failed = await writing;
    if (failed) throw failed;
  }

  /**
   * Hashes a piece written to the file and records it held. Among peers its buffer becomes a
   * kept one first (`buffer.working` false): published for peers once it matches, held by the
   * hashing worker when it waits for its turn in the whole digest.
   */
  private async verify(piece: number, source: SourceState, bytes: Buffer, buffer: { working: boolean }): Promise<void> {
    const slot = this.keepsPieces() ? this.fetcher.memory.reserve(bytes) : undefined;
    if (slot) buffer.working = false;
    let hashed: Hashed;
    try {
      hashed = await this.whole.hash(bytes, piece, pieceHash(this.manifest, piece), slot !== undefined);
    } catch (err) {
      slot?.discard();
      throw err;
    }
    for (const released of hashed.released) this.heldByWorker.get(released)?.unpin();
    for (const released of hashed.released) this.heldByWorker.delete(released);
    if (!hashed.hash.equals(pieceHash(this.manifest, piece))) {
      slot?.discard();
      this.corrupt(piece, source);
      throw new PieceRequestError(`piece ${piece} from ${source.kind} ${source.located.node ?? ''} does not match its hash`, undefined, true);
    }
    if (slot) {
      slot.publish(this.manifest.digest, piece);
      if (hashed.held) this.heldByWorker.set(piece, slot);
      else slot.unpin();
    }
    this.held.set(piece);
    if (source.kind === 'peer') this.peerPieces += 1;
    else this.seedPieces.push(piece);
    this.unsynced.push(piece);
    this.request.onProgress({ pieceBytes: this.manifest.pieceBytes, bitfield: new Bitfield(this.count, this.held.bytes) });
    if (this.unsynced.length >= this.settings.checkpointPieces) void this.checkpoint(false).catch((err: unknown) => this.finish(err));
  }

  private corrupt(piece: number, source: SourceState): void {
    this.settings.counters.corrupt(source.kind);
    const copies = (this.corruptCopies.get(piece) ?? 0) + 1;
    this.corruptCopies.set(piece, copies);
    this.settings.log.warn({ digest: this.manifest.digest, piece, source: source.kind, node: source.located.node }, 'a piece did not match its hash; it is fetched again from another source');
    if (copies >= MAX_CORRUPT_COPIES) {
      this.finish(new CorruptBlobError(`${copies} copies of piece ${piece} of ${this.manifest.digest} did not match its hash; the download stopped`));
      return;
    }
    const from = this.corruptFrom.get(piece) ?? new Set<string>();
    from.add(source.id);
    // Every source sent it bad: try them again rather than wait for ever.
    if (this.sources.every((candidate) => from.has(candidate.id))) from.clear();
    this.corruptFrom.set(piece, from);
  }

  /** fdatasync, then the pieces written before it began are recorded. One at a time. */
  private async checkpoint(final: boolean): Promise<void> {
    while (this.checkpointing) await this.checkpointing;
    if (this.unsynced.length === 0 && !final) return;
    const pieces = this.unsynced;
    this.unsynced = [];
    this.lastCheckpointAt = this.now;
    const run = (async () => {
      await this.request.handle.datasync();
      for (const piece of pieces) this.durable.set(piece);
      this.request.onCheckpoint({ pieceBytes: this.manifest.pieceBytes, bitfield: new Bitfield(this.count, this.durable.bytes) });
    })();
    this.checkpointing = run;
    try {
      await run;
    } finally {
      this.checkpointing = undefined;
    }
  }

  private maybeRelocate(now: number): void {
    const at = this.location.refreshAtMs;
    if (this.relocating || at <= 0 || now < at) return;
    this.relocating = true;
    this.settings.locate(this.manifest.digest, this.controller.signal).then(
      (location) => {
        if (location.digest !== this.manifest.digest || !location.pieceHashes.equals(this.manifest.hashes) || location.pieceBytes !== this.manifest.pieceBytes) {
          throw new UnavailableError('the leader answered another manifest');
        }
        // Settled once two answers in a row count the same fetchers (or it has waited long
        // enough): agents starting together have all asked by then.
        const settled = location.fetchers === this.location.fetchers || this.now - this.startedAt >= MAX_SETTLE_MS;
        this.location = this.settling && !settled ? { ...location, refreshAtMs: Math.min(location.refreshAtMs || Infinity, this.now + FIRST_RELOCATE_MS) } : location;
        if (this.settling) this.share = { rank: location.rank, fetchers: location.fetchers };
        if (settled) this.settling = false;
        this.setSources(location);
      },
      (err: unknown) => {
        // Keep going with what we have; ask again in a while.
        this.settling = false;
        this.location = { ...this.location, refreshAtMs: now + 5_000 };
        this.settings.log.debug({ digest: this.manifest.digest, err: (err as Error).message }, 'could not locate again');
      },
    ).catch((err: unknown) => {
      this.location = { ...this.location, refreshAtMs: now + 5_000 };
      this.settings.log.warn({ digest: this.manifest.digest, err: (err as Error).message }, 'ignored a new location');
    }).finally(() => {
      this.relocating = false;
      if (this.now - this.startedAt >= MAX_SETTLE_MS) this.settling = false;
    });
  }

  /** What a request to a peer shows it: the grant and, when this agent holds any piece, its bitfield. */
  private asPeer(): AsPeer {
    const grant = this.location.grant;
    return this.held.count() === 0 ? { grant } : { grant, pieces: { bitfield: Buffer.from(this.held.bytes).toString('base64'), pieceBytes: this.manifest.pieceBytes } };
  }

  /** A peer fetching this blob from this agent said which pieces it holds (PieceFetcher.learnPeerPieces). */
  learnFromPeer(node: string, headers: Record<string, string>): void {
    const source = this.sources.find((candidate) => candidate.kind === 'peer' && candidate.located.node === node);
    if (!source || this.finished) return;
    const before = source.pieces;
    this.learnPieces(source, headers);
    if (source.pieces !== before) this.pump();
  }

  /** A peer's answer says which pieces it holds now: as good as a poll. */
  private learnPieces(source: SourceState, headers: Record<string, string>): void {
    const text = headers[PIECES_HEADER];
    if (typeof text !== 'string' || headers[PIECE_BYTES_HEADER] !== String(this.manifest.pieceBytes) || source.pieces === 'complete') return;
    try {
      const pieces = new Bitfield(this.count, Buffer.from(text, 'base64'));
      source.pieces = pieces.complete() ? 'complete' : pieces;
      source.polledAt = this.now;
    } catch {
      // Not a bitfield of this blob: the next poll asks.
    }
  }

  /**
   * Asks an incomplete peer for its bitfield: at once when it is not known, then every pollMs
   * while the pull is `starved` (has slots no piece could fill). A pull with every slot busy
   * has no use for news yet, and each piece a peer sends carries its bitfield anyway.
   */
  private maybePoll(source: SourceState, now: number, starved: boolean): void {
    // Each peer is asked every pollMs while there are a few, less often when there are many: an
    // agent asks POLLS_PER_INTERVAL peers per pollMs at most (their answers to pieces also tell).
    const every = this.settings.pollMs * Math.max(1, Math.ceil(this.sources.length / POLLS_PER_INTERVAL));
    if (source.kind !== 'peer' || source.pieces === 'complete' || source.polling || source.failedUntil > now) return;
    if (source.pieces !== undefined && (!starved || now - source.polledAt < every)) return;
    source.polling = true;
    source.polledAt = now;
    this.polls += 1;
    const url = new URL(source.located.url);
    url.pathname += PIECES_SUFFIX;
    (async () => {
      const response = await this.fetcher.get(source.located, url, undefined, this.asPeer(), this.controller.signal);
      const body = Buffer.from(await response.body.arrayBuffer());
      if (response.statusCode === 404) {
        source.pieces = new Bitfield(this.count);
      } else if (response.statusCode === 200) {
        const pieces = new Bitfield(this.count, body);
        source.pieces = pieces.complete() ? 'complete' : pieces;
      } else {
        throw new Error(`answered ${response.statusCode}`);
      }
    })().catch((err: unknown) => {
      if (this.controller.signal.aborted) return;
      source.failedUntil = this.now + FAILED_MS;
      this.settings.log.debug({ digest: this.manifest.digest, node: source.located.node, err: (err as Error).message }, 'could not read a peer\'s pieces');
    }).finally(() => {
      source.polling = false;
      this.pump();
    });
  }
}

function holds(source: SourceState, piece: number): boolean {
  return source.pieces === 'complete' || (source.pieces !== undefined && source.pieces.has(piece));
}

/** undici's headers with each value one string, as the range client gives them. */
function flatHeaders(headers: Dispatcher.ResponseData['headers']): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(', ') : value;
  return flat;
}
