// `--blob-store` to a BlobStore. The spec is compiled once, here, and every mistake in it is
// an InvalidArgumentError that says what was expected:
//   (absent) | fs:           <data-dir>/blobs
//   fs:PATH                  a directory of its own
//   s3://BUCKET[/PREFIX][?endpoint=URL&region=R&forcePathStyle=true|false&prefix=P
//                         &partSize=8Mi&accessKeyId=…&secretAccessKey=…]
// S3 credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
// profiles, instance roles); the query parameters are for tests and local servers, since a
// spec can end up in a process listing.
import { S3Client } from '@aws-sdk/client-s3';
import path from 'node:path';
import { InvalidArgumentError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { parseBytes } from '../../shared/units.js';
import type { BlobStore } from './blob-store.js';
import { FsBlobStore } from './fs-blob-store.js';
import { S3BlobStore } from './s3-blob-store.js';

export interface OpenBlobStoreOptions {
  log?: Logger;
}

const USAGE = 'expected fs:PATH or s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION';
const S3_PARAMETERS = ['endpoint', 'region', 'forcePathStyle', 'prefix', 'partSize', 'accessKeyId', 'secretAccessKey'];
/** S3's bucket naming rules, loosely: what a URL host can carry. */
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export async function openBlobStore(spec: string | undefined, dataDir: string, options: OpenBlobStoreOptions = {}): Promise<BlobStore> {
  const text = spec?.trim() ?? '';
  if (text === '' || text === 'fs:') return FsBlobStore.create({ root: path.join(dataDir, 'blobs') });
  if (text.startsWith('fs:')) return FsBlobStore.create({ root: text.slice('fs:'.length) });
  if (text.startsWith('s3://')) return S3BlobStore.create({ ...parseS3Spec(text), log: options.log });
  throw new InvalidArgumentError(`--blob-store ${JSON.stringify(text)} is not a blob store spec; ${USAGE}`);
}

interface S3Spec {
  client: S3Client;
  bucket: string;
  prefix: string;
  endpoint: string;
  partSizeBytes?: number;
}

function parseS3Spec(text: string): S3Spec {
  const bad = (why: string) => new InvalidArgumentError(`--blob-store ${JSON.stringify(redact(text))}: ${why}; ${USAGE}`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw bad('it is not a URL');
  }
  const bucket = url.hostname;
  if (!BUCKET_NAME.test(bucket)) throw bad(`${JSON.stringify(bucket)} is not a bucket name (3-63 lowercase letters, digits, '.' and '-')`);
  const params = url.searchParams;
  for (const key of params.keys()) {
    if (!S3_PARAMETERS.includes(key)) throw bad(`unknown parameter ${JSON.stringify(key)} (known: ${S3_PARAMETERS.join(', ')})`);
  }

  const pathPrefix = decodeURIComponent(url.pathname.replace(/^\/+/, ''));
  const paramPrefix = params.get('prefix') ?? '';
  if (pathPrefix && paramPrefix) throw bad('give the prefix either as the path or as prefix=, not both');
  const rawPrefix = (pathPrefix || paramPrefix).replace(/^\/+/, '');
  const prefix = rawPrefix === '' || rawPrefix.endsWith('/') ? rawPrefix : `${rawPrefix}/`;

  const endpoint = params.get('endpoint') ?? '';
  if (endpoint) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(endpoint);
    } catch {
      parsed = undefined;
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) throw bad(`endpoint ${JSON.stringify(endpoint)} is not an http(s) URL`);
  }

  const forcePathStyleText = params.get('forcePathStyle');
  if (forcePathStyleText !== null && forcePathStyleText !== 'true' && forcePathStyleText !== 'false') throw bad('forcePathStyle must be true or false');
  // S3-compatible servers (MinIO, Ceph, test servers) mostly serve buckets as paths, not as
  // host names; AWS itself prefers host names.
  const forcePathStyle = forcePathStyleText === null ? endpoint !== '' : forcePathStyleText === 'true';

  const accessKeyId = params.get('accessKeyId');
  const secretAccessKey = params.get('secretAccessKey');
  if ((accessKeyId === null) !== (secretAccessKey === null)) throw bad('give both accessKeyId and secretAccessKey, or neither');

  let partSizeBytes: number | undefined;
  const partSize = params.get('partSize');
  if (partSize !== null) {
    try {
      partSizeBytes = parseBytes(partSize, 'partSize');
    } catch (err) {
      throw bad((err as Error).message);
    }
  }

  const client = new S3Client({
    region: params.get('region') ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    ...(endpoint ? { endpoint } : {}),
    forcePathStyle,
    ...(accessKeyId !== null && secretAccessKey !== null ? { credentials: { accessKeyId, secretAccessKey } } : {}),
    // The store verifies sha256 itself and sends Content-MD5 with every part; the SDK's
    // default CRC checksums are not understood by every S3-compatible server.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return { client, bucket, prefix, endpoint, ...(partSizeBytes !== undefined ? { partSizeBytes } : {}) };
}

/** The spec as it may be shown: without the secret. */
function redact(text: string): string {
  return text.replace(/(secretAccessKey=)[^&]*/g, '$1…');
}
