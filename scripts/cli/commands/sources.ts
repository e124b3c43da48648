// `mlfleetctl sources …`: bucket prefixes whose new objects become versions of a model —
// create, ls, show, rm, and sync (poll now and wait: for scripts). The URL and the rest are the
// coordinator's to check; it names what is wrong and stores nothing.
import { Argument, Option, type Command } from 'commander';
import { withContext } from '../context.js';
import { durationFlag } from '../flags.js';
import { sourceDeletedView, sourceDetailView, sourceListView, sourceSyncedView } from '../views/sources.js';

interface CreateOptions {
  model: string;
  from: string;
  alias?: string;
  every?: number;
  layout?: string;
  credentials?: string;
}

/** How long `sources sync` waits for its poll (downloads included). */
const SYNC_DEADLINE_MS = 30 * 60_000;

export function registerSourceCommands(program: Command): void {
  const sources = program.command('sources').description('model sources: a bucket prefix whose new objects become versions of a model');

  sources
    .command('create')
    .description('follow a bucket prefix: each new object (or version directory), once stable, becomes the next version of --model')
    .addArgument(new Argument('<name>', 'source name'))
    .requiredOption('--model <model>', 'the model versions are imported into')
    .requiredOption('--from <url>', 's3://bucket/prefix?endpoint=http(s)://host:port&region=R (endpoint: an S3-compatible server; default AWS)')
    .option('--alias <alias>', 'move this alias to each imported version (deployments following it roll)')
    .addOption(new Option('--every <duration>', 'between polls (at least 10s)').default(60_000, '1m').argParser(durationFlag('--every')))
    .addOption(new Option('--layout <layout>', 'files: each object is a version; version-dirs: each prefix/<dir>/ is one').choices(['files', 'version-dirs']).default('files'))
    .option('--credentials <name>', "a name in the coordinator's --source-credentials file (default: its default AWS chain)")
    .action((name: string, options: CreateOptions, command: Command) =>
      withContext(command, async (ctx) =>
        ctx.print(
          sourceDetailView(
            await ctx.client().createSource({
              name,
              model: options.model,
              url: options.from,
              alias: options.alias ?? '',
              everyMs: options.every ?? 60_000,
              layout: options.layout ?? 'files',
              credentials: options.credentials ?? '',
            }),
          ),
        ),
      ),
    );

  sources
    .command('ls')
    .description('list sources: model, alias, interval, state, versions imported')
    .action((_options: unknown, command: Command) => withContext(command, async (ctx) => ctx.print(sourceListView((await ctx.client().listSources()).sources))));

  sources
    .command('show')
    .description('show a source: its status, last sync and import, last error, keys waiting to be stable')
    .addArgument(new Argument('<name>', 'source name'))
    .action((name: string, _options: unknown, command: Command) => withContext(command, async (ctx) => ctx.print(sourceDetailView(await ctx.client().getSource(name)))));

  sources
    .command('rm')
    .description('stop following a source (the versions it imported stay)')
    .addArgument(new Argument('<name>', 'source name'))
    .action((name: string, _options: unknown, command: Command) =>
      withContext(command, async (ctx) => {
        await ctx.client().deleteSource(name);
        ctx.print(sourceDeletedView(name));
      }),
    );

  sources
    .command('sync')
    .description('poll a source now, wait, and print what it imported (an object first seen now is stable, and imported, at the next sync)')
    .addArgument(new Argument('<name>', 'source name'))
    .option('--once', 'one poll (the default; for scripts)')
    .action((name: string, _options: unknown, command: Command) =>
      withContext(command, async (ctx) => {
        const { source, imported } = await ctx.client().syncSource(name, { deadlineMs: SYNC_DEADLINE_MS });
        ctx.print(sourceSyncedView(source!, imported));
        if (source!.status!.state === 'error') throw new Error(`source ${name}: ${source!.status!.message}`);
      }),
    );
}
