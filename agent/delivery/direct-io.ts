// Pieces written past the page cache (O_DIRECT). A buffered write of a piece first finds a page
// of cache for every 4 KiB of it: on the bench VM (whose host takes free memory back) that was
// ~2.5 CPU-s per GiB of kernel time, and the inode's lock makes the writes of one file take
// turns, so it set the pace of a pull. Written direct, the device takes the bytes from the piece
// buffer itself: ~0.1 CPU-s per GiB. A model of many GiB then also leaves the host's page cache
// to the processes using it. O_DIRECT wants the memory, the file offset and the length aligned
// to the device's block: piece buffers are page-aligned (alignedBuffer), pieces start at MiB
// offsets, and a piece of another length (a blob's last) is written through the page cache. A
// file system that refuses O_DIRECT (tmpfs, some network ones) gets every piece buffered.
// Pieces sent to peers are read back the same way (PieceReader): through the page cache they
// would cost the fresh pages the writes saved, for bytes the cache does not hold anyway.
import { constants, readSync } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import { writeAll } from '../../shared/durable-files.js';

/** The alignment O_DIRECT needs on every Linux block device (4 KiB logical blocks at most). */
export const DIRECT_ALIGN = 4096;
const WASM_PAGE = 64 * 1024;

// The global that V8 provides; the project's lib (ES2022, no DOM) does not describe it.
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number; maximum: number; shared: true }) => { readonly buffer: SharedArrayBuffer };
};

/**
 * A zeroed buffer of `size` bytes (rounded up to 64 KiB) on page-aligned shared memory: a
 * WebAssembly memory, which V8 maps by whole pages, where a plain SharedArrayBuffer comes from
 * malloc at any 16-byte boundary. Shared, so a worker thread can read it where it lies.
 */
export function alignedBuffer(size: number): Buffer {
  const pages = Math.max(1, Math.ceil(size / WASM_PAGE));
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  return Buffer.from(memory.buffer);
}

/** The file opened for O_DIRECT writes and reads, or undefined where its file system refuses them. */
export async function openDirect(file: string): Promise<FileHandle | undefined> {
  try {
    return await fs.open(file, constants.O_RDWR | constants.O_DIRECT);
  } catch (err) {
    if (refusesDirect(err)) return undefined;
    throw err;
  }
}

/** Writes pieces at their offsets: direct when the piece is aligned and the file takes it, else buffered. */
export class PieceWriter {
  /** Bytes written direct and through the page cache (said in the pull's log). */
  directBytes = 0;
  bufferedBytes = 0;

  constructor(
    private readonly buffered: FileHandle,
    private direct: FileHandle | undefined,
  ) {}

  async write(bytes: Uint8Array, position: number): Promise<void> {
    if (this.direct && aligned(bytes, position)) {
      try {
        await writeAll(this.direct, bytes, position);
        this.directBytes += bytes.length;
        return;
      } catch (err) {
        // Opened, yet refused at the write (an overlay that passes the flag on): buffered from now on.
        if (!refusesDirect(err)) throw err;
        this.direct = undefined;
      }
    }
    await writeAll(this.buffered, bytes, position);
    this.bufferedBytes += bytes.length;
  }
}

/**
 * Reads a held blob's file for peers: direct where the position and the buffer are aligned (the
 * buffer's room rounded up to a block, which a read at the end of the file needs), through the
 * page cache otherwise, or once the file refuses.
 */
export class PieceReader {
  private buffered: FileHandle | undefined;

  private constructor(
    private readonly open: (flags: number) => Promise<FileHandle>,
    private direct: FileHandle | undefined,
  ) {}

  /** `open` opens the file with the flags given (O_RDONLY, with O_DIRECT or not). */
  static async open(open: (flags: number) => Promise<FileHandle>): Promise<PieceReader> {
    try {
      return new PieceReader(open, await open(constants.O_RDONLY | constants.O_DIRECT));
    } catch (err) {
      if (!refusesDirect(err)) throw err;
      const reader = new PieceReader(open, undefined);
      reader.buffered = await open(constants.O_RDONLY);
      return reader;
    }
  }

  /** Up to `length` bytes at `position` into the start of `buffer`; fewer only at the end of the file. */
  async read(buffer: Buffer, length: number, position: number): Promise<number> {
    const rounded = directReadLength(buffer, length, position);
    if (this.direct && rounded !== undefined) {
      try {
        const { bytesRead } = await this.direct.read(buffer, 0, rounded, position);
        return Math.min(bytesRead, length);
      } catch (err) {
        if (!refusesDirect(err)) throw err;
        await this.direct.close().catch(() => undefined);
        this.direct = undefined;
      }
    }
    this.buffered ??= await this.open(constants.O_RDONLY);
    const { bytesRead } = await this.buffered.read(buffer, 0, length, position);
    return bytesRead;
  }

  async close(): Promise<void> {
    await Promise.all([this.direct?.close(), this.buffered?.close()]);
  }
}

/** What to ask a direct read for: `length` rounded up to a block (a read at the end of the file needs room for it); undefined when the read cannot be direct. */
function directReadLength(buffer: Buffer, length: number, position: number): number | undefined {
  const rounded = Math.ceil(length / DIRECT_ALIGN) * DIRECT_ALIGN;
  return position % DIRECT_ALIGN === 0 && buffer.byteOffset % DIRECT_ALIGN === 0 && buffer.length >= rounded ? rounded : undefined;
}

function aligned(bytes: Uint8Array, position: number): boolean {
  // byteOffset counts from the start of the memory, which is page-aligned for alignedBuffer's.
  return bytes.length % DIRECT_ALIGN === 0 && position % DIRECT_ALIGN === 0 && bytes.byteOffset % DIRECT_ALIGN === 0 && bytes.length > 0;
}

/**
 * readSync of `length` bytes at `position` into the start of `buffer`: from `directFd` when
 * there is one and the read is aligned (the buffer's room rounded up to a block), else from
 * `fd`. Answers the bytes read and whether `directFd` refused (then not to be used again).
 */
export function readAtSync(fds: { fd: number; directFd?: number | undefined }, buffer: Buffer, length: number, position: number): { bytesRead: number; refused: boolean } {
  const rounded = directReadLength(buffer, length, position);
  let refused = false;
  if (fds.directFd !== undefined && rounded !== undefined) {
    try {
      return { bytesRead: Math.min(readSync(fds.directFd, buffer, 0, rounded, position), length), refused };
    } catch (err) {
      if (!refusesDirect(err)) throw err;
      refused = true;
    }
  }
  return { bytesRead: readSync(fds.fd, buffer, 0, length, position), refused };
}

function refusesDirect(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EINVAL' || code === 'EOPNOTSUPP' || code === 'ENOTSUP';
}
