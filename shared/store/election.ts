// Leader election with fencing, built once on the Store primitives, the way etcd's
// clientv3/concurrency builds it on kv + lease + watch (DESIGN principle 2).
//
// A campaigner puts `${prefix}/${leaseId}` with its lease, only if absent; its place in line is
// that key's createRevision. It leads once no key under the prefix has a lower one: it waits
// for the deletion of the key just ahead of it (resignation or lease expiry), never polling.
// A leader's writes go through fencedTxn, which adds a compare on the leader key's
// createRevision, so the writes of a leader that has been deposed (lease expired, key
// deleted) fail at the store instead of landing after its successor's.
import { systemClock, type Clock } from '../clock.js';
import { InvalidArgumentError, NotLeaderError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { Lease } from './lease.js';
import { CompactedError, type Compare, type KeyValue, type Op, type Store, type TxnResult } from './store.js';

export interface ElectionOptions {
  clock?: Clock;
  log?: Logger;
  /** TTL of the lease campaign() takes when it is given none. Default 5 s. */
  ttlMs?: number;
}

export interface LeaderInfo {
  key: string;
  value: string;
  createRevision: number;
}

type Campaigner = Pick<KeyValue, 'key' | 'value' | 'createRevision'>;

/** The campaigner with the lowest createRevision leads. */
function leaderOf(kvs: Iterable<Campaigner>): LeaderInfo | undefined {
  let leader: LeaderInfo | undefined;
  for (const { key, value, createRevision } of kvs) {
    if (!leader || createRevision < leader.createRevision) leader = { key, value, createRevision };
  }
  return leader;
}

/** One signal that aborts when any of `signals` does; dispose() detaches it from them. */
function anySignal(signals: (AbortSignal | undefined)[]): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const sources = signals.filter((s): s is AbortSignal => s !== undefined);
  const onAbort = (event: Event) => {
    dispose();
    controller.abort((event.target as AbortSignal).reason);
  };
  const dispose = () => sources.forEach((s) => s.removeEventListener('abort', onAbort));
  const already = sources.find((s) => s.aborted);
  if (already) controller.abort(already.reason);
  else sources.forEach((s) => s.addEventListener('abort', onAbort));
  return { signal: controller.signal, dispose };
}

/**
 * Resolves at the next deletion of one of `keys` (under `prefix`) from `fromRevision` on, or
 * when the history is compacted (the caller re-reads either way). Rejects when aborted.
 */
async function nextDeletion(store: Store, prefix: string, keys: string[], fromRevision: number, signal: AbortSignal): Promise<void> {
  const watch = store.watch(prefix, { fromRevision, signal });
  try {
    for await (const batch of watch) {
      if (batch.some((event) => event.type === 'delete' && keys.includes(event.key))) return;
    }
  } catch (err) {
    if (err instanceof CompactedError) return;
    throw err;
  } finally {
    watch.close();
  }
  signal.throwIfAborted();
  throw new Error(`the watch on ${prefix} ended (store closed?)`);
}

export class Election {
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly ttlMs: number;

  constructor(
    readonly store: Store,
    /** Campaign keys are `${prefix}/${leaseId}`. */
    readonly prefix: string,
    options: ElectionOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.log = (options.log ?? silentLogger()).child({ component: 'election', election: prefix });
    this.ttlMs = options.ttlMs ?? 5_000;
  }

  /**
   * Campaigns with `value` and resolves once elected. With a Lease, campaigns on it (and
   * resign() leaves it to the caller); without, takes a lease of its own, revoked on resign.
   * Aborting `signal` (or losing the lease) while waiting leaves the line and rejects.
   */
  campaign(value: string, signal?: AbortSignal): Promise<Leadership>;
  campaign(value: string, lease: Lease, signal?: AbortSignal): Promise<Leadership>;
  async campaign(value: string, leaseOrSignal?: Lease | AbortSignal, maybeSignal?: AbortSignal): Promise<Leadership> {
    const given = leaseOrSignal instanceof Lease ? leaseOrSignal : undefined;
    const signal = leaseOrSignal instanceof Lease ? maybeSignal : leaseOrSignal;
    signal?.throwIfAborted();
    const lease = given ?? (await Lease.create(this.store, this.ttlMs, { clock: this.clock, log: this.log }));
    const key = `${this.prefix}/${lease.id}`;
    const waiting = anySignal([signal, lease.lost]);
    let createRevision = 0;
    try {
      createRevision = await this.enqueue(key, value, lease.id);
      this.log.debug({ key, createRevision }, 'campaigning');
      const revision = await this.waitForTurn(key, createRevision, waiting.signal);
      this.log.info({ key, createRevision }, 'elected');
      return new Leadership({
        store: this.store,
        prefix: this.prefix,
        key,
        value,
        createRevision,
        lease,
        ownsLease: given === undefined,
        electedAt: revision,
        log: this.log,
      });
    } catch (err) {
      // Leave the line, so the next campaigner does not wait out our lease.
      if (given === undefined) await lease.revoke().catch(() => undefined);
      else if (createRevision > 0) await this.store.txn([campaignFence(key, createRevision)], [{ type: 'delete', key }]).catch(() => undefined);
      throw lease.lost.aborted ? lease.lost.reason : err;
    } finally {
      waiting.dispose();
    }
  }

