// What the gateways are told of the tokens, so that they check every request's bearer token
// themselves, with no call to the leader per request (DESIGN principle 11). Pure: records in,
// the session messages out. A gateway gets the tokens that may call it — user tokens to infer,
// node credentials for the hop between gateways — as the digests the store already holds
// (never a secret); join tokens, revoked and expired ones are left out.
import type { GatewayToken__Output as GatewayToken } from '../../shared/gen/mlfleet/v1/GatewayToken.js';
import type { TokenTable__Output as TokenTable } from '../../shared/gen/mlfleet/v1/TokenTable.js';
import type { TokenRecord } from './token-registry.js';

/** Tokens per message of a full table: about 150 bytes each, so a piece stays far under 4 MiB. */
export const TOKENS_PER_PIECE = 2_000;

/** The record as a gateway holds it; undefined when no gateway may accept it now. */
export function gatewayToken(record: TokenRecord, nowMs: number): GatewayToken | undefined {
  if (record.role === 'join' || record.revokedAtMs > 0) return undefined;
  if (record.expiresAtMs > 0 && record.expiresAtMs <= nowMs) return undefined;
  return {
    id: record.id,
    secretSha256: record.secretHash,
    role: record.role,
    tenant: record.tenant,
    node: record.node,
    expiresAtMs: record.expiresAtMs,
  };
}

/** The whole table in pieces: the first resets, the last completes (one piece when it fits). */
export function tokenTablePieces(records: Iterable<TokenRecord>, nowMs: number, perPiece = TOKENS_PER_PIECE): TokenTable[] {
  const tokens: GatewayToken[] = [];
  for (const record of records) {
    const token = gatewayToken(record, nowMs);
    if (token) tokens.push(token);
  }
  const pieces: TokenTable[] = [];
  for (let i = 0; i === 0 || i < tokens.length; i += perPiece) {
    pieces.push({ reset: i === 0, complete: i + perPiece >= tokens.length, tokens: tokens.slice(i, i + perPiece), removed: [] });
  }
  return pieces;
}

/** One record changed (created, revoked): what every gateway must learn of it. */
export function tokenChange(record: TokenRecord, nowMs: number): TokenTable | undefined {
  if (record.role === 'join') return undefined;
  const token = gatewayToken(record, nowMs);
  return token ? { reset: false, complete: true, tokens: [token], removed: [] } : { reset: false, complete: true, tokens: [], removed: [record.id] };
}
