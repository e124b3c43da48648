// mlfleet/onnx: the "onnx" stack's image (coordinator/workloads/stacks.ts): the reference ONNX
// runtime (agent/stacks/onnx, compiled) on mlfleet/runtime, and its training side. One layer
// adds, under /opt/mlfleet and in the repository's own layout (dist/…, node_modules/…, a
// package.json that makes the .js files ES modules):
//   - the compiled server, the training runner (train.js) and exactly the dist modules they
//     import (followed from both; a bare import other than the packages below or a node: builtin
//     stops the build), with the onnx.proto the ONNX writer loads,
//   - /opt/mlfleet/onnx.js, the ONNX writer for training scripts (`import { encodeModel } from
//     '/opt/mlfleet/onnx.js'`),
//   - onnxruntime-node and onnxruntime-common as installed here, with only this platform's
//     native binding and libonnxruntime.so (found next to the binding through its RUNPATH),
//   - protobufjs (the writer's encoder) and the packages it depends on, their JavaScript only,
//   - on a scratch runtime, the host libraries onnxruntime needs that node does not (librt).
// Nothing is downloaded. The command is the server; the model is expected at /model, the port
// is 8080, as the stack says. Build with `npm run build` first: the image takes dist/ as it is.
import Docker from 'dockerode';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildContext, inspectImage } from './engine.mjs';
import { sharedLibraries, writeTar } from './rootfs.mjs';
import { runtimeImage } from './runtime.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PREFIX = '/opt/mlfleet';
const SERVER = 'dist/agent/stacks/onnx/server.js';
/** The training runner: the stack's train command runs it (ONNX_TRAIN_RUNNER in stacks.ts). */
const TRAINER = 'dist/agent/stacks/onnx/train.js';
/** The ONNX writer training scripts import (as /opt/mlfleet/onnx.js), and the proto it loads (its ONNX_PROTO). */
const WRITER = 'dist/agent/stacks/onnx/onnx-model.js';
const ONNX_PROTO = 'agent/stacks/onnx/onnx.proto';
/** The npm packages the image's modules may import; onnxruntime-node's own dependency comes with it. */
const PACKAGES = ['onnxruntime-node', 'onnxruntime-common', 'protobufjs'];
const IMPORTABLE = new Set(['onnxruntime-node', 'protobufjs']);
/** Label holding onnxSourceDigest(), so a test can tell an image built from older code. */
export const DIGEST_LABEL = 'org.mlfleet.source-digest';

export const onnxImage = {
  name: 'onnx',
  repository: 'mlfleet/onnx',
  description: 'mlfleet reference ONNX runtime (Open Inference Protocol v2 over HTTP, onnxruntime-node) and its training runner',
  /** The label recording sourceDigest(): `npm run images` rebuilds an image built from other code. */
  digestLabel: DIGEST_LABEL,
  sourceDigest: () => onnxSourceDigest(),

  /** @param {{ workDir: string, base: string | undefined, version: string }} options */
  async context({ workDir, version }) {
    const docker = new Docker();
    const runtime = await ensureRuntime(docker, version);
    const files = await imageFiles();
    const entries = files.map((file) => ({ name: `${PREFIX}/${file.path}`, source: path.join(ROOT, file.path), mode: file.mode }));
    entries.push({ name: `${PREFIX}/package.json`, content: `${JSON.stringify({ name: 'mlfleet-onnx', version, private: true, type: 'module' }, null, 2)}\n` });
    entries.push({ name: `${PREFIX}/onnx.js`, content: `// The ONNX writer for training scripts (agent/stacks/onnx/onnx-model.ts).\nexport * from './${WRITER}';\n` });
    // A scratch runtime holds exactly what this host's node loads; onnxruntime needs a little
    // more. An image FROM a distribution's node image has its own, matching, libraries.
    const scratch = (runtime.Config.Labels ?? {})['org.opencontainers.image.base.name'] === 'scratch';
    if (scratch) for (const library of await extraLibraries()) entries.push({ name: library, source: library, mode: 0o755 });
    const layer = path.join(workDir, 'onnx.tar');
    await writeTar(withParents(entries), layer);
    const digest = await onnxSourceDigest();
    const ortVersion = JSON.parse(await readFile(path.join(ROOT, 'node_modules/onnxruntime-node/package.json'), 'utf8')).version;
    return {
      dockerfile:
        [
          `FROM ${runtimeImage.repository}:${version}`,
          'ADD onnx.tar /',
          `WORKDIR ${PREFIX}`,
          'ENV NODE_ENV=production PORT=8080 MLFLEET_MODEL_PATH=/model',
          'EXPOSE 8080',
          `CMD ["node", "${PREFIX}/${SERVER}"]`,
          `LABEL org.opencontainers.image.title="${this.repository}"`,
          `LABEL org.opencontainers.image.description="${this.description}"`,
          `LABEL org.opencontainers.image.version="${version}"`,
          `LABEL org.opencontainers.image.base.name="${runtimeImage.repository}:${version}"`,
          `LABEL com.microsoft.onnxruntime.version="${ortVersion}"`,
          `LABEL ${DIGEST_LABEL}="${digest}"`,
        ].join('\n') + '\n',
      files: [{ name: 'onnx.tar', source: layer }],
    };
  },
};

