// What `push` reads and where `pull` writes, for models and datasets alike (the SDK's put and
// download, and so mlfleetctl's push and pull).
//
// Push: a file is streamed as it is; a directory as the deterministic tar of shared/tar.ts. The
// header must carry the exact size before the first byte, and a tar's size is only known once
// written, so a directory is packed twice: once into a counter (which also hashes it: the
// digest is declared, and a tree that changes between the two passes is refused by the
// coordinator instead of stored half-old), then for real into the upload. Nothing is held in
// memory whole and nothing is written to disk.
//
// Pull: the bytes go to `<target>.partial`, hashed on the way; only content whose sha256 is the
// version's digest is moved into place (a rename for a file; a directory is unpacked next to
// DEST and renamed onto it), so a damaged or tampered download leaves nothing at DEST. An
// interrupted download keeps its `.partial`, and the next pull of the same content resumes from
// its end (the whole file is re-hashed, so a partial from other content is caught).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { ArtifactKind } from '../artifact-ref.js';
import { FORMAT_BY_EXTENSION, inferPathFormat } from '../artifact-ref.js';
import { writeAll } from '../durable-files.js';
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError } from '../errors.js';
import { InterruptedError } from '../interrupted-error.js';
import type { ArtifactVersion } from '../proto.js';
import { directorySize, packDirectory, packDirectoryFrom, tarDigest, unpackTar } from '../tar.js';
import { formatBytes } from '../units.js';

const humanBytes = (bytes: number) => `${formatBytes(bytes)}B`;

/** What a transfer reports its bytes to (mlfleetctl draws a bar; the SDK's callers may). */
export interface Progress {
  /** The bytes done so far (absolute, not a step). */
  update(bytes: number): void;
  /** Leaves the last state on its own line; idempotent. */
  stop(): void;
}

/** Makes a progress bar (or a no-op) for a phase of `total` bytes. */
export type ProgressFactory = (label: string, total: number, start?: number) => Progress;

/** No progress shown. */
export const NO_PROGRESS: ProgressFactory = () => ({ update: () => {}, stop: () => {} });

/** The read size for a pushed file: one chunk of the push per read. */
const FILE_READ_BYTES = 1024 * 1024;

// ---- push ----------------------------------------------------------------------------------

export interface PushSource {
  directory: boolean;
  /** The exact number of bytes open() yields. */
  sizeBytes: number;
  /** sha256:<hex> of those bytes when they were counted (directories); '' when not computed. */
  digest: string;
  /** The format the path suggests for this kind ('other' when it suggests none). */
  inferredFormat: string;
  /** A fresh stream of the bytes. */
  open(): Readable;
  /** A fresh stream of the bytes from `start` (a resumed push). */
  openFrom(start: number): Readable | AsyncIterable<Buffer>;
  /** Modification time (ms) of PATH, part of the resumable upload's key. */
  mtimeMs: number;
}

/** The extension `pull` gives a file when DEST is a directory: the first one naming the format. */
function extensionFor(format: string): string {
  return Object.entries(FORMAT_BY_EXTENSION).find(([, f]) => f === format)?.[0] ?? '';
}

/**
 * Looks at PATH and makes it pushable. A directory is packed once here, to count and hash its
 * tar; `progress` shows that pass, and `signal` stops it.
 */
export async function pushSource(kind: ArtifactKind, file: string, signal: AbortSignal, progress: ProgressFactory): Promise<PushSource> {
  const stat = await fs.stat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new InvalidArgumentError(`cannot push ${file}: no such file or directory`);
    throw err;
  });
  if (stat.isFile()) {
    return {
      directory: false,
      sizeBytes: stat.size,
      digest: '',
      inferredFormat: await inferPathFormat(kind, file, false),
      open: () => createReadStream(file, { highWaterMark: FILE_READ_BYTES }),
      openFrom: (start) => createReadStream(file, { highWaterMark: FILE_READ_BYTES, start }),
      mtimeMs: stat.mtimeMs,
    };
  }
  if (!stat.isDirectory()) throw new InvalidArgumentError(`cannot push ${file}: only a regular file or a directory can be pushed`);

  const bar = progress('packing', await directorySize(file));
  let packed: { digest: string; sizeBytes: number };
  try {
    packed = await tarDigest(file, (sizeBytes) => {
      if (signal.aborted) throw new InterruptedError('interrupted while packing; nothing was pushed');
      bar.update(sizeBytes);
    });
  } finally {
    bar.stop();
  }
  return {
    directory: true,
    ...packed,
    inferredFormat: await inferPathFormat(kind, file, true),
    open: () => packDirectory(file),
    // The tar is deterministic (and its digest declared): the bytes before `start` are skipped.
    openFrom: (start) => packDirectoryFrom(file, start),
    mtimeMs: stat.mtimeMs,
  };
}

