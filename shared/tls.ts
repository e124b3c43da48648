// TLS for the gRPC API: the --tls-cert/--tls-key/--tls-ca files, read and checked once at
// start (a wrong path or a key that does not match its certificate stops the daemon with a
// message naming the flag, instead of failing every handshake later), and turned into grpc-js
// credentials. A coordinator with a CA requires a client certificate signed by it: mutual TLS,
// so only agents and users holding such a certificate reach the API at all, before any token
// is looked at. Without these flags everything is plain text, which is the embedded default
// on loopback; a non-loopback listener without TLS gets a warning (warnIfPlaintext).
//
// The HTTP ops servers (/healthz, /metrics) stay plain: they carry no secrets and change
// nothing, and Prometheus and load balancers scrape them as they are.
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { parseHostPort, type ParsedArgs } from './config.js';
import { InvalidArgumentError } from './errors.js';
import type { Logger } from './log.js';

/** Paths as the operator gave them. */
export interface TlsFiles {
  /** PEM certificate (chain) this process presents. */
  cert?: string;
  /** PEM private key of `cert`. */
  key?: string;
  /** PEM CA bundle: a server verifies client certificates with it, a client the server's. */
  ca?: string;
}

/** The files' contents, read once at start. */
export interface TlsMaterial {
  cert: Buffer | undefined;
  key: Buffer | undefined;
  ca: Buffer | undefined;
  /** Where they came from, for log lines. */
  files: TlsFiles;
}

/**
 * Who uses the material: a server must present a certificate; a client may only verify the
 * server (`--tls-ca` alone), which a coordinator that does not ask for client certificates
 * accepts.
 */
export type TlsRole = 'server' | 'client';

const FLAGS = { cert: '--tls-cert', key: '--tls-key', ca: '--tls-ca' } as const;

/** Reads and checks the files; undefined when none is given (plain text). */
export function loadTls(files: TlsFiles, role: TlsRole): TlsMaterial | undefined {
  const given = (path: string | undefined) => (path === undefined || path === '' ? undefined : path);
  const paths = { cert: given(files.cert), key: given(files.key), ca: given(files.ca) };
  if (!paths.cert && !paths.key && !paths.ca) return undefined;
  if (paths.cert && !paths.key) throw new InvalidArgumentError(`${FLAGS.cert} needs ${FLAGS.key}: the private key of ${paths.cert}`);
  if (paths.key && !paths.cert) throw new InvalidArgumentError(`${FLAGS.key} needs ${FLAGS.cert}: the certificate of ${paths.key}`);
  if (role === 'server' && !paths.cert) {
    throw new InvalidArgumentError(
      `${FLAGS.ca} needs ${FLAGS.cert} and ${FLAGS.key}: a TLS server must present a certificate (the CA only verifies its clients)`,
    );
  }

  const cert = paths.cert ? read('cert', paths.cert) : undefined;
  const key = paths.key ? read('key', paths.key) : undefined;
  const ca = paths.ca ? read('ca', paths.ca) : undefined;
  if (cert && key) {
    const certificate = parseCertificate('cert', paths.cert!, cert);
    const privateKey = parseKey(paths.key!, key);
    if (!certificate.checkPrivateKey(privateKey)) {
      throw new InvalidArgumentError(`${FLAGS.key} ${paths.key} is not the private key of ${FLAGS.cert} ${paths.cert}`);
    }
    if (Date.parse(certificate.validTo) < Date.now()) {
      throw new InvalidArgumentError(`${FLAGS.cert} ${paths.cert} expired on ${certificate.validTo}; issue a new one`);
    }
  }
  if (ca) parseCertificate('ca', paths.ca!, ca);
  return { cert, key, ca, files: paths };
}

/** The tlsCert/tlsKey/tlsCa values of a daemon's option table, loaded. */
export function compileTls(args: ParsedArgs, role: TlsRole): TlsMaterial | undefined {
  return loadTls({ cert: args.values.tlsCert, key: args.values.tlsKey, ca: args.values.tlsCa }, role);
}

function read(which: keyof typeof FLAGS, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new InvalidArgumentError(`${FLAGS[which]} ${path}: cannot read it (${why})`);
  }
}

function parseCertificate(which: 'cert' | 'ca', path: string, pem: Buffer): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw new InvalidArgumentError(`${FLAGS[which]} ${path} is not a PEM certificate (expected "-----BEGIN CERTIFICATE-----")`);
  }
}

function parseKey(path: string, pem: Buffer): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch {
    throw new InvalidArgumentError(`${FLAGS.key} ${path} is not an unencrypted PEM private key`);
  }
}

/** Plain text without material; TLS with it, and mutual TLS when it has a CA. */
export function serverCredentials(tls: TlsMaterial | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  if (!tls.cert || !tls.key) throw new InvalidArgumentError(`a TLS server needs ${FLAGS.cert} and ${FLAGS.key}`);
  return grpc.ServerCredentials.createSsl(tls.ca ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.ca !== undefined);
}

/**
 * Plain text without material. With it: the server is verified against the CA (the system's
 * roots when none is given) and the client certificate, if any, is presented. The server's
 * certificate must name the address dialled (a SAN), which for redirects is the leader's
 * --advertise address.
 */
export function channelCredentials(tls: TlsMaterial | undefined): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  muteIpServerNameWarning();
  return grpc.credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
}

let ipServerNameWarningMuted = false;

/**
 * grpc-js passes the dialled host to tls.connect as the server name (SNI) even when it is an
 * IP address, and Node answers with a DEP0123 deprecation warning on stderr, once per process:
 * noise in front of mlfleetctl's one-line errors and in the agent's JSON log. The certificate
 * is still checked against the IP (its IP SAN); only SNI is concerned, which Node will skip
 * for IPs by itself one day. That one warning, and no other, is dropped.
 */
function muteIpServerNameWarning(): void {
  if (ipServerNameWarningMuted) return;
  ipServerNameWarningMuted = true;
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const [typeOrOptions, code] = rest;
    const warningCode = typeof typeOrOptions === 'object' && typeOrOptions !== null ? (typeOrOptions as { code?: unknown }).code : code;
    if (warningCode === 'DEP0123') return;
    emit(warning, ...rest);
  }) as typeof process.emitWarning;
}

/** Whether only this host can reach `host` (a name, an IPv4 or an IPv6 address). */
export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIPv4(h)) return h.startsWith('127.');
  if (isIPv6(h)) return h === '::1' || /^(0{0,4}:){7}0{0,3}1$/.test(h) || /^::ffff:127\./.test(h);
  return false;
}

/**
 * Logs a warning when a plain-text API listens where other hosts can reach it. Returns
 * whether it warned.
 */
export function warnIfPlaintext(listen: string, tls: TlsMaterial | undefined, log: Logger, what: string): boolean {
  if (tls || isLoopback(parseHostPort(listen).host)) return false;
  log.warn(
    { listen, server: what },
    `listening on ${listen} without TLS: anyone on the network can reach this API; use --tls-cert/--tls-key/--tls-ca`,
  );
  return true;
}
