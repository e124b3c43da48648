// Directories as tar streams. A directory artifact (a SavedModel, a Triton model folder) is
// stored as one blob, content-addressed by sha256, so the same tree must always give the same
// bytes: packDirectory writes entries in byte order of their paths with every incidental field
// (mtime, owner, permissions beyond the execute bit) fixed. unpackTar is the way back, for
// `models pull` and the agent's cache, and treats the archive as hostile: nothing it holds can
// land outside the destination. Both stream: no file is ever held in memory whole.
import { createHash } from 'node:crypto';
import { constants, type Dirent } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import tar, { type Extract, type Header, type Pack } from 'tar-stream';
import { writeAll } from './durable-files.js';
import { InvalidArgumentError, MlfleetError } from './errors.js';

/** The size of each read from a file being packed. */
const READ_CHUNK_BYTES = 256 * 1024;
const FILE_MODE = 0o644;
const EXECUTABLE_FILE_MODE = 0o755;
const DIRECTORY_MODE = 0o755;
/** 1970-01-01: a file's mtime would make two packings of the same tree differ. */
const EPOCH = new Date(0);

interface TreeEntry {
  /** Relative, '/'-separated; directories end in '/' as tar readers expect. */
  name: string;
  type: 'file' | 'directory';
  absolute: string;
  /** The path without the trailing '/', as UTF-8: what entries are sorted by. */
  sortKey: Buffer;
}

/**
 * A deterministic tar of everything under `dir` (`dir` itself is not an entry). Regular files
 * and directories only: a symbolic link, device, socket or FIFO fails the stream with an
 * InvalidArgumentError naming it, as does a file that changes while it is being read.
 */
export function packDirectory(dir: string): Readable {
  const pack = tar.pack();
  void (async () => {
    try {
      const entries = await listTree(dir);
      for (const entry of entries) {
        if (pack.destroying) return;
        if (entry.type === 'directory') await addEntry(pack, header(entry.name, 'directory', DIRECTORY_MODE, 0));
        else await addFile(pack, entry);
      }
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
    }
  })();
  // Readable.from ends the producer too when the consumer destroys the stream early: it
  // returns the iterator, which destroys the pack, which fails the producer's next write.
  return Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false });
}

/** The same tar from byte `start` on: a resumed upload skips what it sent (the tar is deterministic). */
export async function* packDirectoryFrom(dir: string, start: number): AsyncIterable<Buffer> {
  const stream = packDirectory(dir);
  let left = start;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (left >= chunk.length) {
        left -= chunk.length;
        continue;
      }
      yield left > 0 ? chunk.subarray(left) : chunk;
      left = 0;
    }
  } finally {
    stream.destroy();
  }
}

/**
 * The size and sha256 of packDirectory(dir), packed once to learn them (a push declares both
 * before it sends the tar again). `onChunk` sees the bytes counted so far after each chunk, and
 * may throw to stop.
 */
export async function tarDigest(dir: string, onChunk?: (sizeBytes: number) => void): Promise<{ digest: string; sizeBytes: number }> {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  for await (const chunk of packDirectory(dir) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    sizeBytes += chunk.length;
    onChunk?.(sizeBytes);
  }
  return { digest: `sha256:${hash.digest('hex')}`, sizeBytes };
}

/**
 * The total bytes of the regular files under `dir`: what a progress bar counts towards (the
 * tar adds a few hundred bytes of headers per entry).
 */
export async function directorySize(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await listTree(dir)) {
    if (entry.type === 'file') total += (await fs.stat(entry.absolute)).size;
  }
  return total;
}

/** Every entry under `dir`, sorted; refuses what a tar of plain content should not hold. */
async function listTree(dir: string): Promise<TreeEntry[]> {
  const root = path.resolve(dir);
  const rootStat = await fs.stat(root).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new InvalidArgumentError(`cannot pack ${dir}: it does not exist`);
    throw err;
  });
  if (!rootStat.isDirectory()) throw new InvalidArgumentError(`cannot pack ${dir}: it is not a directory`);

  const entries: TreeEntry[] = [];
  const walk = async (absolute: string, relative: string): Promise<void> => {
    const children: Dirent[] = await fs.readdir(absolute, { withFileTypes: true });
    for (const child of children) {
      const childRelative = relative ? `${relative}/${child.name}` : child.name;
      const childAbsolute = path.join(absolute, child.name);
      if (child.isDirectory()) {
        entries.push({ name: `${childRelative}/`, type: 'directory', absolute: childAbsolute, sortKey: Buffer.from(childRelative) });
        await walk(childAbsolute, childRelative);
      } else if (child.isFile()) {
        entries.push({ name: childRelative, type: 'file', absolute: childAbsolute, sortKey: Buffer.from(childRelative) });
      } else {
        throw new InvalidArgumentError(`cannot pack ${dir}: ${childRelative} is ${describe(child)}; only regular files and directories can be pushed${child.isSymbolicLink() ? ' (replace the link with a copy of what it points to)' : ''}`);
      }
    }
  };
  await walk(root, '');
  // Byte order of the whole path, not of each directory's listing: the order then depends on
  // names alone, never on the filesystem's or the walk's.
  return entries.sort((a, b) => Buffer.compare(a.sortKey, b.sortKey));
}

