// `mlfleetctl tenants …`: tenants and their quotas. Quota flags take human units (64, 500m,
// 512Gi) and become the request's base units here; the coordinator checks the rest.
import { Option, type Command } from 'commander';
import type { Quota } from '../../../shared/gen/mlfleet/v1/Quota.js';
import { withContext } from '../context.js';
import { bytesLimit, countFlag, cpuLimit, listFlag } from '../flags.js';
import { tenantCreatedView, tenantDetailView, tenantListView } from '../views/tenants.js';

type QuotaField = keyof Required<Quota>;

interface QuotaFlag {
  /** Commander's attribute name for the flag. */
  attribute: string;
  flags: string;
  description: string;
  parse: (text: string) => number;
  field: QuotaField;
  /** The name `--clear` and SetTenantQuotaRequest.clear use for this limit. */
  clearName: string;
}

/** A limit of 0 on the wire means "none" (create) or "unchanged" (set-quota), never a limit. */
const NO_LIMIT = 'leave the flag out for no limit, or remove a limit with tenants set-quota --clear';

const QUOTA_FLAGS: readonly QuotaFlag[] = [
  { attribute: 'cpu', flags: '--cpu <cpu>', description: 'CPU limit: cores (64) or millicores (500m)', parse: cpuLimit('--cpu', NO_LIMIT), field: 'cpuMillis', clearName: 'cpu' },
  { attribute: 'memory', flags: '--memory <size>', description: 'memory limit (512Gi)', parse: bytesLimit('--memory', NO_LIMIT), field: 'memoryBytes', clearName: 'memory' },
  { attribute: 'gpus', flags: '--gpus <n>', description: 'GPU limit, whole GPUs (8)', parse: countFlag('--gpus', undefined, NO_LIMIT), field: 'gpus', clearName: 'gpus' },
  { attribute: 'gpuMemory', flags: '--gpu-memory <size>', description: 'GPU memory limit (640Gi)', parse: bytesLimit('--gpu-memory', NO_LIMIT), field: 'gpuMemoryBytes', clearName: 'gpu-memory' },
  { attribute: 'storage', flags: '--storage <size>', description: 'storage limit for models and datasets (2Ti)', parse: bytesLimit('--storage', NO_LIMIT), field: 'storageBytes', clearName: 'storage' },
  { attribute: 'maxDeployments', flags: '--max-deployments <n>', description: 'most deployments at once (20)', parse: countFlag('--max-deployments', undefined, NO_LIMIT), field: 'maxDeployments', clearName: 'deployments' },
];

const CLEAR_NAMES = QUOTA_FLAGS.map((f) => f.clearName);

type QuotaOptions = Record<string, number | undefined>;

function addQuotaOptions(command: Command): Command {
  for (const flag of QUOTA_FLAGS) command.addOption(new Option(flag.flags, flag.description).argParser(flag.parse));
  return command;
}

/** The limits given on the command line; the ones not given are left out (0, "unchanged"). */
function quotaFrom(options: QuotaOptions): Quota {
  const quota: Quota = {};
  for (const flag of QUOTA_FLAGS) {
    const value = options[flag.attribute];
    if (value !== undefined) quota[flag.field] = value;
  }
  return quota;
}

export function registerTenantCommands(program: Command): void {
  const tenants = program.command('tenants').description('tenants and their quotas');

  addQuotaOptions(
    tenants
      .command('create')
      .description('create a tenant; a limit not given means no limit')
      .argument('<name>', 'tenant name')
      .option('--description <text>', 'what the tenant is for'),
  ).action((name: string, options: QuotaOptions & { description?: string }, command: Command) =>
    withContext(command, async (ctx) =>
      ctx.print(tenantCreatedView(await ctx.client().createTenant({ name, description: options.description ?? '', quota: quotaFrom(options) }))),
    ),
  );

  tenants
    .command('ls')
    .description('list tenants with their usage and limits')
    .action((_options: unknown, command: Command) =>
      withContext(command, async (ctx) => ctx.print(tenantListView((await ctx.client().listTenants()).tenants))),
    );

  tenants
    .command('show')
    .description("show one tenant's usage and limits")
    .argument('<name>', 'tenant name')
    .action((name: string, _options: unknown, command: Command) =>
      withContext(command, async (ctx) => ctx.print(tenantDetailView(await ctx.client().getTenant(name)))),
    );

  addQuotaOptions(
    tenants
      .command('set-quota')
      .description('change the limits given and remove the ones --clear names; the others stay as they are')
      .argument('<name>', 'tenant name'),
  )
    .addOption(
      new Option('--clear <limits>', `remove limits (back to unlimited): ${CLEAR_NAMES.join(',')}`).argParser(
        listFlag('--clear', CLEAR_NAMES, { 'max-deployments': 'deployments' }),
      ),
    )
    .action((name: string, options: QuotaOptions & { clear?: string[] }, command: Command) => {
      const clear = options.clear ?? [];
      const quota = quotaFrom(options);
      const both = QUOTA_FLAGS.filter((f) => quota[f.field] !== undefined && clear.includes(f.clearName));
      if (both.length > 0) {
        command.error(`${both.map((f) => f.flags.split(' ')[0]).join(', ')} and --clear ${both.map((f) => f.clearName).join(',')} contradict each other; give one`);
      }
      if (Object.keys(quota).length === 0 && clear.length === 0) {
        command.error(`nothing to change; give a limit (${QUOTA_FLAGS.map((f) => f.flags.split(' ')[0]).join(', ')}) or --clear`);
      }
      return withContext(command, async (ctx) => ctx.print(tenantDetailView(await ctx.client().setTenantQuota({ name, quota, clear }))));
    });
}
