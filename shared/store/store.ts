// The etcd-shaped Store every coordinator is written against (DESIGN principle 1). Two
// backends implement it: etcd (etcd3 client) and SQLite (better-sqlite3). Election and lease
// keep-alive are built once on top of these primitives (election.ts, lease.ts), the way
// etcd's clientv3/concurrency builds them on kv + lease + watch.
//
// Rules every backend keeps (checked by test/store/conformance.test.ts):
// - Revisions are numbers that only grow; every write transaction takes one new revision,
//   shared by all its operations. A read-only transaction takes none.
// - A lost compare is an ordinary `{succeeded: false}` answer, never a throw.
// - A key's createRevision is the revision of the write that created it (since it last did
//   not exist); modRevision the last write; version counts writes since creation (1 = new).
// - Watching from revision R delivers every change with revision >= R in order, then live
//   changes. When R is older than what the backend still keeps, watch fails with
//   CompactedError, and the watcher must re-list.
// - Deleting a lease (revoke or expiry) deletes every key attached to it, as one revision.

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  /** Lease the key is attached to; '' when none. */
  lease: string;
}

export type CompareTarget = 'value' | 'createRevision' | 'modRevision' | 'version';
export type CompareOp = '=' | '!=' | '<' | '>';

/**
 * A guard in a transaction. A missing key has createRevision = modRevision = version = 0.
 * A 'value' compare on a missing key never holds, whatever the op (etcd cannot tell a missing
 * value from ''), so test existence with `version` or `createRevision`. Values compare as bytes.
 */
export interface Compare {
  key: string;
  target: CompareTarget;
  op: CompareOp;
  value: string | number;
}

export type Op =
  | { type: 'put'; key: string; value: string; lease?: string }
  | { type: 'delete'; key: string }
  | { type: 'deletePrefix'; prefix: string }
  | { type: 'get'; key: string }
  | { type: 'range'; prefix: string };

export type OpResult =
  | { type: 'put' }
  | { type: 'delete'; deleted: number }
  | { type: 'deletePrefix'; deleted: number }
  | { type: 'get'; kv: KeyValue | undefined }
  | { type: 'range'; kvs: KeyValue[] };

export interface TxnResult {
  succeeded: boolean;
  /** The store's revision after the transaction (unchanged when nothing was written). */
  revision: number;
  /** Results of the branch that ran (success ops when succeeded, else failure ops). */
  results: OpResult[];
}

export interface RangeResult {
  kvs: KeyValue[];
  revision: number;
  /** How many keys the range holds, the limit aside (equals kvs.length without a limit). */
  count: number;
}

/** Bounds on a range, so that a caller can page through a large prefix. */
export interface RangeOptions {
  /** Only keys >= start (keys outside the prefix are never returned). */
  start?: string;
  /** Only keys < end. */
  end?: string;
  /** At most this many keys; 0 or absent: every key. */
  limit?: number;
  /** Largest key first (with a limit: the last keys of the range, largest first). */
  descending?: boolean;
}

export interface WatchEvent {
  type: 'put' | 'delete';
  key: string;
  /** The value after a put; '' after a delete. */
  value: string;
  /** For a delete, the revision of the delete; for a put, the key's modRevision. */
  revision: number;
  /** After a put, the key's createRevision and version; 0 after a delete. */
  createRevision: number;
  version: number;
}

export interface WatchOptions {
  /**
   * Deliver changes with revision >= fromRevision. Default: only changes after now, where
   * etcd's "now" is when its server registers the watch; to miss nothing, pass the revision
   * of a read + 1 (list, then watch).
   */
  fromRevision?: number;
  signal?: AbortSignal;
}

/**
 * A running watch. Batches are delivered in revision order; a batch holds the events of one
 * or more revisions and never splits a revision.
 */
export interface Watch extends AsyncIterable<WatchEvent[]> {
  /** Stops the watch; iteration ends. Idempotent. */
  close(): void;
}

export interface LeaseGrant {
  id: string;
  ttlMs: number;
}

export interface Store {
  readonly kind: 'sqlite' | 'etcd';

  get(key: string): Promise<KeyValue | undefined>;
  /**
   * The keys starting with prefix, within the options' bounds, sorted by key (largest first
   * when descending), at one revision.
   */
  range(prefix: string, options?: RangeOptions): Promise<RangeResult>;
  /** The current revision. */
  revision(): Promise<number>;

  /** If every compare holds, run `success`, else `failure`; atomically, at one revision. */
  txn(compares: Compare[], success: Op[], failure?: Op[]): Promise<TxnResult>;
  /** Returns the revision of the write. */
  put(key: string, value: string, options?: { lease?: string }): Promise<number>;
  /** Returns the store's revision afterwards (unchanged when the key did not exist). */
  delete(key: string): Promise<number>;

  watch(prefix: string, options?: WatchOptions): Watch;

  /** Grants a lease. Backends may round the TTL up to their granularity. */
  leaseGrant(ttlMs: number): Promise<LeaseGrant>;
  /** Renews a lease; throws LeaseNotFoundError when it has expired or was revoked. */
  leaseKeepAlive(id: string): Promise<void>;
  /** Revokes a lease, deleting its keys. Revoking an unknown lease is not an error. */
  leaseRevoke(id: string): Promise<void>;

  close(): Promise<void>;
}

export class CompactedError extends Error {
  readonly code = 'COMPACTED';
  constructor(
    readonly requested: number,
    readonly compactRevision: number,
  ) {
    super(`revision ${requested} has been compacted (oldest kept is ${compactRevision}); re-list and watch again`);
    this.name = 'CompactedError';
  }
}

export class LeaseNotFoundError extends Error {
  readonly code = 'LEASE_NOT_FOUND';
  constructor(readonly lease: string) {
    super(`lease ${lease} has expired or was revoked`);
    this.name = 'LeaseNotFoundError';
  }
}

export class StoreUnavailableError extends Error {
  readonly code = 'STORE_UNAVAILABLE';
  constructor(message: string) {
    super(message);
    this.name = 'StoreUnavailableError';
  }
}
