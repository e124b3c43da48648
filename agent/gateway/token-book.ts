// The tokens this gateway accepts, as the leader sent them over the agent's session
// (coordinator/auth/gateway-tokens.ts): the SHA-256 of each secret, its role, tenant and expiry.
// A request's bearer token is checked here, in memory, with no call to the leader; a token
// verified once is remembered by its full text until the table changes, so the hash is taken
// once per token, not once per request. Revocations arrive as changes and clear what is
// remembered. With no table yet (the agent has not reached a leader since it started), every
// token is refused: the gateway never serves unchecked.
import { parseToken, secretMatches, type Role } from '../../shared/auth.js';
import type { Clock } from '../../shared/clock.js';
import type { GatewayToken__Output as GatewayToken } from '../../shared/gen/mlfleet/v1/GatewayToken.js';
import type { TokenTable__Output as TokenTable } from '../../shared/gen/mlfleet/v1/TokenTable.js';

/** Who sent a request, as its token says. */
export interface Caller {
  tokenId: string;
  role: Role;
  tenant: string;
  node: string;
}

export type Verdict = { ok: true; caller: Caller } | { ok: false; reason: string };

/** Verified tokens remembered at most; past it the memory starts again (a flood of distinct valid tokens only costs hashes). */
const REMEMBERED = 10_000;

export class TokenBook {
  private tokens = new Map<string, GatewayToken>();
  private staging: Map<string, GatewayToken> | undefined;
  private loaded = false;
  private readonly verified = new Map<string, { caller: Caller; expiresAtMs: number }>();

  constructor(private readonly clock: Clock) {}

  /** Whether a whole table has arrived since start. */
  get ready(): boolean {
    return this.loaded;
  }

  get size(): number {
    return this.tokens.size;
  }

  /** A piece of a full table, or a change. */
  apply(table: TokenTable): void {
    if (table.reset) this.staging = new Map();
    const target = this.staging ?? this.tokens;
    for (const token of table.tokens) target.set(token.id, token);
    for (const id of table.removed) target.delete(id);
    if (table.complete && this.staging) {
      this.tokens = this.staging;
      this.staging = undefined;
      this.loaded = true;
    }
    // A change may take a remembered token away (a revocation): forget them all, cheaply.
    this.verified.clear();
  }

  /** Checks `authorization: Bearer <token>`; the caller, or why not. */
  verify(authorization: string): Verdict {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!match) return { ok: false, reason: 'the authorization header must be "Bearer <token>"' };
    const text = match[1]!;
    const now = this.clock.now();
    const known = this.verified.get(text);
    if (known) {
      if (known.expiresAtMs === 0 || known.expiresAtMs > now) return { ok: true, caller: known.caller };
      this.verified.delete(text);
      return { ok: false, reason: `token ${known.caller.tokenId} has expired` };
    }
    if (!this.loaded) return { ok: false, reason: 'this gateway has not received the tokens from the leader yet; try again shortly' };
    const parsed = parseToken(text);
    const token = parsed ? this.tokens.get(parsed.id) : undefined;
    if (!parsed || !token || !secretMatches(parsed.secret, token.secretSha256)) return { ok: false, reason: 'the token is not valid' };
    const expiresAtMs = Number(token.expiresAtMs);
    if (expiresAtMs > 0 && expiresAtMs <= now) return { ok: false, reason: `token ${token.id} has expired` };
    const caller: Caller = { tokenId: token.id, role: token.role as Role, tenant: token.tenant, node: token.node };
    if (this.verified.size >= REMEMBERED) this.verified.clear();
    this.verified.set(text, { caller, expiresAtMs });
    return { ok: true, caller };
  }
}

