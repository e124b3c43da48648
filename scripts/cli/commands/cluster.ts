// `mlfleetctl cluster …`: the control plane itself.
import type { Command } from 'commander';
import { withContext } from '../context.js';
import { clusterStatusView } from '../views/cluster.js';

export function registerClusterCommands(program: Command): void {
  const cluster = program.command('cluster').description('the coordinators and their store');

  cluster
    .command('status')
    .description('show the leader, every coordinator and its role, the store and its revision')
    .action((_options: unknown, command: Command) =>
      withContext(command, async (ctx) => ctx.print(clusterStatusView(await ctx.client().clusterStatus()))),
    );
}
