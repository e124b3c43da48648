// Bearer tokens on the wire. A token reads `mlf_<id>_<secret>`: the id is public (listed,
// audited, revoked by), the secret is shown once and stored only as its SHA-256.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';

export const AUTHORIZATION = 'authorization';

export const USER_ROLES = ['admin', 'developer', 'consumer'] as const;
export type UserRole = (typeof USER_ROLES)[number];
/** `join` lets an agent register once; `node` is the credential a node gets back, bound to its name. */
export type Role = UserRole | 'join' | 'node';

const TOKEN = /^mlf_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface ParsedToken {
  id: string;
  secret: string;
}

export function generateToken(): ParsedToken & { token: string } {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { id, secret, token: `mlf_${id}_${secret}` };
}

export function parseToken(text: string): ParsedToken | undefined {
  const match = TOKEN.exec(text.trim());
  return match ? { id: match[1]!, secret: match[2]! } : undefined;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function secretMatches(secret: string, storedHash: string): boolean {
  const given = Buffer.from(hashSecret(secret), 'hex');
  const stored = Buffer.from(storedHash, 'hex');
  return given.length === stored.length && timingSafeEqual(given, stored);
}

export function setBearer(metadata: Metadata, token: string | undefined): Metadata {
  if (token) metadata.set(AUTHORIZATION, `Bearer ${token}`);
  return metadata;
}

/** The token of `authorization: Bearer <token>`, or undefined when absent or not a bearer. */
export function readBearer(metadata: Metadata): string | undefined {
  const value = metadata.get(AUTHORIZATION)[0];
  if (typeof value !== 'string') return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(value.trim());
  return match?.[1];
}
