// The agent's model cache: blobs are fetched once, verified before they are visible, unpacked
// when they are directories, checked again when taken, kept within the byte budget without
// touching what is in use, remembered across restarts, and resumed (after kill -9 too) from
// the bytes already on disk.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { constants, existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { LocalState } from '../../agent/local-state.js';
import { ModelCache, type BlobSource, type CacheBlob, type PullRequest } from '../../agent/model-cache.js';
import { Bitfield } from '../../shared/pieces.js';
import { InvalidArgumentError, NotFoundError } from '../../shared/errors.js';
import { packDirectory } from '../../shared/tar.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { tempDir } from '../helpers/processes.js';
import tar from 'tar-stream';

function digestOf(content: Buffer): string {
  return `sha256:${createHash('sha256').update(content).digest('hex')}`;
}

function hexOf(blob: CacheBlob): string {
  return blob.digest.slice('sha256:'.length);
}

/** Resolves with `promise`, or rejects with the signal's reason once it aborts. */
function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => (signal.removeEventListener('abort', onAbort), resolve(value)),
      (err: unknown) => (signal.removeEventListener('abort', onAbort), reject(err)),
    );
  });
}

/**
 * The piece fetcher in memory: bytes by digest, written piece by piece (PIECE bytes each, in
 * order, from the first missing piece) and checkpointed after each. It records what was asked
 * (the offset of the first missing piece) and how many bytes it sent, and can be told to fail
 * after so many bytes, to pause at a byte until resumed, or to serve other bytes than the
 * digest names (it checks no piece hashes: the cache's whole-digest check must catch them).
 */
const PIECE = 50_000;

class FakeBlobSource implements BlobSource {
  readonly requests: { digest: string; offset: number }[] = [];
  bytesServed = 0;
  private readonly blobs = new Map<string, Buffer>();
  private readonly failures: number[] = [];
  private pause: { at: number; reached: () => void; resumed: Promise<void> } | undefined;

  constructor(private readonly chunkBytes = 16 * 1024) {}

  add(content: Buffer, directory = false): CacheBlob {
    const digest = digestOf(content);
    this.blobs.set(digest, content);
    return { digest, sizeBytes: content.length, directory };
  }

  /** Serves `content` under `digest` from now on: a store whose bytes were swapped. */
  replace(digest: string, content: Buffer): void {
    this.blobs.set(digest, content);
  }

  /** The next pull breaks, like a cut connection, once it has sent `bytes`. */
  failNextAfter(bytes: number): void {
    this.failures.push(bytes);
  }

  /** Pulls stop when the blob's byte `at` is next to send, until resume() is called. */
  pauseAt(at: number): { reached: Promise<void>; resume: () => void } {
    let reached!: () => void;
    let resume!: () => void;
    const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
    const resumed = new Promise<void>((resolve) => (resume = resolve));
    this.pause = { at, reached, resumed };
    return { reached: reachedPromise, resume: () => ((this.pause = undefined), resume()) };
  }

  async pull(request: PullRequest): Promise<void> {
    const { digest, handle, signal } = request;
    const content = this.blobs.get(digest);
    const count = Math.ceil(request.sizeBytes / PIECE);
    const bitfield = request.resume?.pieceBytes === PIECE ? new Bitfield(count, request.resume.bitfield.bytes) : new Bitfield(count);
    let first = 0;
    while (first < count && bitfield.has(first)) first += 1;
    this.requests.push({ digest, offset: Math.min(first * PIECE, request.sizeBytes) });
    if (!content) throw new NotFoundError(`no model or dataset has content ${digest}`);
    const failAfter = this.failures.shift();
    let served = 0;
    for (let piece = first; piece < count; piece += 1) {
      if (bitfield.has(piece)) continue;
      const end = Math.min((piece + 1) * PIECE, content.length);
      for (let at = piece * PIECE; at < end; ) {
        const pause = this.pause;
        if (pause && at >= pause.at) {
          pause.reached();
          await unlessAborted(pause.resumed, signal);
        }
        signal.throwIfAborted();
        if (failAfter !== undefined && served >= failAfter) throw new Error('connection reset by peer');
        let stop = Math.min(at + this.chunkBytes, end);
        if (failAfter !== undefined) stop = Math.min(stop, at + failAfter - served);
        if (pause && pause.at > at) stop = Math.min(stop, pause.at);
        await handle.write(content, at, stop - at, at);
        this.bytesServed += stop - at;
        served += stop - at;
        at = stop;
        await nextTurn();
      }
      await handle.datasync();
      bitfield.set(piece);
      request.onProgress({ pieceBytes: PIECE, bitfield: new Bitfield(count, bitfield.bytes) });
      request.onCheckpoint({ pieceBytes: PIECE, bitfield: new Bitfield(count, bitfield.bytes) });
    }
  }
}

