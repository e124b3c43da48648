#!/usr/bin/env -S node --initial-old-space-size=128
// mlfleetctl, the admin CLI. This file only wires the program together and owns the exit
// codes: 0 success, 1 the request failed (one line on stderr), 2 bad usage, 130 Ctrl-C.
// Each noun's commands live in cli/commands/<noun>.ts; adding a noun is adding a file and
// one register call below.
//
// --initial-old-space-size: as for the coordinator (coordinator/main.ts), a push's chunks wait in
// grpc-js's copies long enough to reach the old generation, and V8's limit for a heap this small
// cost a full collection every few MiB: a 1 GiB push took 4.9 s of CPU here, 2.6 s with it.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { addGlobalOptions } from './cli/context.js';
import { registerClusterCommands } from './cli/commands/cluster.js';
import { registerNodeCommands } from './cli/commands/nodes.js';
import { registerTenantCommands } from './cli/commands/tenants.js';
import { registerTokenCommands } from './cli/commands/tokens.js';
import { registerEventCommands } from './cli/commands/events.js';
import { registerModelCommands } from './cli/commands/models.js';
import { registerDatasetCommands } from './cli/commands/datasets.js';
import { registerDeployCommand } from './cli/commands/deploy.js';
import { registerApplyCommand } from './cli/commands/apply.js';
import { registerDeploymentCommands } from './cli/commands/deployments.js';
import { registerJobCommands } from './cli/commands/jobs.js';
import { registerAllocationCommands } from './cli/commands/allocations.js';
import { registerStackCommands } from './cli/commands/stacks.js';
import { registerSourceCommands } from './cli/commands/sources.js';
import { registerSelectCommand } from './cli/commands/select.js';
import { registerInferCommand } from './cli/commands/infer.js';
import { registerDashboardCommand } from './cli/commands/dashboard.js';
import { deliverInterrupt, InterruptedError } from './cli/interrupt.js';

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_INTERRUPTED = 130;

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function buildProgram(): Command {
  const program = new Command('mlfleetctl')
    .description('administer an mlfleet cluster')
    .version(packageVersion())
    // Settings first: subcommands copy them when they are created.
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`mlfleetctl: ${text.replace(/^error: /, '')}`) })
    .showHelpAfterError('(run with --help for usage)');
  addGlobalOptions(program);
  registerClusterCommands(program);
  registerNodeCommands(program);
  registerTenantCommands(program);
  registerTokenCommands(program);
  registerEventCommands(program);
  registerModelCommands(program);
  registerDatasetCommands(program);
  registerDeployCommand(program);
  registerApplyCommand(program);
  registerDeploymentCommands(program);
  registerJobCommands(program);
  registerAllocationCommands(program);
  registerStackCommands(program);
  registerSourceCommands(program);
  registerSelectCommand(program);
  registerInferCommand(program);
  registerDashboardCommand(program);
  return program;
}

/** One line, whatever the error: multi-line grpc details would bury the point. */
function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s*\n\s*/g, ' ').trim();
}

async function main(argv: string[]): Promise<number> {
  // Ctrl-C ends mlfleetctl at once, unless a command is in a section that must unwind first
  // (an upload to cancel, a download to keep for resuming): see cli/interrupt.ts.
  process.on('SIGINT', () => {
    if (!deliverInterrupt()) process.exit(EXIT_INTERRUPTED);
  });
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    // `mlfleetctl nodes ls | head`: the reader left, which is not our failure.
    if (err.code === 'EPIPE') process.exit(EXIT_OK);
    throw err;
  });
  try {
    await buildProgram().parseAsync(argv);
    return EXIT_OK;
  } catch (err) {
    // Commander has already printed its message (or the help) by the time it throws.
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    if (err instanceof InterruptedError) {
      process.stderr.write(`mlfleetctl: ${oneLine(err)}\n`);
      return EXIT_INTERRUPTED;
    }
    process.stderr.write(`mlfleetctl: ${oneLine(err)}\n`);
    return EXIT_FAILED;
  }
}

process.exitCode = await main(process.argv);
