// Directory tars (shared/tar.ts): the same tree always packs to the same bytes, so its digest
// names its content; unpacking restores the tree and refuses anything that would land outside
// the destination or is not a plain file or directory.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import tar, { type Header } from 'tar-stream';
import { InvalidArgumentError } from '../../shared/errors.js';
import { directorySize, packDirectory, unpackTar } from '../../shared/tar.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-tar-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** Every path under `dir` with its kind, mode bits that matter, and content. */
async function describeTree(dir: string): Promise<Record<string, string>> {
  const tree: Record<string, string> = {};
  const walk = async (absolute: string, relative: string) => {
    for (const name of (await fs.readdir(absolute)).sort()) {
      const childAbsolute = path.join(absolute, name);
      const childRelative = relative ? `${relative}/${name}` : name;
      const stat = await fs.lstat(childAbsolute);
      if (stat.isDirectory()) {
        tree[`${childRelative}/`] = 'dir';
        await walk(childAbsolute, childRelative);
      } else {
        tree[childRelative] = `${stat.mode & 0o111 ? 'exec' : 'file'}:${sha256(await fs.readFile(childAbsolute))}`;
      }
    }
  };
  await walk(dir, '');
  return tree;
}

/** A SavedModel-like tree, written in the order given. */
async function writeModel(dir: string, order: 'forward' | 'backward'): Promise<void> {
  const files: [string, string | Buffer][] = [
    ['saved_model.pb', 'graph'],
    ['variables/variables.index', 'index'],
    ['variables/variables.data-00000-of-00001', Buffer.alloc(300_000, 7)],
    ['assets/vocab.txt', 'a\nb\n'],
    ['a-b', 'sorts between "a" and "a/"'],
    ['a/inner', 'nested'],
    [`${'deep/'.repeat(30)}long-name.bin`, 'a path longer than ustar holds'],
    ['ünïcode.txt', 'non-ASCII names'],
  ];
  for (const [name, content] of order === 'forward' ? files : [...files].reverse()) {
    await fs.mkdir(path.join(dir, path.dirname(name)), { recursive: true });
    await fs.writeFile(path.join(dir, name), content);
  }
  await fs.mkdir(path.join(dir, 'empty-dir'));
  await fs.writeFile(path.join(dir, 'run.sh'), '#!/bin/sh\n', { mode: 0o700 });
}

type RawHeader = Partial<Header> & { name: string };

/** A tar holding the given raw entries, for archives packDirectory would never write. */
async function rawTar(entries: readonly { header: RawHeader; body?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const { header, body } of entries) pack.entry(header, body ?? '');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

test('the same content packs to the same bytes whatever order and time it was written in', async (t) => {
  const [first, second] = [tempDir(t), tempDir(t)];
  await writeModel(first, 'forward');
  await new Promise((resolve) => setTimeout(resolve, 20));
  await writeModel(second, 'backward');
  await fs.utimes(path.join(second, 'saved_model.pb'), new Date(2001, 1, 1), new Date(2001, 1, 1));
  await fs.chmod(path.join(second, 'assets/vocab.txt'), 0o600);

  const [a, b] = [await collect(packDirectory(first)), await collect(packDirectory(second))];
  assert.equal(sha256(a), sha256(b));
  assert.ok(a.equals(b));
});

test('entries are sorted by path in byte order, with fixed owners, times and modes', async (t) => {
  const dir = tempDir(t);
  await writeModel(dir, 'backward');
  const extract = tar.extract();
  Readable.from(await collect(packDirectory(dir))).pipe(extract);
  const headers: Header[] = [];
  for await (const entry of extract) {
    headers.push(entry.header);
    entry.resume();
  }
  const names = headers.map((h) => h.name.replace(/\/$/, ''));
  assert.deepEqual(names, [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))));
  assert.ok(names.indexOf('a-b') < names.indexOf('a/inner'), "'-' sorts before '/'");
  for (const h of headers) {
    assert.equal(h.mtime?.getTime(), 0);
    assert.equal(h.uid, 0);
    assert.equal(h.gid, 0);
    assert.equal(h.uname, '');
    assert.equal(h.gname, '');
    const expected = h.type === 'directory' || h.name === 'run.sh' ? 0o755 : 0o644;
    assert.equal(h.mode, expected, `mode of ${h.name}`);
  }
  assert.equal(headers.find((h) => h.name === 'empty-dir/')?.type, 'directory');
});

test('a packed tree unpacks to an identical tree', async (t) => {
  const source = tempDir(t);
  await writeModel(source, 'forward');
  const dest = path.join(tempDir(t), 'unpacked');
  await unpackTar(packDirectory(source), dest);
  assert.deepEqual(await describeTree(dest), await describeTree(source));
  assert.ok(Object.keys(await describeTree(dest)).includes('empty-dir/'));
});

test('an empty directory packs to an empty archive and unpacks to an empty directory', async (t) => {
  const bytes = await collect(packDirectory(tempDir(t)));
  assert.equal(bytes.length, 1024, 'only the end-of-archive blocks');
  assert.ok(bytes.every((byte) => byte === 0));
  const dest = path.join(tempDir(t), 'out');
  await unpackTar(Readable.from([bytes]), dest);
  assert.deepEqual(await fs.readdir(dest), []);
});

test('packing refuses a symbolic link and names it', async (t) => {
  const dir = tempDir(t);
  await fs.writeFile(path.join(dir, 'weights.bin'), 'w');
  await fs.symlink('weights.bin', path.join(dir, 'link.bin'));
  await assert.rejects(collect(packDirectory(dir)), (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError);
    assert.match(err.message, /link\.bin is a symbolic link/);
    return true;
  });
});