  /** Who leads now, if anyone. */
  async leader(): Promise<LeaderInfo | undefined> {
    return leaderOf((await this.store.range(`${this.prefix}/`)).kvs);
  }

  /**
   * The leader's value (undefined while none) now, then each time it changes, until `signal`
   * aborts. Follows the campaign keys with one watch; re-reads when history was compacted.
   */
  async *observe(signal?: AbortSignal): AsyncIterable<string | undefined> {
    const prefix = `${this.prefix}/`;
    let last: { value: string | undefined } | undefined;
    while (!signal?.aborted) {
      const { kvs, revision } = await this.store.range(prefix);
      const campaigners = new Map<string, Campaigner>(kvs.map((kv) => [kv.key, kv]));
      const watch = this.store.watch(prefix, { fromRevision: revision + 1, signal });
      try {
        let current = leaderOf(campaigners.values())?.value;
        if (!last || last.value !== current) yield (last = { value: current }).value;
        for await (const batch of watch) {
          for (const event of batch) {
            if (event.type === 'put') campaigners.set(event.key, event);
            else campaigners.delete(event.key);
          }
          current = leaderOf(campaigners.values())?.value;
          if (last.value !== current) yield (last = { value: current }).value;
        }
        return; // aborted, or the store closed
      } catch (err) {
        if (!(err instanceof CompactedError)) throw err;
      } finally {
        watch.close();
      }
    }
  }

  /** Puts the campaign key if absent; returns its createRevision, our place in line. */
  private async enqueue(key: string, value: string, lease: string): Promise<number> {
    const result = await this.store.txn(
      [{ key, target: 'createRevision', op: '=', value: 0 }],
      [{ type: 'put', key, value, lease }],
      [{ type: 'get', key }],
    );
    if (result.succeeded) return result.revision;
    // The key is ours already (campaigning again on the same lease, or a retried put that
    // had landed): keep the place in line, update the value.
    const existing = result.results[0]?.type === 'get' ? result.results[0].kv : undefined;
    if (!existing) throw new Error(`campaign key ${key} vanished during the campaign`);
    if (existing.value !== value) {
      await this.store.txn([campaignFence(key, existing.createRevision)], [{ type: 'put', key, value, lease }]);
    }
    return existing.createRevision;
  }

  /**
   * Waits until no campaign key is older than ours; returns the revision at which that was
   * seen. Throws if our own key disappears (lease expired) or the signal aborts.
   */
  private async waitForTurn(key: string, createRevision: number, signal: AbortSignal): Promise<number> {
    const prefix = `${this.prefix}/`;
    for (;;) {
      signal.throwIfAborted();
      const { kvs, revision } = await this.store.range(prefix);
      if (!kvs.some((kv) => kv.key === key && kv.createRevision === createRevision)) {
        throw new Error(`campaign key ${key} was deleted while waiting to lead (lease expired?)`);
      }
      const ahead = kvs.filter((kv) => kv.createRevision < createRevision);
      if (ahead.length === 0) return revision;
      // Wait for the one just ahead, not the leader: when the leader goes, only its
      // successor wakes (no thundering herd). Our own key is watched too.
      const predecessor = ahead.reduce((a, b) => (a.createRevision > b.createRevision ? a : b));
      await nextDeletion(this.store, prefix, [predecessor.key, key], revision + 1, signal);
    }
  }
}

/** The compare that holds while `key` is still the one created at `createRevision`. */
function campaignFence(key: string, createRevision: number): Compare {
  return { key, target: 'createRevision', op: '=', value: createRevision };
}

interface LeadershipInit {
  store: Store;
  prefix: string;
  key: string;
  value: string;
  createRevision: number;
  lease: Lease;
  /** The election took the lease itself, so resign() revokes it. */
  ownsLease: boolean;
  /** The revision at which the campaign saw nobody ahead of it. */
  electedAt: number;
  log: Logger;
}

