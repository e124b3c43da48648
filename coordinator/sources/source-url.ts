// The `--from` of a model source: s3://bucket[/prefix][?endpoint=http(s)://…&region=…]. Parsed
// once at the edge; every mistake gets a message naming what to fix.
import { InvalidArgumentError } from '../../shared/errors.js';

export interface SourceUrl {
  bucket: string;
  /** '' or ending in '/'. */
  prefix: string;
  /** undefined: AWS's own endpoint for the region. */
  endpoint: string | undefined;
  region: string;
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const REGION = /^[a-z0-9-]{1,32}$/;
export const MAX_SOURCE_URL = 2048;

export function parseSourceUrl(text: string): SourceUrl {
  if (text.length > MAX_SOURCE_URL) throw new InvalidArgumentError(`the source URL must be at most ${MAX_SOURCE_URL} characters`);
  if (!text.startsWith('s3://')) throw new InvalidArgumentError(`the source URL must start with s3:// (like s3://bucket/models/?region=eu-west-1), got "${text.slice(0, 80)}"`);
  const rest = text.slice('s3://'.length);
  const q = rest.indexOf('?');
  const path = q < 0 ? rest : rest.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : rest.slice(q + 1));
  const slash = path.indexOf('/');
  const bucket = slash < 0 ? path : path.slice(0, slash);
  let prefix = slash < 0 ? '' : path.slice(slash + 1);
  if (!BUCKET.test(bucket) || bucket.includes('..')) {
    throw new InvalidArgumentError(`"${bucket.slice(0, 80)}" is not a bucket name (3-63 lowercase letters, digits, dots and hyphens): write s3://BUCKET/PREFIX`);
  }
  if (prefix.startsWith('/') || prefix.includes('//')) throw new InvalidArgumentError('the source prefix must not contain empty segments ("//")');
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
  for (const key of query.keys()) {
    if (key !== 'endpoint' && key !== 'region') {
      throw new InvalidArgumentError(`unknown source URL parameter "${key}": only endpoint and region (credentials are named with --credentials, never put in the URL)`);
    }
  }
  const endpoint = query.get('endpoint') ?? undefined;
  if (endpoint !== undefined) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new InvalidArgumentError(`the endpoint "${endpoint.slice(0, 80)}" is not a URL (like http://127.0.0.1:9000)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError(`the endpoint must be http:// or https://, got ${url.protocol}`);
    if (url.username || url.password) throw new InvalidArgumentError('the endpoint must not carry credentials: name them with --credentials');
  }
  const region = query.get('region') ?? 'us-east-1';
  if (!REGION.test(region)) throw new InvalidArgumentError(`"${region.slice(0, 40)}" is not a region (like us-east-1)`);
  return { bucket, prefix, endpoint, region };
}
