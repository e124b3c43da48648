// Every coordinator's view of the tokens: loaded from the store and kept current by a watch,
// so any coordinator (leader or follower) authenticates a call from memory. Creating and
// revoking are leader writes, fenced like every other; the leader applies its own writes at
// once so a token works the moment its creation is answered.
import { isDeepStrictEqual } from 'node:util';
import type { Metadata } from '@grpc/grpc-js';
import { generateToken, hashSecret, parseToken, readBearer, secretMatches, type Role } from '../../shared/auth.js';
import { sleep, type Clock } from '../../shared/clock.js';
import { ConflictError, NotFoundError, UnauthenticatedError } from '../../shared/errors.js';
import { keys } from '../../shared/keys.js';
import type { Logger } from '../../shared/log.js';
import { CompactedError, type Store } from '../../shared/store/store.js';
import type { FencedWriter } from '../node-registry.js';

export interface TokenRecord {
  id: string;
  tenant: string;
  role: Role;
  node: string;
  description: string;
  createdAtMs: number;
  createdBy: string;
  revokedAtMs: number;
  expiresAtMs: number;
  /** Join tokens: the first successful join consumes it (records written before this field lack it). */
  singleUse?: boolean;
  /** Single-use join tokens: when a node joined with it (0 or absent: unused), and which. */
  usedAtMs?: number;
  usedBy?: string;
  secretHash: string;
}

/** Who is calling: what the token says, never the token itself. */
export interface Principal {
  tokenId: string;
  role: Role;
  tenant: string;
  node: string;
}

export interface NewToken {
  tenant: string;
  role: Role;
  node?: string;
  description?: string;
  ttlMs?: number;
  singleUse?: boolean;
  createdBy: string;
}

type RevokedListener = (record: TokenRecord) => void;
type ChangeListener = (record: TokenRecord) => void;

export class TokenRegistry {
  private readonly tokens = new Map<string, TokenRecord>();
  private readonly listeners = new Set<RevokedListener>();
  private readonly changeListeners = new Set<ChangeListener>();
  private revision = 0;

  private constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  static async load(store: Store, clock: Clock, log: Logger): Promise<TokenRegistry> {
    const registry = new TokenRegistry(store, clock, log);
    await registry.relist();
    return registry;
  }

  /** Follows the store until `signal` aborts; re-lists when the watch falls too far behind. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        const watch = this.store.watch(keys.tokensPrefix, { fromRevision: this.revision + 1, signal });
        for await (const batch of watch) {
          for (const event of batch) {
            this.revision = Math.max(this.revision, event.revision);
            if (event.type === 'put') this.apply(JSON.parse(event.value) as TokenRecord);
          }
        }
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof CompactedError) await this.relist().catch(() => undefined);
        else this.log.warn({ err: (err as Error).message }, 'token watch failed; retrying');
        await sleep(this.clock, 200, signal).catch(() => undefined);
      }
    }
  }

  /** The caller behind the metadata's bearer token; UNAUTHENTICATED when there is none that holds. */
  authenticate(metadata: Metadata): Principal {
    const bearer = readBearer(metadata);
    if (!bearer) throw new UnauthenticatedError('no token: pass --token, set MLFLEET_TOKEN, or put one in ~/.config/mlfleet/token');
    const parsed = parseToken(bearer);
    const record = parsed ? this.tokens.get(parsed.id) : undefined;
    if (!parsed || !record || !secretMatches(parsed.secret, record.secretHash)) {
      throw new UnauthenticatedError('the token is not valid');
    }
    this.assertUsable(record);
    return { tokenId: record.id, role: record.role, tenant: record.tenant, node: record.node };
  }

  /** Revoked, expired and used single-use tokens no longer admit anyone (UNAUTHENTICATED). */
  assertUsable(record: TokenRecord): void {
    if (record.revokedAtMs > 0) throw new UnauthenticatedError(`token ${record.id} has been revoked`);
    if (record.expiresAtMs > 0 && record.expiresAtMs <= this.clock.now()) throw new UnauthenticatedError(`token ${record.id} has expired`);
    if (record.singleUse && (record.usedAtMs ?? 0) > 0) {
      throw new UnauthenticatedError(`join token ${record.id} was single-use and node "${record.usedBy ?? ''}" has used it; create another with \`mlfleetctl tokens create --role join\``);
    }
  }