interface OpenCache {
  cache: ModelCache;
  cacheDir: string;
  close(): Promise<void>;
}

/** A cache over the agent's own database, as the agent opens it; closed in t.after(). */
function openCache(t: TestContext, dataDir: string, source: BlobSource, options: { maxBytes?: number; clock?: FakeClock; keep?: string[]; maxConcurrentDownloads?: number } = {}): OpenCache {
  const state = LocalState.open(dataDir);
  const cacheDir = path.join(dataDir, 'cache');
  const cache = ModelCache.open({ dir: cacheDir, db: state.database, maxBytes: options.maxBytes ?? 1024 ** 3, source, clock: options.clock ?? new FakeClock(), keep: options.keep, maxConcurrentDownloads: options.maxConcurrentDownloads });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await cache.close();
    state.close();
  };
  t.after(close);
  return { cache, cacheDir, close };
}

async function tarOf(dir: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of packDirectory(dir)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function flipFirstByte(file: string): Promise<void> {
  await fs.chmod(file, 0o644);
  const bytes = await fs.readFile(file);
  bytes[0] = bytes[0]! ^ 0xff;
  await fs.writeFile(file, bytes);
}

function totalBytes(cache: ModelCache): number {
  return cache.entries().reduce((sum, entry) => sum + entry.sizeBytes, 0);
}

test('a file blob is fetched once, verified, and published under blobs/<hex>', async (t) => {
  const source = new FakeBlobSource();
  const content = randomBytes(100_000);
  const blob = source.add(content);
  const { cache, cacheDir } = openCache(t, tempDir(t), source);
  let changes = 0;
  const stop = cache.onChange(() => void (changes += 1));
  t.after(stop);

  const lease = await cache.acquire(blob);
  assert.equal(lease.path, path.join(cacheDir, 'blobs', hexOf(blob)));
  assert.deepEqual(await fs.readFile(lease.path), content);
  assert.deepEqual(cache.entries(), [{ digest: blob.digest, sizeBytes: content.length, inUse: true }]);
  assert.deepEqual(await fs.readdir(path.join(cacheDir, 'partial')), [], 'no download is left behind');
  assert.ok(changes >= 2, 'published and taken into use are both announced');

  lease.release();
  lease.release(); // idempotent
  assert.deepEqual(cache.entries(), [{ digest: blob.digest, sizeBytes: content.length, inUse: false }]);

  const again = await cache.acquire(blob);
  assert.equal(again.path, lease.path);
  assert.deepEqual(source.requests, [{ digest: blob.digest, offset: 0 }], 'a cached blob is not fetched again');
  again.release();
});

test('a directory blob is unpacked into blobs/<hex>/ and its tar is not kept', async (t) => {
  const tree = tempDir(t);
  await fs.mkdir(path.join(tree, 'variables'));
  await fs.writeFile(path.join(tree, 'saved_model.pb'), randomBytes(5_000));
  await fs.writeFile(path.join(tree, 'variables', 'variables.data-00000-of-00001'), randomBytes(70_000));
  const tar = await tarOf(tree);
  const source = new FakeBlobSource();
  const blob = source.add(tar, true);
  const { cache, cacheDir } = openCache(t, tempDir(t), source);

  const lease = await cache.acquire(blob);
  assert.equal(lease.path, path.join(cacheDir, 'blobs', hexOf(blob)));
  assert.ok((await fs.stat(lease.path)).isDirectory());
  for (const file of ['saved_model.pb', 'variables/variables.data-00000-of-00001']) {
    assert.deepEqual(await fs.readFile(path.join(lease.path, file)), await fs.readFile(path.join(tree, file)), file);
  }
  assert.deepEqual(cache.entries(), [{ digest: blob.digest, sizeBytes: tar.length, inUse: true }], 'the size is the blob\'s, as the registry reports it');
  assert.deepEqual(await fs.readdir(path.join(cacheDir, 'partial')), []);
  assert.deepEqual(await fs.readdir(path.join(cacheDir, 'tmp')), []);
  lease.release();
});

test('two allocations acquiring one model at once share one download and one entry', async (t) => {
  const source = new FakeBlobSource();
  const content = randomBytes(200_000);
  const blob = source.add(content);
  const { cache } = openCache(t, tempDir(t), source);
  const paused = source.pauseAt(0);

  const first = cache.acquire(blob);
  const second = cache.acquire(blob);
  await paused.reached;
  paused.resume();
  const [a, b] = await Promise.all([first, second]);

  assert.equal(a.path, b.path);
  assert.equal(source.requests.length, 1);
  assert.equal(source.bytesServed, content.length);
  a.release();
  assert.equal(cache.entries()[0]?.inUse, true, 'still held by the other allocation');
  b.release();
  assert.equal(cache.entries()[0]?.inUse, false);
});

test('bytes that do not match the digest are refused and nothing is published', async (t) => {
  const source = new FakeBlobSource();
  const content = randomBytes(50_000);
  const blob = source.add(content);
  const tampered = Buffer.from(content);
  tampered[1234] = tampered[1234]! ^ 0x01;
  source.replace(blob.digest, tampered);
  const { cache, cacheDir } = openCache(t, tempDir(t), source);

  await assert.rejects(cache.acquire(blob), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'CORRUPT_BLOB');
    assert.match(err.message, new RegExp(`bytes fetched for ${blob.digest} hash to sha256:`));
    return true;
  });
  assert.deepEqual(cache.entries(), []);
  assert.deepEqual(await fs.readdir(path.join(cacheDir, 'blobs')), []);
  assert.deepEqual(await fs.readdir(path.join(cacheDir, 'partial')), [], 'the bad bytes are not kept to resume from');

  source.replace(blob.digest, content);
  const lease = await cache.acquire(blob);
  assert.deepEqual(source.requests.map((r) => r.offset), [0, 0], 'the retry starts from zero');
  assert.deepEqual(await fs.readFile(lease.path), content);
  lease.release();
});

