// Token tables for gateways started without a coordinator (gateway tests and the bench): the
// entry the leader would send for a token minted here.
import { generateToken, hashSecret, type Role } from '../../shared/auth.js';
import type { GatewayToken__Output as GatewayToken } from '../../shared/gen/mlfleet/v1/GatewayToken.js';
import type { TokenTable__Output as TokenTable } from '../../shared/gen/mlfleet/v1/TokenTable.js';

export interface MintedToken {
  token: string;
  entry: GatewayToken;
}

export function mintGatewayToken(role: Role, tenant: string, options: { node?: string; expiresAtMs?: number } = {}): MintedToken {
  const { id, secret, token } = generateToken();
  return { token, entry: { id, secretSha256: hashSecret(secret), role, tenant, node: options.node ?? '', expiresAtMs: options.expiresAtMs ?? 0 } };
}

/** A whole table in one piece. */
export function tokenTable(...tokens: MintedToken[]): TokenTable {
  return { reset: true, complete: true, tokens: tokens.map((t) => t.entry), removed: [] };
}
