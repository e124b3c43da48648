// The model and dataset registry: per-tenant names, immutable numbered versions over
// content-addressed blobs, and movable aliases. A push streams into the blob store while it
// hashes; the version is written only after the blob is complete, verified and published, so
// a failed or interrupted push leaves no version and no temporary data behind.
import type { ArtifactRef } from '../../shared/artifact-ref.js';
import type { Clock } from '../../shared/clock.js';
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
  ConflictError,
} from '../../shared/errors.js';
import { KeyedMutex } from '../../shared/keyed-mutex.js';
import { keys } from '../../shared/keys.js';
import type { Logger } from '../../shared/log.js';
import type { ArtifactMetadata } from '../../shared/proto.js';
import type { Store } from '../../shared/store/store.js';
import { formatBytes } from '../../shared/units.js';
import type { BlobStore, BlobWriter } from '../blobs/blob-store.js';
import type { FencedWriter } from '../node-registry.js';
import { getTenant } from '../tenants.js';
import type { ArtifactKind, ArtifactRecord, VersionRecord } from './artifact-record.js';
import { decideRetention, type RetentionPolicy, type RetentionRemoval } from './retention.js';

export interface PushSpec {
  kind: ArtifactKind;
  tenant: string;
  createdBy: string;
  name: string;
  format: string;
  directory: boolean;
  sizeBytes: number;
  /** '' when the client did not declare one. */
  digest: string;
  metadata: ArtifactMetadata;
  /**
   * Makes the push idempotent: a version of the artifact for which this holds (the one an
   * earlier push of the same job output made) is the answer, and no new version is made.
   */
  once?: (version: VersionRecord) => boolean;
}

/** A blob just stored. */
export interface StoredBlob {
  digest: string;
  sizeBytes: number;
}

export interface Resolved {
  record: ArtifactRecord;
  version: VersionRecord;
}

/**
 * What a push stores: chunks streamed now (the gRPC Push), or a blob writer that already holds
 * every byte (a resumable upload over HTTP, coordinator/delivery/uploads.ts), which the push
 * then owns: committed when kept, aborted otherwise.
 */
export type PushContent = AsyncIterable<Buffer> | { written: BlobWriter };

const MAX_CAS_ATTEMPTS = 10;

export class ArtifactRegistry {
  /**
   * Names the workload that uses a version (a deployment serving it), which refuses its
   * deletion; set by the leader's workload controller.
   */
  usedBy: ((kind: ArtifactKind, tenant: string, name: string, version: number) => string | undefined) | undefined;

  /**
   * Whether a blob no version names is still needed: a part of a partitioned job's output
   * dataset, waiting to be assembled. Such a blob is never deleted. Set by the leader's
   * workload controller.
   */
  pinned: ((digest: string) => boolean) | undefined;

  /**
   * Copies a blob just stored to another coordinator before anything records it (the
   * filesystem blob store with several coordinators: coordinator/blobs/blob-peers.ts); a
   * refusal aborts the push and nothing is recorded.
   */
  replicate: ((blob: StoredBlob) => Promise<void>) | undefined;

  /**
   * Makes sure a blob is held by this coordinator's store, fetching it from a peer coordinator
   * when not (coordinator/blobs/blob-peers.ts); for readers of blobs no download asks for.
   */
  fetchMissing: ((digest: string, sizeBytes: number) => Promise<void>) | undefined;

  /**
   * Runs `fn` while no workload can start using a version: the leader's workload queue, under
   * which deployments resolve their model and record the version they resolved. Version
   * removals run under it, so a deploy racing a removal either resolves before it (and the
   * removal, re-checking `usedBy`, refuses) or after it (and finds the version gone: NOT_FOUND).
   * Set by the leader's workload controller; retention removes nothing while it is unset.
   */
  whileUsesHeld: (<T>(fn: () => Promise<T>) => Promise<T>) | undefined;

  /**
   * Applies a model's retention after its versions or its policy changed (a push, an import by
   * a source, SetRetention); set by the leader (retention-enforcer.ts). Its failures are its own.
   */
  versionsChanged: ((kind: ArtifactKind, tenant: string, name: string) => Promise<void>) | undefined;