test('a cached file altered on disk is detected on the next acquire and fetched again', async (t) => {
  const source = new FakeBlobSource();
  const content = randomBytes(60_000);
  const blob = source.add(content);
  const { cache } = openCache(t, tempDir(t), source);
  const first = await cache.acquire(blob);
  first.release();

  await flipFirstByte(first.path);
  const second = await cache.acquire(blob);
  assert.deepEqual(await fs.readFile(second.path), content);
  assert.deepEqual(source.requests.map((r) => r.offset), [0, 0]);
  second.release();
});

test('a cached directory with a changed, missing or added file is detected and fetched again', async (t) => {
  const tree = tempDir(t);
  await fs.writeFile(path.join(tree, 'model.onnx'), randomBytes(30_000));
  await fs.writeFile(path.join(tree, 'config.json'), '{"labels":["cat","dog"]}');
  const source = new FakeBlobSource();
  const blob = source.add(await tarOf(tree), true);
  const { cache } = openCache(t, tempDir(t), source);
  const damages: ((dir: string) => Promise<void>)[] = [
    (dir) => flipFirstByte(path.join(dir, 'model.onnx')),
    (dir) => fs.rm(path.join(dir, 'config.json')),
    (dir) => fs.writeFile(path.join(dir, 'extra.txt'), 'not part of the version'),
  ];

  let lease = await cache.acquire(blob);
  for (const damage of damages) {
    lease.release();
    await damage(lease.path);
    lease = await cache.acquire(blob);
    assert.deepEqual((await fs.readdir(lease.path)).sort(), ['config.json', 'model.onnx']);
    assert.deepEqual(await fs.readFile(path.join(lease.path, 'model.onnx')), await fs.readFile(path.join(tree, 'model.onnx')));
  }
  lease.release();
  assert.equal(source.requests.length, 1 + damages.length);
});

