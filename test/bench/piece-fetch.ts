// Piece fetch benchmark (issue 15): a blob pulled into an agent's model cache by the piece
// fetcher (test/faults/piece-fetch-child.ts, its own process, so its RSS is its own) from a
// local node:http range server acting as the coordinator, 8 MiB pieces. Reports MiB/s (from
// the first Locate to the published entry, whole-digest check included) and the child's
// peak RSS.
//   npm run bench -- piece-fetch            1 GiB
//   npm run bench -- piece-fetch --quick    256 MiB
import { spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MiB, pieceBytesFor } from '../../shared/pieces.js';
import { manifestOf, startRangeServer } from '../helpers/blob-range-server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const sizeBytes = (process.argv.includes('--quick') ? 256 : 1024) * MiB;
const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-piece-bench-'));
const cleanups: (() => unknown)[] = [];
const t = { after: (fn: () => unknown) => cleanups.push(fn) } as unknown as TestContext;

try {
  const file = path.join(dir, 'blob.bin');
  const hash = createHash('sha256');
  const fd = openSync(file, 'w');
  const chunk = Buffer.allocUnsafe(8 * MiB);
  for (let at = 0; at < sizeBytes; at += chunk.length) {
    randomFillSync(chunk);
    hash.update(chunk);
    writeSync(fd, chunk);
  }
  closeSync(fd);
  const digest = `sha256:${hash.digest('hex')}`;
  const pieceBytes = pieceBytesFor(sizeBytes);
  const manifest = await manifestOf(file, pieceBytes);
  const token = 'bench-token';
  const seed = await startRangeServer(t, { file, digest, sizeBytes, pieceBytes, kind: 'coordinator', token });
  const locationFile = path.join(dir, 'location.json');
  writeFileSync(locationFile, JSON.stringify({ digest, sizeBytes, pieceBytes, pieceHashes: manifest.hashes.toString('base64'), sources: [{ kind: 'coordinator', url: seed.url }], grant: '', rank: 0, fetchers: 1, refreshAtMs: 0 }));
  const child = spawn(process.execPath, [path.join(here, '../faults/piece-fetch-child.js'), path.join(dir, 'agent'), locationFile, token], { stdio: ['ignore', 'ignore', 'pipe'] });
  let result: Record<string, unknown> | undefined;
  for await (const line of createInterface({ input: child.stderr })) {
    const parsed = JSON.parse(line) as Record<string, unknown>;
    if (parsed.msg === 'download finished') result = parsed;
  }
  if (!result) throw new Error('the pull did not finish');
  console.log(JSON.stringify({ sizeMiB: sizeBytes / MiB, pieceBytes, seconds: result.seconds, mibPerSecond: result.mibPerSecond, peakRssMiB: result.peakRssMiB, received: result.received, cpus: os.cpus().length }));
} finally {
  for (const fn of cleanups.reverse()) await fn();
  rmSync(dir, { recursive: true, force: true });
}