  /** Serializes, per digest, publishing a version against deleting its blob (leader only). */
  private readonly digestLocks = new KeyedMutex();
  /** Where each digest was last seen, per key prefix asked (findByDigest). */
  private readonly digestHints = new DigestHints();

  constructor(
    private readonly store: Store,
    readonly blobs: BlobStore,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  async list(kind: ArtifactKind, tenant: string): Promise<ArtifactRecord[]> {
    const { kvs } = await this.store.range(keys.tenantArtifactsPrefix(kind, tenant));
    return kvs.map((kv) => JSON.parse(kv.value) as ArtifactRecord);
  }

  async get(kind: ArtifactKind, tenant: string, name: string): Promise<ArtifactRecord> {
    const kv = await this.store.get(keys.artifact(kind, tenant, name));
    if (!kv) throw new NotFoundError(`${kind} "${name}" not found`);
    return JSON.parse(kv.value) as ArtifactRecord;
  }

  /** `name` → latest, `name:3` → version 3, `name@production` → where the alias points. */
  async resolve(kind: ArtifactKind, tenant: string, ref: ArtifactRef): Promise<Resolved> {
    const record = await this.get(kind, tenant, ref.name);
    let wanted = ref.version;
    if (ref.alias !== undefined) {
      wanted = record.aliases[ref.alias];
      if (wanted === undefined) throw new NotFoundError(`${kind} "${ref.name}" has no alias "${ref.alias}"`);
    }
    const version = wanted === undefined ? record.versions.at(-1) : record.versions.find((v) => v.version === wanted);
    if (!version) throw new NotFoundError(wanted === undefined ? `${kind} "${ref.name}" has no versions` : `${kind} "${ref.name}" has no version ${wanted}`);
    return { record, version };
  }

  /** A version whose content is `digest`, in `tenant` (or any tenant when undefined). */
  async findByDigest(kind: ArtifactKind, digest: string, tenant?: string): Promise<Resolved | undefined> {
    const prefix = tenant === undefined ? keys.artifactsPrefix(kind) : keys.tenantArtifactsPrefix(kind, tenant);
    // The record that last held this digest is read first, and taken only if it still does: a
    // hint, never an answer. Agents Locate every few seconds while they pull and every blob GET
    // asks; without it each read every artifact record.
    const hinted = this.digestHints.get(prefix, digest);
    if (hinted !== undefined) {
      const kv = await this.store.get(hinted);
      const record = kv ? (JSON.parse(kv.value) as ArtifactRecord) : undefined;
      const version = record?.versions.find((v) => v.digest === digest);
      if (record && version) return { record, version };
    }
    const { kvs } = await this.store.range(prefix);
    let found: Resolved | undefined;
    const seen = new Set<string>();
    for (const kv of kvs) {
      const record = JSON.parse(kv.value) as ArtifactRecord;
      for (const version of record.versions) {
        // The first record in the scan's order, the one a scan returns.
        if (!seen.has(version.digest)) this.digestHints.note(prefix, version.digest, kv.key);
        seen.add(version.digest);
        if (!found && version.digest === digest) found = { record, version };
      }
    }
    // A digest no record holds any more keeps no hint (which would cost a read before each scan).
    if (!found) this.digestHints.forget(prefix, digest);
    return found;
  }

  /** Bytes a tenant's model and dataset versions take, each version counted in full. */
  async storageUsed(tenant: string): Promise<number> {
    let total = 0;
    for (const kind of ['model', 'dataset'] as const) {
      for (const record of await this.list(kind, tenant)) total += record.versions.reduce((sum, v) => sum + v.sizeBytes, 0);
    }
    return total;
  }

  /**
   * Streams `chunks` into a new blob and records the next version. Any failure — bad bytes, a
   * wrong size or digest, a cancelled stream, a full disk — aborts the blob and writes nothing.
   */
  async push(writer: FencedWriter, spec: PushSpec, chunks: PushContent): Promise<Resolved> {
    await this.checkQuota(spec).catch((err: unknown) => abortWritten(chunks, err));
    const { kept, stored } = await this.storeBlob(spec, chunks, async (blob) => {
      await this.replicate?.(blob);
      return this.appendVersion(writer, spec, blob.digest);
    });
    await this.dropUnkept(stored, kept.version.digest);
    await this.versionsChanged?.(spec.kind, spec.tenant, spec.name);
    return kept;
  }

  /**
   * Streams a job partition's output into a blob that no version names, and hands it to `keep`
   * (which records it, so that `pinned` holds for it from then on, or answers with the part it
   * recorded before) while no delete can take it. Resolves with the part kept.
   */
  async pushPart(spec: { tenant: string; sizeBytes: number; digest: string }, chunks: PushContent, keep: (blob: StoredBlob) => Promise<StoredBlob>): Promise<StoredBlob> {
    await this.checkQuota(spec).catch((err: unknown) => abortWritten(chunks, err));
    const { kept, stored } = await this.storeBlob(spec, chunks, async (blob) => {
      await this.replicate?.(blob);
      return keep(blob);
    });
    await this.dropUnkept(stored, kept.digest);
    return kept;
  }

  /** Deletes a blob unless a version uses it or it is pinned; for parts once their job is done with them. */
  async releaseBlob(digest: string): Promise<void> {
    await this.digestLocks.run(digest, () => this.deleteIfUnused(digest));
  }

  /**
   * Streams `chunks` into a new blob, checked against the declared size (and digest), then runs
   * `keep` with it, serialized against deletes of the same content. Any failure aborts the blob,
   * or deletes it when `keep` refuses it (unless a version or a part has the same content).
   */
  private async storeBlob<T>(spec: { sizeBytes: number; digest: string }, chunks: PushContent, keep: (blob: StoredBlob) => Promise<T>): Promise<{ kept: T; stored: StoredBlob }> {
    const blob = 'written' in chunks ? chunks.written : await this.blobs.create();
    let committed: { digest: string; sizeBytes: number };
    try {
      if (!('written' in chunks)) {
        for await (const chunk of chunks) {
          if (blob.bytesWritten + chunk.length > spec.sizeBytes) {
            throw new InvalidArgumentError(`the push declared ${spec.sizeBytes} bytes but sent more`);
          }
          await blob.write(chunk);
        }
      }
      if (blob.bytesWritten !== spec.sizeBytes) {
        throw new InvalidArgumentError(`the push declared ${spec.sizeBytes} bytes but sent ${blob.bytesWritten}`);
      }
      committed = await blob.commit({ sizeBytes: spec.sizeBytes, ...(spec.digest ? { digest: spec.digest } : {}) });
    } catch (err) {
      await blob.abort();
      throw err;
    }
    return this.digestLocks.run(committed.digest, async () => {
      // A delete of the last version using this content may have removed it meanwhile.
      if (!(await this.blobs.stat(committed.digest))) throw new UnavailableError('the content was deleted while it was pushed; push again');
      try {
        return { kept: await keep(committed), stored: committed };
      } catch (err) {
        // Refused (the job moved on, the version could not be recorded): the bytes go unless something else has them.
        await this.deleteIfUnused(committed.digest).catch((cleanup: unknown) => this.log.warn({ err: cleanup, digest: committed.digest }, 'could not delete a blob nothing kept'));
        throw err;
      }
    });
  }

  /** A repeated push answered with what an earlier one made: the bytes it sent, when other ones, go. */
  private async dropUnkept(stored: StoredBlob, keptDigest: string): Promise<void> {
    if (stored.digest !== keptDigest) await this.releaseBlob(stored.digest);
  }

  /** Answers the record as the move left it; retention then runs (the version moved from may go). */
  async setAlias(writer: FencedWriter, kind: ArtifactKind, tenant: string, name: string, alias: string, version: number): Promise<ArtifactRecord> {
    const next = await this.update(writer, kind, tenant, name, (record) => {
      if (!record.versions.some((v) => v.version === version)) throw new NotFoundError(`${kind} "${name}" has no version ${version}`);
      return { ...record, aliases: { ...record.aliases, [alias]: version } };
    });
    await this.versionsChanged?.(kind, tenant, name);
    return next;
  }

  /**
   * Deletes one version. Refused while an alias points at it (move the alias first); the blob
   * goes when no version of any tenant uses it any more.
   */
  async deleteVersion(writer: FencedWriter, kind: ArtifactKind, tenant: string, name: string, version: number): Promise<ArtifactRecord> {
    const current = await this.get(kind, tenant, name);
    const doomed = current.versions.find((v) => v.version === version);
    if (!doomed) throw new NotFoundError(`${kind} "${name}" has no version ${version}`);
    return this.usesHeld(() => this.digestLocks.run(doomed.digest, async () => {
      const next = await this.update(writer, kind, tenant, name, (record) => {
        if (!record.versions.some((v) => v.version === version)) throw new NotFoundError(`${kind} "${name}" has no version ${version}`);
        const user = this.usedBy?.(kind, tenant, name, version);
        if (user) throw new FailedPreconditionError(`${kind} ${name}:${version} is in use by ${user}; roll it to another version or remove it first`);
        const aliases = Object.entries(record.aliases).filter(([, v]) => v === version).map(([a]) => a);
        if (aliases.length > 0) {
          throw new FailedPreconditionError(`${kind} ${name}:${version} is aliased as ${aliases.join(', ')}; move or remove the alias first`);
        }
        return { ...record, versions: record.versions.filter((v) => v.version !== version) };
      });
      await this.deleteIfUnused(doomed.digest);
      return next;
    }));
  }

  /**
   * Sets a model's retention (undefined clears it: every version is kept) and applies it at
   * once. Answers the record as it stands after the removals.
   */
  async setRetention(writer: FencedWriter, tenant: string, name: string, policy: RetentionPolicy | undefined): Promise<ArtifactRecord> {
    await this.update(writer, 'model', tenant, name, (record) => {
      const { retention: _old, ...rest } = record;
      return policy ? { ...rest, retention: { keep: policy.keep, keepAliased: policy.keepAliased } } : rest;
    });
    await this.versionsChanged?.('model', tenant, name);
    return this.get('model', tenant, name);
  }

  /**
   * Removes the versions the model's retention says go (retention.ts), in one compare-and-swap
   * that decides again on the record it replaces, with the uses as they are then, under
   * `whileUsesHeld`; then deletes each removed version's blob unless something else (another
   * version, of any model, dataset or tenant, or a job's part) has the same content. Removes
   * nothing while the uses are not known (no workload controller on this coordinator yet).
   */
  async applyRetention(writer: FencedWriter, tenant: string, name: string): Promise<RetentionRemoval[]> {
    const usedBy = this.usedBy;
    const held = this.whileUsesHeld;
    if (!usedBy || !held) return [];
    const current = await this.get('model', tenant, name);
    if (!current.retention || current.versions.length <= current.retention.keep) return [];
    const removals = await held(async () => {
      let removed: RetentionRemoval[] = [];
      await this.update(writer, 'model', tenant, name, (record) => {
        removed = [];
        if (!record.retention) return record;
        const aliasesOf = (version: number) => Object.entries(record.aliases).filter(([, v]) => v === version).map(([a]) => a);
        const inUse = new Set(record.versions.filter((v) => usedBy('model', tenant, name, v.version) !== undefined).map((v) => v.version));
        const decision = decideRetention(record.retention, record.versions.map((v) => ({ ...v, aliases: aliasesOf(v.version) })), inUse);
        removed = decision.remove;
        if (removed.length === 0) return record;
        const gone = new Set(removed.map((r) => r.version));
        return { ...record, versions: record.versions.filter((v) => !gone.has(v.version)) };
      });
      return removed;
    });
    for (const digest of new Set(removals.map((r) => r.digest))) {
      await this.releaseBlob(digest).catch((err: unknown) => this.log.warn({ err, digest }, 'could not delete the blob of a version retention removed; it is left behind'));
    }
    return removals;
  }

  private usesHeld<T>(fn: () => Promise<T>): Promise<T> {
    return this.whileUsesHeld ? this.whileUsesHeld(fn) : fn();
  }

  /** Under the digest's lock. */
  private async deleteIfUnused(digest: string): Promise<void> {
    if (await this.inUse(digest)) return;
    await this.blobs.delete(digest);
    this.log.info({ digest }, 'deleted a blob no version uses');
  }

  private async inUse(digest: string): Promise<boolean> {
    if (this.pinned?.(digest)) return true;
    for (const kind of ['model', 'dataset'] as const) if (await this.findByDigest(kind, digest)) return true;
    return false;
  }

  private async checkQuota(spec: { tenant: string; sizeBytes: number }): Promise<void> {
    const limit = (await getTenant(this.store, spec.tenant)).quota.storageBytes;
    if (limit === 0) return;
    const used = await this.storageUsed(spec.tenant);
    if (used + spec.sizeBytes > limit) {
      throw new ResourceExhaustedError(
        `tenant "${spec.tenant}" storage quota is ${formatBytes(limit)}; it uses ${formatBytes(used)} and this push needs ${formatBytes(spec.sizeBytes)} more`,
      );
    }
  }

  private async appendVersion(writer: FencedWriter, spec: PushSpec, digest: string): Promise<Resolved> {
    const key = keys.artifact(spec.kind, spec.tenant, spec.name);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const kv = await this.store.get(key);
      const now = this.clock.now();
      const record: ArtifactRecord = kv
        ? (JSON.parse(kv.value) as ArtifactRecord)
        : { kind: spec.kind, tenant: spec.tenant, name: spec.name, versions: [], aliases: {}, lastVersion: 0, updatedAtMs: now };
      const earlier = spec.once && record.versions.find(spec.once);
      if (earlier) {
        this.log.info({ kind: spec.kind, tenant: spec.tenant, name: spec.name, version: earlier.version }, 'a repeated push: answered with the version it made before');
        return { record, version: earlier };
      }
      const version: VersionRecord = {
        version: record.lastVersion + 1,
        digest,
        sizeBytes: spec.sizeBytes,
        format: spec.format,
        directory: spec.directory,
        createdAtMs: now,
        createdBy: spec.createdBy,
        metadata: spec.metadata,
      };
      const next: ArtifactRecord = { ...record, versions: [...record.versions, version], lastVersion: version.version, updatedAtMs: now };
      const guard = kv
        ? { key, target: 'modRevision' as const, op: '=' as const, value: kv.modRevision }
        : { key, target: 'createRevision' as const, op: '=' as const, value: 0 };
      const result = await writer.txn([guard], [{ type: 'put', key, value: JSON.stringify(next) }]);
      if (result.succeeded) {
        this.log.info({ kind: spec.kind, tenant: spec.tenant, name: spec.name, version: version.version, digest, bytes: spec.sizeBytes }, 'version pushed');
        return { record: next, version };
      }
    }
    throw new ConflictError(`${spec.kind} "${spec.name}" kept changing while the version was recorded; push again`);
  }

