// Serving through a real gateway to replicas in Docker, for the canary and rollback tests: an
// in-process leader, one Docker agent whose gateway the test sends requests to, and a tiny
// versioned server run by the runtime image (no image of its own). The server answers every
// inference with the model version it serves (MLFLEET_MODEL_VERSION), and the model's content
// says how it misbehaves: `{"failEvery": 3}` answers 500 to every third inference request,
// `{"delayMs": 300}` answers each one that much later.
import http from 'node:http';
import { Readable } from 'node:stream';
import type { TestContext } from 'node:test';
import { CoordinatorClient } from '../../shared/client.js';
import { compileDeploymentSpec, type DeploymentInput } from '../../shared/workload-spec.js';
import { startLeader } from './coordinator.js';
import { removeContainersAfter } from './docker-fleet.js';
import { ensureRuntimeImage } from './images.js';
import { startAgent, tempDir } from './processes.js';
import { WorkloadApi } from './workload-api.js';

/** The server run by `node -e`; the readiness probe (GET) is not an inference and is not counted. */
export const VERSIONED_SERVER = `
const model = JSON.parse(require('fs').readFileSync(process.env.MLFLEET_MODEL_PATH, 'utf8'));
let n = 0;
require('http').createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  if (req.method !== 'POST') return res.end('{}');
  n += 1;
  if (model.failEvery && n % model.failEvery === 0) { res.statusCode = 500; return res.end('{"error":"failing on purpose"}'); }
  const answer = JSON.stringify({ model_name: process.env.MLFLEET_MODEL_NAME, model_version: process.env.MLFLEET_MODEL_VERSION, outputs: [] });
  setTimeout(() => res.end(answer), model.delayMs || 0);
}).listen(Number(process.env.PORT));
`;

export interface Answer {
  status: number;
  /** The version that answered (model_version of a 200), '' otherwise. */
  version: string;
}

/** One inference request through `gateway`; status 0 when it could not be sent or timed out. */
export function post(gateway: string, path: string): Promise<Answer> {
  const [host, port] = gateway.split(':') as [string, string];
  return new Promise((resolve) => {
    const req = http.request({ host, port: Number(port), path, method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let version = '';
        if (res.statusCode === 200) {
          try {
            version = String((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { model_version?: unknown }).model_version ?? '');
          } catch {
            version = '';
          }
        }
        resolve({ status: res.statusCode ?? 0, version });
      });
    });
    req.on('error', () => resolve({ status: 0, version: '' }));
    req.setTimeout(10_000, () => req.destroy());
    req.end('{"inputs":[]}');
  });
}

export interface ServingCluster {
  image: string;
  address: string;
  admin: string;
  client: CoordinatorClient;
  api: WorkloadApi;
  /** The agent's gateway, host:port. */
  gateway: string;
  /** Pushes the next version of model `name` with this content; its version number. */
  push(name: string, content: string): Promise<number>;
}

/** A leader (workloads ticking every 200 ms) and one Docker agent named `node`. */
export async function servingCluster(t: TestContext, node = 'dock'): Promise<ServingCluster> {
  const image = await ensureRuntimeImage();
  const dir = tempDir(t);
  const { coordinator, admin, join } = await startLeader(t, { workloads: { tickMs: 200 } });
  const client = new CoordinatorClient([coordinator.address], { token: admin });
  const api = new WorkloadApi(coordinator.address, admin);
  t.after(() => {
    client.close();
    api.close();
  });
  const agent = await startAgent(t, node, [coordinator.address], dir, ['--driver', 'docker', '--join-token', join]);
  removeContainersAfter(t, node);
  const gateway = (await agent.waitForMessage('agent started')).gateway as string;
  const push = async (name: string, content: string) => {
    const body = Buffer.from(content);
    return (await client.push('model', { name, format: 'other', sizeBytes: body.length }, Readable.from([body]))).version;
  };
  return { image, address: coordinator.address, admin, client, api, gateway, push };
}

/** A public deployment of the runtime image running `node -e command`: one small replica unless told otherwise. */
export function nodeDeployment(image: string, name: string, model: string, command: string, extra: Partial<DeploymentInput> = {}) {
  return compileDeploymentSpec({ name, model, image, command: ['node', '-e', command], port: 8080, replicas: 1, public: true, resources: { cpuMillis: 100, memoryBytes: 128 * 2 ** 20 }, ...extra });
}
