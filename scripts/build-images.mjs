// `npm run images`: builds every image the project ships into the local Docker engine, offline
// (no registry, no base image to pull: DESIGN "Images"). An image that is already there is left
// alone unless --force. Talks to the engine's API through dockerode, so it needs no particular
// docker CLI or BuildKit: Debian's docker.io 20.10 with its legacy builder is enough.
//
//   node scripts/build-images.mjs [--force] [--base IMAGE] [NAME…]
//
// --base IMAGE builds mlfleet/runtime FROM IMAGE (node:20-bookworm-slim, say) instead of a
// scratch root filesystem made from this host's node; for machines with registry access.
import Docker from 'dockerode';
import { mkdtemp, readFile, rm, writeFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { IMAGES } from './images/index.mjs';
import { buildContext, inspectImage as inspect } from './images/engine.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const USAGE = `usage: npm run images -- [--force] [--base IMAGE] [NAME…]
  NAME        only these images (${IMAGES.map((i) => i.name).join(', ')}); default all
  --force     rebuild images that already exist
  --base IMG  build mlfleet/runtime FROM IMG instead of a scratch root filesystem`;

// Several test files may ask for the same image at once: one builds, the others wait and find it.
const LOCK = path.join(os.tmpdir(), `mlfleet-images-${process.getuid?.() ?? 'user'}.lock`);
const LOCK_WAIT_MS = 10 * 60_000;

async function main() {
  let args;
  try {
    args = parseArgs({
      options: { force: { type: 'boolean', default: false }, base: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
    });
  } catch (err) {
    console.error(`${err.message}\n${USAGE}`);
    return 2;
  }
  if (args.values.help) {
    console.log(USAGE);
    return 0;
  }
  const unknown = args.positionals.filter((name) => !IMAGES.some((image) => image.name === name));
  if (unknown.length > 0) {
    console.error(`no image called ${unknown.join(', ')}\n${USAGE}`);
    return 2;
  }
  const selected = IMAGES.filter((image) => args.positionals.length === 0 || args.positionals.includes(image.name));
  const { version } = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8'));
  const docker = new Docker();
  try {
    await docker.ping();
  } catch (err) {
    console.error(`no Docker engine answers (${err.message}): start dockerd, or set DOCKER_HOST`);
    return 1;
  }
  for (const image of selected) {
    const tag = `${image.repository}:${version}`;
    const found = args.values.force ? undefined : await upToDate(docker, image, tag);
    if (found) {
      console.log(`${tag} is already built (${found.Id.slice(0, 19)}); --force rebuilds it`);
      continue;
    }
    await withLock(async () => {
      // Another build may have finished while this one waited for the lock.
      const built = args.values.force ? undefined : await upToDate(docker, image, tag);
      if (built) return console.log(`${tag} was built meanwhile (${built.Id.slice(0, 19)})`);
      const previous = await inspect(docker, tag);
      await build(docker, image, tag, { version, base: args.values.base });
      if (previous) await removeReplaced(docker, previous.Id, tag);
    });
  }
  return 0;
}

/**
 * The image under `tag` unless it is missing or, for an image that records the code it was built
 * from (onnx: its compiled server and trainer), built from other code than what is here now.
 */
async function upToDate(docker, image, tag) {
  const found = await inspect(docker, tag);
  if (!found || !image.sourceDigest) return found;
  const [label, digest] = [found.Config.Labels?.[image.digestLabel], await image.sourceDigest()];
  if (label === digest) return found;
  console.log(`${tag} was built from other code (source digest ${label ?? 'none'}, now ${digest}): rebuilding it`);
  return undefined;
}

async function build(docker, image, tag, { version, base }) {
  const started = Date.now();
  const workDir = await mkdtemp(path.join(os.tmpdir(), `mlfleet-image-${image.name}-`));
  try {
    const context = await image.context({ workDir, base: image.name === 'runtime' ? base : undefined, version });
    const { info, output } = await buildContext(docker, context, tag, image.repository);
    const latest = `${image.repository}:latest`;
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const contextBytes = (await Promise.all(context.files.map((f) => stat(f.source)))).reduce((sum, s) => sum + s.size, 0);
    console.log(
      `built ${tag} and ${latest} (${info.Id.slice(0, 19)}, ${mib(info.Size)} MiB, FROM ${base && image.name === 'runtime' ? base : 'scratch'}, context ${mib(contextBytes)} MiB) in ${seconds} s`,
    );
    if (process.env.MLFLEET_IMAGES_VERBOSE) console.log(output.join(''));
  } catch (err) {
    throw new Error(`building ${tag} failed: ${err.message}`, { cause: err });
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

/** A forced rebuild leaves the old image untagged: remove it unless something still uses it. */
async function removeReplaced(docker, id, tag) {
  const current = await inspect(docker, tag);
  if (!current || current.Id === id) return;
  try {
    await docker.getImage(id).remove();
  } catch (err) {
    if (err.statusCode !== 404 && err.statusCode !== 409) throw err;
  }
}

async function withLock(fn) {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      await writeFile(LOCK, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    if (await staleLock()) {
      await rm(LOCK, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`another image build has held ${LOCK} for ${LOCK_WAIT_MS / 60_000} minutes; remove it if no build is running`);
    await delay(250);
  }
  try {
    return await fn();
  } finally {
    await rm(LOCK, { force: true });
  }
}

/** The lock's holder is gone (killed mid-build), or it never wrote its pid. */
async function staleLock() {
  try {
    const [text, info] = await Promise.all([readFile(LOCK, 'utf8'), stat(LOCK)]);
    const pid = Number(text.trim());
    if (!Number.isInteger(pid) || pid <= 0) return Date.now() - info.mtimeMs > 10_000;
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return err.code === 'ESRCH';
  }
}

function mib(bytes) {
  return (bytes / 2 ** 20).toFixed(1);
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err.message);
    process.exit(1);
  },
);
