// `mlfleetctl nodes …`: the hosts agents registered, and the operator's actions on them.
import { Argument, InvalidArgumentError, Option, type Command } from 'commander';
import { withContext } from '../context.js';
import { usageParser } from '../flags.js';
import { formatRef, parseRef, type ArtifactRef } from '../../../shared/artifact-ref.js';
import { formatBytes } from '../../../shared/units.js';
import { nodeActionView, nodeDetailView, nodeListView } from '../views/nodes.js';

const NODE_STATUSES = ['ready', 'down', 'draining'];

/** "k=v,k2=v2" → {k: 'v', k2: 'v2'}; a usage error (exit 2) when malformed. */
export function parseSelector(text: string): Record<string, string> {
  const selector: Record<string, string> = {};
  for (const part of text.split(',').map((p) => p.trim()).filter((p) => p.length > 0)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`"${part}" is not a label selector; use key=value[,key=value…]`);
    selector[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return selector;
}

export function registerNodeCommands(program: Command): void {
  const nodes = program.command('nodes').description('hosts running an agent');

  nodes
    .command('ls')
    .description('list nodes')
    .addOption(new Option('--status <status>', 'only nodes with this status').choices(NODE_STATUSES))
    .addOption(new Option('--selector <k=v,...>', 'only nodes carrying all these labels').argParser(parseSelector))
    .action((options: { status?: string; selector?: Record<string, string> }, command: Command) =>
      withContext(command, async (ctx) => {
        const { nodes: list } = await ctx.client().listNodes({ status: options.status, selector: options.selector });
        ctx.print(nodeListView(list));
      }),
    );

  nodes
    .command('show')
    .description('show one node: capacity, GPUs, NICs, allocation and heartbeat')
    .argument('<name>', 'node name')
    .action((name: string, _options: unknown, command: Command) =>
      withContext(command, async (ctx) => ctx.print(nodeDetailView(await ctx.client().getNode(name)))),
    );

  nodes
    .command('cordon')
    .description('place no new work on the node; what runs there stays')
    .argument('<name>', 'node name')
    .action((name: string, _options: unknown, command: Command) =>
      withContext(command, async (ctx) => ctx.print(nodeActionView(await ctx.client().cordonNode(name), 'cordoned'))),
    );

  nodes
    .command('uncordon')
    .description('let new work be placed on the node again')
    .argument('<name>', 'node name')
    .action((name: string, _options: unknown, command: Command) =>
      withContext(command, async (ctx) => ctx.print(nodeActionView(await ctx.client().uncordonNode(name), 'uncordoned'))),
    );

  nodes
    .command('drain')
    .description('cordon the node and move its work elsewhere')
    .argument('<name>', 'node name')
    .action((name: string, _options: unknown, command: Command) =>
      withContext(command, async (ctx) =>
        ctx.print(nodeActionView(await ctx.client().drainNode(name), 'draining: cordoned, its work is being moved elsewhere')),
      ),
    );

  nodes
    .command('rm')
    .description("remove a node: revoke its credentials (ending its session), delete it and move its work elsewhere; the name may then join again")
    .argument('<name>', 'node name')
    .action((name: string, _options: unknown, command: Command) =>
      withContext(command, async (ctx) =>
        ctx.print(nodeActionView(await ctx.client().removeNode(name), 'removed: its credentials are revoked and its work is being moved elsewhere')),
      ),
    );

  nodes
    .command('prefetch')
    .description("fetch a model version into the node's cache now, ahead of a deployment")
    .argument('<name>', 'node name')
    .addArgument(new Argument('<ref>', 'model: name, name:3 or name@alias').argParser(usageParser(parseRef)))
    .action((name: string, parsed: ArtifactRef, _options: unknown, command: Command) =>
      withContext(command, async (ctx) => {
        const ref = formatRef(parsed);
        const { digest, sizeBytes } = await ctx.client().prefetchModel(name, ref);
        ctx.print({
          data: { node: name, ref, digest, sizeBytes },
          table: () => `node ${name} is fetching ${ref} (${digest}, ${formatBytes(sizeBytes)}); \`mlfleetctl nodes show ${name}\` lists its cache`,
        });
      }),
    );
}