  private async update(
    writer: FencedWriter,
    kind: ArtifactKind,
    tenant: string,
    name: string,
    mutate: (record: ArtifactRecord) => ArtifactRecord,
  ): Promise<ArtifactRecord> {
    const key = keys.artifact(kind, tenant, name);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const kv = await this.store.get(key);
      if (!kv) throw new NotFoundError(`${kind} "${name}" not found`);
      const next = { ...mutate(JSON.parse(kv.value) as ArtifactRecord), updatedAtMs: this.clock.now() };
      // An artifact whose last version went stays, so its numbers are never given out again.
      const result = await writer.txn([{ key, target: 'modRevision', op: '=', value: kv.modRevision }], [{ type: 'put', key, value: JSON.stringify(next) }]);
      if (result.succeeded) return next;
    }
    throw new ConflictError(`${kind} "${name}" kept changing while being updated; try again`);
  }
}

/** A refused push of an already written blob drops its bytes; then `err` is thrown. */
async function abortWritten(content: PushContent, err: unknown): Promise<never> {
  if ('written' in content) await content.written.abort();
  throw err;
}

/**
 * Digest → the store key of a record that held it, per prefix searched; bounded (forgotten all
 * at once past `max` entries). Only hints: findByDigest reads the record and checks.
 */
export class DigestHints {
  private readonly keys = new Map<string, string>();

  constructor(private readonly max = 100_000) {}

  get(prefix: string, digest: string): string | undefined {
    return this.keys.get(`${prefix}\0${digest}`);
  }

  note(prefix: string, digest: string, key: string): void {
    if (this.keys.size >= this.max) this.keys.clear();
    this.keys.set(`${prefix}\0${digest}`, key);
  }

  forget(prefix: string, digest: string): void {
    this.keys.delete(`${prefix}\0${digest}`);
  }
}
