// The images tests run, built into the local Docker engine on first use by the same script as
// `npm run images` (offline: no registry), so a CI run that starts from a clean engine builds
// each once. The script takes a lock, so test files that ask at the same time build it once.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { REPO_ROOT } from './processes.js';

const VERSION = (JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** mlfleet/runtime: node and the libraries it needs, nothing else (no shell). */
export const RUNTIME_IMAGE = `mlfleet/runtime:${VERSION}`;

let building: Promise<string> | undefined;

/** The runtime image's name, once it is in the local engine. */
export function ensureRuntimeImage(docker: Docker = new Docker()): Promise<string> {
  building ??= ensureImage(docker, 'runtime', RUNTIME_IMAGE).catch((err: unknown) => {
    building = undefined;
    throw err;
  });
  return building;
}

async function ensureImage(docker: Docker, name: string, image: string): Promise<string> {
  if (await present(docker, image)) return image;
  const script = path.join(REPO_ROOT, 'scripts', 'build-images.mjs');
  try {
    await promisify(execFile)(process.execPath, [script, name], { cwd: REPO_ROOT, timeout: 300_000 });
  } catch (err) {
    const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string };
    throw new Error(`building ${image} failed (npm run images -- ${name}): ${(err as Error).message}\n${stdout}${stderr}`);
  }
  if (!(await present(docker, image))) throw new Error(`scripts/build-images.mjs succeeded but ${image} is not in the local engine`);
  return image;
}

async function present(docker: Docker, image: string): Promise<boolean> {
  try {
    await docker.getImage(image).inspect();
    return true;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return false;
    throw err;
  }
}