  /**
   * The node credentials of `node` that are not revoked. Asked on every join, so one pass over
   * the records, without the copy and sort of list() (a fleet joining 5,000 nodes sorted 5,000
   * records per join).
   */
  nodeCredentials(node: string): TokenRecord[] {
    const held: TokenRecord[] = [];
    for (const record of this.tokens.values()) if (record.role === 'node' && record.node === node && record.revokedAtMs === 0) held.push(record);
    return held;
  }

  /** Every record, in no order: for a pass over all of them on a hot path (a session's welcome). */
  records(): Iterable<TokenRecord> {
    return this.tokens.values();
  }

  list(): TokenRecord[] {
    return [...this.tokens.values()].sort((a, b) => a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id));
  }

  get(id: string): TokenRecord {
    const record = this.tokens.get(id);
    if (!record) throw new NotFoundError(`token ${id} not found; \`mlfleetctl tokens ls\` lists them`);
    return record;
  }

  onRevoked(listener: RevokedListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Calls `listener` with every record that is new or changed (created, revoked), once per change. */
  onChange(listener: ChangeListener): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** A new token's record and its secret, not yet stored: callers write it (bootstrap batches several). */
  mint(spec: NewToken): { record: TokenRecord; token: string } {
    const { id, secret, token } = generateToken();
    const now = this.clock.now();
    const record: TokenRecord = {
      id,
      tenant: spec.tenant,
      role: spec.role,
      node: spec.node ?? '',
      description: spec.description ?? '',
      createdAtMs: now,
      createdBy: spec.createdBy,
      revokedAtMs: 0,
      expiresAtMs: spec.ttlMs ? now + spec.ttlMs : 0,
      ...(spec.singleUse ? { singleUse: true, usedAtMs: 0, usedBy: '' } : {}),
      secretHash: hashSecret(secret),
    };
    return { record, token };
  }

  async create(writer: FencedWriter, spec: NewToken): Promise<{ record: TokenRecord; token: string }> {
    const minted = this.mint(spec);
    const key = keys.token(minted.record.id);
    const result = await writer.txn([{ key, target: 'createRevision', op: '=', value: 0 }], [{ type: 'put', key, value: JSON.stringify(minted.record) }]);
    if (!result.succeeded) throw new ConflictError('token id collision; try again');
    this.revision = Math.max(this.revision, result.revision);
    this.apply(minted.record);
    return minted;
  }

  async revoke(writer: FencedWriter, id: string): Promise<TokenRecord> {
    const key = keys.token(id);
    for (let attempt = 0; attempt < 5; attempt++) {
      const kv = await this.store.get(key);
      if (!kv) throw new NotFoundError(`token ${id} not found; \`mlfleetctl tokens ls\` lists them`);
      const current = JSON.parse(kv.value) as TokenRecord;
      if (current.revokedAtMs > 0) return current;
      const next = { ...current, revokedAtMs: this.clock.now() };
      const result = await writer.txn([{ key, target: 'modRevision', op: '=', value: kv.modRevision }], [{ type: 'put', key, value: JSON.stringify(next) }]);
      if (result.succeeded) {
        this.apply(next);
        return next;
      }
    }
    throw new ConflictError(`token ${id} kept changing while being revoked; try again`);
  }

  private async relist(): Promise<void> {
    const { kvs, revision } = await this.store.range(keys.tokensPrefix);
    for (const kv of kvs) this.apply(JSON.parse(kv.value) as TokenRecord);
    this.revision = Math.max(this.revision, revision);
  }

  /** Takes in a record this coordinator just wrote, ahead of the watch. */
  remember(record: TokenRecord): void {
    this.apply(record);
  }

  private apply(record: TokenRecord): void {
    const previous = this.tokens.get(record.id);
    // The leader applies its own writes ahead of the watch, which then brings them again.
    if (previous && isDeepStrictEqual(previous, record)) return;
    this.tokens.set(record.id, record);
    for (const listener of this.changeListeners) listener(record);
    if (record.revokedAtMs > 0 && (!previous || previous.revokedAtMs === 0)) {
      for (const listener of this.listeners) listener(record);
    }
  }
}