test('packing something that is not a directory fails with a clear error', async (t) => {
  const dir = tempDir(t);
  await fs.writeFile(path.join(dir, 'file'), 'x');
  await assert.rejects(collect(packDirectory(path.join(dir, 'file'))), /is not a directory/);
  await assert.rejects(collect(packDirectory(path.join(dir, 'missing'))), /does not exist/);
});

test('a consumer that stops reading early ends the packing and leaves no file open', async (t) => {
  const dir = tempDir(t);
  await fs.writeFile(path.join(dir, 'big.bin'), Buffer.alloc(8 * 1024 * 1024, 1));
  const openFiles = async () => (await fs.readdir('/proc/self/fd')).length;
  const before = await openFiles();
  const stream = packDirectory(dir);
  for await (const _ of stream) break; // destroys the stream
  assert.ok(stream.destroyed);
  const deadline = Date.now() + 2_000;
  while ((await openFiles()) > before && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(await openFiles(), before);
});

test('directorySize counts the bytes of the regular files', async (t) => {
  const dir = tempDir(t);
  await fs.mkdir(path.join(dir, 'sub'));
  await fs.writeFile(path.join(dir, 'a'), Buffer.alloc(10));
  await fs.writeFile(path.join(dir, 'sub/b'), Buffer.alloc(5));
  assert.equal(await directorySize(dir), 15);
});

for (const [what, entries, message] of [
  ['a parent-directory entry', [{ header: { name: '../evil', type: 'file' }, body: 'x' }], /climbs out/],
  ['a nested parent-directory entry', [{ header: { name: 'ok/../../evil', type: 'file' }, body: 'x' }], /climbs out/],
  ['an absolute path', [{ header: { name: '/tmp/mlfleet-evil', type: 'file' }, body: 'x' }], /absolute path/],
  ['a symbolic link', [{ header: { name: 'link', type: 'symlink', linkname: '/etc/passwd' } }], /symlink/],
  ['a hard link', [{ header: { name: 'link', type: 'link', linkname: '/etc/passwd' } }], /link/],
  ['a device file', [{ header: { name: 'dev', type: 'character-device', devmajor: 1, devminor: 3 } }], /character-device/],
  ['a duplicate file', [{ header: { name: 'a', type: 'file' }, body: 'one' }, { header: { name: 'a', type: 'file' }, body: 'two' }], /more than once/],
  ['a file and then a directory of the same name', [{ header: { name: 'model', type: 'file' }, body: 'x' }, { header: { name: 'model/', type: 'directory' } }], /"model" as a file and then as a directory/],
  ['a directory and then a file of the same name', [{ header: { name: 'model/', type: 'directory' } }, { header: { name: 'model', type: 'file' }, body: 'x' }], /"model" as a directory and then as a file/],
  ['a file and then a file beneath it', [{ header: { name: 'model', type: 'file' }, body: 'x' }, { header: { name: 'model/weights.bin', type: 'file' }, body: 'y' }], /"model" as a file and then as a directory \(by entry "model\/weights.bin"\)/],
  ['a file beneath a path and then a file of that name', [{ header: { name: 'model/weights.bin', type: 'file' }, body: 'y' }, { header: { name: 'model', type: 'file' }, body: 'x' }], /"model" as a directory and then as a file/],
] as const) {
  test(`unpacking refuses ${what} and leaves nothing behind`, async (t) => {
    const outer = tempDir(t);
    const dest = path.join(outer, 'dest');
    const archive = await rawTar([{ header: { name: 'fine.txt', type: 'file' }, body: 'fine' }, ...entries]);
    await assert.rejects(unpackTar(Readable.from([archive]), dest), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError, String(err));
      assert.match(err.message, message);
      return true;
    });
    assert.deepEqual(await fs.readdir(outer), [], 'dest is removed and nothing was written beside it');
    assert.equal(existsSync('/tmp/mlfleet-evil'), false);
  });
}

test('unpacking into a directory that is not empty is refused', async (t) => {
  const dest = tempDir(t);
  await fs.writeFile(path.join(dest, 'already'), 'here');
  await assert.rejects(unpackTar(Readable.from([Buffer.alloc(1024)]), dest), /not empty/);
  assert.deepEqual(await fs.readdir(dest), ['already']);
});

test('a truncated or garbled archive is refused and what was unpacked is removed', async (t) => {
  const source = tempDir(t);
  await writeModel(source, 'forward');
  const bytes = await collect(packDirectory(source));
  const existing = tempDir(t);
  await assert.rejects(unpackTar(Readable.from([bytes.subarray(0, 200_000)]), existing), (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError);
    assert.match(err.message, /not a valid tar/);
    return true;
  });
  assert.deepEqual(await fs.readdir(existing), [], 'an existing empty destination is emptied again');
  await assert.rejects(unpackTar(Readable.from([Buffer.alloc(512, 'x')]), path.join(existing, 'x')), /not a valid tar/);
});

test('a source that fails makes unpacking fail with its error', async (t) => {
  const dest = path.join(tempDir(t), 'dest');
  async function* failing(): AsyncGenerator<Buffer> {
    yield await rawTar([{ header: { name: 'a', type: 'file' }, body: 'a' }]).then((b) => b.subarray(0, 1024));
    throw new Error('connection reset');
  }
  await assert.rejects(unpackTar(failing(), dest), /connection reset/);
  assert.equal(existsSync(dest), false);
});
