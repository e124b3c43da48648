// Ranged GETs over plain HTTP/1.1 whose body the kernel reads straight into the caller's piece
// buffer (net.Socket `onread`), for the piece fetcher's hot path (docs/delivery.md).
//
// Why not undici here, as everywhere else: a body byte through undici is read into a socket
// chunk, copied into llhttp's WASM memory, copied out into a new Buffer per chunk and then into
// the piece buffer, with a garbage chunk every 64 KiB. On this project's 2-core bench machine
// that costs about 1.7 CPU-s per GiB and ~35 MiB of chunks waiting for the collector; reading
// into the piece buffer costs about 0.35 CPU-s and no chunks (measured in the same run, see the
// issue 15 note). No maintained client reads into a caller's buffer, so this one does the
// little it must: one GET at a time per connection, keep-alive, a Content-Length body. What it
// does not do (TLS, chunked bodies, redirects) goes through undici in the fetcher.
import net from 'node:net';

/** The head of a response: status, headers (lower-case names), body length, whether the connection stays open. */
export interface ResponseHead {
  statusCode: number;
  headers: Record<string, string>;
  /** undefined: no Content-Length (a chunked or close-delimited body). */
  contentLength: number | undefined;
  keepAlive: boolean;
}

export interface RangeResponse {
  statusCode: number;
  headers: Record<string, string>;
  /** 2xx: body bytes read into the buffer. */
  received: number;
  /** Other statuses: the start of the body, for an error message. */
  text: string;
}

/** A response head larger than this is refused. */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Of an error answer's body, this much is read for its message; a longer one closes the connection. */
const MAX_ERROR_TEXT = 4096;
const SCRATCH_BYTES = 16 * 1024;

/**
 * Parses a response head (status line and headers, without the blank line that ends it).
 * Throws on anything that is not an HTTP/1.x response head.
 */
