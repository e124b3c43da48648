// An s3rver (the S3-protocol server the tests use) in a child process on a free loopback port,
// with a bucket per case. What it does and does not check is said in test/blobs/s3-direct.test.ts.
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';

function tempDir(t: TestContext, name: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `mlfleet-${name}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// s3rver runs in a child process of its own, as a real server would: its buffers then do not
// count against the memory this process measures, and stopping it closes every connection.
const S3RVER_MAIN = createRequire(import.meta.url).resolve('s3rver');
const S3RVER_SCRIPT = `
const S3rver = require(${JSON.stringify(S3RVER_MAIN)});
new S3rver({ address: '127.0.0.1', port: 0, directory: process.argv[1], silent: true })
  .run()
  .then((address) => console.log(address.port), (err) => { console.error(err); process.exit(1); });
`;
const S3RVER_READY_WITHIN_MS = 15_000;

/** s3rver's fixed credentials. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface TestS3 {
  endpoint: string;
  /** Where s3rver keeps objects and unfinished uploads' parts. */
  directory: string;
  /** A client for the test's own look at the bucket (closed in t.after). */
  client(t: TestContext): S3Client;
  newBucket(t: TestContext): Promise<string>;
  spec(bucket: string, extra?: string): string;
}

export async function startS3(t: TestContext): Promise<TestS3> {
  const directory = tempDir(t, 's3rver');
  const child = spawn(process.execPath, ['-e', S3RVER_SCRIPT, directory], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2_000)));
  let stdout = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s3rver did not start within ${S3RVER_READY_WITHIN_MS} ms: ${stderr}`)), S3RVER_READY_WITHIN_MS);
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.includes('\n')) {
        clearTimeout(timer);
        resolve(Number(stdout.trim()));
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited during start: ${stderr.trim() || 'no output'}`));
    });
  });
  const endpoint = `http://127.0.0.1:${port}`;
  let buckets = 0;
  const client = (t: TestContext) => {
    const s3 = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3RVER_CREDENTIALS });
    t.after(() => s3.destroy());
    return s3;
  };
  return {
    endpoint,
    directory,
    client,
    async newBucket(t) {
      const bucket = `case-${++buckets}`;
      await client(t).send(new CreateBucketCommand({ Bucket: bucket }));
      return bucket;
    },
    spec: (bucket, extra = '') =>
      `s3://${bucket}?endpoint=${encodeURIComponent(endpoint)}&region=us-east-1&accessKeyId=S3RVER&secretAccessKey=S3RVER${extra}`,
  };
}

export async function keysIn(s3: S3Client, bucket: string, prefix = ''): Promise<string[]> {
  const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (page.Contents ?? []).map((o) => o.Key!).sort();
}

