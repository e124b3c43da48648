// The leader's loop over model sources: every source is polled at its own interval (or at once
// on SyncSource), its bucket prefix listed, decideImports (./decide.ts) asked what to import,
// and each new stable object streamed through the registry's normal push path as the next
// version of the model, then the alias moved. A bucket that fails is a status and an event,
// retried at the next poll; a slow one holds only its own slot (bounded concurrency, a timeout
// on every request). Started when leadership is won, closed when it is lost.
//
// Never twice: each import carries its key and ETag as labels and is recorded with `once`,
// which the registry checks in the same compare-and-swap as the new version; the source's
// record remembers the keys too, and before deciding the poller adds the provenance labels of
// the model's versions, so a new leader (or a crash between the two writes) imports nothing again.
import { GetObjectCommand, ListObjectsV2Command, S3Client, type ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { inferArtifactFormat, inferPathFormat } from '../../shared/artifact-ref.js';
import { sleep, type Clock } from '../../shared/clock.js';
import { ConflictError, InvalidArgumentError, NotFoundError } from '../../shared/errors.js';
import { keys } from '../../shared/keys.js';
import type { Logger } from '../../shared/log.js';
import type { ArtifactMetadata, SourceImport, SourceStatus } from '../../shared/proto.js';
import type { Store } from '../../shared/store/store.js';
import { packDirectory, tarDigest } from '../../shared/tar.js';
import type { FencedWriter } from '../node-registry.js';
import type { ArtifactRecord, VersionRecord } from '../registry/artifact-record.js';
import type { ArtifactRegistry } from '../registry/artifact-registry.js';
import type { EventInput } from '../workloads/event-log.js';
import { decideImports, rememberImported, type Candidate, type ListedObject, type Observation } from './decide.js';
import { credentialFor, type SourceCredentials } from './source-credentials.js';
import { MAX_REMEMBERED_KEYS, SOURCE_ETAG_LABEL, SOURCE_KEY_LABEL, SOURCE_LABEL, type SourceRecord } from './source-record.js';
import { parseSourceUrl } from './source-url.js';

export interface SourcePollerOptions {
  /** How often the loop looks for sources that are due (default 1 s). */
  tickMs: number;
  /** Sources polled at once (default 4). */
  concurrency: number;
  /** Bound on each request to a bucket: a listing page, an object download (default 30 s, per page / per 1 GiB). */
  requestTimeoutMs: number;
  /** Objects listed per poll at most (default 10,000): the rest wait for the listing to shrink. */
  maxObjects: number;
}

export const DEFAULT_SOURCE_POLLER_OPTIONS: SourcePollerOptions = { tickMs: 1_000, concurrency: 4, requestTimeoutMs: 30_000, maxObjects: 10_000 };

export interface SourcePollerDeps {
  store: Store;
  writer: FencedWriter;
  artifacts: ArtifactRegistry;
  credentials: SourceCredentials;
  events: { record(event: EventInput): unknown };
  clock: Clock;
  log: Logger;
  /** Where version directories are assembled before they are packed. */
  scratchDir: string;
  /** Told of each version imported (for metrics). */
  onImported?(tenant: string, source: string, sizeBytes: number): void;
  /** Told of each poll's result (for metrics). */
  onPolled?(ok: boolean): void;
  options?: Partial<SourcePollerOptions>;
}

/** What a poll did: the versions it imported. */
export interface PollResult {
  imported: SourceImport[];
}

interface Live {
  previous: Record<string, Observation>;
  nextPollAtMs: number;
  running: Promise<PollResult> | undefined;
  clientKey: string;
  client: S3Client | undefined;
}

export class SourcePoller {
  private readonly options: SourcePollerOptions;
  private readonly live = new Map<string, Live>();
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private active = 0;

  constructor(private readonly deps: SourcePollerDeps) {
    this.options = { ...DEFAULT_SOURCE_POLLER_OPTIONS, ...deps.options };
  }

  start(): void {
    this.loop ??= this.run(this.abort.signal).catch((err: unknown) => this.deps.log.error({ err }, 'the source loop stopped'));
  }

  /** Stops polling; a poll under way ends at its next request. */
  async close(): Promise<void> {
    this.abort.abort();
    await this.loop;
    await Promise.allSettled([...this.live.values()].map((l) => l.running));
    for (const l of this.live.values()) l.client?.destroy();
    this.live.clear();
  }

  /** Whether a poll of the source is under way (its status then reads `syncing`). */
  syncing(tenant: string, name: string): boolean {
    return this.live.get(id(tenant, name))?.running !== undefined;
  }

  /** Polls now (after the poll under way, if any) and answers what it imported. */
  async syncNow(tenant: string, name: string): Promise<PollResult> {
    const live = this.liveOf(tenant, name);
    if (live.running) await live.running.catch(() => undefined);
    return this.poll(tenant, name, live);
  }

  /** Forgets what the loop knew of a deleted source. */
  forget(tenant: string, name: string): void {
    const live = this.live.get(id(tenant, name));
    live?.client?.destroy();
    this.live.delete(id(tenant, name));
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        const { kvs } = await this.deps.store.range(keys.sourcesPrefix);
        const now = this.deps.clock.now();
        for (const kv of kvs) {
          if (this.active >= this.options.concurrency) break;
          const record = JSON.parse(kv.value) as SourceRecord;
          const live = this.liveOf(record.tenant, record.spec.name);
          if (live.running || live.nextPollAtMs > now) continue;
          void this.poll(record.tenant, record.spec.name, live).catch(() => undefined);
        }
      } catch (err) {
        if (!signal.aborted) this.deps.log.warn({ err }, 'could not list the sources');
      }
      await sleep(this.deps.clock, this.options.tickMs, signal).catch(() => undefined);
    }
  }

  private liveOf(tenant: string, name: string): Live {
    let live = this.live.get(id(tenant, name));
    if (!live) {
      live = { previous: {}, nextPollAtMs: 0, running: undefined, clientKey: '', client: undefined };
      this.live.set(id(tenant, name), live);
    }
    return live;
  }

  private poll(tenant: string, name: string, live: Live): Promise<PollResult> {
    this.active += 1;
    const running = this.pollOnce(tenant, name, live).finally(() => {
      this.active -= 1;
      live.running = undefined;
    });
    live.running = running;
    return running;
  }

  private async pollOnce(tenant: string, name: string, live: Live): Promise<PollResult> {
    const { store, clock, log } = this.deps;
    const kv = await store.get(keys.source(tenant, name));
    if (!kv) throw new NotFoundError(`source "${name}" not found`);
    const record = JSON.parse(kv.value) as SourceRecord;
    live.nextPollAtMs = clock.now() + record.spec.everyMs;
    const imported: SourceImport[] = [];
    const done: Candidate[] = [];
    let present = new Set<string>();
    try {
      const url = parseSourceUrl(record.spec.url);
      const client = this.clientFor(record, live);
      const listing = await this.list(client, url.bucket, url.prefix);
      const remembered = { ...(await this.importedByLabels(tenant, record)), ...record.imported };
      const decision = decideImports({ layout: record.spec.layout, prefix: url.prefix, listing, previous: live.previous, imported: remembered });
      live.previous = decision.observed;
      present = decision.present;
      let lastVersion = record.status.lastImportedVersion;
      for (const candidate of decision.imports) {
        if (this.abort.signal.aborted) break;
        const version = await this.importOne(tenant, record, client, url.bucket, candidate);
        done.push(candidate);
        lastVersion = version.version;
        this.deps.onImported?.(tenant, name, version.sizeBytes);
        imported.push({ key: candidate.key, etag: candidate.etag, version: version.version, digest: version.digest, sizeBytes: version.sizeBytes });
        this.deps.events.record({ tenant, object: `source/${name}`, allocation: '', node: '', type: 'SourceImported', message: `${candidate.key} → model ${record.spec.model}:${version.version}${record.spec.alias ? ` (@${record.spec.alias})` : ''}` });
        log.info({ tenant, source: name, key: candidate.key, version: version.version }, 'imported a version from a source');
      }
      const waiting = decision.waiting.slice(0, 100);
      await this.updateRecord(tenant, name, (current) => {
        const status: SourceStatus = {
          ...current.status,
          state: 'ok',
          message: `${listing.length} object(s) listed, ${imported.length} imported, ${decision.waiting.length} waiting to be stable`,
          lastSyncAtMs: clock.now(),
          lastError: current.status.lastError,
          waiting,
        };
        if (imported.length > 0) {
          status.lastImportAtMs = clock.now();
          status.imported = current.status.imported + imported.length;
          status.lastImportedVersion = lastVersion;
        }
        return { ...current, status, imported: rememberImported(current.imported, done, decision.present, MAX_REMEMBERED_KEYS) };
      }, (before) => {
        if (before.status.state === 'error') this.deps.events.record({ tenant, object: `source/${name}`, allocation: '', node: '', type: 'SourceRecovered', message: `the bucket answers again (was: ${before.status.lastError})` });
      });
      this.deps.onPolled?.(true);
      return { imported };
    } catch (err) {
      if (err instanceof NotFoundError && err.message.startsWith('source ')) throw err;
      const message = describe(err);
      this.deps.onPolled?.(false);
      log.warn({ tenant, source: name, err: message }, 'a source poll failed; retried at its next poll');
      // What this poll imported before it failed is remembered too.
      await this.updateRecord(tenant, name, (current) => ({
        ...current,
        imported: done.length > 0 ? rememberImported(current.imported, done, new Set([...present, ...Object.keys(current.imported)]), MAX_REMEMBERED_KEYS) : current.imported,
        status: { ...current.status, state: 'error', message, lastError: message, lastSyncAtMs: clock.now(), ...(imported.length > 0 ? { imported: current.status.imported + imported.length, lastImportAtMs: clock.now(), lastImportedVersion: imported.at(-1)!.version } : {}) },
      }), (before) => {
        if (before.status.state !== 'error' || before.status.lastError !== message) {
          this.deps.events.record({ tenant, object: `source/${name}`, allocation: '', node: '', type: 'SourceError', message });
        }
      }).catch((writeErr: unknown) => log.warn({ err: writeErr }, 'could not record a source error'));
      return { imported };
    }
  }

  private clientFor(record: SourceRecord, live: Live): S3Client {
    const url = parseSourceUrl(record.spec.url);
    const key = `${record.spec.url}\0${record.spec.credentials}`;
    if (live.client && live.clientKey === key) return live.client;
    live.client?.destroy();
    let credentials;
    if (record.spec.credentials) {
      const found = credentialFor(this.deps.credentials, record.spec.credentials, record.tenant);
      if ('refusal' in found) throw new InvalidArgumentError(found.refusal);
      // A copy of the keys alone: the SDK writes into the object it is given.
      const { accessKeyId, secretAccessKey, sessionToken } = found.credential;
      credentials = { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
    }
    live.client = new S3Client({
      region: url.region,
      ...(url.endpoint ? { endpoint: url.endpoint, forcePathStyle: true } : {}),
      ...(credentials ? { credentials } : {}),
      maxAttempts: 1,
    });
    live.clientKey = key;
    return live.client;
  }

  private signal(): AbortSignal {
    return AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.options.requestTimeoutMs)]);
  }

  private async list(client: S3Client, bucket: string, prefix: string): Promise<ListedObject[]> {
    const listing: ListedObject[] = [];
    let token: string | undefined;
    do {
      const page: ListObjectsV2CommandOutput = await client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: Math.min(1000, this.options.maxObjects - listing.length) }),
        { abortSignal: this.signal() },
      );
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue;
        listing.push({ key: o.Key, sizeBytes: o.Size ?? 0, etag: o.ETag ?? '', lastModifiedMs: o.LastModified?.getTime() ?? 0 });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token && listing.length < this.options.maxObjects);
    return listing;
  }

  /** The keys the model's versions say this source imported (the provenance labels). */
  private async importedByLabels(tenant: string, record: SourceRecord): Promise<Record<string, string>> {
    let model: ArtifactRecord;
    try {
      model = await this.deps.artifacts.get('model', tenant, record.spec.model);
    } catch (err) {
      if (err instanceof NotFoundError) return {};
      throw err;
    }
    const found: Record<string, string> = {};
    for (const v of model.versions) {
      const labels = v.metadata?.labels ?? {};
      if (labels[SOURCE_LABEL] === record.spec.name && labels[SOURCE_KEY_LABEL]) found[labels[SOURCE_KEY_LABEL]] = labels[SOURCE_ETAG_LABEL] ?? '';
    }
    return found;
  }

  private async importOne(tenant: string, record: SourceRecord, client: S3Client, bucket: string, candidate: Candidate): Promise<VersionRecord> {
    const { artifacts, writer } = this.deps;
    const labels = { [SOURCE_LABEL]: record.spec.name, [SOURCE_KEY_LABEL]: candidate.key, [SOURCE_ETAG_LABEL]: candidate.etag };
    const metadata: ArtifactMetadata = { type: '', inputFormat: '', outputFormat: '', accuracy: 0, labels, sourceJob: '', sourceDatasets: [] };
    const once = (v: VersionRecord) => v.metadata?.labels?.[SOURCE_LABEL] === record.spec.name && v.metadata.labels[SOURCE_KEY_LABEL] === candidate.key && v.metadata.labels[SOURCE_ETAG_LABEL] === candidate.etag;
    const base = { kind: 'model' as const, tenant, createdBy: `source/${record.spec.name}`, name: record.spec.model, digest: '', metadata, once };
    let resolved;
    if (record.spec.layout === 'files') {
      const object = candidate.objects[0]!;
      const body = await this.download(client, bucket, object);
      try {
        resolved = await artifacts.push(writer, { ...base, format: inferArtifactFormat('model', object.key, undefined), directory: false, sizeBytes: object.sizeBytes }, body);
      } finally {
        body.destroy();
      }
    } else {
      await mkdir(this.deps.scratchDir, { recursive: true });
      const dir = await mkdtemp(path.join(this.deps.scratchDir, 'source-'));
      try {
        for (const object of candidate.objects) {
          const relative = object.key.slice(candidate.key.length);
          if (relative.split('/').some((s) => s === '' || s === '.' || s === '..')) throw new InvalidArgumentError(`the object "${object.key}" has a path that cannot be unpacked`);
          const file = path.join(dir, relative);
          await mkdir(path.dirname(file), { recursive: true });
          await pipeline(await this.download(client, bucket, object), createWriteStream(file));
        }
        const { digest, sizeBytes } = await tarDigest(dir);
        const format = await inferPathFormat('model', dir, true);
        resolved = await artifacts.push(writer, { ...base, digest, format, directory: true, sizeBytes }, packDirectory(dir) as AsyncIterable<Buffer>);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
    if (record.spec.alias) await artifacts.setAlias(writer, 'model', tenant, record.spec.model, record.spec.alias, resolved.version.version);
    return resolved.version;
  }

  private async download(client: S3Client, bucket: string, object: ListedObject): Promise<Readable> {
    // An object replaced since it was listed fails (412) instead of importing other bytes.
    const timeoutMs = this.options.requestTimeoutMs * Math.max(1, Math.ceil(object.sizeBytes / 2 ** 30));
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(timeoutMs)]);
    const answer = await client.send(new GetObjectCommand({ Bucket: bucket, Key: object.key, ...(object.etag ? { IfMatch: object.etag } : {}) }), { abortSignal: signal });
    return answer.Body as Readable;
  }

  private async updateRecord(tenant: string, name: string, mutate: (record: SourceRecord) => SourceRecord, onWritten?: (before: SourceRecord) => void): Promise<void> {
    const key = keys.source(tenant, name);
    for (let attempt = 0; attempt < 10; attempt++) {
      const kv = await this.deps.store.get(key);
      if (!kv) return; // deleted meanwhile: nothing to record
      const before = JSON.parse(kv.value) as SourceRecord;
      const result = await this.deps.writer.txn([{ key, target: 'modRevision', op: '=', value: kv.modRevision }], [{ type: 'put', key, value: JSON.stringify(mutate(before)) }]);
      if (result.succeeded) {
        onWritten?.(before);
        return;
      }
    }
    throw new ConflictError(`source "${name}" kept changing while its status was recorded`);
  }
}

function id(tenant: string, name: string): string {
  return `${tenant}/${name}`;
}

/** A bucket's failure as a person reads it: the S3 error's name and message, or the network's. */
function describe(err: unknown): string {
  const e = err as { name?: string; message?: string; Code?: string; $metadata?: { httpStatusCode?: number }; cause?: { code?: string } };
  const status = e.$metadata?.httpStatusCode;
  const code = e.Code ?? e.name ?? 'Error';
  const text = (e.message || e.cause?.code || String(err)).slice(0, 300);
  return `${code}${status ? ` (HTTP ${status})` : ''}: ${text}`;
}
