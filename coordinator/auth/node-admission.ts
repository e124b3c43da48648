// Admitting a node with a join token: a join token admits a new node name only, never an
// existing one (as Nomad refuses a node that re-registers with another secret), so a leaked
// join token cannot take over a node, its session or its desired set. The node's credential is
// created in one fenced transaction that also checks the name has no record and, for a
// single-use join token, consumes the token; joins of one name are serialized, so two racing
// joins can neither both take a name nor both use a single-use token.
import { AlreadyExistsError, ConflictError, UnauthenticatedError } from '../../shared/errors.js';
import type { Clock } from '../../shared/clock.js';
import { KeyedMutex } from '../../shared/keyed-mutex.js';
import { keys } from '../../shared/keys.js';
import type { Store } from '../../shared/store/store.js';
import type { FencedWriter } from '../node-registry.js';
import type { Principal, TokenRecord, TokenRegistry } from './token-registry.js';

const MAX_ATTEMPTS = 5;

export interface AdmittedNode {
  /** The credential's secret: sent to the agent once, in the welcome. */
  token: string;
  credential: TokenRecord;
}

export class NodeAdmission {
  private readonly joins = new KeyedMutex();

  constructor(
    private readonly store: Store,
    private readonly tokens: TokenRegistry,
    private readonly clock: Clock,
  ) {}

  /**
   * Mints `nodeName`'s credential for a session that authenticated with the join token
   * `join`; ALREADY_EXISTS when the name has a node record or a valid credential,
   * UNAUTHENTICATED when the join token no longer admits (revoked, expired, used).
   * `known` says whether the leader's node registry holds the name.
   */
  admit(writer: FencedWriter, join: Principal, nodeName: string, known: () => boolean): Promise<AdmittedNode> {
    return this.joins.run(nodeName, async () => {
      const joinKey = keys.token(join.tokenId);
      const nodeKey = keys.node(nodeName);
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const held = this.tokens.nodeCredentials(nodeName).length > 0;
        if (known() || held || (await this.store.get(nodeKey))) throw nodeExists(nodeName);
        const kv = await this.store.get(joinKey);
        if (!kv) throw new UnauthenticatedError('the token is not valid');
        const joinRecord = JSON.parse(kv.value) as TokenRecord;
        this.tokens.assertUsable(joinRecord);
        const minted = this.tokens.mint({
          tenant: '',
          role: 'node',
          node: nodeName,
          description: `credential of node ${nodeName}`,
          createdBy: join.tokenId,
        });
        const credentialKey = keys.token(minted.record.id);
        const used: TokenRecord | undefined = joinRecord.singleUse ? { ...joinRecord, usedAtMs: this.clock.now(), usedBy: nodeName } : undefined;
        const result = await writer.txn(
          [
            { key: credentialKey, target: 'createRevision', op: '=', value: 0 },
            { key: nodeKey, target: 'createRevision', op: '=', value: 0 },
            { key: joinKey, target: 'modRevision', op: '=', value: kv.modRevision },
          ],
          [
            { type: 'put', key: credentialKey, value: JSON.stringify(minted.record) },
            ...(used ? [{ type: 'put' as const, key: joinKey, value: JSON.stringify(used) }] : []),
          ],
        );
        if (!result.succeeded) continue;
        this.tokens.remember(minted.record);
        if (used) this.tokens.remember(used);
        return { token: minted.token, credential: minted.record };
      }
      throw new ConflictError(`node "${nodeName}" or its join token kept changing while it joined; the agent tries again`);
    });
  }
}

function nodeExists(name: string): AlreadyExistsError {
  return new AlreadyExistsError(
    `node "${name}" already exists and a join token admits new nodes only: an agent that is that node connects with the credential in its --data-dir; ` +
      `to let a new agent take the name, an admin must remove the node first with \`mlfleetctl nodes rm ${name}\``,
  );
}
