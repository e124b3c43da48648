// `npm run bench -- s3-direct [--quick]`: direct S3 transfer rates against an s3rver on this
// machine (loopback): a 256 MiB blob (64 MiB with --quick) uploaded through presigned part URLs
// (4 PUTs at once), the leader's completion (complete + read back + hash + copy), and ranged GETs
// of every piece through a presigned URL (4 at once), as an agent fetching from the bucket.
import type { TestContext } from 'node:test';
import { request } from 'undici';
import { openBlobStore } from '../../coordinator/blobs/open-blob-store.js';
import type { S3BlobStore } from '../../coordinator/blobs/s3-blob-store.js';
import { S3DirectAccess } from '../../coordinator/blobs/s3-direct.js';
import { pieceCount, pieceRange } from '../../shared/pieces.js';
import { startS3 } from '../helpers/s3rver.js';

const MiB = 1024 * 1024;
const quick = process.argv.includes('--quick');
const size = (quick ? 64 : 256) * MiB;
const CONCURRENCY = 4;

const cleanups: Array<() => unknown> = [];
const context = { after: (fn: () => unknown) => cleanups.push(fn) } as unknown as TestContext;

async function pool(count: number, work: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < count) await work(next++);
  }));
}

try {
  const s3 = await startS3(context);
  const bucket = await s3.newBucket(context);
  const store = (await openBlobStore(s3.spec(bucket), '/nonexistent')) as S3BlobStore;
  cleanups.push(() => store.close());
  const direct = new S3DirectAccess(store);
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) bytes.writeUInt32LE((Math.imul(i + 1, 2654435761) >>> 0), i);

  const ticket = await direct.beginDirectUpload({ sizeBytes: size });
  const etags: string[] = [];
  let started = performance.now();
  await pool(ticket.partCount, async (i) => {
    const body = bytes.subarray(i * ticket.partBytes, Math.min((i + 1) * ticket.partBytes, size));
    const response = await request(ticket.partUrls[i]!, { method: 'PUT', body });
    await response.body.dump();
    if (response.statusCode !== 200) throw new Error(`part ${i}: HTTP ${response.statusCode}`);
    etags[i] = response.headers.etag as string;
  });
  const uploadS = (performance.now() - started) / 1000;
  started = performance.now();
  const blob = await direct.completeDirectUpload(ticket, etags, { sizeBytes: size });
  const completeS = (performance.now() - started) / 1000;

  const { url } = await direct.presignBlobGet(blob.digest);
  const pieces = pieceCount(size, blob.manifest.pieceBytes);
  started = performance.now();
  let read = 0;
  await pool(pieces, async (i) => {
    const { start, end } = pieceRange(i, size, blob.manifest.pieceBytes);
    const response = await request(url, { headers: { range: `bytes=${start}-${end - 1}` } });
    const got = Buffer.from(await response.body.arrayBuffer());
    if (response.statusCode !== 206 || got.length !== end - start) throw new Error(`piece ${i}: HTTP ${response.statusCode}, ${got.length} bytes`);
    read += got.length;
  });
  const readS = (performance.now() - started) / 1000;
  const mibs = (seconds: number) => Math.round((size / MiB / seconds) * 10) / 10;
  console.log(
    JSON.stringify({
      sizeMiB: size / MiB,
      parts: ticket.partCount,
      uploadMiBps: mibs(uploadS),
      completeAndVerifyS: Math.round(completeS * 100) / 100,
      completeAndVerifyMiBps: mibs(completeS),
      rangedReadMiBps: mibs(readS),
      readBytes: read,
      partUrlQuery: [...new URL(ticket.partUrls[0]!).searchParams.keys()].sort(),
    }),
  );
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup();
}
