// `mlfleetctl events …`: what happens in the cluster. By default the live stream of workload
// events (deployments, jobs, their allocations, nodes): the newest few first (--replay), then
// each new one as it happens, until Ctrl-C — which ends the command normally (exit 0), as that
// is how one stops watching. `--audit` lists the audit trail of state-changing calls instead.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { UnavailableError } from '../../../shared/errors.js';
import { withContext, type CliContext } from '../context.js';
import { countFlag } from '../flags.js';
import { interruptible } from '../interrupt.js';
import { auditEventWriter, workloadEventLine } from '../views/events.js';
import { wholeFlag } from './deploy.js';

/** Entries `events --audit` prints at most (it follows the coordinator's pages up to it). */
const MAX_AUDIT_LIMIT = 1_000_000;
const DEFAULT_AUDIT_LIMIT = 100;
/** WatchEventsRequest.replay's ceiling. */
const MAX_REPLAY = 1000;
const DEFAULT_REPLAY = 20;

interface EventOptions {
  audit?: boolean;
  tenant?: string;
  limit?: number;
  object?: string;
  replay?: number;
  follow: boolean;
}

/** "deployment/web", "job/train", "node/gpu-1", "source/drop" or "model/resnet" (versions retention removed). */
function objectFlag(text: string): string {
  if (!/^(deployment|job|node|source|model)\/[a-z0-9][a-z0-9._-]*$/.test(text)) {
    throw new InvalidArgumentError(`"${text}" is not an object; use deployment/NAME, job/NAME, node/NAME, source/NAME or model/NAME`);
  }
  return text;
}

async function watch(ctx: CliContext, options: EventOptions): Promise<void> {
  const request = { tenant: options.tenant ?? '', object: options.object ?? '', replay: options.replay ?? DEFAULT_REPLAY, follow: options.follow };
  await interruptible(async (signal) => {
    try {
      for await (const event of ctx.client().watchEvents(request, { signal })) process.stdout.write(workloadEventLine(event, ctx.output));
    } catch (err) {
      if (signal.aborted) return; // Ctrl-C: done watching
      throw err;
    }
    if (options.follow) throw new UnavailableError('the coordinator ended the event stream; run it again to go on watching');
  });
}

export function registerEventCommands(program: Command): void {
  program
    .command('events')
    .description('workload events as they happen, the newest few first (until Ctrl-C); --audit: the audit trail, newest first')
    .option('--tenant <tenant>', "only this tenant's events (admins see every tenant)")
    .addOption(new Option('--object <kind/name>', 'only the events of deployment/NAME, job/NAME, node/NAME, source/NAME or model/NAME').argParser(objectFlag))
    .addOption(new Option('--replay <n>', `past events to print first, 0 to ${MAX_REPLAY} (default: ${DEFAULT_REPLAY})`).argParser(wholeFlag('--replay', 0, MAX_REPLAY)))
    .option('--no-follow', 'print the past events and stop')
    .option('--audit', 'list the audit trail of state-changing calls instead')
    .addOption(
      new Option('--limit <n>', `with --audit: at most this many entries, 1 to ${MAX_AUDIT_LIMIT} (default: ${DEFAULT_AUDIT_LIMIT})`).argParser(
        countFlag('--limit', MAX_AUDIT_LIMIT),
      ),
    )
    .action((options: EventOptions, command: Command) => {
      const given = (name: string) => command.getOptionValueSource(name) === 'cli';
      if (options.audit) {
        const live = [['object', '--object'], ['replay', '--replay'], ['follow', '--no-follow']].filter(([name]) => given(name!)).map(([, flag]) => flag);
        if (live.length > 0) command.error(`${live.join(', ')} go${live.length === 1 ? 'es' : ''} with the live stream, not --audit`);
      } else if (given('limit')) {
        command.error('--limit goes with --audit; the live stream takes --replay');
      }
      return withContext(command, async (ctx) => {
        if (!options.audit) return watch(ctx, options);
        const out = auditEventWriter(ctx.output, (text) => process.stdout.write(text));
        for await (const page of ctx.client().auditEventPages({ tenant: options.tenant ?? '', limit: options.limit ?? DEFAULT_AUDIT_LIMIT })) out.page(page);
        out.end();
      });
    });
}