// ---- pull ----------------------------------------------------------------------------------

export interface PullPlan {
  version: ArtifactVersion;
  /** DEST as given. */
  dest: string;
  /** Where the content ends up: DEST, or DEST/NAME-vN.EXT when DEST is a directory and the content a file. */
  target: string;
  /** Where the bytes arrive (a file's content, or a directory's tar). */
  partial: string;
}

/** Opens the download of the plan's content from `offset`. */
export type OpenDownload = (offset: number, signal: AbortSignal) => Promise<AsyncIterable<Buffer>>;

async function statOrUndefined(file: string) {
  return fs.stat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
}

/**
 * Where a version goes, refused before any byte is fetched if it cannot go there: a directory
 * into a new or empty directory; a file to a path that does not exist yet, or into an existing
 * directory as NAME-vVERSION.EXT.
 */
export async function planPull(version: ArtifactVersion, dest: string): Promise<PullPlan> {
  const found = await statOrUndefined(dest);
  const label = `${version.name}:${version.version}`;
  if (version.directory) {
    if (found && !found.isDirectory()) {
      throw new FailedPreconditionError(`${label} is a directory and ${dest} is a file; pull it to a new or empty directory`);
    }
    if (found && (await fs.readdir(dest)).length > 0) {
      throw new FailedPreconditionError(`${dest} is not empty; pull ${label} (a directory) to a new or empty directory`);
    }
    return { version, dest, target: dest, partial: `${dest}.partial` };
  }
  const target = found?.isDirectory() ? path.join(dest, `${version.name}-v${version.version}${extensionFor(version.format)}`) : dest;
  if (await statOrUndefined(target)) throw new AlreadyExistsError(`${target} already exists; remove it or pull to another path`);
  return { version, dest, target, partial: `${target}.partial` };
}

/**
 * Fetches the plan's content into its `.partial` (resuming one that is there) and checks its
 * digest. Resolves with the offset it resumed from. Aborting `signal` keeps what arrived and
 * throws InterruptedError saying how to resume.
 */
export async function downloadVerified(plan: PullPlan, open: OpenDownload, signal: AbortSignal, progress: ProgressFactory): Promise<number> {
  const { version, partial } = plan;
  for (let fresh = false; ; fresh = true) {
    let offset = fresh ? 0 : ((await statOrUndefined(partial))?.size ?? 0);
    if (fresh || offset > version.sizeBytes) {
      await fs.rm(partial, { force: true });
      offset = 0;
    }
    const hash = createHash('sha256');
    if (offset > 0) {
      for await (const chunk of createReadStream(partial, { end: offset - 1 }) as AsyncIterable<Buffer>) hash.update(chunk);
    }
    let received = offset;
    const bar = progress('pulling', version.sizeBytes, offset);
    const handle = await fs.open(partial, 'a');
    try {
      if (offset < version.sizeBytes) {
        for await (const chunk of await open(offset, signal)) {
          await writeAll(handle, chunk);
          hash.update(chunk);
          received += chunk.length;
          bar.update(received);
        }
      }
    } catch (err) {
      if (signal.aborted) {
        throw new InterruptedError(
          `interrupted; ${humanBytes(received)} of ${humanBytes(version.sizeBytes)} kept in ${partial}: run the same pull again to resume`,
        );
      }
      throw err;
    } finally {
      bar.stop();
      await handle.close();
    }
    const digest = `sha256:${hash.digest('hex')}`;
    if (digest === version.digest) return offset;
    await fs.rm(partial, { force: true });
    // A partial left by a pull of other content (the ref moved since) spoils the hash: once more from byte 0.
    if (offset > 0 && !fresh) continue;
    throw new Error(
      `the content of ${version.name}:${version.version} does not match its digest (expected ${version.digest}, got ${digest}); ` +
        `nothing was written to ${plan.dest}. Pull again; if it happens again, the stored copy or the network is damaged`,
    );
  }
}

/** Moves verified content into place: a rename for a file, an unpack then a rename for a directory. */
export async function placePulled(plan: PullPlan): Promise<void> {
  if (!plan.version.directory) {
    await fs.rename(plan.partial, plan.target);
    return;
  }
  // Unpacked beside DEST (same filesystem) and renamed onto it: DEST never holds half a tree.
  const staging = `${plan.target}.unpacking`;
  await fs.rm(staging, { recursive: true, force: true });
  try {
    await unpackTar(createReadStream(plan.partial), staging);
    // planPull saw DEST absent or empty; rmdir refuses if something appeared there since.
    if (await statOrUndefined(plan.target)) await fs.rmdir(plan.target);
    await fs.rename(staging, plan.target);
  } catch (err) {
    await fs.rm(staging, { recursive: true, force: true });
    throw err;
  }
  await fs.rm(plan.partial, { force: true });
}