function describe(dirent: Dirent): string {
  if (dirent.isSymbolicLink()) return 'a symbolic link';
  if (dirent.isBlockDevice() || dirent.isCharacterDevice()) return 'a device file';
  if (dirent.isFIFO()) return 'a named pipe';
  if (dirent.isSocket()) return 'a socket';
  return 'not a regular file';
}

function header(name: string, type: 'file' | 'directory', mode: number, size: number): Header {
  return { name, type, mode, size, mtime: EPOCH, uid: 0, gid: 0, uname: '', gname: '', linkname: '', devmajor: 0, devminor: 0 };
}

/** One entry with no body (a directory). */
async function addEntry(pack: Pack, entryHeader: Header): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const sink = pack.entry(entryHeader, (err) => (err ? reject(err) : resolve()));
    sink.on('error', reject);
    (sink as unknown as { end(): void }).end();
  });
}

async function addFile(pack: Pack, entry: TreeEntry): Promise<void> {
  let handle: FileHandle;
  try {
    // O_NOFOLLOW: a file swapped for a link after the walk is refused, not followed.
    handle = await fs.open(entry.absolute, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new InvalidArgumentError(`cannot pack ${entry.name}: it became a symbolic link while being packed`);
    throw err;
  }
  try {
    const before = await handle.stat();
    const size = before.size;
    const mode = before.mode & 0o111 ? EXECUTABLE_FILE_MODE : FILE_MODE;
    const changed = () => new InvalidArgumentError(`cannot pack ${entry.name}: it changed while being packed; push again once nothing writes to it`);
    let sink!: ReturnType<Pack['entry']>;
    const finished = new Promise<void>((resolve, reject) => {
      sink = pack.entry(header(entry.name, 'file', mode, size), (err) => (err ? reject(err) : resolve()));
      sink.on('error', reject);
    });
    finished.catch(() => {}); // awaited below; a failure before then must not go unhandled
    let position = 0;
    while (position < size) {
      const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, size - position));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) throw changed();
      position += bytesRead;
      // The consumer may have gone away (destroying the pack and this entry) while we read.
      if (sink.destroying || pack.destroying) throw new Error('the tar stream was closed');
      if (!sink.write(buffer.subarray(0, bytesRead))) await drainedOrClosed(sink);
    }
    const after = await handle.stat();
    if (after.size !== size || after.mtimeMs !== before.mtimeMs) throw changed();
    (sink as unknown as { end(): void }).end();
    await finished;
  } finally {
    await handle.close();
  }
}

interface Drainable {
  readonly destroying: boolean;
  once(event: 'drain' | 'close', listener: () => void): unknown;
  off(event: 'drain' | 'close', listener: () => void): unknown;
}

/** Resolves once the stream wants more, or is gone (a destroyed stream emits neither again). */
function drainedOrClosed(stream: Drainable): Promise<void> {
  if (stream.destroying) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.once('drain', done);
    stream.once('close', done);
  });
}

/**
 * Unpacks a tar into `dest`, which must be absent or an empty directory. Only regular files
 * and directories are accepted; an absolute path, a `..` segment, a link, a device or a
 * duplicate entry is refused with an InvalidArgumentError, as is a stream that is not a tar.
 * On any failure what was unpacked is removed again (and `dest` too when this call made it).
 */
export async function unpackTar(source: Readable | AsyncIterable<Buffer>, dest: string): Promise<void> {
  const root = path.resolve(dest);
  const createdRoot = await prepareDestination(root);
  const extract = tar.extract();
  let sourceError: unknown;
  const feeding = feed(source, extract).catch((err: unknown) => {
    sourceError = err;
    extract.destroy(err as Error);
  });
  const placed = new Map<string, 'file' | 'directory'>();
  try {
    for await (const entry of extract) await place(entry, root, placed);
  } catch (err) {
    // A source that is still sending would keep the feeder waiting on its next chunk.
    if (source instanceof Readable) source.destroy();
    await feeding;
    await removeUnpacked(root, createdRoot);
    if (err === sourceError || MlfleetError.is(err) || (err as NodeJS.ErrnoException).code !== undefined) throw err;
    throw new InvalidArgumentError(`the archive is not a valid tar: ${(err as Error).message}`);
  }
  await feeding;
  if (sourceError !== undefined) {
    await removeUnpacked(root, createdRoot);
    throw sourceError;
  }
}

