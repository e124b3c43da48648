// `mlfleetctl deployments …`: the serving deployments `deploy` and `apply` made — list, show
// (with each replica's allocation and the scheduler's message when replicas wait), scale, remove.
import { Argument, type Command } from 'commander';
import { withContext } from '../context.js';
import { deploymentDeletedView, deploymentDetailView, deploymentListView, deploymentScaledView, deploymentChangedView } from '../views/deployments.js';
import { wholeFlag, workloadNameArgument } from './deploy.js';

interface TenantOption {
  tenant?: string;
}

export function registerDeploymentCommands(program: Command): void {
  const deployments = program.command('deployments').description('serving deployments: list, show, scale, promote, rollback, remove');
  const tenantOption = (command: Command) => command.option('--tenant <tenant>', "another tenant's (admins)");

  tenantOption(deployments.command('ls').description('list deployments: model, resolved version, ready replicas, status')).action(
    (options: TenantOption, command: Command) =>
      withContext(command, async (ctx) => ctx.print(deploymentListView((await ctx.client().listDeployments(options.tenant)).deployments))),
  );

  tenantOption(
    deployments
      .command('show')
      .description('show a deployment: its spec, status and message, and where each replica runs')
      .addArgument(workloadNameArgument('deployment')),
  ).action((name: string, options: TenantOption, command: Command) =>
    withContext(command, async (ctx) => ctx.print(deploymentDetailView(await ctx.client().getDeployment(name, options.tenant)))),
  );

  tenantOption(
    deployments
      .command('scale')
      .description('run N replicas (0 stops them all and keeps the deployment)')
      .addArgument(workloadNameArgument('deployment'))
      .addArgument(new Argument('<replicas>', 'how many replicas').argParser(wholeFlag('REPLICAS', 0, 2 ** 32 - 1))),
  ).action((name: string, replicas: number, options: TenantOption, command: Command) =>
    withContext(command, async (ctx) => ctx.print(deploymentScaledView(await ctx.client().scaleDeployment(name, replicas, options.tenant)))),
  );

  tenantOption(
    deployments.command('promote').description("complete a canary: its new version replaces the old one replica by replica").addArgument(workloadNameArgument('deployment')),
  ).action((name: string, options: TenantOption, command: Command) =>
    withContext(command, async (ctx) => ctx.print(deploymentChangedView(await ctx.client().promoteDeployment(name, options.tenant), 'promoted'))),
  );

  tenantOption(
    deployments
      .command('rollback')
      .description('return replicas and traffic to the last good version and pin it there (it stops following its alias until applied or promoted)')
      .addArgument(workloadNameArgument('deployment')),
  ).action((name: string, options: TenantOption, command: Command) =>
    withContext(command, async (ctx) => ctx.print(deploymentChangedView(await ctx.client().rollbackDeployment(name, options.tenant), 'rolled back'))),
  );

  tenantOption(
    deployments.command('rm').description('stop every replica and forget the deployment').addArgument(workloadNameArgument('deployment')),
  ).action((name: string, options: TenantOption, command: Command) =>
    withContext(command, async (ctx) => {
      await ctx.client().deleteDeployment(name, options.tenant);
      ctx.print(deploymentDeletedView(name));
    }),
  );
}