/** Being the leader, until resign() or `lost`. */
export class Leadership {
  readonly prefix: string;
  readonly key: string;
  readonly value: string;
  readonly createRevision: number;
  readonly lease: Lease;
  private readonly store: Store;
  private readonly ownsLease: boolean;
  private readonly log: Logger;
  private readonly lostController = new AbortController();
  private readonly stopping = new AbortController();
  private readonly detachLease: () => void;
  private readonly monitoring: Promise<void>;
  private resigning: Promise<void> | undefined;

  /** @internal Built by Election.campaign. */
  constructor(init: LeadershipInit) {
    this.store = init.store;
    this.prefix = init.prefix;
    this.key = init.key;
    this.value = init.value;
    this.createRevision = init.createRevision;
    this.lease = init.lease;
    this.ownsLease = init.ownsLease;
    this.log = init.log;
    const lease = init.lease;
    const onLeaseLost = () => this.lose(lease.lost.reason as Error);
    lease.lost.addEventListener('abort', onLeaseLost, { once: true });
    this.detachLease = () => lease.lost.removeEventListener('abort', onLeaseLost);
    if (lease.lost.aborted) onLeaseLost();
    this.monitoring = this.monitor(init.electedAt + 1);
  }

  /** Aborts when leadership is lost: the lease was lost or the leader key deleted. */
  get lost(): AbortSignal {
    return this.lostController.signal;
  }

  /** The compare every leader write carries (fencedTxn adds it). */
  fence(): Compare {
    return campaignFence(this.key, this.createRevision);
  }

  /** Steps down: deletes the leader key (revoking the lease when the election took it). */
  resign(): Promise<void> {
    this.resigning ??= (async () => {
      this.stopping.abort();
      this.detachLease();
      await this.monitoring;
      if (this.ownsLease) await this.lease.revoke();
      else await this.store.txn([this.fence()], [{ type: 'delete', key: this.key }]);
      this.log.info({ key: this.key }, 'resigned');
    })();
    return this.resigning;
  }

  private lose(reason: Error): void {
    if (this.lost.aborted || this.stopping.signal.aborted) return;
    this.log.warn({ key: this.key, reason: reason.message }, 'leadership lost');
    this.lostController.abort(reason);
    this.stopping.abort();
    this.detachLease();
  }

  /** Watches the leader key so that its deletion (by anyone) aborts `lost` at once. */
  private async monitor(fromRevision: number): Promise<void> {
    let from = fromRevision;
    while (!this.stopping.signal.aborted) {
      const watch = this.store.watch(this.key, { fromRevision: from, signal: this.stopping.signal });
      try {
        for await (const batch of watch) {
          for (const event of batch) {
            from = event.revision + 1;
            // The prefix watch also sees keys that merely start with ours ("/e/1" vs "/e/12").
            if (event.key === this.key && event.type === 'delete') {
              this.lose(new Error(`leader key ${this.key} was deleted`));
              return;
            }
          }
        }
        if (!this.stopping.signal.aborted) this.lose(new Error(`the watch on leader key ${this.key} ended (store closed?)`));
        return;
      } catch (err) {
        if (!(err instanceof CompactedError)) {
          this.lose(err as Error);
          return;
        }
        // Missed history: look at the key itself, then watch on from there.
        const { kvs, revision } = await this.store.range(this.key).catch(() => ({ kvs: [], revision: 0 }));
        if (!kvs.some((kv) => kv.key === this.key && kv.createRevision === this.createRevision)) {
          this.lose(new Error(`leader key ${this.key} is gone`));
          return;
        }
        from = revision + 1;
      } finally {
        watch.close();
      }
    }
  }
}

/**
 * A leader's write: `success` runs only if this leadership still holds and `compares` hold.
 * Throws NotLeaderError when the fence failed (deposed: nothing was written); returns
 * `{succeeded: false}` with the results of `failure` when only `compares` failed.
 *
 * `failure` must be reads (get, range): to tell the two failures apart atomically, the store
 * runs the failure branch in both cases and a read of the leader key in it says which one it
 * was, so a write there would also land when deposed.
 */
export async function fencedTxn(
  store: Store,
  leadership: Leadership,
  compares: Compare[],
  success: Op[],
  failure: Op[] = [],
): Promise<TxnResult> {
  const write = failure.find((op) => op.type !== 'get' && op.type !== 'range');
  if (write) {
    throw new InvalidArgumentError(`a fenced transaction's failure branch may only read; got a ${write.type} of ${'key' in write ? write.key : write.prefix}`);
  }
  const result = await store.txn([leadership.fence(), ...compares], success, [{ type: 'get', key: leadership.key }, ...failure]);
  if (result.succeeded) return result;
  const [own, ...results] = result.results;
  const held = own?.type === 'get' && own.kv?.createRevision === leadership.createRevision;
  if (!held) throw new NotLeaderError('');
  return { succeeded: false, revision: result.revision, results };
}