export function parseResponseHead(text: string): ResponseHead {
  const lines = text.split('\r\n');
  const status = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (!status) throw new Error(`not an HTTP/1.x status line: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0 || /[\s]/.test(line.slice(0, colon))) throw new Error(`a malformed header line: ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  let contentLength: number | undefined;
  if (headers['transfer-encoding'] === undefined && headers['content-length'] !== undefined) {
    if (!/^\d{1,15}$/.test(headers['content-length'])) throw new Error(`a bad content-length: ${JSON.stringify(headers['content-length'].slice(0, 40))}`);
    contentLength = Number(headers['content-length']);
  }
  const connection = (headers.connection ?? '').toLowerCase();
  const keepAlive = contentLength !== undefined && (status[1] === '1' ? !connection.includes('close') : connection.includes('keep-alive'));
  return { statusCode: Number(status[2]), headers, contentLength, keepAlive };
}

/** A chunked error body has ended (its last chunk came). */
function chunkedEnd(exchange: Exchange): boolean {
  if (!exchange.response?.headers['transfer-encoding']?.toLowerCase().includes('chunked')) return false;
  return exchange.body!.subarray(0, exchange.received).includes('0\r\n\r\n');
}

/** The text of a chunked body (what of it arrived), for an error message. */
function dechunk(raw: Buffer): string {
  const parts: Buffer[] = [];
  for (let at = 0; at < raw.length; ) {
    const eol = raw.indexOf('\r\n', at);
    if (eol < 0) break;
    const size = Number.parseInt(raw.subarray(at, eol).toString('latin1'), 16);
    if (!Number.isFinite(size) || size <= 0) break;
    parts.push(raw.subarray(eol + 2, Math.min(raw.length, eol + 2 + size)));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(parts).toString('utf8');
}

interface Exchange {
  into: Buffer;
  /** The response head so far (until its blank line arrives). */
  head: Buffer;
  response: ResponseHead | undefined;
  /** Where the body goes: the caller's buffer (2xx) or a small buffer of its own (an error's text). */
  body: Buffer | undefined;
  bodyLength: number;
  received: number;
  onData: ((bytes: number) => void) | undefined;
  resolve(response: RangeResponse): void;
  reject(err: Error): void;
  /** Nothing of the answer arrived yet: a reused connection that the server had closed may be retried. */
  answered: boolean;
  /** An error's text with no length: read until the connection closes (or a chunked body's end), at most MAX_ERROR_TEXT. */
  untilEnd: boolean;
}

class Connection {
  readonly socket: net.Socket;
  private exchange: Exchange | undefined;
  private readonly scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  /** Requests this connection carried. */
  uses = 0;

  constructor(
    url: URL,
    private readonly timeoutMs: number,
    private readonly onIdle: (connection: Connection) => void,
    private readonly onClosed: (connection: Connection) => void,
  ) {
    this.socket = net.connect({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port || 80),
      noDelay: true,
      onread: {
        buffer: () => this.nextBuffer(),
        callback: (n: number, buffer: Uint8Array) => {
          this.read(n, buffer);
          return true;
        },
      },
    });
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('end', () => this.endOrFail(new Error('the server closed the connection before the answer was complete')));
    this.socket.on('close', () => {
      this.endOrFail(new Error('the connection closed before the answer was complete'));
      this.onClosed(this);
    });
    this.socket.on('timeout', () => {
      if (this.exchange) this.fail(new Error(`no bytes for ${this.timeoutMs} ms`));
      this.socket.destroy();
    });
  }

  get busy(): boolean {
    return this.exchange !== undefined;
  }

  send(path: string, host: string, headers: Record<string, string>, exchange: Exchange): void {
    this.exchange = exchange;
    this.uses += 1;
    this.socket.setTimeout(this.timeoutMs);
    let request = `GET ${path} HTTP/1.1\r\nhost: ${host}\r\nconnection: keep-alive\r\n`;
    for (const [name, value] of Object.entries(headers)) request += `${name}: ${value}\r\n`;
    this.socket.write(`${request}\r\n`);
  }

  /** Ends the exchange under way (if any) with `err`, and the connection with it. */
  fail(err: Error): void {
    const exchange = this.exchange;
    this.exchange = undefined;
    if (!this.socket.destroyed) this.socket.destroy();
    if (exchange) exchange.reject(Object.assign(err, { answered: exchange.answered }));
  }

  /** The connection ended: the end of an error's text that had no length, or else a failure. */
  private endOrFail(err: Error): void {
    const exchange = this.exchange;
    if (exchange?.untilEnd) this.complete(exchange);
    else this.fail(err);
  }

  /** The buffer the next read fills: the rest of the body's, or the scratch. */
  private nextBuffer(): Uint8Array {
    const exchange = this.exchange;
    if (exchange?.body && exchange.received < exchange.bodyLength) return exchange.body.subarray(exchange.received, exchange.bodyLength);
    return this.scratch;
  }

  private read(n: number, buffer: Uint8Array): void {
    const exchange = this.exchange;
    if (!exchange) return this.fail(new Error('the server sent bytes nobody asked for'));
    exchange.answered = true;
    if (exchange.response === undefined) return this.readHead(exchange, Buffer.from(buffer.buffer, buffer.byteOffset, n));
    exchange.received += n;
    if (exchange.body === exchange.into) exchange.onData?.(n);
    if (exchange.received >= exchange.bodyLength || (exchange.untilEnd && chunkedEnd(exchange))) this.complete(exchange);
  }

  private readHead(exchange: Exchange, bytes: Buffer): void {
    // Copied: `bytes` lies in the scratch, which the next read fills.
    const all = Buffer.concat([exchange.head, bytes]);
    const end = all.indexOf('\r\n\r\n');
    if (end < 0) {
      if (all.length > MAX_HEAD_BYTES) this.fail(new Error(`a response head over ${MAX_HEAD_BYTES} bytes`));
      else exchange.head = all;
      return;
    }
    let head: ResponseHead;
    try {
      head = parseResponseHead(all.subarray(0, end).toString('latin1'));
    } catch (err) {
      return this.fail(err as Error);
    }
    exchange.response = head;
    const rest = all.subarray(end + 4);
    const ok = head.statusCode >= 200 && head.statusCode < 300;
    if (ok) {
      if (head.contentLength === undefined) return this.fail(new Error(`answered ${head.statusCode} with no content-length`));
      if (head.contentLength > exchange.into.length) return this.fail(new Error(`sent more than the ${exchange.into.length} bytes asked for (content-length ${head.contentLength})`));
      exchange.body = exchange.into;
      exchange.bodyLength = head.contentLength;
    } else {
      // An error's text: read it if it is short, else take what came and close the connection.
      exchange.untilEnd = head.contentLength === undefined;
      exchange.bodyLength = Math.min(head.contentLength ?? MAX_ERROR_TEXT, MAX_ERROR_TEXT);
      if (head.contentLength === undefined || head.contentLength > MAX_ERROR_TEXT) head.keepAlive = false;
      exchange.body = Buffer.allocUnsafe(exchange.bodyLength);
    }
    if (ok && rest.length > exchange.bodyLength) return this.fail(new Error('the server sent more than the answer\'s content-length'));
    const body = ok ? rest : rest.subarray(0, exchange.bodyLength);
    body.copy(exchange.body, 0);
    exchange.received = body.length;
    if (ok && body.length > 0) exchange.onData?.(body.length);
    if (exchange.received >= exchange.bodyLength || (exchange.untilEnd && chunkedEnd(exchange))) this.complete(exchange);
  }

  private complete(exchange: Exchange): void {
    const head = exchange.response!;
    this.exchange = undefined;
    const ok = exchange.body === exchange.into;
    const raw = ok ? undefined : exchange.body!.subarray(0, exchange.received);
    const text = raw === undefined ? '' : head.headers['transfer-encoding']?.toLowerCase().includes('chunked') ? dechunk(raw) : raw.toString('utf8');
    exchange.resolve({ statusCode: head.statusCode, headers: head.headers, received: ok ? exchange.received : 0, text });
    if (head.keepAlive && !this.socket.destroyed) this.onIdle(this);
    else this.socket.destroy();
  }
}

export interface RangeClientOptions {
  /** Idle connections kept per origin. Default 8. */
  maxIdle?: number;
  /** An idle connection is closed after this long (below servers' usual 5 s keep-alive). Default 4000 ms. */
  idleMs?: number;
  /** A request with no bytes arriving for this long fails. Default 30000 ms. */
  timeoutMs?: number;
}

/** Ranged GETs into caller buffers, over plain-HTTP keep-alive connections per origin. */
export class RangeClient {
  private readonly idle = new Map<string, Connection[]>();
  private readonly all = new Set<Connection>();
  private readonly maxIdle: number;
  private readonly idleMs: number;
  private readonly timeoutMs: number;
  private closing = false;

  constructor(options: RangeClientOptions = {}) {
    this.maxIdle = options.maxIdle ?? 8;
    this.idleMs = options.idleMs ?? 4_000;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /**
   * GETs `url` (http: only) with `headers`; a 2xx body is read into `into` (its length is the
   * most accepted), other answers' text is returned. `onData` is told of body bytes as they land.
   */
  async get(url: URL, headers: Record<string, string>, into: Buffer, signal: AbortSignal, onData?: (bytes: number) => void): Promise<RangeResponse> {
    if (url.protocol !== 'http:') throw new Error(`the range client speaks plain http, not ${url.protocol}`);
    for (const [name, value] of Object.entries(headers)) {
      if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new Error(`header ${JSON.stringify(name)} holds a line break`);
    }
    signal.throwIfAborted();
    // A kept connection the server has just closed fails before any answer: try once more on a new one.
    for (let attempt = 0; ; attempt++) {
      const connection = this.connection(url, attempt > 0);
      const reused = connection.uses > 0;
      try {
        return await this.exchange(connection, url, headers, into, signal, onData);
      } catch (err) {
        const answered = (err as { answered?: boolean }).answered;
        if (signal.aborted || !reused || answered || attempt > 0) throw err;
      }
    }
  }

  /** Closes every connection. */
  close(): void {
    this.closing = true;
    for (const connection of this.all) connection.fail(new Error('the range client closed'));
    this.all.clear();
    this.idle.clear();
  }

  private exchange(connection: Connection, url: URL, headers: Record<string, string>, into: Buffer, signal: AbortSignal, onData?: (bytes: number) => void): Promise<RangeResponse> {
    return new Promise<RangeResponse>((resolve, reject) => {
      const onAbort = () => connection.fail(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      signal.addEventListener('abort', onAbort, { once: true });
      const done = () => signal.removeEventListener('abort', onAbort);
      connection.send(`${url.pathname}${url.search}`, url.host, headers, {
        into,
        head: Buffer.alloc(0),
        response: undefined,
        body: undefined,
        bodyLength: 0,
        received: 0,
        onData,
        answered: false,
        untilEnd: false,
        resolve: (response) => {
          done();
          resolve(response);
        },
        reject: (err) => {
          done();
          reject(err);
        },
      });
    });
  }

  private connection(url: URL, fresh: boolean): Connection {
    const list = fresh ? undefined : this.idle.get(url.origin);
    for (let connection = list?.pop(); connection; connection = list?.pop()) {
      if (!connection.socket.destroyed) return connection;
    }
    const connection = new Connection(
      url,
      this.timeoutMs,
      (idle) => this.release(url.origin, idle),
      (closed) => {
        this.all.delete(closed);
        const kept = this.idle.get(url.origin);
        const at = kept?.indexOf(closed) ?? -1;
        if (kept && at >= 0) kept.splice(at, 1);
      },
    );
    this.all.add(connection);
    return connection;
  }

  private release(origin: string, connection: Connection): void {
    const list = this.idle.get(origin) ?? [];
    if (this.closing || list.length >= this.maxIdle) {
      connection.socket.destroy();
      return;
    }
    connection.socket.setTimeout(this.idleMs);
    list.push(connection);
    this.idle.set(origin, list);
  }
}
