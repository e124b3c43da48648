// Pieces written past the page cache (agent/delivery/direct-io.ts), on a real file: aligned
// pieces go direct, others through the page cache, a file that refuses direct writes gets them
// all buffered, and the bytes on disk are right in every case.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import test from 'node:test';
import { alignedBuffer, DIRECT_ALIGN, openDirect, PieceReader, PieceWriter, readAtSync } from '../../../agent/delivery/direct-io.js';
import { tempDir } from '../../helpers/processes.js';

const MiB = 1024 * 1024;

test('aligned buffers are shared, zeroed and a whole number of 64 KiB pages', () => {
  const buffer = alignedBuffer(MiB + 1);
  assert.ok(buffer.buffer instanceof SharedArrayBuffer);
  assert.equal(buffer.length, MiB + 64 * 1024);
  assert.equal(buffer.byteOffset, 0);
  assert.ok(buffer.every((byte) => byte === 0));
});

test('whole pieces in aligned buffers go past the page cache; a short last piece goes through it; the file is exact', async (t) => {
  const file = path.join(tempDir(t), 'partial');
  const size = 2 * MiB + 1000;
  const content = randomBytes(size);
  const handle = await fs.open(file, 'wx+');
  await handle.truncate(size);
  const direct = await openDirect(file);
  t.after(async () => {
    await direct?.close();
    await handle.close();
  });
  assert.ok(direct, 'this file system takes O_DIRECT');
  const writer = new PieceWriter(handle, direct);
  // Out of order, as pieces arrive; each from an aligned buffer, as the fetcher's are.
  for (const piece of [1, 2, 0]) {
    const bytes = content.subarray(piece * MiB, Math.min(size, (piece + 1) * MiB));
    const buffer = alignedBuffer(MiB).subarray(0, bytes.length);
    bytes.copy(buffer);
    await writer.write(buffer, piece * MiB);
  }
  assert.equal(writer.directBytes, 2 * MiB);
  assert.equal(writer.bufferedBytes, 1000);
  assert.ok(readFileSync(file).equals(content));
  // A view that does not start on a block goes through the page cache, and lands right.
  const shifted = alignedBuffer(2 * MiB).subarray(512, 512 + MiB);
  content.copy(shifted, 0, 0, MiB);
  await writer.write(shifted, 0);
  assert.equal(writer.bufferedBytes, 1000 + MiB);
  assert.ok(readFileSync(file).equals(content));
  assert.equal(DIRECT_ALIGN % 512, 0);
});

test('a file that refuses direct writes at the first one gets that piece and every later one buffered', async (t) => {
  const file = path.join(tempDir(t), 'partial');
  const content = randomBytes(2 * MiB);
  const handle = await fs.open(file, 'wx+');
  t.after(() => handle.close());
  let refused = 0;
  const refusing = {
    write: async () => {
      refused += 1;
      throw Object.assign(new Error('EINVAL: invalid argument, write'), { code: 'EINVAL' });
    },
  } as unknown as FileHandle;
  const writer = new PieceWriter(handle, refusing);
  for (const piece of [0, 1]) {
    const buffer = alignedBuffer(MiB);
    content.copy(buffer, 0, piece * MiB, (piece + 1) * MiB);
    await writer.write(buffer, piece * MiB);
  }
  assert.equal(refused, 1, 'asked once, then left alone');
  assert.deepEqual([writer.directBytes, writer.bufferedBytes], [0, 2 * MiB]);
  assert.ok(readFileSync(file).equals(content));

  // Any other error is the write's failure (a full disk), not a reason to go buffered.
  const failing = new PieceWriter(handle, {
    write: async () => {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    },
  } as unknown as FileHandle);
  await assert.rejects(failing.write(alignedBuffer(MiB), 0), /ENOSPC/);
});

test('reads past the page cache: whole blocks and a short tail at the end of the file, each byte right; unaligned reads go buffered', async (t) => {
  const file = path.join(tempDir(t), 'blob');
  const content = randomBytes(MiB + 1234);
  writeFileSync(file, content);
  const direct = await openDirect(file);
  const buffered = await fs.open(file, 'r');
  const reader = await PieceReader.open((flags) => fs.open(file, flags));
  t.after(async () => {
    await Promise.all([direct?.close(), buffered.close(), reader.close()]);
  });
  assert.ok(direct);
  const buffer = alignedBuffer(MiB);
  for (const [position, length] of [[0, MiB], [MiB, 1234], [MiB, MiB], [4096, 100], [100, 5000]] as const) {
    const expected = content.subarray(position, Math.min(content.length, position + length));
    const sync = readAtSync({ fd: buffered.fd, directFd: direct.fd }, buffer, length, position);
    assert.equal(sync.refused, false);
    assert.ok(buffer.subarray(0, sync.bytesRead).equals(expected), `readAtSync ${position}+${length}`);
    const n = await reader.read(buffer, length, position);
    assert.ok(buffer.subarray(0, n).equals(expected), `PieceReader ${position}+${length}`);
  }
  // A bad descriptor is the read's error, not a reason to go buffered.
  assert.throws(() => readAtSync({ fd: buffered.fd, directFd: 987654 }, buffer, 4096, 0), /EBADF/);
});
