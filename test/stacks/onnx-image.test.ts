// The "onnx" stack's image (mlfleet/onnx, built offline by `npm run images`) on the real local
// engine, run the way the agent's docker driver runs it: the model file mounted read-only at
// /model, PORT=8080 published on a loopback port, the image's own command. One inference over
// HTTP must equal onnxruntime-node's answer on this host.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import * as ort from 'onnxruntime-node';
import { linearModel } from '../../scripts/onnx/example-models.js';
import { encodeModel } from '../../agent/stacks/onnx/onnx-model.js';
import { eventually } from '../helpers/eventually.js';
import { ensureOnnxImage } from '../helpers/images.js';
import { freePort } from '../helpers/net.js';

const docker = new Docker();
const NAME = `mlfleet-test-onnx-image-${process.pid}-${randomBytes(3).toString('hex')}`;
let image: string;
let dir: string;

before(async () => {
  image = await ensureOnnxImage(docker);
  // Readable by the image's non-root user (mkdtemp makes directories 0700).
  dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-onnx-image-'));
  chmodSync(dir, 0o755);
});

after(async () => {
  await docker.getContainer(NAME).remove({ force: true }).catch(() => undefined);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * One request on its own connection. Not fetch: when docker's port proxy resets a connection
 * because the server in the container is not listening yet, undici's promise never settles.
 */
function request(port: number, method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, agent: false, timeout: 5_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : undefined }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

describe('the onnx image', () => {
  it('serves a model mounted read-only at /model, as onnxruntime computes it', async (t) => {
    const file = path.join(dir, 'linear.onnx');
    writeFileSync(file, encodeModel(linearModel()), { mode: 0o644 });
    const port = await freePort();
    const container = await docker.createContainer({
      name: NAME,
      Image: image,
      // What the agent gives a task of the onnx stack (shared/workloads.ts taskEnvironment).
      Env: ['PORT=8080', 'MLFLEET_MODEL_PATH=/model', 'MLFLEET_MODEL_NAME=linear', 'MLFLEET_MODEL_VERSION=4'],
      ExposedPorts: { '8080/tcp': {} },
      HostConfig: {
        Binds: [`${file}:/model:ro`],
        PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: String(port) }] },
      },
    });
    await container.start();
    const logs = async () => (await container.logs({ stdout: true, stderr: true, tail: 20 })).toString();
    t.after(() => container.remove({ force: true }).catch(() => undefined));

    try {
      await eventually('the container is ready', 30_000, async () => ((await request(port, 'GET', '/v2/health/ready')).status === 200 ? true : undefined), {
        retryErrors: true,
        intervalMs: 100,
      });
    } catch (err) {
      throw new Error(`${(err as Error).message}\ncontainer logs:\n${await logs()}`);
    }
    const metadata = await request(port, 'GET', '/v2/models/linear/versions/4');
    assert.deepEqual(metadata.body.inputs, [{ name: 'x', datatype: 'FP32', shape: [-1, 3] }]);

    const x = [1, 2, 3, -0.5, 0.25, 8];
    const session = await ort.InferenceSession.create(file);
    const expected = await session.run({ x: new ort.Tensor('float32', Float32Array.from(x), [2, 3]) });
    await session.release();
    const reply = await request(port, 'POST', '/v2/models/linear/infer', { id: 'image', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 3], data: x }] });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    assert.deepEqual(reply.body, {
      model_name: 'linear',
      model_version: '4',
      id: 'image',
      outputs: [{ name: 'y', datatype: 'FP32', shape: [2, 1], data: Array.from(expected.y!.data as Float32Array) }],
    });

    const info = await container.inspect();
    assert.equal(info.Config.User, '1000:1000', 'the server runs as the image user, not root');
    assert.match(await logs(), /"msg":"model ready"/);
  });
});