test('eviction keeps the cache within its budget, least recently used first', async (t) => {
  const clock = new FakeClock();
  const source = new FakeBlobSource();
  const [a, b, c, d] = [1, 2, 3, 4].map(() => source.add(randomBytes(1_000))) as [CacheBlob, CacheBlob, CacheBlob, CacheBlob];
  const { cache, cacheDir } = openCache(t, tempDir(t), source, { maxBytes: 3_000, clock });
  for (const blob of [a, b, c, a]) {
    clock.advance(1_000);
    await cache.prefetch(blob);
  }

  clock.advance(1_000);
  await cache.prefetch(d);

  assert.deepEqual(new Set(cache.entries().map((e) => e.digest)), new Set([a.digest, c.digest, d.digest]), 'b was used least recently');
  assert.ok(totalBytes(cache) <= 3_000);
  await cache.close(); // waits for the deletions
  assert.deepEqual((await fs.readdir(path.join(cacheDir, 'blobs'))).sort(), [a, c, d].map(hexOf).sort());
});

test('an entry in use is never evicted: the cache stays over budget until it is released', async (t) => {
  const clock = new FakeClock();
  const source = new FakeBlobSource();
  const [a, b, c] = [1, 2, 3].map(() => source.add(randomBytes(1_000))) as [CacheBlob, CacheBlob, CacheBlob];
  const { cache } = openCache(t, tempDir(t), source, { maxBytes: 2_000, clock });
  const leaseA = await cache.acquire(a);
  clock.advance(1_000);
  const leaseB = await cache.acquire(b);
  clock.advance(1_000);
  const leaseC = await cache.acquire(c);

  assert.deepEqual(cache.entries().map((e) => e.inUse), [true, true, true]);
  assert.equal(totalBytes(cache), 3_000, 'over budget, because everything is in use');

  clock.advance(1_000);
  leaseB.release();
  assert.deepEqual(new Set(cache.entries().map((e) => e.digest)), new Set([a.digest, c.digest]), 'released, b goes');
  assert.equal(totalBytes(cache), 2_000);
  leaseA.release();
  leaseC.release();
});

test('a blob larger than the whole budget is still fetched, pushing out everything idle', async (t) => {
  const source = new FakeBlobSource();
  const small = source.add(randomBytes(500));
  const large = source.add(randomBytes(5_000));
  const { cache } = openCache(t, tempDir(t), source, { maxBytes: 2_000 });
  await cache.prefetch(small);

  const lease = await cache.acquire(large);
  assert.deepEqual(cache.entries(), [{ digest: large.digest, sizeBytes: 5_000, inUse: true }]);
  lease.release();
  assert.deepEqual(cache.entries(), [], 'once released it is over budget on its own');
});

test('the cache survives an agent restart: entries stay and are not fetched again', async (t) => {
  const dataDir = tempDir(t);
  const tree = tempDir(t);
  await fs.writeFile(path.join(tree, 'weights.bin'), randomBytes(20_000));
  const source = new FakeBlobSource();
  const file = source.add(randomBytes(40_000));
  const directory = source.add(await tarOf(tree), true);

  const before = openCache(t, dataDir, source);
  await before.cache.prefetch(file);
  await before.cache.prefetch(directory);
  const reported = before.cache.entries();
  await before.close();

  const after = openCache(t, dataDir, source);
  assert.deepEqual(after.cache.entries(), reported);
  const fileLease = await after.cache.acquire(file);
  const dirLease = await after.cache.acquire(directory);
  assert.equal(source.requests.length, 2, 'both came from disk');
  assert.deepEqual(await fs.readdir(dirLease.path), ['weights.bin']);
  fileLease.release();
  dirLease.release();
});

test('a restart with a smaller budget keeps what running tasks use until the reconciler has leased it', async (t) => {
  const dataDir = tempDir(t);
  const source = new FakeBlobSource();
  const used = source.add(randomBytes(30_000));
  const idle = source.add(randomBytes(30_000));
  const before = openCache(t, dataDir, source);
  await before.cache.prefetch(used);
  await before.cache.prefetch(idle);
  await before.close();

  // Room for one: the idle entry goes at once, the one a running task uses stays.
  const after = openCache(t, dataDir, source, { maxBytes: 40_000, keep: [used.digest] });
  assert.deepEqual(after.cache.entries().map((e) => e.digest), [used.digest]);
  const lease = await after.cache.acquire(used);
  after.cache.releaseKept();
  assert.deepEqual(after.cache.entries().map((e) => e.digest), [used.digest], 'leased, so still kept');
  assert.equal(source.requests.length, 2, 'nothing fetched again');
  lease.release();
});

