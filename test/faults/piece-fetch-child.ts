// A child process for the piece fetcher's fault tests and benchmark: an agent's model cache
// pulling one blob through the real PieceFetcher, with `locate` answered from a JSON file (the
// leader's Locate is not part of this test), logging each checkpoint, until it finishes or the
// test kills it.
// Arguments: <data-dir> <location.json> <token>. location.json: Location, pieceHashes in base64.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DeliveryCounters } from '../../agent/delivery/counters.js';
import { HashPool } from '../../agent/delivery/hash-pool.js';
import { PieceFetcher, type Location } from '../../agent/delivery/piece-fetcher.js';
import { LocalState } from '../../agent/local-state.js';
import { ModelCache } from '../../agent/model-cache.js';
import { createLogger } from '../../shared/log.js';

const [dataDir, locationFile, token] = process.argv.slice(2);
if (!dataDir || !locationFile || !token) {
  console.error('usage: piece-fetch-child <data-dir> <location.json> <token>');
  process.exit(2);
}

const log = createLogger({ name: 'piece-fetch-child', level: 'debug' });
const raw = JSON.parse(readFileSync(locationFile, 'utf8')) as Location & { pieceHashes: string };
const location: Location = { ...raw, pieceHashes: Buffer.from(raw.pieceHashes, 'base64') };

let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 50);
const counters = new DeliveryCounters();
const hashPool = new HashPool();
const fetcher = new PieceFetcher({ locate: async () => location, token: () => token, counters, hashPool, log, checkpointMs: 200 });
const state = LocalState.open(dataDir);
const cache = ModelCache.open({ dir: path.join(dataDir, 'cache'), db: state.database, maxBytes: 4 * 1024 ** 3, source: fetcher, log });
const started = performance.now();
const lease = await cache.acquire({ digest: location.digest, sizeBytes: location.sizeBytes, directory: false });
const seconds = (performance.now() - started) / 1000;
clearInterval(sampler);
log.info({ path: lease.path, seconds, mibPerSecond: location.sizeBytes / 2 ** 20 / seconds, peakRssMiB: Math.round(peakRss / 2 ** 20), received: counters.receivedBytes }, 'download finished');
lease.release();
await cache.close();
await fetcher.close();
await hashPool.close();
state.close();
