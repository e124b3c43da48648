// StackService: the stacks every tenant can deploy on. Reading is open to every user; only
// admins register and delete stacks. The registry is the leader's (coordinator/workloads/stacks.ts).
import type * as grpc from '@grpc/grpc-js';
import { DEFAULT_STACK_READINESS_TIMEOUT_MS, type StackRegistry } from '../workloads/stacks.js';
import type { RpcEdge } from './rpc.js';
import { deleteStackSchema, getStackSchema, listStacksSchema, registerStackSchema } from './stack-schemas.js';

export interface StackServiceDeps {
  edge: RpcEdge;
  /** The leader's registry; throws NotLeaderError on a follower. */
  stacks(): StackRegistry;
  /** What still names a stack (a deployment, an unfinished job); undefined when nothing does. */
  stackUser(stack: string): string | undefined;
}

export function stackService(deps: StackServiceDeps): grpc.UntypedServiceImplementation {
  const { edge } = deps;
  return {
    ListStacks: edge.unary('StackService.ListStacks', listStacksSchema, async () => ({ stacks: deps.stacks().list() })),
    GetStack: edge.unary('StackService.GetStack', getStackSchema, async ({ name }) => deps.stacks().get(name)),
    RegisterStack: edge.unary(
      'StackService.RegisterStack',
      registerStackSchema,
      async ({ stack }) => {
        const readinessTimeoutMs = stack!.readinessTimeoutMs || DEFAULT_STACK_READINESS_TIMEOUT_MS;
        return (await deps.stacks().register({ ...stack!, readinessTimeoutMs })).stack;
      },
      ({ stack }) => `stack/${stack?.name ?? ''}`,
    ),
    DeleteStack: edge.unary(
      'StackService.DeleteStack',
      deleteStackSchema,
      async ({ name }) => {
        await deps.stacks().delete(name, deps.stackUser);
        return {};
      },
      ({ name }) => `stack/${name}`,
    ),
  };
}
