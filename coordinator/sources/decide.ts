// Which objects of a model source to import, decided on plain data: the listing of one poll,
// what the previous poll saw, and what was imported already. Pure (no I/O, no clock): the
// poller (coordinator/sources/source-poller.ts) lists the bucket, asks here, and imports what
// this answers, in the order it gives.
//
// An object is stable when two consecutive polls saw the same size and ETag: an upload still
// being written (its size or ETag changing) waits. With layout `version-dirs`, each
// `prefix/<dir>/` is one version, imported once every object in it is stable.
import { createHash } from 'node:crypto';

export type SourceLayout = 'files' | 'version-dirs';

export interface ListedObject {
  key: string;
  sizeBytes: number;
  etag: string;
  lastModifiedMs: number;
}

/** What one poll saw of an object: compared with the next poll's to call it stable. */
export interface Observation {
  sizeBytes: number;
  etag: string;
}

export interface DecideInput {
  layout: SourceLayout;
  /** The listed prefix, ending in '/' or empty. */
  prefix: string;
  listing: readonly ListedObject[];
  /** Key → what the previous poll saw (empty on the first poll, or after a leader change). */
  previous: Readonly<Record<string, Observation>>;
  /** Candidate key → the ETag it was imported with (a changed ETag is a new version). */
  imported: Readonly<Record<string, string>>;
}

/** One version to import: an object (files) or a directory's objects (version-dirs). */
export interface Candidate {
  /** The object's key, or the directory's prefix (ending in '/'). */
  key: string;
  /** The object's ETag, or a digest of the directory's keys and ETags. */
  etag: string;
  objects: ListedObject[];
  lastModifiedMs: number;
}

export interface Decision {
  /** To import now, oldest first (by LastModified, then key). */
  imports: Candidate[];
  /** New but not yet stable: seen changing, or seen for the first time. */
  waiting: string[];
  /** What the next poll compares against. */
  observed: Record<string, Observation>;
  /** Every candidate key listed now (for rememberImported). */
  present: Set<string>;
}

export function decideImports(input: DecideInput): Decision {
  const observed: Record<string, Observation> = {};
  for (const o of input.listing) observed[o.key] = { sizeBytes: o.sizeBytes, etag: o.etag };
  const stable = (o: ListedObject) => {
    const before = input.previous[o.key];
    return before !== undefined && before.sizeBytes === o.sizeBytes && before.etag === o.etag;
  };
  const imports: Candidate[] = [];
  const waiting: string[] = [];
  const present = new Set<string>();
  for (const candidate of candidates(input)) {
    present.add(candidate.key);
    if (input.imported[candidate.key] === candidate.etag) continue;
    if (candidate.objects.every(stable)) imports.push(candidate);
    else waiting.push(candidate.key);
  }
  imports.sort((a, b) => a.lastModifiedMs - b.lastModifiedMs || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  waiting.sort();
  return { imports, waiting, observed, present };
}

function candidates(input: DecideInput): Candidate[] {
  const objects = input.listing.filter((o) => !o.key.endsWith('/') && o.key.startsWith(input.prefix));
  if (input.layout === 'files') {
    // Only the prefix's own objects: files in deeper folders belong to no version.
    return objects
      .filter((o) => !o.key.slice(input.prefix.length).includes('/'))
      .map((o) => ({ key: o.key, etag: o.etag, objects: [o], lastModifiedMs: o.lastModifiedMs }));
  }
  const dirs = new Map<string, ListedObject[]>();
  for (const o of objects) {
    const rest = o.key.slice(input.prefix.length);
    const slash = rest.indexOf('/');
    if (slash <= 0) continue;
    const dir = input.prefix + rest.slice(0, slash + 1);
    const members = dirs.get(dir) ?? [];
    members.push(o);
    dirs.set(dir, members);
  }
  return [...dirs].map(([dir, members]) => {
    members.sort((a, b) => (a.key < b.key ? -1 : 1));
    const hash = createHash('sha256');
    for (const m of members) hash.update(`${m.key}\0${m.etag}\0${m.sizeBytes}\n`);
    return { key: dir, etag: `dir-${hash.digest('hex').slice(0, 32)}`, objects: members, lastModifiedMs: Math.max(...members.map((m) => m.lastModifiedMs)) };
  });
}

/**
 * What to remember as imported: the imported keys still listed, plus the new ones, at most
 * `max` (the most recent kept). Keys gone from the bucket need no memory.
 */
export function rememberImported(before: Readonly<Record<string, string>>, added: readonly Candidate[], listedKeys: ReadonlySet<string>, max: number): Record<string, string> {
  const next: Record<string, string> = {};
  for (const [key, etag] of Object.entries(before)) if (listedKeys.has(key)) next[key] = etag;
  for (const c of added) next[c.key] = c.etag;
  const entries = Object.entries(next);
  return Object.fromEntries(entries.slice(Math.max(0, entries.length - max)));
}
