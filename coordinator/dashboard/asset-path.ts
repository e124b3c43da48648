// Which answer a path of the coordinator's HTTP listener gets from the dashboard: one of the
// files built into dist/dashboard/, index.html (client-side routes such as /nodes/gpu-7), or
// nothing because the path belongs to another route (the REST API, blobs, uploads, metrics).
// Pure: the I/O that applies it is coordinator/dashboard/static.ts.

/** Paths the dashboard never answers: their own routes do, or they are 404. */
const RESERVED = ['/api', '/v1', '/metrics', '/healthz'];

export type AssetAnswer =
  | { kind: 'file'; name: string }
  | { kind: 'index' }
  /** A file name that was not built (a stale hashed script): 404 rather than HTML in its place. */
  | { kind: 'missing' }
  | { kind: 'not-mine' };

/**
 * `files` is the fixed set of names read at start; a path is looked up in it as is, so no
 * path (`..`, encoded slashes, a NUL) ever reaches the file system.
 */
export function assetFor(pathname: string, files: ReadonlySet<string>): AssetAnswer {
  if (!pathname.startsWith('/')) return { kind: 'not-mine' };
  if (RESERVED.some((prefix) => pathname === prefix || pathname.startsWith(`${prefix}/`))) return { kind: 'not-mine' };
  const name = pathname.slice(1);
  if (name === '' || name === 'index.html') return { kind: 'index' };
  if (files.has(name)) return { kind: 'file', name };
  const last = name.slice(name.lastIndexOf('/') + 1);
  return last.includes('.') ? { kind: 'missing' } : { kind: 'index' };
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.map': 'application/json',
};

export function contentType(name: string): string {
  const dot = name.lastIndexOf('.');
  return (dot >= 0 && CONTENT_TYPES[name.slice(dot)]) || 'application/octet-stream';
}

/** Hashed names (`main-3FQX2K7A.js`) never change content: cached for a year; index.html is revalidated each time. */
export function cacheControl(name: string): string {
  return /-[A-Z0-9]{8}\.[a-z]+$/.test(name) ? 'public, max-age=31536000, immutable' : 'no-cache';
}
