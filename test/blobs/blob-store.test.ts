// One specification of the BlobStore (coordinator/blobs/blob-store.ts), run against both
// backends: the local filesystem, and S3 as spoken by an s3rver this test starts on a free
// loopback port. Each case gets a store on fresh state of its own (a new directory; a new
// bucket), and checks what is left in it, not only what the store says.
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import type { BlobStore, BlobWriter } from '../../coordinator/blobs/blob-store.js';
import { FsBlobStore } from '../../coordinator/blobs/fs-blob-store.js';
import { openBlobStore } from '../../coordinator/blobs/open-blob-store.js';
import { S3BlobStore } from '../../coordinator/blobs/s3-blob-store.js';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, ResourceExhaustedError } from '../../shared/errors.js';
import { keysIn, S3RVER_CREDENTIALS, startS3, type TestS3 } from '../helpers/s3rver.js';

const MiB = 1024 * 1024;

// --- the two backends -------------------------------------------------------------------------

interface Opened {
  store: BlobStore;
  /** Everything the backend holds, visible or temporary: files under the root; keys in the bucket. */
  leftovers(): Promise<string[]>;
}

interface BlobBackend {
  readonly name: 'fs' | 's3';
  /** A size that takes the S3 store through a multipart upload (more than one part). */
  readonly multipartBytes: number;
  setup(t: TestContext): Promise<void>;
  open(t: TestContext): Promise<Opened>;
}