test('on restart, index rows without files and files without index rows are dropped', async (t) => {
  const dataDir = tempDir(t);
  const source = new FakeBlobSource();
  const kept = source.add(randomBytes(1_000));
  const lost = source.add(randomBytes(1_000));
  const before = openCache(t, dataDir, source);
  await before.cache.prefetch(kept);
  const lostLease = await before.cache.acquire(lost);
  lostLease.release();
  await before.close();

  await fs.rm(lostLease.path, { force: true });
  const stray = path.join(before.cacheDir, 'blobs', 'f'.repeat(64));
  await fs.writeFile(stray, 'left by someone else');
  await fs.mkdir(path.join(before.cacheDir, 'tmp', 'half-unpacked'), { recursive: true });

  const after = openCache(t, dataDir, source);
  assert.deepEqual(after.cache.entries().map((e) => e.digest), [kept.digest]);
  assert.equal(existsSync(stray), false);
  assert.deepEqual(await fs.readdir(path.join(after.cacheDir, 'tmp')), []);
});

test('a download cut off mid-way resumes after a restart from the pieces already on disk', async (t) => {
  const dataDir = tempDir(t);
  const source = new FakeBlobSource();
  const content = randomBytes(1024 * 1024);
  const blob = source.add(content);
  const cutAt = 300_000;
  source.failNextAfter(cutAt);

  const before = openCache(t, dataDir, source);
  await assert.rejects(before.cache.acquire(blob), /connection reset by peer/);
  assert.deepEqual(before.cache.entries(), []);
  await before.close();

  const after = openCache(t, dataDir, source);
  const lease = await after.cache.acquire(blob);
  assert.deepEqual(source.requests.map((r) => r.offset), [0, cutAt]);
  assert.equal(source.bytesServed, content.length, 'every byte was sent once');
  assert.deepEqual(await fs.readFile(lease.path), content);
  lease.release();
});

test('a prefetch cut off is remembered and resumed after a restart without being asked again', async (t) => {
  const dataDir = tempDir(t);
  const source = new FakeBlobSource();
  const content = randomBytes(600_000);
  const blob = source.add(content);
  const missing = { digest: digestOf(Buffer.from('never pushed')), sizeBytes: 12, directory: false };
  source.failNextAfter(250_000);

  const before = openCache(t, dataDir, source);
  await assert.rejects(before.cache.prefetch(blob), /connection reset by peer/);
  await assert.rejects(before.cache.prefetch(missing), NotFoundError);
  assert.deepEqual(before.cache.pendingPrefetches(), [blob.digest], 'a cut prefetch is kept; one that can never succeed is not');
  await before.close();

  const after = openCache(t, dataDir, source);
  assert.deepEqual(after.cache.pendingPrefetches(), [blob.digest]);
  await after.cache.resumePrefetches();
  assert.deepEqual(after.cache.entries().map((e) => e.digest), [blob.digest]);
  assert.deepEqual(after.cache.pendingPrefetches(), []);
  assert.deepEqual(source.requests.filter((r) => r.digest === blob.digest).map((r) => r.offset), [0, 250_000], 'resumed from the bytes on disk');
  const requests = source.requests.length;
  await after.cache.resumePrefetches();
  assert.equal(source.requests.length, requests, 'nothing left to resume');
});

test('a directory blob whose tar holds a path as a file and as a directory is refused for good, not retried', async (t) => {
  const pack = tar.pack();
  pack.entry({ name: 'model', type: 'file' }, 'weights');
  pack.entry({ name: 'model/', type: 'directory' });
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  const source = new FakeBlobSource();
  const blob = source.add(Buffer.concat(chunks), true);
  const { cache, cacheDir } = openCache(t, tempDir(t), source);

  await assert.rejects(cache.prefetch(blob), (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, String(err));
    assert.match(err.message, /cannot be unpacked: .*"model" as a file and then as a directory/);
    return true;
  });
  assert.deepEqual(cache.pendingPrefetches(), [], 'not remembered for a retry');
  assert.deepEqual(await fs.readdir(path.join(cacheDir, 'partial')), [], 'the bytes are discarded');
  assert.deepEqual(cache.entries(), []);
});

test('an acquire that gives up stops the download, and the next acquire resumes it', async (t) => {
  const source = new FakeBlobSource();
  const content = randomBytes(500_000);
  const blob = source.add(content);
  const { cache } = openCache(t, tempDir(t), source);
  const paused = source.pauseAt(200_000);
  const abort = new AbortController();

  const acquiring = cache.acquire(blob, abort.signal);
  await paused.reached;
  abort.abort(new Error('the allocation was removed'));
  await assert.rejects(acquiring, /the allocation was removed/);

  paused.resume();
  const lease = await cache.acquire(blob);
  assert.deepEqual(source.requests.map((r) => r.offset), [0, 200_000]);
  assert.equal(source.bytesServed, content.length);
  lease.release();
});

