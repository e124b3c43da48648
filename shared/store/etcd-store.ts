// The production Store backend: etcd v3 through the `etcd3` client (DESIGN principle 1).
//
// Calls go to etcd's raw KV, Lease and Watch services rather than etcd3's builders, because
// the Store is etcd's own API already: a txn is one Txn RPC, a lease is granted, renewed once
// and revoked on request (keep-alive scheduling lives in lease.ts, not in etcd3's Lease), and
// a watch is one Watch stream per Watch. The raw stream is also the only place that carries
// etcd's compact_revision, which etcd3's Watcher drops when the server cancels a compacted
// watch. Every key travels under an optional namespace prefix, so several clusters or tests
// share one etcd; it is added and stripped here, in one pair of functions.
import {
  CompareResult,
  CompareTarget,
  EtcdLeaseInvalidError,
  Etcd3,
  GRPCDeadlineExceededError,
  isRecoverableError,
  type ICompare,
  type IKeyValue,
  type IRequestOp,
  type IResponseOp,
  type IWatchResponse,
} from 'etcd3';
import { backoffDelay, sleep, systemClock, type Clock, type Random } from '../clock.js';
import { InvalidArgumentError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { WatchQueue } from './watch-queue.js';
import {
  CompactedError,
  LeaseNotFoundError,
  StoreUnavailableError,
  type Compare,
  type KeyValue,
  type LeaseGrant,
  type Op,
  type OpResult,
  type RangeOptions,
  type RangeResult,
  type Store,
  type TxnResult,
  type Watch,
  type WatchEvent,
  type WatchOptions,
} from './store.js';

export interface EtcdStoreOptions {
  /** Client URLs, e.g. http://10.0.0.1:2379. */
  endpoints: string[];
  /** Namespace prepended to every key (e.g. /cluster-a/). Default: none. */
  prefix?: string;
  clock?: Clock;
  random?: Random;
  log?: Logger;
  /** Deadline of each call, and of reaching etcd at all in create(). Default 5 s. */
  callTimeoutMs?: number;
}

const COMPARE_TARGETS: Record<Compare['target'], CompareTarget> = {
  value: CompareTarget.Value,
  createRevision: CompareTarget.Create,
  modRevision: CompareTarget.Mod,
  version: CompareTarget.Version,
};

const COMPARE_RESULTS: Record<Compare['op'], CompareResult> = {
  '=': CompareResult.Equal,
  '!=': CompareResult.NotEqual,
  '<': CompareResult.Less,
  '>': CompareResult.Greater,
};

/** etcd's range end for "every key starting with these bytes" ('\0': to the end). */
function prefixRangeEnd(start: Buffer): Buffer {
  const end = Buffer.from(start);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

export class EtcdStore implements Store {
  readonly kind = 'etcd' as const;

  private readonly client: Etcd3;
  private readonly prefix: string;
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly log: Logger;
  private readonly callTimeoutMs: number;
  private readonly watches = new Set<WatchQueue>();
  private closed = false;

  /** Connects; fails with StoreUnavailableError, naming the endpoints, if etcd does not answer. */
  static async create(options: EtcdStoreOptions): Promise<EtcdStore> {
    if (options.endpoints.length === 0) throw new InvalidArgumentError('an etcd store needs at least one endpoint');
    const store = new EtcdStore(options);
    // One deadline for the whole probe: etcd3 retries a timed-out call, which would triple it.
    const giveUp = new AbortController();
    try {
      await Promise.race([
        store.revision(),
        sleep(store.clock, store.callTimeoutMs, giveUp.signal).then(() => {
          throw new Error(`no answer within ${store.callTimeoutMs} ms`);
        }),
      ]);
    } catch (err) {
      await store.close();
      // Whatever went wrong (refused, timed out, something else answering), name the endpoints.
      const cause = (err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message;
      throw new StoreUnavailableError(`cannot reach etcd at ${options.endpoints.join(', ')} (${cause}); is etcd running there?`);
    } finally {
      giveUp.abort();
    }
    return store;
  }

  private constructor(private readonly options: EtcdStoreOptions) {
    this.prefix = options.prefix ?? '';
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.log = (options.log ?? silentLogger()).child({ component: 'etcd-store' });
    this.callTimeoutMs = options.callTimeoutMs ?? 5_000;
    this.client = new Etcd3({
      hosts: options.endpoints,
      dialTimeout: this.callTimeoutMs,
      // gRPC deadlines are wall-clock by nature: Date.now, not the injected clock.
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + this.callTimeoutMs }),
    });
  }

  async get(key: string): Promise<KeyValue | undefined> {
    const response = await this.call(() => this.client.kv.range({ key: this.toEtcd(key) }));
    return response.kvs[0] && this.toKeyValue(response.kvs[0]);
  }

  async range(prefix: string, options: RangeOptions = {}): Promise<RangeResult> {
    const request = this.rangeRequest(prefix);
    let { key, range_end } = request;
    if (options.start !== undefined && Buffer.compare(this.toEtcd(options.start), key) > 0) key = this.toEtcd(options.start);
    // A range end of '\0' is etcd's "to the last key".
    const open = range_end.length === 1 && range_end[0] === 0;
    if (options.end !== undefined && (open || Buffer.compare(this.toEtcd(options.end), range_end) < 0)) range_end = this.toEtcd(options.end);
    if (!(range_end.length === 1 && range_end[0] === 0) && Buffer.compare(key, range_end) >= 0) return { kvs: [], revision: await this.revision(), count: 0 };
    const response = await this.call(() =>
      this.client.kv.range({
        key,
        range_end,
        limit: options.limit ?? 0,
        // Ascending by key is etcd's natural order; only descending needs asking for.
        ...(options.descending ? { sort_order: 'Descend' as const, sort_target: 'Key' as const } : {}),
      }),
    );
    const kvs = response.kvs.map((kv) => this.toKeyValue(kv));
    return { kvs, revision: Number(response.header.revision), count: Number(response.count) };
  }

  async revision(): Promise<number> {
    // Any single key will do: only the response header is wanted.
    const response = await this.call(() => this.client.kv.range({ key: Buffer.from(this.prefix || '\0'), keys_only: true }));
    return Number(response.header.revision);
  }

  async txn(compares: Compare[], success: Op[], failure: Op[] = []): Promise<TxnResult> {
    const response = await this.call(
      () =>
        this.client.kv.txn({
          compare: compares.map((compare) => this.toCompare(compare)),
          success: success.map((op) => this.toRequestOp(op)),
          failure: failure.map((op) => this.toRequestOp(op)),
        }),
      leaseOf([...success, ...failure]),
    );
    const ops = response.succeeded ? success : failure;
    return {
      succeeded: response.succeeded,
      revision: Number(response.header.revision),
      results: response.responses.map((result, i) => this.toOpResult(ops[i]!, result)),
    };
  }

  async put(key: string, value: string, options: { lease?: string } = {}): Promise<number> {
    return (await this.txn([], [{ type: 'put', key, value, lease: options.lease }])).revision;
  }

  async delete(key: string): Promise<number> {
    return (await this.txn([], [{ type: 'delete', key }])).revision;
  }

  watch(prefix: string, options: WatchOptions = {}): Watch {
    const stop = new AbortController();
    const queue = new WatchQueue(
      {
        release: () => {
          this.watches.delete(queue);
          stop.abort();
        },
      },
      options.signal,
    );
    if (this.closed) queue.close();
    if (queue.ended) return queue;
    this.watches.add(queue);
    void this.runWatch(prefix, options.fromRevision, queue, stop.signal);
    return queue;
  }

  async leaseGrant(ttlMs: number): Promise<LeaseGrant> {
    if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
      throw new InvalidArgumentError(`a lease TTL must be a positive number of milliseconds; got ${ttlMs}`);
    }
    // etcd counts whole seconds, and raises a TTL below its minimum (1.5 election timeouts).
    const response = await this.call(() => this.client.leaseClient.leaseGrant({ TTL: Math.ceil(ttlMs / 1000) }));
    if (response.error) throw new Error(`etcd refused the lease: ${response.error}`);
    return { id: response.ID, ttlMs: Number(response.TTL) * 1000 };
  }

  async leaseKeepAlive(id: string): Promise<void> {
    const ttl = await this.call(async () => {
      const stream = await this.client.leaseClient.leaseKeepAlive({ deadline: Date.now() + this.callTimeoutMs });
      return new Promise<string>((resolve, reject) => {
        let settled = false;
        // The listeners stay: the stream may still report its own end as an error.
        const settle = (outcome: () => void) => {
          if (settled) return;
          settled = true;
          stream.end();
          outcome();
        };
        stream.on('data', (response) => settle(() => resolve(response.TTL)));
        stream.on('error', (err) => settle(() => reject(err)));
        stream.on('end', () => settle(() => reject(new Error('the keep-alive stream ended without an answer'))));
        stream.write({ ID: id });
      });
    }, id);
    if (ttl === '0' || Number(ttl) <= 0) throw new LeaseNotFoundError(id);
  }

  async leaseRevoke(id: string): Promise<void> {
    try {
      await this.call(() => this.client.leaseClient.leaseRevoke({ ID: id }), id);
    } catch (err) {
      if (!(err instanceof LeaseNotFoundError)) throw err;
    }
  }

  /** Discards the history before `revision`: watches from earlier then fail with CompactedError. */
  async compact(revision: number): Promise<void> {
    await this.call(() => this.client.kv.compact({ revision, physical: true }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const queue of [...this.watches]) queue.close();
    this.client.close();
  }

  /**
   * Feeds one Watch from etcd, one Watch stream at a time: when a stream breaks it opens
   * another from the revision after the last one delivered, with backoff, until the watch is
   * closed or etcd says the revision is compacted.
   */
  private async runWatch(prefix: string, fromRevision: number | undefined, queue: WatchQueue, stop: AbortSignal): Promise<void> {
    let next = fromRevision;
    let attempt = 0;
    while (!stop.aborted) {
      try {
        await this.streamWatch(prefix, next, queue, stop, {
          created: (revision) => {
            attempt = 0;
            // A watch "from now" resumes after the revision it started at, not from a later now.
            next ??= revision + 1;
          },
          advanced: (revision) => (next = revision),
        });
      } catch (err) {
        if (stop.aborted) return;
        if (err instanceof CompactedError) {
          queue.fail(err);
          return;
        }
        this.log.warn({ err: (err as Error).message, prefix, fromRevision: next }, 'etcd watch broke; reopening');
        await sleep(this.clock, backoffDelay(attempt++, this.random, 100, 5_000), stop).catch(() => undefined);
      }
    }
  }

  /**
   * One Watch stream. `progress` hears of its creation (with the store's revision then) and,
   * after each batch, of the revision to resume from. Resolves when stopped; rejects when the
   * stream breaks or etcd cancels the watch.
   */
  private async streamWatch(
    prefix: string,
    fromRevision: number | undefined,
    queue: WatchQueue,
    stop: AbortSignal,
    progress: { created(revision: number): void; advanced(nextRevision: number): void },
  ): Promise<void> {
    const stream = await this.client.watchClient.watch();
    await new Promise<void>((resolve, reject) => {
      let done = false;
      // The listeners stay: cancel() reports itself as an error, to be ignored.
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        stop.removeEventListener('abort', onStop);
        stream.cancel();
        if (err) reject(err);
        else resolve();
      };
      const onStop = () => finish();
      stop.addEventListener('abort', onStop, { once: true });
      stream.on('error', (err: Error) => finish(err));
      stream.on('end', () => finish(new Error('etcd ended the watch stream')));
      stream.on('data', (response: IWatchResponse) => {
        if (done) return;
        if (Number(response.compact_revision) > 0) {
          finish(new CompactedError(fromRevision ?? 0, Number(response.compact_revision)));
          return;
        }
        if (response.canceled) {
          finish(new Error(`etcd canceled the watch on ${prefix}: ${response.cancel_reason || 'no reason given'}`));
          return;
        }
        if (response.created) {
          // Its header revision is the store's, not a sign of what has been delivered.
          progress.created(Number(response.header.revision));
          return;
        }
        const events = response.events.map((event) => this.toWatchEvent(event.type, event.kv));
        const last = events[events.length - 1];
        if (!last) return;
        // etcd sends the events of a revision together, so a response never splits one. Resume
        // after the last event, not after the header's revision: while catching up, etcd
        // stamps each batch with the current revision, ahead of the events still to come.
        queue.push(events);
        progress.advanced(last.revision + 1);
      });
      if (stop.aborted) return finish();
      const range = this.rangeRequest(prefix);
      stream.write({
        create_request: {
          key: range.key,
          range_end: range.range_end,
          ...(fromRevision === undefined ? {} : { start_revision: fromRevision }),
        },
      });
    });
  }

  /** Runs one etcd call, turning etcd3's errors into the Store's. */
  private async call<T>(fn: () => Promise<T>, lease?: string): Promise<T> {
    if (this.closed) throw new Error('the etcd store is closed');
    try {
      return await fn();
    } catch (err) {
      if (err instanceof EtcdLeaseInvalidError) throw new LeaseNotFoundError(lease ?? '');
      if (isUnavailable(err)) {
        const unavailable = new StoreUnavailableError(`etcd at ${this.options.endpoints.join(', ')} is unavailable: ${(err as Error).message}`);
        throw Object.assign(unavailable, { cause: err });
      }
      throw err;
    }
  }

  private toEtcd(key: string): Buffer {
    return Buffer.from(this.prefix + key);
  }

  private fromEtcd(key: Buffer): string {
    return key.toString('utf8').slice(this.prefix.length);
  }

  private rangeRequest(prefix: string): { key: Buffer; range_end: Buffer } {
    const start = this.toEtcd(prefix);
    // An empty key means "from the first key" only as '\0'.
    return { key: start.length === 0 ? Buffer.from([0]) : start, range_end: prefixRangeEnd(start) };
  }

  private toKeyValue(kv: IKeyValue): KeyValue {
    return {
      key: this.fromEtcd(kv.key),
      value: kv.value.toString('utf8'),
      createRevision: Number(kv.create_revision),
      modRevision: Number(kv.mod_revision),
      version: Number(kv.version),
      lease: kv.lease === '0' ? '' : kv.lease,
    };
  }

  private toWatchEvent(type: string, kv: IKeyValue): WatchEvent {
    const isPut = type === 'Put' || type === 'PUT';
    return {
      type: isPut ? 'put' : 'delete',
      key: this.fromEtcd(kv.key),
      value: isPut ? kv.value.toString('utf8') : '',
      revision: Number(kv.mod_revision),
      createRevision: isPut ? Number(kv.create_revision) : 0,
      version: isPut ? Number(kv.version) : 0,
    };
  }

  private toCompare(compare: Compare): ICompare {
    const base = { key: this.toEtcd(compare.key), target: COMPARE_TARGETS[compare.target], result: COMPARE_RESULTS[compare.op] };
    switch (compare.target) {
      case 'value':
        return { ...base, value: Buffer.from(String(compare.value)) };
      case 'createRevision':
        return { ...base, create_revision: Number(compare.value) };
      case 'modRevision':
        return { ...base, mod_revision: Number(compare.value) };
      case 'version':
        return { ...base, version: Number(compare.value) };
    }
  }

  private toRequestOp(op: Op): IRequestOp {
    switch (op.type) {
      case 'put':
        return { request_put: { key: this.toEtcd(op.key), value: Buffer.from(op.value), lease: op.lease || 0 } };
      case 'delete':
        return { request_delete_range: { key: this.toEtcd(op.key) } };
      case 'deletePrefix':
        return { request_delete_range: this.rangeRequest(op.prefix) };
      case 'get':
        return { request_range: { key: this.toEtcd(op.key) } };
      case 'range':
        return { request_range: this.rangeRequest(op.prefix) };
    }
  }

  private toOpResult(op: Op, response: IResponseOp): OpResult {
    switch (op.type) {
      case 'put':
        return { type: 'put' };
      case 'delete':
      case 'deletePrefix':
        return { type: op.type, deleted: Number(response.response_delete_range.deleted) };
      case 'get': {
        const kv = response.response_range.kvs[0];
        return { type: 'get', kv: kv && this.toKeyValue(kv) };
      }
      case 'range':
        return { type: 'range', kvs: response.response_range.kvs.map((kv) => this.toKeyValue(kv)) };
    }
  }
}

/** etcd cannot be reached or did not answer in time (etcd3's circuit breaker counts too). */
function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return isRecoverableError(err) || err instanceof GRPCDeadlineExceededError || (err as { isBrokenCircuitError?: boolean }).isBrokenCircuitError === true;
}

/** The lease a transaction attaches keys to, to name it if etcd says it does not exist. */
function leaseOf(ops: Op[]): string | undefined {
  for (const op of ops) if (op.type === 'put' && op.lease) return op.lease;
  return undefined;
}
