// The onnx stack's training side: `node /opt/mlfleet/dist/agent/stacks/onnx/train.js SCRIPT
// [ARGS…]`, the stack's train command (coordinator/workloads/stacks.ts). A job on the stack
// names its script and arguments as its command:
//
//   mlfleetctl jobs run fit --stack onnx --dataset points --dataset trainer \
//     --output-model classifier -- /data/trainer/train.mjs --epochs 500
//
// The script is user code (mlfleet fits nothing itself): it reads its datasets under /data,
// writes an .onnx file to /output (MLFLEET_OUTPUT_PATH), and may write it with the ONNX writer
// the image carries as /opt/mlfleet/onnx.js (its encodeModel). Scripts usually come as a
// dataset of their own, so the model's lineage records the exact code that made it. This runner
// only finds the script (a directory means its train.mjs), says clearly what is wrong when it
// cannot, and runs it in this process with the arguments after it.
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/** What a directory given as the script runs. */
export const DEFAULT_SCRIPT = 'train.mjs';

/** The script to import for `given`: the file itself, or DEFAULT_SCRIPT in a directory. Throws with a hint. */
export async function findScript(given: string | undefined): Promise<string> {
  if (!given) throw new Error(`no training script: give its path as the job's command, e.g. \`-- /data/trainer/${DEFAULT_SCRIPT}\``);
  const info = await stat(given).catch(() => undefined);
  if (!info) throw new Error(`training script ${given} does not exist; ${await mountedData()}`);
  if (!info.isDirectory()) return path.resolve(given);
  const inside = path.join(given, DEFAULT_SCRIPT);
  if ((await stat(inside).catch(() => undefined))?.isFile()) return path.resolve(inside);
  const scripts = (await readdir(given)).filter((name) => /\.(m?js)$/.test(name));
  throw new Error(`${given} is a directory without a ${DEFAULT_SCRIPT}${scripts.length > 0 ? `; it holds ${scripts.join(', ')}: name one` : ''}`);
}

/** What the job's datasets look like from here, for an error message. */
async function mountedData(): Promise<string> {
  const names = await readdir('/data').catch(() => [] as string[]);
  return names.length > 0
    ? `the job's datasets are ${names.map((n) => `/data/${n}`).join(', ')}`
    : 'the job mounts no dataset: push the script as one (`mlfleetctl datasets push trainer DIR`) and add `--dataset trainer`';
}

async function main(): Promise<void> {
  const [given, ...args] = process.argv.slice(2);
  let script: string;
  try {
    script = await findScript(given);
  } catch (err) {
    console.error(`mlfleet train: ${(err as Error).message}`);
    process.exit(2);
  }
  // The script sees itself as the program: process.argv[1] is its path, its arguments follow.
  process.argv = [process.argv[0]!, script, ...args];
  await import(pathToFileURL(script).href);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