/**
 * What the image is made of, summed up: the compiled server's modules (content) and the
 * onnxruntime packages (versions). Equal digests: the image already holds this code.
 */
export async function onnxSourceDigest() {
  const hash = createHash('sha256');
  for (const file of [...(await serverModules()), ONNX_PROTO]) hash.update(`${file}\0`).update(await readFile(path.join(ROOT, file))).update('\0');
  for (const name of PACKAGES) {
    const { version } = JSON.parse(await readFile(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8'));
    hash.update(`${name}@${version}\0`);
  }
  return hash.digest('hex').slice(0, 32);
}

/** Every file the layer takes from the repository, relative to it, with its mode. */
async function imageFiles() {
  const files = [...(await serverModules()), ONNX_PROTO].map((file) => ({ path: file, mode: 0o644 }));
  const ortNode = 'node_modules/onnxruntime-node';
  const native = `bin/napi-v6/${process.platform}/${process.arch}`;
  if (!existsSync(path.join(ROOT, ortNode, native, 'onnxruntime_binding.node'))) {
    throw new Error(`${ortNode} has no binding for ${process.platform}/${process.arch} (${native}); run npm ci`);
  }
  files.push({ path: `${ortNode}/package.json`, mode: 0o644 });
  for (const file of await listFiles(path.join(ortNode, 'dist'), (name) => name.endsWith('.js'))) files.push({ path: file, mode: 0o644 });
  for (const file of await listFiles(path.join(ortNode, native), () => true)) files.push({ path: file, mode: 0o755 });
  const ortCommon = 'node_modules/onnxruntime-common';
  files.push({ path: `${ortCommon}/package.json`, mode: 0o644 });
  // onnxruntime-node require()s it: the CommonJS build, with its {"type": "commonjs"} marker.
  for (const file of await listFiles(path.join(ortCommon, 'dist/cjs'), (name) => name.endsWith('.js') || name === 'package.json')) {
    files.push({ path: file, mode: 0o644 });
  }
  for (const name of await withDependencies('protobufjs')) {
    const dir = `node_modules/${name}`;
    // JavaScript and package.json files only: no bundles (dist/), command-line tools or types.
    const keep = (rel) => /\.(js|json)$/.test(rel) && !/^(dist|cli|bin|scripts|tests?)\//.test(rel);
    for (const file of await listFiles(dir, () => true)) if (keep(path.posix.relative(dir, file))) files.push({ path: file, mode: 0o644 });
  }
  return files;
}

/** A package and, transitively, what it depends on (as installed here; @types/ left out). */
async function withDependencies(name) {
  const seen = new Set();
  const queue = [name];
  while (queue.length > 0) {
    const next = queue.pop();
    if (seen.has(next) || next.startsWith('@types/')) continue;
    seen.add(next);
    const manifest = JSON.parse(await readFile(path.join(ROOT, 'node_modules', next, 'package.json'), 'utf8'));
    queue.push(...Object.keys(manifest.dependencies ?? {}));
  }
  return [...seen].sort();
}

/** The server, the training runner, the ONNX writer and every dist module they reach through relative imports (and the worker's URL). */
async function serverModules() {
  const entries = [SERVER, TRAINER, WRITER];
  for (const entry of entries) if (!existsSync(path.join(ROOT, entry))) throw new Error(`${entry} is missing: run npm run build first`);
  const seen = new Set();
  const queue = [...entries];
  while (queue.length > 0) {
    const file = queue.pop();
    if (seen.has(file)) continue;
    seen.add(file);
    const text = await readFile(path.join(ROOT, file), 'utf8');
    const specifiers = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|new URL\(\s*)['"]([^'"]+)['"]/g;
    for (const [, specifier] of text.matchAll(specifiers)) {
      if (specifier.startsWith('.')) {
        const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
        // The server reads its version from the package.json above dist/: the image writes its own.
        if (target === 'package.json') continue;
        if (!target.startsWith('dist/')) throw new Error(`${file} imports ${specifier}, outside dist/`);
        if (!existsSync(path.join(ROOT, target))) throw new Error(`${file} imports ${specifier}, which is not built (${target})`);
        queue.push(target);
      } else if (!specifier.startsWith('node:') && !IMPORTABLE.has(specifier)) {
        throw new Error(`${file} imports '${specifier}': the onnx image carries only ${[...IMPORTABLE].join(', ')} and node's builtins`);
      }
    }
  }
  return [...seen].sort();
}

async function listFiles(dir, keep) {
  const out = [];
  for (const entry of await readdir(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.posix.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(rel, keep)));
    else if (keep(entry.name)) out.push(rel);
  }
  return out.sort();
}

/** Libraries the native binding and libonnxruntime load that this host's node does not. */
async function extraLibraries() {
  const native = path.join(ROOT, 'node_modules/onnxruntime-node/bin/napi-v6', process.platform, process.arch);
  const nodeLibraries = new Set(await sharedLibraries(process.execPath));
  const needed = new Set();
  for (const name of await readdir(native)) {
    if (!/\.node$|\.so(\.\d+)*$/.test(name)) continue;
    for (const library of await sharedLibraries(path.join(native, name))) {
      if (!library.startsWith(native) && !nodeLibraries.has(library)) needed.add(library);
    }
  }
  return [...needed].sort();
}

function withParents(entries) {
  const byName = new Map(entries.map((e) => [e.name, e]));
  for (const entry of entries) {
    for (let dir = path.posix.dirname(entry.name); dir !== '/'; dir = path.posix.dirname(dir)) {
      if (!byName.has(dir)) byName.set(dir, { name: dir, type: 'directory', mode: 0o755 });
    }
  }
  return [...byName.values()].sort((a, b) => a.name.split('/').length - b.name.split('/').length || a.name.localeCompare(b.name));
}

/**
 * The runtime image this one is FROM, built here first when the engine lacks it (`npm run images
 * -- onnx` on a clean engine). The caller holds the build lock, so nobody else builds it meanwhile.
 */
async function ensureRuntime(docker, version) {
  const tag = `${runtimeImage.repository}:${version}`;
  const found = await inspectImage(docker, tag);
  if (found) return found;
  console.log(`${tag} is missing: building it first`);
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'mlfleet-image-runtime-'));
  try {
    const context = await runtimeImage.context({ workDir, base: undefined, version });
    return (await buildContext(docker, context, tag, runtimeImage.repository)).info;
  } catch (err) {
    throw new Error(`building ${tag} failed: ${err.message}`, { cause: err });
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}
