// Inference requests to a gateway, and the small onnx model tests deploy, for the autoscaling
// tests (integration and faults).
import http from 'node:http';
import { encodeModel } from '../../agent/stacks/onnx/onnx-model.js';
import { linearModel } from '../../scripts/onnx/example-models.js';
import type { CoordinatorClient } from '../../shared/client.js';
import type { Deployment } from '../../shared/proto.js';
import { eventually } from './eventually.js';

export const INPUT = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 1, 1] }] });

export interface Answer {
  status: number;
  body: { outputs?: Array<{ data?: number[] }>; error?: string };
  retryAfter: string | undefined;
  ms: number;
}

export function infer(gateway: string, model: string, token: string): Promise<Answer> {
  const [host, port] = gateway.split(':') as [string, string];
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host, port: Number(port), path: `/v2/models/${model}/infer`, method: 'POST', agent: false, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` } },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text || '{}') as Answer['body'], retryAfter: res.headers['retry-after'] as string | undefined, ms: Date.now() - started }));
      },
    );
    req.on('error', reject);
    req.end(INPUT);
  });
}

/** A linear model answering `out` for [1, 1, 1]. */
export function linear(out: number): Buffer {
  const spec = linearModel();
  return Buffer.from(encodeModel({ ...spec, initializers: [{ name: 'W', type: 'FLOAT', dims: [3, 1], data: [0, 0, 0] }, { name: 'b', type: 'FLOAT', dims: [1], data: [out] }] }));
}

/** Waits until `name` has no allocation left running: scaled to zero. */
export async function asleep(client: CoordinatorClient, name: string, timeoutMs = 60_000): Promise<Deployment> {
  return eventually(`${name} scaled to zero`, timeoutMs, async () => {
    const d = await client.getDeployment(name);
    return d.spec?.replicas === 0 && d.allocations.every((a) => a.desired !== 'run') ? d : undefined;
  });
}

