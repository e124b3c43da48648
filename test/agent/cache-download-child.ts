// A child process for the model cache's kill -9 test: it downloads one blob from a deliberately
// slow source, checkpointing often and logging each checkpoint, until the test kills it.
// Arguments: <data-dir> <file holding the blob's bytes> <digest> <size in bytes>.
import path from 'node:path';
import { createReadStream } from 'node:fs';
import { LocalState } from '../../agent/local-state.js';
import { ModelCache, type BlobSource } from '../../agent/model-cache.js';
import { sleep, systemClock } from '../../shared/clock.js';
import { createLogger } from '../../shared/log.js';

const [dataDir, sourceFile, digest, size] = process.argv.slice(2);
if (!dataDir || !sourceFile || !digest || !size) {
  console.error('usage: cache-download-child <data-dir> <source-file> <digest> <size>');
  process.exit(2);
}

const log = createLogger({ name: 'cache-download-child' });

/** 4 KiB every 10 ms: about 400 KiB/s, slow enough to be killed half-way. */
const slowSource: BlobSource = {
  async fetch(_digest, offset, signal) {
    return (async function* chunks() {
      for await (const chunk of createReadStream(sourceFile, { start: offset, highWaterMark: 4096, signal })) {
        await sleep(systemClock, 10, signal);
        yield chunk as Buffer;
      }
    })();
  },
};

const state = LocalState.open(dataDir);
const cache = ModelCache.open({
  dir: path.join(dataDir, 'cache'),
  db: state.database,
  maxBytes: 1024 ** 3,
  source: slowSource,
  log,
  checkpointBytes: 16 * 1024,
});
const lease = await cache.acquire({ digest, sizeBytes: Number(size), directory: false });
log.info({ path: lease.path }, 'download finished');
lease.release();
await cache.close();
state.close();
