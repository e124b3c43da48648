// Model sources as mlfleetctl shows them: the stable -o json shape, the list table, the detail
// block and what a sync imported. Credentials appear by name only: the coordinator holds them.
import type { Source, SourceImport } from '../../../shared/proto.js';
import { formatBytes, formatDuration } from '../../../shared/units.js';
import { keyValues, table, type Printable } from '../output.js';

export interface SourceJson {
  name: string;
  tenant: string;
  model: string;
  url: string;
  alias: string;
  everyMs: number;
  layout: string;
  credentials: string;
  state: string;
  message: string;
  lastSyncAtMs: number;
  lastImportAtMs: number;
  imported: number;
  lastImportedVersion: number;
  lastError: string;
  waiting: string[];
}

export function sourceJson(s: Source): SourceJson {
  const spec = s.spec!;
  const status = s.status!;
  return {
    name: spec.name,
    tenant: s.tenant,
    model: spec.model,
    url: spec.url,
    alias: spec.alias,
    everyMs: spec.everyMs,
    layout: spec.layout,
    credentials: spec.credentials,
    state: status.state,
    message: status.message,
    lastSyncAtMs: status.lastSyncAtMs,
    lastImportAtMs: status.lastImportAtMs,
    imported: status.imported,
    lastImportedVersion: status.lastImportedVersion,
    lastError: status.lastError,
    waiting: [...status.waiting],
  };
}

const when = (ms: number) => (ms ? new Date(ms).toISOString() : '-');

export function sourceListView(sources: readonly Source[]): Printable {
  const list = sources.map(sourceJson);
  return {
    data: list,
    table: () =>
      table(
        ['NAME', 'MODEL', 'ALIAS', 'EVERY', 'STATE', 'IMPORTED', 'LAST VERSION', 'URL'],
        list.map((s) => [s.name, s.model, s.alias || '-', formatDuration(s.everyMs), s.state, String(s.imported), s.lastImportedVersion ? String(s.lastImportedVersion) : '-', s.url]),
      ),
  };
}

export function sourceDetailView(source: Source): Printable {
  const s = sourceJson(source);
  return {
    data: s,
    table: () =>
      keyValues([
        ['Name', s.name],
        ['Tenant', s.tenant],
        ['Model', s.model],
        ['From', s.url],
        ['Layout', s.layout],
        ['Every', formatDuration(s.everyMs)],
        ['Alias', s.alias || '-'],
        ['Credentials', s.credentials || '(default chain)'],
        ['State', s.state],
        ['Message', s.message],
        ['Last sync', when(s.lastSyncAtMs)],
        ['Last import', when(s.lastImportAtMs)],
        ['Imported', `${s.imported}${s.lastImportedVersion ? ` (last: ${s.model}:${s.lastImportedVersion})` : ''}`],
        ['Last error', s.lastError || '-'],
        ['Waiting', s.waiting.length ? s.waiting.join(', ') : '-'],
      ]),
  };
}

export function sourceSyncedView(source: Source, imported: readonly SourceImport[]): Printable {
  const s = sourceJson(source);
  const list = imported.map((i) => ({ key: i.key, etag: i.etag, version: i.version, digest: i.digest, sizeBytes: i.sizeBytes }));
  return {
    data: { source: s, imported: list },
    table: () => {
      const head = list.length === 0 ? `source ${s.name}: nothing new (${s.state}: ${s.message})` : `source ${s.name}: imported ${list.length} version(s) of ${s.model}`;
      if (list.length === 0) return head;
      return `${head}\n${table(['KEY', 'VERSION', 'SIZE', 'DIGEST'], list.map((i) => [i.key, String(i.version), formatBytes(i.sizeBytes), i.digest]))}`;
    },
  };
}

export function sourceDeletedView(name: string): Printable {
  return { data: { name, deleted: true }, table: () => `source ${name} removed (the versions it imported stay)` };
}
