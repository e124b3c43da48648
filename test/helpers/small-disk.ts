// A small disk to fill, for full-disk tests: a tmpfs of a given size mounted on a fresh
// directory (mounting needs root, as CI runs), unmounted (lazily: a process may still hold files
// there) and removed after the test; and a way to fill what is left of it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';

export function smallDisk(t: TestContext, size: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-small-disk-'));
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], { encoding: 'utf8' });
  t.after(() => {
    if (mounted.status === 0) spawnSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  assert.equal(mounted.status, 0, `this test mounts a small tmpfs to fill (it needs root, as CI runs): ${mounted.stderr}`);
  return dir;
}

/** Writes zeros into `file` until the disk says no more; the bytes written. */
export function fill(file: string): number {
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(64 * 1024);
  let written = 0;
  try {
    for (;;) written += writeSync(fd, block);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return written;
}