/** Writes the source into the extractor, waiting whenever the extractor is behind. */
async function feed(source: Readable | AsyncIterable<Buffer>, extract: Extract): Promise<void> {
  for await (const chunk of source as AsyncIterable<Buffer>) {
    if (extract.destroying) return; // the unpacking failed; returning stops the source
    if (!extract.write(chunk)) await drainedOrClosed(extract);
  }
  if (!extract.destroying) (extract as unknown as { end(): void }).end();
}

async function prepareDestination(root: string): Promise<boolean> {
  try {
    const existing = await fs.readdir(root);
    if (existing.length > 0) throw new InvalidArgumentError(`cannot unpack into ${root}: it is not empty`);
    return false;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') throw new InvalidArgumentError(`cannot unpack into ${root}: it is not a directory`);
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await fs.mkdir(root, { recursive: true, mode: DIRECTORY_MODE });
  return true;
}

async function removeUnpacked(root: string, createdRoot: boolean): Promise<void> {
  if (createdRoot) {
    await fs.rm(root, { recursive: true, force: true });
    return;
  }
  for (const name of await fs.readdir(root).catch(() => [] as string[])) {
    await fs.rm(path.join(root, name), { recursive: true, force: true });
  }
}

type ExtractEntry = AsyncIterable<unknown> & { header: Header; resume(): unknown };

/**
 * Records what `relative` (and each directory above it) is, refusing a path the archive has
 * already given as the other kind: such an archive cannot be unpacked, and unpacking it again
 * would fail the same way, so it is an InvalidArgumentError naming the path, never an I/O error
 * to retry.
 */
function claim(placed: Map<string, 'file' | 'directory'>, relative: string, kind: 'file' | 'directory', name: string): void {
  const segments = relative.split('/');
  for (let i = 1; i < segments.length; i++) {
    const parent = segments.slice(0, i).join('/');
    if (placed.get(parent) === 'file') throw kindConflict(parent, 'a file', 'a directory', name);
    placed.set(parent, 'directory');
  }
  const before = placed.get(relative);
  if (before !== undefined && before !== kind) {
    throw kindConflict(relative, before === 'file' ? 'a file' : 'a directory', kind === 'file' ? 'a file' : 'a directory', name);
  }
  if (before === 'file') throw new InvalidArgumentError(`the archive cannot be unpacked: it holds ${JSON.stringify(name)} more than once`);
  placed.set(relative, kind);
}

function kindConflict(relative: string, first: string, then: string, name: string): InvalidArgumentError {
  const via = name.replace(/\/+$/, '') === relative ? '' : ` (by entry ${JSON.stringify(name)})`;
  return new InvalidArgumentError(`the archive cannot be unpacked: it holds ${JSON.stringify(relative)} as ${first} and then as ${then}${via}; repack it from a real directory tree`);
}

async function place(entry: ExtractEntry, root: string, placed: Map<string, 'file' | 'directory'>): Promise<void> {
  const { name, type, mode } = entry.header;
  const relative = safeRelativePath(name);
  if (type === 'directory') {
    if (relative !== '') {
      claim(placed, relative, 'directory', name);
      await fs.mkdir(path.join(root, relative), { recursive: true, mode: DIRECTORY_MODE });
    }
    entry.resume();
    return;
  }
  if (type !== 'file' && type !== 'contiguous-file') {
    throw new InvalidArgumentError(`the archive's entry ${JSON.stringify(name)} is a ${type}; only regular files and directories are unpacked`);
  }
  if (relative === '') throw new InvalidArgumentError(`the archive holds a file with no name (${JSON.stringify(name)})`);
  claim(placed, relative, 'file', name);
  const target = path.join(root, relative);
  await fs.mkdir(path.dirname(target), { recursive: true, mode: DIRECTORY_MODE });
  // 'wx' creates or fails: never follows or overwrites what is already there (claim() has
  // refused every repeat the archive itself holds, so a failure here is the file system's).
  const handle = await fs.open(target, 'wx', mode & 0o111 ? EXECUTABLE_FILE_MODE : FILE_MODE);
  try {
    for await (const chunk of entry) await writeAll(handle, chunk as Buffer);
  } finally {
    await handle.close();
  }
}

/** The entry's path relative to the destination, '' for the root; refuses escapes. */
function safeRelativePath(name: string): string {
  if (name.includes('\0')) throw new InvalidArgumentError(`the archive's entry ${JSON.stringify(name)} has a NUL in its name`);
  if (name.startsWith('/')) throw new InvalidArgumentError(`the archive's entry ${JSON.stringify(name)} is an absolute path; only relative paths are unpacked`);
  const segments = name.split('/').filter((segment) => segment !== '' && segment !== '.');
  if (segments.includes('..')) throw new InvalidArgumentError(`the archive's entry ${JSON.stringify(name)} climbs out of the destination with '..'`);
  return segments.join('/');
}