function tempDir(t: TestContext, name: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `mlfleet-${name}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function filesUnder(root: string): Promise<string[]> {
  const entries = await fs.readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => !e.isDirectory()).map((e) => path.relative(root, path.join(e.parentPath ?? e.path, e.name))).sort();
}

function fsBackend(): BlobBackend {
  let dir = '';
  let cases = 0;
  return {
    name: 'fs',
    multipartBytes: 12 * MiB,
    async setup(t) {
      dir = tempDir(t, 'blobs');
    },
    async open(t) {
      const dataDir = path.join(dir, `case-${++cases}`);
      const store = await openBlobStore(undefined, dataDir);
      t.after(() => store.close());
      return { store, leftovers: () => filesUnder(path.join(dataDir, 'blobs')) };
    },
  };
}

function s3Backend(): BlobBackend & { s3(): TestS3 } {
  let s3: TestS3 | undefined;
  return {
    name: 's3',
    multipartBytes: 12 * MiB,
    s3: () => s3!,
    async setup(t) {
      s3 = await startS3(t);
    },
    async open(t) {
      const bucket = await s3!.newBucket(t);
      // The smallest part S3 allows, so multipart uploads happen at test sizes.
      const store = await openBlobStore(s3!.spec(bucket, '&partSize=5Mi'), '/nonexistent');
      t.after(() => store.close());
      const client = s3!.client(t);
      return { store, leftovers: () => keysIn(client, bucket) };
    },
  };
}

// --- helpers ----------------------------------------------------------------------------------

const digestOf = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const hexOf = (digest: string) => digest.slice('sha256:'.length);

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Deterministic bytes that differ from block to block, so misplaced data shows. */
function pattern(size: number, seed = 1): Buffer {
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) bytes.writeUInt32LE((Math.imul(i + 1, 2654435761) ^ seed) >>> 0, Math.min(i, size - 4));
  return bytes;
}

async function upload(store: BlobStore, bytes: Buffer, chunkBytes = 64 * 1024): Promise<BlobWriter> {
  const writer = await store.create();
  for (let offset = 0; offset < bytes.length; offset += chunkBytes) await writer.write(bytes.subarray(offset, offset + chunkBytes));
  return writer;
}

/** What one stored blob looks like in each backend's layout. */
function storedAs(backend: BlobBackend['name'], digest: string): string {
  const hex = hexOf(digest);
  return backend === 'fs' ? path.join('sha256', hex.slice(0, 2), hex) : `sha256/${hex}`;
}

// --- the specification ------------------------------------------------------------------------

interface Case {
  name: string;
  run(opened: Opened, backend: BlobBackend, t: TestContext): Promise<void>;
}

const cases: Case[] = [];
function spec(name: string, run: Case['run']): void {
  cases.push({ name, run });
}

spec('a committed blob is stored under its sha256 and reads back byte for byte', async ({ store, leftovers }, backend) => {
  const bytes = pattern(300_000);
  const writer = await upload(store, bytes);
  assert.equal(writer.bytesWritten, bytes.length);
  const committed = await writer.commit();
  assert.deepEqual(committed, { digest: digestOf(bytes), sizeBytes: bytes.length });
  assert.deepEqual(await store.stat(committed.digest), { sizeBytes: bytes.length });
  assert.ok((await readAll(await store.read(committed.digest))).equals(bytes));
  assert.deepEqual(await leftovers(), [storedAs(backend.name, committed.digest)]);
});

spec('a blob larger than one part is stored whole', async ({ store, leftovers }, backend) => {
  const bytes = pattern(backend.multipartBytes, 7);
  const { digest, sizeBytes } = await (await upload(store, bytes, 1 * MiB)).commit();
  assert.equal(digest, digestOf(bytes));
  assert.equal(sizeBytes, bytes.length);
  assert.ok((await readAll(await store.read(digest))).equals(bytes));
  assert.deepEqual(await leftovers(), [storedAs(backend.name, digest)], 'no temporary data remains');
});

spec('a reader fills the buffers it is given from an offset, fewer bytes only at the end; a missing blob is NOT_FOUND', async ({ store }, backend) => {
  const bytes = pattern(backend.multipartBytes + 12_345, 9);
  const { digest } = await (await upload(store, bytes, 1 * MiB)).commit();
  for (const offset of [0, 70_000]) {
    const reader = await store.openReader(digest, offset);
    const buffer = Buffer.alloc(300_000 + 8);
    const got: Buffer[] = [];
    for (;;) {
      const n = await reader.read(buffer, 8, 300_000);
      if (n === 0) break;
      got.push(Buffer.from(buffer.subarray(8, 8 + n)));
      if (n < 300_000) assert.equal(Buffer.concat(got).length, bytes.length - offset, 'a short read only at the end');
    }
    await reader.close();
    await reader.close();
    assert.ok(Buffer.concat(got).equals(bytes.subarray(offset)), `from ${offset}`);
  }
  await assert.rejects(store.openReader(digestOf(Buffer.from('never stored'))), NotFoundError);
});

spec('a writer whose caller hashes the bytes commits under the digest it is told, refuses without one, and keeps nothing then', async ({ store, leftovers }, backend) => {
  const bytes = pattern(200_000, 3);
  let told: string | undefined;
  const writer = await store.create({ digestOfBytes: () => told });
  for (let offset = 0; offset < bytes.length; offset += 64 * 1024) await writer.write(bytes.subarray(offset, offset + 64 * 1024));
  told = digestOf(bytes);
  assert.deepEqual(await writer.commit({ digest: digestOf(bytes) }), { digest: digestOf(bytes), sizeBytes: bytes.length });
  assert.ok((await readAll(await store.read(digestOf(bytes)))).equals(bytes));

  const unhashed = await store.create({ digestOfBytes: () => undefined });
  await unhashed.write(pattern(1000, 4));
  await assert.rejects(unhashed.commit(), (err: Error) => err instanceof FailedPreconditionError && /not all hashed/.test(err.message));
  const mismatched = await store.create({ digestOfBytes: () => digestOf(Buffer.from('other bytes')) });
  await mismatched.write(pattern(1000, 5));
  await assert.rejects(mismatched.commit({ digest: digestOf(pattern(1000, 5)) }), InvalidArgumentError);
  assert.deepEqual(await leftovers(), [storedAs(backend.name, digestOf(bytes))], 'nothing of the refused two');
});

spec('an empty blob is a blob', async ({ store }) => {
  const { digest, sizeBytes } = await (await store.create()).commit();
  assert.equal(digest, digestOf(Buffer.alloc(0)));
  assert.equal(sizeBytes, 0);
  assert.deepEqual(await store.stat(digest), { sizeBytes: 0 });
  assert.equal((await readAll(await store.read(digest))).length, 0);
});

spec('reading from an offset returns the rest of the blob; past the end is refused', async ({ store }, backend) => {
  for (const bytes of [pattern(100_000, 3), pattern(backend.multipartBytes, 4)]) {
    const { digest } = await (await upload(store, bytes, 1 * MiB)).commit();
    for (const offset of [0, 1, 65_536, bytes.length - 1, bytes.length]) {
      assert.ok((await readAll(await store.read(digest, offset))).equals(bytes.subarray(offset)), `from ${offset}`);
    }
    await assert.rejects(store.read(digest, bytes.length + 1), InvalidArgumentError);
    await assert.rejects(store.read(digest, -1), InvalidArgumentError);
  }
});

spec('identical content committed twice is stored once', async ({ store, leftovers }, backend) => {
  const bytes = pattern(200_000, 9);
  const first = await (await upload(store, bytes)).commit();
  const second = await (await upload(store, bytes, 10_000)).commit();
  assert.deepEqual(second, first);
  // Uploads racing each other end the same way.
  const racing = await Promise.all([upload(store, bytes), upload(store, bytes)]);
  assert.deepEqual(await Promise.all(racing.map((w) => w.commit())), [first, first]);
  assert.deepEqual(await leftovers(), [storedAs(backend.name, first.digest)]);
  assert.ok((await readAll(await store.read(first.digest))).equals(bytes));
});

spec('identical large content committed twice is stored once', async ({ store, leftovers }, backend) => {
  const bytes = pattern(backend.multipartBytes, 10);
  const first = await (await upload(store, bytes, 1 * MiB)).commit();
  assert.deepEqual(await (await upload(store, bytes, 1 * MiB)).commit(), first);
  assert.deepEqual(await leftovers(), [storedAs(backend.name, first.digest)]);
});

spec('a commit that declares the right digest and size succeeds', async ({ store }) => {
  const bytes = pattern(1000);
  const expected = { digest: digestOf(bytes), sizeBytes: bytes.length };
  assert.deepEqual(await (await upload(store, bytes)).commit(expected), expected);
});

spec('a commit whose declared digest differs keeps nothing and says both digests', async ({ store, leftovers }, backend) => {
  for (const size of [5000, backend.multipartBytes]) {
    const bytes = pattern(size, 11);
    const declared = digestOf(Buffer.from('something else'));
    const writer = await upload(store, bytes, 1 * MiB);
    await assert.rejects(writer.commit({ digest: declared, sizeBytes: size }), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError);
      assert.match(err.message, new RegExp(`digest is ${digestOf(bytes)} but the push declared ${declared}`));
      return true;
    });
    assert.equal(await store.stat(digestOf(bytes)), undefined);
    assert.deepEqual(await leftovers(), []);
    await writer.abort(); // harmless after a failed commit
  }
});

spec('a commit whose declared size differs keeps nothing', async ({ store, leftovers }) => {
  const bytes = pattern(5000, 12);
  await assert.rejects((await upload(store, bytes)).commit({ sizeBytes: 4999 }), (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError);
    assert.match(err.message, /5000 bytes but the push declared 4999 bytes/);
    return true;
  });
  assert.equal(await store.stat(digestOf(bytes)), undefined);
  assert.deepEqual(await leftovers(), []);
});

spec('an aborted upload leaves nothing, and abort is idempotent and harmless after commit', async ({ store, leftovers }, backend) => {
  for (const size of [5000, backend.multipartBytes]) {
    const bytes = pattern(size, 13);
    const writer = await upload(store, bytes, 1 * MiB);
    await writer.abort();
    await writer.abort();
    await assert.rejects(writer.write(Buffer.from('more')), FailedPreconditionError);
    await assert.rejects(writer.commit(), FailedPreconditionError);
    assert.equal(await store.stat(digestOf(bytes)), undefined);
    assert.deepEqual(await leftovers(), []);
  }
  const committed = await upload(store, Buffer.from('kept'));
  const { digest } = await committed.commit();
  await committed.abort();
  assert.deepEqual(await store.stat(digest), { sizeBytes: 4 });
});

spec('a missing blob is NOT_FOUND to read, absent to stat, and deleting it is a no-op', async ({ store }) => {
  const missing = digestOf(Buffer.from('never stored'));
  await assert.rejects(store.read(missing), (err: unknown) => {
    assert.ok(err instanceof NotFoundError);
    assert.match(err.message, new RegExp(missing));
    return true;
  });
  assert.equal(await store.stat(missing), undefined);
  await store.delete(missing);
});

spec('a deleted blob is gone', async ({ store, leftovers }) => {
  const { digest } = await (await upload(store, pattern(1000, 14))).commit();
  await store.delete(digest);
  assert.equal(await store.stat(digest), undefined);
  await assert.rejects(store.read(digest), NotFoundError);
  assert.deepEqual(await leftovers(), []);
});

spec('a malformed digest is INVALID_ARGUMENT', async ({ store }) => {
  for (const digest of ['sha256:abc', 'md5:' + 'a'.repeat(32), `sha256:${'A'.repeat(64)}`, `sha256:../../${'a'.repeat(58)}`]) {
    await assert.rejects(store.read(digest), InvalidArgumentError);
    await assert.rejects(store.stat(digest), InvalidArgumentError);
    await assert.rejects(store.delete(digest), InvalidArgumentError);
  }
});

spec('closing the store aborts the uploads in progress', async ({ store, leftovers }, backend) => {
  const small = await upload(store, pattern(1000, 15));
  const large = await upload(store, pattern(backend.multipartBytes, 16), 1 * MiB);
  await store.close();
  await assert.rejects(small.commit(), FailedPreconditionError);
  await assert.rejects(large.write(Buffer.from('x')), FailedPreconditionError);
  await assert.rejects(store.create(), FailedPreconditionError);
  assert.deepEqual(await leftovers(), []);
});

spec('a 64 MiB blob streams through in 1 MiB writes with bounded memory', async ({ store, leftovers }, backend) => {
  const total = 64 * MiB;
  const chunk = Buffer.alloc(1 * MiB);
  const hash = createHash('sha256');
  const writer = await store.create();
  const before = process.memoryUsage().arrayBuffers;
  let peak = 0;
  for (let i = 0; i < total / chunk.length; i++) {
    // One buffer, refilled: the store must be done with a chunk once its write resolves.
    chunk.fill(i % 251);
    chunk.writeUInt32LE(i, 0);
    hash.update(chunk);
    await writer.write(chunk);
    peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
  }
  const { digest, sizeBytes } = await writer.commit();
  assert.equal(digest, `sha256:${hash.digest('hex')}`);
  assert.equal(sizeBytes, total);
  assert.ok(peak < 32 * MiB, `buffers grew by ${(peak / MiB).toFixed(1)} MiB while writing 64 MiB`);

  const readBack = createHash('sha256');
  let read = 0;
  for await (const part of await store.read(digest)) {
    readBack.update(part as Buffer);
    read += (part as Buffer).length;
  }
  assert.equal(read, total);
  assert.equal(`sha256:${readBack.digest('hex')}`, digest);
  assert.deepEqual(await leftovers(), [storedAs(backend.name, digest)]);
});

// --- the suite --------------------------------------------------------------------------------

const s3 = s3Backend();
const backends: BlobBackend[] = [fsBackend(), s3];

// One backend after the other: the memory case measures this whole process.
test('BlobStore conformance', async (t) => {
  for (const backend of backends) {
    await t.test(backend.name, async (t) => {
      await backend.setup(t);
      for (const c of cases) await t.test(c.name, async (t) => c.run(await backend.open(t), backend, t));
    });
  }
});

// --- the filesystem backend alone ------------------------------------------------------------

test('fs: an upload a crash left behind is removed when the store next opens', async (t) => {
  const root = tempDir(t, 'blobs');
  const crashed = await FsBlobStore.create({ root });
  t.after(() => crashed.close());
  const dropped = await crashed.create(); // never committed nor aborted, as if the process died
  await dropped.write(pattern(10_000));
  assert.equal((await fs.readdir(path.join(root, 'tmp'))).length, 1);

  const reopened = await FsBlobStore.create({ root });
  t.after(() => reopened.close());
  assert.deepEqual(await filesUnder(root), []);
});

test('fs: a full disk fails the upload with RESOURCE_EXHAUSTED and leaves nothing', async (t) => {
  const root = tempDir(t, 'blobs');
  // The temporary file is made where the store expects it, but its writes go to /dev/full,
  // which fails every write with ENOSPC as a full disk does.
  const store = await FsBlobStore.create({
    root,
    openTemp: async (file) => {
      await fs.writeFile(file, '');
      return fs.open('/dev/full', 'w');
    },
  });
  t.after(() => store.close());
  const writer = await store.create();
  assert.equal((await filesUnder(root)).length, 1, 'the temporary file exists while uploading');
  await assert.rejects(writer.write(pattern(100_000)), (err: unknown) => {
    assert.ok(err instanceof ResourceExhaustedError, String(err));
    assert.match(err.message, /out of disk space/);
    assert.match(err.message, new RegExp(root));
    assert.match(err.message, /ENOSPC/);
    return true;
  });
  await assert.rejects(writer.commit(), ResourceExhaustedError);
  await writer.abort();
  assert.deepEqual(await filesUnder(root), []);
});

test('fs: an upload is sent to the disk while it goes on, and a failed writeback fails it', async (t) => {
  // Every 100 KB written, a datasync starts in the background (when none is under way); then
  // one fails as a disk that lost a write does (EIO), which the kernel would not tell the
  // commit's fsync again.
  const root = tempDir(t, 'blobs');
  let syncs = 0;
  let failOn = 0;
  const store = await FsBlobStore.create({
    root,
    writebackBytes: 100_000,
    openTemp: async (file) => {
      const handle = await fs.open(file, 'wx', 0o600);
      const datasync = handle.datasync.bind(handle);
      handle.datasync = async () => {
        syncs += 1;
        if (syncs === failOn) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
        return datasync();
      };
      return handle;
    },
  });
  t.after(() => store.close());

  const bytes = pattern(1_000_000);
  const { digest } = await (await upload(store, bytes)).commit();
  assert.ok(syncs >= 1, 'a writeback began during the upload');
  assert.ok((await readAll(await store.read(digest))).equals(bytes));

  syncs = 0;
  failOn = 1;
  const writer = await store.create();
  const failed = async () => {
    for (let at = 0; at < bytes.length; at += 50_000) await writer.write(bytes.subarray(at, at + 50_000));
    await writer.commit();
  };
  await assert.rejects(failed(), /EIO/);
  await writer.abort();
  assert.equal(syncs, 1, 'no writeback after the failed one');
  assert.deepEqual(await filesUnder(path.join(root, 'tmp')), [], 'the failed upload is gone');
  assert.deepEqual(await filesUnder(root), [storedAs('fs', digest)], 'only the first upload is stored');
});

test('fs: blobs are read-only files fanned out by their first byte', async (t) => {
  const root = tempDir(t, 'blobs');
  const store = await openBlobStore(`fs:${root}`, '/nonexistent');
  t.after(() => store.close());
  const { digest } = await (await upload(store, Buffer.from('model'))).commit();
  const file = path.join(root, storedAs('fs', digest));
  assert.equal((await fs.stat(file)).mode & 0o777, 0o444);
});

// --- the S3 backend alone ----------------------------------------------------------------------

test('s3: temporary objects older than a day are swept when a store opens; younger ones are kept', async (t) => {
  const server = await startS3(t);
  const bucket = await server.newBucket(t);
  const client = server.client(t);
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'tmp/left-by-a-crash', Body: 'x' }));
  const open = async (now: number) => {
    const store = await S3BlobStore.create({
      client: new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3RVER_CREDENTIALS }),
      bucket,
      now: () => now,
    });
    await store.close();
  };
  await open(Date.now());
  assert.deepEqual(await keysIn(client, bucket), ['tmp/left-by-a-crash'], "a young one may be another coordinator's upload");
  await open(Date.now() + 25 * 60 * 60 * 1000);
  assert.deepEqual(await keysIn(client, bucket), []);
});

test('s3: keys live under the prefix the spec names', async (t) => {
  const server = await startS3(t);
  const bucket = await server.newBucket(t);
  const store = await openBlobStore(server.spec(bucket, '&prefix=fleet-a'), '/nonexistent');
  t.after(() => store.close());
  const { digest } = await (await upload(store, Buffer.from('prefixed'))).commit();
  assert.deepEqual(await keysIn(server.client(t), bucket), [`fleet-a/sha256/${hexOf(digest)}`]);
  assert.ok((await readAll(await store.read(digest))).equals(Buffer.from('prefixed')));
});

test('s3: a bucket that does not exist is a clear error at open', async (t) => {
  const server = await startS3(t);
  await assert.rejects(openBlobStore(server.spec('no-such-bucket'), '/nonexistent'), (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError);
    assert.match(err.message, /bucket no-such-bucket at http:\/\/127\.0\.0\.1:\d+ does not exist/);
    return true;
  });
});

// --- opening by spec ---------------------------------------------------------------------------

test('the default blob store is the filesystem under <data-dir>/blobs', async (t) => {
  const dataDir = tempDir(t, 'data');
  for (const spec of [undefined, '', 'fs:']) {
    const store = await openBlobStore(spec, dataDir);
    await store.close();
    assert.equal(store.kind, 'fs');
    assert.equal((store as FsBlobStore).root, path.join(dataDir, 'blobs'));
  }
  assert.deepEqual((await fs.readdir(path.join(dataDir, 'blobs'))).sort(), ['sha256', 'tmp']);
});

test('a malformed --blob-store is INVALID_ARGUMENT saying what was expected, and never shows a secret', async () => {
  for (const [spec, message] of [
    ['nfs://server/share', /expected fs:PATH or s3:\/\//],
    ['s3://', /not a URL|not a bucket name/],
    ['s3://UPPER', /not a bucket name/],
    ['s3://bucket?bogus=1', /unknown parameter "bogus"/],
    ['s3://bucket?endpoint=ftp://host', /not an http\(s\) URL/],
    ['s3://bucket?forcePathStyle=maybe', /forcePathStyle must be true or false/],
    ['s3://bucket?accessKeyId=a', /both accessKeyId and secretAccessKey/],
    ['s3://bucket/path?prefix=p&secretAccessKey=hunter2&accessKeyId=a', /either as the path or as prefix=/],
    ['s3://bucket?partSize=lots', /not a size/],
    ['s3://bucket?partSize=1Mi&endpoint=http://127.0.0.1:1', /at least 5Mi/],
  ] as const) {
    await assert.rejects(openBlobStore(spec, '/nonexistent'), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError, `${spec}: ${String(err)}`);
      assert.match(err.message, message, spec);
      assert.doesNotMatch(err.message, /hunter2/);
      return true;
    });
  }
});
