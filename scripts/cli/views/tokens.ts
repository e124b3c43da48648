// Tokens as mlfleetctl shows them: the stable -o json shapes and the tables. A token's
// secret appears in exactly one place, the answer to `tokens create`.
import type { CreatedToken } from '../../../shared/client.js';
import type { TokenInfo } from '../../../shared/proto.js';
import { ago, isoOrNull, keyValues, table, type Printable } from '../output.js';

export interface TokenJson {
  id: string;
  /** '' for join and node tokens. */
  tenant: string;
  role: string;
  /** The node a node credential speaks for; '' otherwise. */
  node: string;
  description: string;
  createdAt: string | null;
  createdBy: string;
  /** null while the token is valid. */
  revokedAt: string | null;
  /** null for a token that does not expire. */
  expiresAt: string | null;
  /** Join tokens: the first node that joins uses it up. */
  singleUse: boolean;
  /** Single-use join tokens: when a node joined with it (null: unused), and which node. */
  usedAt: string | null;
  usedBy: string;
}

export interface CreatedTokenJson {
  id: string;
  /** The secret, shown this once. */
  token: string;
  tenant: string;
  role: string;
  expiresAt: string | null;
}

export function tokenJson(info: TokenInfo): TokenJson {
  return {
    id: info.id,
    tenant: info.tenant,
    role: info.role,
    node: info.node,
    description: info.description,
    createdAt: isoOrNull(info.createdAtMs),
    createdBy: info.createdBy,
    revokedAt: isoOrNull(info.revokedAtMs),
    expiresAt: isoOrNull(info.expiresAtMs),
    singleUse: info.singleUse,
    usedAt: isoOrNull(info.usedAtMs),
    usedBy: info.usedBy,
  };
}

/** revoked, expired, used (a single-use join token, with the node that used it) or active, as of `now`. */
function tokenState(info: TokenInfo, now: number): string {
  if (info.revokedAtMs > 0) return 'revoked';
  if (info.expiresAtMs > 0 && info.expiresAtMs <= now) return 'expired';
  if (info.singleUse && info.usedAtMs > 0) return `used(${info.usedBy})`;
  return info.singleUse ? 'single-use' : 'active';
}

/** When it stops working: an ISO date, or "never". */
function expiry(info: TokenInfo): string {
  return info.expiresAtMs > 0 ? new Date(info.expiresAtMs).toISOString() : 'never';
}

/** `tokens create`: the id and the secret, which no later command can show again. */
export function tokenCreatedView(created: CreatedToken): Printable {
  const info = created.info;
  const data: CreatedTokenJson = {
    id: info?.id ?? '',
    token: created.token,
    tenant: info?.tenant ?? '',
    role: info?.role ?? '',
    expiresAt: isoOrNull(info?.expiresAtMs ?? 0),
  };
  return {
    data,
    table: () =>
      keyValues([
        ['ID', data.id],
        ['Tenant', data.tenant || '-'],
        ['Role', data.role],
        ['Expires', data.expiresAt ?? 'never'],
        ['Token', data.token],
      ]),
  };
}

/** `tokens ls`: a JSON array, or one row per token; never a secret. */
export function tokenListView(tokens: readonly TokenInfo[], now = Date.now()): Printable {
  return {
    data: tokens.map(tokenJson),
    table: () =>
      table(
        ['ID', 'TENANT', 'ROLE', 'NODE', 'STATE', 'CREATED', 'EXPIRES', 'DESCRIPTION'],
        tokens.map((info) => [
          info.id,
          info.tenant || '-',
          info.role,
          info.node || '-',
          tokenState(info, now),
          ago(info.createdAtMs, now),
          expiry(info),
          info.description,
        ]),
      ),
  };
}

/** `tokens revoke`: the token as it is now, or one line. */
export function tokenRevokedView(info: TokenInfo): Printable {
  return { data: tokenJson(info), table: () => `token ${info.id} revoked` };
}