test('a digest the coordinator does not have fails the acquire and leaves nothing behind', async (t) => {
  const source = new FakeBlobSource();
  const { cache, cacheDir } = openCache(t, tempDir(t), source);
  const missing = { digest: digestOf(Buffer.from('never pushed')), sizeBytes: 12, directory: false };
  await assert.rejects(cache.acquire(missing), NotFoundError);
  await assert.rejects(cache.acquire({ ...missing, digest: 'sha256:../../etc' }), /is not a digest/);
  assert.deepEqual(await fs.readdir(path.join(cacheDir, 'partial')), []);
});

test('closing the cache stops a download in progress and fails its acquire', async (t) => {
  const source = new FakeBlobSource();
  const blob = source.add(randomBytes(100_000));
  const { cache } = openCache(t, tempDir(t), source);
  const paused = source.pauseAt(50_000);
  const acquiring = cache.acquire(blob);
  await paused.reached;

  await cache.close();
  await assert.rejects(acquiring, /the model cache is closing/);
  await assert.rejects(cache.acquire(blob), /the model cache is closed/);
});

test('heldPieces tells the peer routes what a download has so far, then the whole published file', async (t) => {
  const source = new FakeBlobSource();
  const content = randomBytes(230_000);
  const blob = source.add(content);
  const tree = tempDir(t);
  await fs.writeFile(path.join(tree, 'a.txt'), 'a');
  const directory = source.add(await tarOf(tree), true);
  const { cache } = openCache(t, tempDir(t), source);
  assert.equal(cache.heldPieces(blob.digest), undefined, 'nothing yet');
  assert.equal(cache.heldPieces('sha256:nonsense'), undefined);

  const paused = source.pauseAt(2 * PIECE);
  const acquiring = cache.acquire(blob);
  await paused.reached;
  const partial = cache.heldPieces(blob.digest);
  assert.ok(partial);
  assert.equal(partial.pieceBytes, PIECE);
  assert.equal(partial.sizeBytes, content.length);
  assert.deepEqual([0, 1, 2, 3, 4].map((piece) => partial.bitfield.has(piece)), [true, true, false, false, false]);
  const early = await partial.open(constants.O_RDONLY);
  const firstTwo = Buffer.alloc(2 * PIECE);
  await early.read(firstTwo, 0, firstTwo.length, 0);
  assert.ok(firstTwo.equals(content.subarray(0, 2 * PIECE)));

  paused.resume();
  const lease = await acquiring;
  // A handle opened on the partial file keeps reading the same bytes after the rename.
  await early.read(firstTwo, 0, firstTwo.length, 0);
  assert.ok(firstTwo.equals(content.subarray(0, 2 * PIECE)));
  await early.close();
  const whole = cache.heldPieces(blob.digest);
  assert.ok(whole && whole.bitfield.complete());
  assert.equal(whole.pieceBytes, 8 * 1024 * 1024, 'a finished entry is cut at the delivery piece size');
  const handle = await whole.open(constants.O_RDONLY);
  assert.ok((await handle.readFile()).equals(content));
  await handle.close();
  lease.release();

  await cache.prefetch(directory);
  assert.equal(cache.heldPieces(directory.digest), undefined, 'an unpacked directory serves no pieces');
});

test('--max-concurrent-downloads: past the limit, a blob waits for a download to finish before it fetches a byte', async (t) => {
  const source = new FakeBlobSource();
  const [a, b] = [source.add(randomBytes(120_000)), source.add(randomBytes(120_000))];
  const { cache } = openCache(t, tempDir(t), source, { maxConcurrentDownloads: 1 });
  const paused = source.pauseAt(60_000);
  const first = cache.acquire(a);
  await paused.reached;
  const second = cache.acquire(b);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(source.requests.map((r) => r.digest), [a.digest], 'b waits for its turn');
  paused.resume();
  const leases = await Promise.all([first, second]);
  assert.deepEqual(source.requests.map((r) => r.digest), [a.digest, b.digest]);
  for (const lease of leases) lease.release();
});
