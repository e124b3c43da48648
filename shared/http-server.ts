// The small HTTP server both daemons run on --http-listen: /healthz and /metrics.
import http from 'node:http';
import type https from 'node:https';
import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { formatHostPort, parseHostPort } from './config.js';

/**
 * Deadlines of every HTTP listener (the ops servers, the gateway): a connection that has not
 * sent a whole request head within HEADERS_TIMEOUT_MS is closed (slowloris), checked every
 * CHECK_INTERVAL_MS (Node's default check runs every 30 s, far too rarely to bound anything).
 */
export const HEADERS_TIMEOUT_MS = 10_000;
const CHECK_INTERVAL_MS = 1_000;

/** Options for http.createServer / https.createServer: the deadlines above, and `requestTimeoutMs` for a whole request. */
export function deadlines(requestTimeoutMs: number): { headersTimeout: number; requestTimeout: number; connectionsCheckingInterval: number; handshakeTimeout: number } {
  return { headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: requestTimeoutMs, connectionsCheckingInterval: CHECK_INTERVAL_MS, handshakeTimeout: HEADERS_TIMEOUT_MS };
}

/**
 * Node's headersTimeout starts at a connection's first byte: one that never sends a byte is
 * kept for ever. Such a connection (or a TLS one silent after its handshake) is closed after
 * HEADERS_TIMEOUT_MS without a byte; once one has come, the server's own deadlines take over
 * (and a slow answer, an inference that takes minutes, is not cut for silence).
 */
export function closeSilentConnections(server: http.Server | https.Server): void {
  const guard = (socket: net.Socket) => {
    const timer = setTimeout(() => {
      if (socket.bytesRead === 0) socket.destroy();
    }, HEADERS_TIMEOUT_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  };
  server.on(server instanceof http.Server ? 'connection' : 'secureConnection', guard);
}

export interface Health {
  ok: boolean;
  [detail: string]: unknown;
}

export interface OpsServer {
  /** host:port actually bound (the port is real even when 0 was asked for). */
  readonly address: string;
  close(): Promise<void>;
}

export async function startOpsServer(listen: string, health: () => Health, metrics: Registry): Promise<OpsServer> {
  const { host, port } = parseHostPort(listen);
  const server = http.createServer(deadlines(30_000), (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/healthz') {
      const body = health();
      res.writeHead(body.ok ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
    } else if (path === '/metrics') {
      metrics.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz or /metrics\n');
    }
  });
  server.keepAliveTimeout = 5_000;
  closeSilentConnections(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(`cannot listen on ${listen} for HTTP: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`)),
    );
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  return {
    address: formatHostPort(host, bound.port),
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
