// A model source as the store keeps it: its spec, its status, and the keys (with ETags) it has
// imported, in one record per (tenant, name), changed by compare-and-swap.
import type { Source, SourceSpec, SourceStatus } from '../../shared/proto.js';
import type { SourceLayout } from './decide.js';

export const DEFAULT_SOURCE_EVERY_MS = 60_000;
export const MIN_SOURCE_EVERY_MS = 10_000;
/** Imported keys remembered per source (keys gone from the bucket are forgotten first). */
export const MAX_REMEMBERED_KEYS = 10_000;

/** Provenance labels on an imported version: which source, which object, which ETag. */
export const SOURCE_LABEL = 'source';
export const SOURCE_KEY_LABEL = 'source.key';
export const SOURCE_ETAG_LABEL = 'source.etag';

export interface SourceRecordSpec {
  name: string;
  model: string;
  url: string;
  alias: string;
  everyMs: number;
  layout: SourceLayout;
  credentials: string;
}

export interface SourceRecord {
  tenant: string;
  spec: SourceRecordSpec;
  createdAtMs: number;
  status: SourceStatus;
  /** Candidate key → ETag imported. */
  imported: Record<string, string>;
}

export function initialStatus(): SourceStatus {
  return { state: 'ok', message: 'not polled yet', lastSyncAtMs: 0, lastImportAtMs: 0, imported: 0, lastImportedVersion: 0, lastError: '', waiting: [] };
}

export function toProtoSource(record: SourceRecord): Source {
  const spec: SourceSpec = { ...record.spec };
  return { spec, status: record.status, tenant: record.tenant, createdAtMs: record.createdAtMs };
}
