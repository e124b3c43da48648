// `mlfleetctl events …`: what happened in the cluster. For now the audit trail only
// (`--audit`); the live stream arrives with workloads.
import { Option, type Command } from 'commander';
import { withContext } from '../context.js';
import { countFlag } from '../flags.js';
import { auditEventListView } from '../views/events.js';

/** ListAuditEventsRequest.limit's ceiling; the coordinator answers 100 when none is given. */
const MAX_AUDIT_LIMIT = 1000;

export function registerEventCommands(program: Command): void {
  program
    .command('events')
    .description('the audit trail of state-changing calls (--audit), newest first')
    .option('--audit', 'list audit events')
    .option('--tenant <tenant>', "only this tenant's events (admins see every tenant)")
    .addOption(
      new Option('--limit <n>', `at most this many events, 1 to ${MAX_AUDIT_LIMIT} (default: 100)`).argParser(
        countFlag('--limit', MAX_AUDIT_LIMIT),
      ),
    )
    .action((options: { audit?: boolean; tenant?: string; limit?: number }, command: Command) => {
      if (!options.audit) command.error('live events arrive with workloads; use --audit');
      return withContext(command, async (ctx) => {
        const { events } = await ctx.client().listAuditEvents({ tenant: options.tenant ?? '', limit: options.limit ?? 0 });
        ctx.print(auditEventListView(events));
      });
    });
}
