// The small HTTP server both daemons run on --http-listen: /healthz and /metrics, and on the
// coordinator its blob routes (coordinator/delivery/blob-routes.ts), TLS and plain text on one port.
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { formatHostPort, parseHostPort } from './config.js';
import type { TlsMaterial } from './tls.js';

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

/**
 * Handles a request for a path other than /healthz and /metrics (any method); resolves false
 * when it is not one of its paths (404). `secure` says whether it came over TLS.
 */
export type ExtraRoutes = (req: http.IncomingMessage, res: http.ServerResponse, secure: boolean) => Promise<boolean>;

export interface OpsServerOptions {
  /** Serve TLS too, on the same port (plain text still answers; `routes` is told which). */
  tls?: TlsMaterial | undefined;
  routes?: ExtraRoutes;
}

/** Long enough for a GiB of blob bytes in one request on a slow link. */
const OPS_REQUEST_TIMEOUT_MS = 30_000;
const ROUTED_REQUEST_TIMEOUT_MS = 0;

export async function startOpsServer(listen: string, health: () => Health, metrics: Registry, options: OpsServerOptions = {}): Promise<OpsServer> {
  const { host, port } = parseHostPort(listen);
  const { routes } = options;
  const handler = (secure: boolean) => (req: http.IncomingMessage, res: http.ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz' || path === '/metrics' || !routes) {
      opsRoute(req, res, path ?? '/', health, metrics);
      return;
    }
    routes(req, res, secure).then(
      (handled) => {
        if (!handled) res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz or /metrics\n');
      },
      (err: Error) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`);
        else res.destroy();
      },
    );
  };
  // Blob routes stream for as long as the bytes take; only the head's deadline holds for them.
  const timeouts = deadlines(routes ? ROUTED_REQUEST_TIMEOUT_MS : OPS_REQUEST_TIMEOUT_MS);
  const plain = http.createServer(timeouts, handler(false));
  const { tls } = options;
  const secure = tls?.cert && tls.key ? https.createServer({ ...timeouts, cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: tls.ca !== undefined, rejectUnauthorized: false }, handler(true)) : undefined;
  const servers: Array<http.Server | https.Server> = secure ? [plain, secure] : [plain];
  for (const s of servers) {
    s.keepAliveTimeout = 5_000;
    closeSilentConnections(s);
  }
  const server = secure ? net.createServer((socket) => sniffProtocol(socket, plain, secure)) : plain;
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
        for (const s of servers) s.closeAllConnections();
      }),
  };
}

function opsRoute(req: http.IncomingMessage, res: http.ServerResponse, path: string, health: () => Health, metrics: Registry): void {
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
}

/**
 * One port, two protocols: a TLS connection begins with a handshake record (0x16), which no
 * HTTP request line does. The first byte is looked at and put back; the connection then belongs
 * to the server of its protocol as if it had accepted it. (The gateway and the coordinator's
 * HTTP listener.)
 */
export function sniffProtocol(socket: net.Socket, plain: http.Server, secure: https.Server): void {
  const failed = () => socket.destroy();
  socket.on('error', failed);
  // A connection that never says a word is not kept: the servers' own timeouts start once it has.
  socket.setTimeout(HEADERS_TIMEOUT_MS, failed);
  socket.once('readable', () => {
    socket.off('error', failed);
    socket.setTimeout(0);
    const first = socket.read(1) as Buffer | null;
    if (first === null) {
      socket.destroy();
      return;
    }
    socket.unshift(first);
    (first[0] === 0x16 ? secure : plain).emit('connection', socket);
  });
}
