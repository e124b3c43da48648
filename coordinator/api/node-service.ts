// NodeService: the leader's node view, and the operator actions on nodes.
import type * as grpc from '@grpc/grpc-js';
import type { Node, Resources } from '../../shared/proto.js';
import { displayStatus, toProtoNode, type NodeView } from '../node-record.js';
import type { FencedWriter, NodeRegistry } from '../node-registry.js';
import type { TokenRegistry } from '../auth/token-registry.js';
import { randomUUID } from 'node:crypto';
import { parseRef } from '../../shared/artifact-ref.js';
import type { ArtifactRegistry } from '../registry/artifact-registry.js';
import type { RpcEdge } from './rpc.js';
import { listNodesSchema, nodeNameRequestSchema, prefetchModelSchema } from './schemas.js';

export interface NodeServiceDeps {
  edge: RpcEdge;
  artifacts: ArtifactRegistry;
  /** The registry while this coordinator leads; throws NotLeaderError otherwise. */
  registry(): NodeRegistry;
  revision(): Promise<number>;
  tokens: TokenRegistry;
  writer(): FencedWriter;
  /** What placed allocations hold, per node (nodes holding nothing are absent). */
  allocated(): Map<string, Resources>;
}

export function nodeService(deps: NodeServiceDeps): grpc.UntypedServiceImplementation {
  const { edge } = deps;
  const action = (method: string, act: (registry: NodeRegistry, name: string) => Promise<unknown>) =>
    edge.unary(
      `NodeService.${method}`,
      nodeNameRequestSchema,
      async ({ name }): Promise<Node> => {
        const registry = deps.registry();
        await act(registry, name);
        return toProtoNode(registry.get(name), deps.allocated().get(name));
      },
      ({ name }) => `node/${name}`,
    );

  return {
    ListNodes: edge.unary('NodeService.ListNodes', listNodesSchema, async ({ status, selector, limit, after }) => {
      const registry = deps.registry();
      const revision = await deps.revision();
      const allocated = deps.allocated();
      const chosen = registry
        .list()
        .filter((view) => !status || displayStatus(view.record) === status)
        .filter((view) => Object.entries(selector).every(([k, v]) => view.record.labels[k] === v));
      // A page is cut before the nodes are shaped: a first page of 200 out of 5,000 shapes 200.
      const { page, more } = limit === 0 && after === '' ? { page: chosen, more: false } : pageByName(chosen, limit, after);
      return { nodes: page.map((view) => toProtoNode(view, allocated.get(view.record.name))), revision, more };
    }),
    GetNode: edge.unary('NodeService.GetNode', nodeNameRequestSchema, async ({ name }) => toProtoNode(deps.registry().get(name), deps.allocated().get(name))),
    CordonNode: action('CordonNode', (registry, name) => registry.cordon(name)),
    UncordonNode: action('UncordonNode', (registry, name) => registry.uncordon(name)),
    DrainNode: action('DrainNode', (registry, name) => registry.drain(name)),
    // The credentials go first (a revocation ends the session), then the record: the node
    // cannot come back under the name, and its allocations count as on a node that is down.
    RemoveNode: edge.unary(
      'NodeService.RemoveNode',
      nodeNameRequestSchema,
      async ({ name }): Promise<Node> => {
        const registry = deps.registry();
        const writer = deps.writer();
        const view = registry.get(name);
        const allocated = deps.allocated().get(name);
        for (const token of deps.tokens.nodeCredentials(name)) await deps.tokens.revoke(writer, token.id);
        await registry.remove(name);
        return toProtoNode(view, allocated);
      },
      ({ name }) => `node/${name}`,
    ),
    PrefetchModel: edge.unary(
      'NodeService.PrefetchModel',
      prefetchModelSchema,
      async ({ node, ref, tenant }, { principal }) => {
        const registry = deps.registry();
        const owner = tenant || principal.tenant;
        const { version } = await deps.artifacts.resolve('model', owner, parseRef(ref));
        registry.command(node, {
          id: randomUUID(),
          prefetch: { digest: version.digest, ref: `${owner}/${ref}`, sizeBytes: version.sizeBytes, directory: version.directory, kind: 'model' },
        });
        return { digest: version.digest, sizeBytes: version.sizeBytes };
      },
      ({ node, ref }) => `node/${node} model/${ref}`,
    ),
  };
}

/** Up to `limit` (0: no limit) of the nodes named after `after`, in byte order of their names. */
export function pageByName(views: readonly NodeView[], limit: number, after: string): { page: NodeView[]; more: boolean } {
  const named = (view: NodeView) => view.record.name;
  const sorted = views.filter((view) => named(view) > after).sort((a, b) => (named(a) < named(b) ? -1 : 1));
  const page = limit === 0 ? sorted : sorted.slice(0, limit);
  return { page, more: page.length < sorted.length };
}
