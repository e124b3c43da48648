// The HTTP side of blob delivery (docs/delivery.md), shared by the coordinator's blob routes,
// the agents' peer routes and their clients: the paths, the headers, byte ranges, and the
// grants the leader signs for peers. Pure apart from the signing.
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { InvalidArgumentError, PermissionDeniedError } from './errors.js';

/** GET (with Range) and HEAD: a blob's bytes. Served by coordinators and by agents' gateways. */
export const BLOBS_PATH = '/v1/blobs/';
/** GET `${BLOBS_PATH}<digest>${PIECES_SUFFIX}`: the pieces an agent holds, as a Bitfield's bytes. */
export const PIECES_SUFFIX = '/pieces';
/** HEAD (offset) and PUT (bytes from Upload-Offset): a push's bytes. Served by coordinators. */
export const UPLOADS_PATH = '/v1/uploads/';

/** Request and answer header: where a PUT's bytes start; the answer says where they now end. */
export const UPLOAD_OFFSET_HEADER = 'upload-offset';
/** Request header: the grant (from DeliveryService.Locate) a node shows a peer. */
export const GRANT_HEADER = 'mlfleet-grant';
/**
 * Answer header on a peer's piece: the bitfield of the pieces it holds now (base64), so a fetcher
 * learns of new pieces with every piece it gets instead of asking /pieces as often. On a request
 * to a peer (with PIECE_BYTES_HEADER): the asking agent's own, which the peer learns the same way.
 */
export const PIECES_HEADER = 'mlfleet-pieces';
/** Header beside PIECES_HEADER: the piece size its bitfield counts in. */
export const PIECE_BYTES_HEADER = 'mlfleet-piece-bytes';

export const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;

export function blobUrl(base: string, digest: string): string {
  return `${base.replace(/\/$/, '')}${BLOBS_PATH}${digest}`;
}

/** The base URL (scheme://host:port) of a host:port, https when the cluster has TLS. */
export function baseUrl(hostPort: string, tls: boolean): string {
  return `${tls ? 'https' : 'http'}://${hostPort}`;
}

/** Parses `/v1/blobs/<digest>` or `/v1/blobs/<digest>/pieces`; undefined for any other path. */
export function parseBlobPath(pathname: string): { digest: string; pieces: boolean } | undefined {
  if (!pathname.startsWith(BLOBS_PATH)) return undefined;
  let rest = pathname.slice(BLOBS_PATH.length);
  const pieces = rest.endsWith(PIECES_SUFFIX);
  if (pieces) rest = rest.slice(0, -PIECES_SUFFIX.length);
  if (!DIGEST_PATTERN.test(rest)) return undefined;
  return { digest: rest, pieces };
}

/**
 * A Range header of one range (`bytes=a-b`, `bytes=a-`, `bytes=-n`) over a blob of `size`:
 * [start, end) to send, undefined when there is no header (the whole blob), or 'unsatisfiable'
 * (answered 416). Several ranges in one header are refused: nobody here asks for them.
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | undefined | 'unsatisfiable' {
  if (header === undefined || header === '') return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) throw new InvalidArgumentError(`cannot read the Range header ${JSON.stringify(header.slice(0, 100))}; expected bytes=START-END`);
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size };
  }
  const start = Number(match[1]);
  const last = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (!Number.isSafeInteger(start) || start >= size || last < start) return 'unsatisfiable';
  return { start, end: last + 1 };
}

// ---- grants ------------------------------------------------------------------------------------

/** What a grant allows: `node` may read `digest` from peers until `expiresAtMs`. */
export interface Grant {
  digest: string;
  node: string;
  expiresAtMs: number;
}

/** The leader's signing key pair, as kept in the store (PKCS#8 and SPKI, DER). */
export interface GrantKeys {
  privateKey: KeyObject;
  publicKeyDer: Buffer;
}

export function generateGrantKeys(): { privateKeyDer: Buffer; publicKeyDer: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyDer: privateKey.export({ format: 'der', type: 'pkcs8' }),
    publicKeyDer: publicKey.export({ format: 'der', type: 'spki' }),
  };
}

export function loadGrantKeys(privateKeyDer: Buffer): GrantKeys {
  const privateKey = createPrivateKey({ key: privateKeyDer, format: 'der', type: 'pkcs8' });
  return { privateKey, publicKeyDer: createPublicKey(privateKey).export({ format: 'der', type: 'spki' }) };
}

/** `<base64url JSON>.<base64url Ed25519 signature of the JSON>` */
export function signGrant(keys: GrantKeys, grant: Grant): string {
  const payload = Buffer.from(JSON.stringify({ d: grant.digest, n: grant.node, e: grant.expiresAtMs }));
  return `${payload.toString('base64url')}.${sign(null, payload, keys.privateKey).toString('base64url')}`;
}

/** Grants longer than this are not even parsed. */
const MAX_GRANT_CHARS = 1024;

/** The last key grants were checked with, parsed: a key stays the same for as long as its leader's line does. */
let lastKey: { der: Buffer; key: KeyObject } | undefined;

function grantKeyObject(publicKeyDer: Buffer): KeyObject {
  if (lastKey?.der.equals(publicKeyDer)) return lastKey.key;
  const key = createPublicKey({ key: publicKeyDer, format: 'der', type: 'spki' });
  lastKey = { der: Buffer.from(publicKeyDer), key };
  return key;
}

/**
 * The grant, when `publicKeyDer` signed it, it has not expired, and it names `node` and
 * `digest`; PermissionDeniedError otherwise (saying why, for the peer's log).
 */
export function verifyGrant(publicKeyDer: Buffer, token: string | undefined, expected: { node: string; digest: string; nowMs: number }): Grant {
  if (!token) throw new PermissionDeniedError(`a peer fetch needs the grant the leader gave (header ${GRANT_HEADER})`);
  if (token.length > MAX_GRANT_CHARS) throw new PermissionDeniedError('the grant is too long to be one');
  const [payloadText, signatureText, extra] = token.split('.');
  if (!payloadText || !signatureText || extra !== undefined) throw new PermissionDeniedError('the grant is malformed');
  const payload = Buffer.from(payloadText, 'base64url');
  let key: KeyObject;
  try {
    key = grantKeyObject(publicKeyDer);
  } catch {
    throw new PermissionDeniedError('this agent has no key to check grants with yet');
  }
  if (!verify(null, payload, key, Buffer.from(signatureText, 'base64url'))) throw new PermissionDeniedError('the grant is not signed by the leader');
  let body: { d?: unknown; n?: unknown; e?: unknown };
  try {
    body = JSON.parse(payload.toString('utf8')) as typeof body;
  } catch {
    throw new PermissionDeniedError('the grant is malformed');
  }
  if (typeof body.d !== 'string' || typeof body.n !== 'string' || typeof body.e !== 'number') throw new PermissionDeniedError('the grant is malformed');
  if (body.n !== expected.node) throw new PermissionDeniedError(`the grant is for node ${body.n}, not ${expected.node}`);
  if (body.d !== expected.digest) throw new PermissionDeniedError(`the grant is for ${body.d}, not ${expected.digest}`);
  if (body.e <= expected.nowMs) throw new PermissionDeniedError('the grant has expired; Locate again');
  return { digest: body.d, node: body.n, expiresAtMs: body.e };
}
