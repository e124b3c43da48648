// Pushing small random models and pulling them back, and where a coordinator's filesystem blob
// store keeps a blob: for the tests of blob replication between coordinators.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { CoordinatorClient } from '../../shared/client.js';

export interface Pushed {
  name: string;
  version: number;
  digest: string;
}

export function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** A new random body of `size` bytes pushed as the next version of model `name`. */
export async function pushRandom(client: CoordinatorClient, name: string, size: number, body = randomBytes(size)): Promise<Pushed> {
  const version = await client.push('model', { name, format: 'onnx', sizeBytes: body.length }, Readable.from([body]));
  return { name, version: version.version, digest: version.digest };
}

/** The sha256 of what the coordinator sends for `name:version`. */
export async function pulledDigest(client: CoordinatorClient, name: string, version: number): Promise<string> {
  const download = await client.download('model', { ref: `${name}:${version}` });
  const hash = createHash('sha256');
  for await (const chunk of download.chunks) hash.update(chunk);
  return `sha256:${hash.digest('hex')}`;
}

/** Where a coordinator with --data-dir `dataDir` and the default blob store keeps `digest`. */
export function blobFile(dataDir: string, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return path.join(dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex);
}

export function holds(dataDir: string, digest: string): boolean {
  return existsSync(blobFile(dataDir, digest));
}
