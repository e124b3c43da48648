// `mlfleetctl ps` and `mlfleetctl logs ALLOC`: the allocations the scheduler placed (one per
// serving replica or job worker), and a container's output. Logs are raw bytes to stdout, as the
// agent kept them. With -f they follow until the allocation ends or Ctrl-C, which ends the
// command normally (exit 0): stopping to watch is not a failure. `jobs logs` reuses the
// streaming here, with a `[rank N]` prefix per line when a job has several workers.
import { once } from 'node:events';
import { Argument, InvalidArgumentError, Option, type Command } from 'commander';
import type { CoordinatorClient } from '../../../shared/client.js';
import { mergedLogs, type LogSource } from '../../../shared/sdk/jobs.js';
import { withContext } from '../context.js';
import { bytesLimit } from '../flags.js';
import { interruptible } from '../interrupt.js';
import { allocationListView } from '../views/allocations.js';

interface PsOptions {
  node?: string;
  all?: boolean;
  workload?: string;
  tenant?: string;
}

export interface LogOptions {
  follow?: boolean;
  tail?: number;
}

/** An allocation id or a unique prefix of one (at least 4 characters), as `ps` shows them. */
function allocationArgument(text: string): string {
  const id = text.trim().toLowerCase();
  if (!/^[0-9a-f-]{4,64}$/.test(id)) throw new InvalidArgumentError(`"${text}" is not an allocation id; use the ID column of \`mlfleetctl ps\` (at least 4 characters)`);
  return id;
}

/** Adds -f and --tail, which `logs` and `jobs logs` share. */
export function addLogOptions(command: Command): Command {
  return command
    .option('-f, --follow', 'keep printing new output until the allocation ends (or Ctrl-C)')
    .addOption(new Option('--tail <bytes>', 'only the last this many bytes of what was kept (64Ki, 1Mi)').argParser(bytesLimit('--tail')));
}

async function write(chunk: Buffer): Promise<void> {
  if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
}

/**
 * Copies the logs of `sources` to stdout, all at once; lines of several sources interleave
 * whole. Resolves when every stream has ended, or (following) when Ctrl-C stops it.
 */
export async function printLogs(client: CoordinatorClient, sources: readonly LogSource[], options: LogOptions): Promise<void> {
  await interruptible(async (interrupted) => {
    try {
      for await (const chunk of mergedLogs(client, sources, { follow: options.follow, tailBytes: options.tail, signal: interrupted })) await write(chunk);
    } catch (err) {
      if (interrupted.aborted) return; // Ctrl-C: the reader is done watching
      throw err;
    }
  });
}

export function registerAllocationCommands(program: Command): void {
  program
    .command('ps')
    .description('list allocations (serving replicas and job workers) that run or are about to')
    .option('--node <node>', 'only those on this node')
    .option('--workload <kind/name>', 'only those of this deployment or job (deployment/NAME, job/NAME or NAME)')
    .option('--all', 'also those that ended (failed, completed, stopped)')
    .option('--tenant <tenant>', "another tenant's (admins; default: every tenant's)")
    .action((options: PsOptions, command: Command) =>
      withContext(command, async (ctx) => {
        const { allocations } = await ctx.client().listAllocations({ node: options.node, workload: options.workload, all: options.all, tenant: options.tenant });
        ctx.print(allocationListView(allocations));
      }),
    );

  addLogOptions(
    program
      .command('logs')
      .description("print an allocation's container output, as its node keeps it (raw bytes)")
      .addArgument(new Argument('<alloc>', 'an allocation id, or a unique prefix of one (the ID column of ps)').argParser(allocationArgument)),
  ).action((allocation: string, options: LogOptions, command: Command) =>
    withContext(command, (ctx) => printLogs(ctx.client(), [{ allocation, prefix: '' }], options)),
  );
}
