// Small pieces for writing files that survive a crash: publish by rename, then make the
// rename itself durable; and a write that does not stop short.
import fs, { type FileHandle } from 'node:fs/promises';

/** Writes every byte (a write may take fewer than it was given): at `position`, or where the file stands. */
export async function writeAll(handle: FileHandle, bytes: Uint8Array, position?: number): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset, position === undefined ? null : position + offset);
    offset += bytesWritten;
  }
}

/** Makes a rename in `dir` durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
