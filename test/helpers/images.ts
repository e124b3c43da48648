// The images tests run, built into the local Docker engine on first use by the same script as
// `npm run images` (offline: no registry), so a CI run that starts from a clean engine builds
// each once. The script takes a lock, so test files that ask at the same time build it once.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { REPO_ROOT } from './processes.js';

const VERSION = (JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** mlfleet/runtime: node and the libraries it needs, nothing else (no shell). */
export const RUNTIME_IMAGE = `mlfleet/runtime:${VERSION}`;

/** mlfleet/onnx: the "onnx" stack's serving image (agent/stacks/onnx on the runtime image). */
export const ONNX_IMAGE = `mlfleet/onnx:${VERSION}`;

let building: Promise<string> | undefined;
let buildingOnnx: Promise<string> | undefined;

/** The runtime image's name, once it is in the local engine. */
export function ensureRuntimeImage(docker: Docker = new Docker()): Promise<string> {
  building ??= ensureImage(docker, 'runtime', RUNTIME_IMAGE).catch((err: unknown) => {
    building = undefined;
    throw err;
  });
  return building;
}

/**
 * The onnx image's name, once the local engine has one built from the current dist/ (it is
 * rebuilt when the compiled server or onnxruntime changed since: its label records a digest).
 */
export function ensureOnnxImage(docker: Docker = new Docker()): Promise<string> {
  buildingOnnx ??= (async () => {
    await ensureRuntimeImage(docker);
    const script = pathToFileURL(path.join(REPO_ROOT, 'scripts', 'images', 'onnx.mjs')).href;
    const { onnxSourceDigest, DIGEST_LABEL } = (await import(script)) as { onnxSourceDigest(): Promise<string>; DIGEST_LABEL: string };
    const [digest, built] = await Promise.all([onnxSourceDigest(), inspect(docker, ONNX_IMAGE)]);
    const stale = built !== undefined && built.Config.Labels?.[DIGEST_LABEL] !== digest;
    return ensureImage(docker, 'onnx', ONNX_IMAGE, stale);
  })().catch((err: unknown) => {
    buildingOnnx = undefined;
    throw err;
  });
  return buildingOnnx;
}

async function ensureImage(docker: Docker, name: string, image: string, rebuild = false): Promise<string> {
  if (!rebuild && (await present(docker, image))) return image;
  const script = path.join(REPO_ROOT, 'scripts', 'build-images.mjs');
  try {
    await promisify(execFile)(process.execPath, [script, ...(rebuild ? ['--force'] : []), name], { cwd: REPO_ROOT, timeout: 300_000 });
  } catch (err) {
    const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string };
    throw new Error(`building ${image} failed (npm run images -- ${name}): ${(err as Error).message}\n${stdout}${stderr}`);
  }
  if (!(await present(docker, image))) throw new Error(`scripts/build-images.mjs succeeded but ${image} is not in the local engine`);
  return image;
}

async function present(docker: Docker, image: string): Promise<boolean> {
  return (await inspect(docker, image)) !== undefined;
}

async function inspect(docker: Docker, image: string): Promise<Docker.ImageInspectInfo | undefined> {
  try {
    return await docker.getImage(image).inspect();
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return undefined;
    throw err;
  }
}
