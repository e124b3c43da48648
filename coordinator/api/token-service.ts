// TokenService (admins only): create a token (its secret is in this answer and nowhere
// else), list, revoke. Revoking a node credential ends that node's session at once. Revoking
// a join token means it leaked: the node credentials it admitted are revoked with it (else a
// node admitted by the leak would just reconnect with its credential). Expiry is rotation: an
// expired join token admits no new node and revokes nothing.
import type * as grpc from '@grpc/grpc-js';
import type { Store } from '../../shared/store/store.js';
import type { TokenRecord, TokenRegistry } from '../auth/token-registry.js';
import type { FencedWriter } from '../node-registry.js';
import { getTenant } from '../tenants.js';
import type { RpcEdge } from './rpc.js';
import { createTokenSchema, listTokensSchema, revokeTokenSchema } from './schemas.js';

export interface TokenServiceDeps {
  edge: RpcEdge;
  store: Store;
  tokens: TokenRegistry;
  writer(): FencedWriter;
}

export function toTokenInfo(record: TokenRecord) {
  const { secretHash: _secretHash, ...info } = record;
  return { ...info, singleUse: record.singleUse ?? false, usedAtMs: record.usedAtMs ?? 0, usedBy: record.usedBy ?? '' };
}

export function tokenService(deps: TokenServiceDeps): grpc.UntypedServiceImplementation {
  const { edge, tokens } = deps;
  return {
    CreateToken: edge.unary(
      'TokenService.CreateToken',
      createTokenSchema,
      async ({ tenant, role, description, ttlMs, singleUse }, { principal }) => {
        const writer = deps.writer();
        if (role !== 'join') await getTenant(deps.store, tenant);
        const { record, token } = await tokens.create(writer, {
          tenant: role === 'join' ? '' : tenant,
          role,
          description,
          ttlMs,
          singleUse,
          createdBy: principal.tokenId,
        });
        return { info: toTokenInfo(record), token };
      },
      ({ tenant, role }) => `token/${role}${tenant ? `@${tenant}` : ''}`,
    ),
    ListTokens: edge.unary('TokenService.ListTokens', listTokensSchema, async ({ tenant, includeRevoked }) => {
      return {
        tokens: tokens
          .list()
          .filter((t) => (includeRevoked || t.revokedAtMs === 0) && (!tenant || t.tenant === tenant))
          .map(toTokenInfo),
      };
    }),
    RevokeToken: edge.unary(
      'TokenService.RevokeToken',
      revokeTokenSchema,
      async ({ id }) => {
        const writer = deps.writer();
        const revoked = await tokens.revoke(writer, id);
        if (revoked.role === 'join') {
          for (const minted of tokens.list()) {
            if (minted.role === 'node' && minted.createdBy === id && minted.revokedAtMs === 0) await tokens.revoke(writer, minted.id);
          }
        }
        return toTokenInfo(revoked);
      },
      ({ id }) => `token/${id}`,
    ),
  };
}
