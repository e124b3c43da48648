// The reference ONNX serving runtime (the "onnx" stack's image runs it; the process driver can
// run it on the host): `node dist/agent/stacks/onnx/server.js` with MLFLEET_MODEL_PATH and PORT
// set. It listens first, so /v2/health/live answers at once, then loads the model in a session
// worker; /v2/health/ready turns 200 when the model is loaded, or stays 503 with the reason when
// loading fails or outlasts MLFLEET_LOAD_TIMEOUT_MS. SIGTERM closes the listener and exits.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHandler } from './http-api.js';
import { createLog } from './log.js';
import { ModelHost } from './model-host.js';
import { compileOptions, OptionsError, type ServerOptions } from './options.js';

const SERVER_NAME = 'mlfleet-onnx';
/** How long shutdown waits for requests in flight and the session worker before exiting anyway. */
const SHUTDOWN_GRACE_MS = 5_000;

const log = createLog(SERVER_NAME);

let options: ServerOptions;
try {
  options = compileOptions(process.env);
} catch (err) {
  if (!(err instanceof OptionsError)) throw err;
  log.error('cannot start', { error: err.message });
  process.exit(2);
}

const host = ModelHost.start(options, log);
const server = http.createServer(
  createHandler(host, { modelName: options.modelName, modelVersion: options.modelVersion, serverName: SERVER_NAME, serverVersion: serverVersion(), maxRequestBytes: options.maxRequestBytes }, log),
);
server.keepAliveTimeout = 65_000;
server.on('error', (err: NodeJS.ErrnoException) => {
  log.error('cannot listen', { port: options.port, error: err.code === 'EADDRINUSE' ? `port ${options.port} is already in use` : err.message });
  process.exit(1);
});
server.listen(options.port, options.host, () => {
  const { address, port } = server.address() as AddressInfo;
  log.info('onnx server listening', { address, port, model: options.modelName, version: options.modelVersion, modelPath: options.modelPath });
});

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal });
    // A worker stuck in a native load cannot be interrupted: the grace period bounds the wait.
    setTimeout(() => process.exit(0), SHUTDOWN_GRACE_MS).unref();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    // Requests waiting on the model are answered 503 as the worker stops; then the rest drains.
    void host.close().then(() => closed).then(() => process.exit(0));
  });
}

/** mlfleet's version, from the package.json above dist/ (the image keeps the same layout). */
function serverVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
