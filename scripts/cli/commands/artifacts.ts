// `mlfleetctl models …` and `mlfleetctl datasets …`: one set of commands, parameterized by kind
// (the registry, the protocol and the CLI are the same for both; models add the metadata
// flags a selection by criteria uses). Push and pull are interruptible: Ctrl-C cancels an
// upload (the coordinator keeps nothing) and keeps a download's `.partial` for the next pull.
import { Argument, InvalidArgumentError, Option, type Command } from 'commander';
import { ARTIFACT_FORMATS, checkName, formatRef, parseRef, type ArtifactKind, type ArtifactRef } from '../../../shared/artifact-ref.js';
import { pullArtifact, pushArtifact } from '../../../shared/sdk/artifacts.js';
import type { ProgressFactory } from '../../../shared/sdk/artifact-transfer.js';
import { withContext, type CliContext } from '../context.js';
import { countFlag, usageParser } from '../flags.js';
import { interruptible, InterruptedError } from '../interrupt.js';
import { progressBar } from '../progress.js';
import { aliasedView, artifactDetailView, artifactListView, deletedView, humanBytes, pulledView, pushedView, retentionView } from '../views/artifacts.js';

interface KindWords {
  /** "models" */
  noun: string;
  /** "model" */
  singular: string;
  /** Models carry what selection by criteria needs; datasets only free key/values. */
  describedByMetadata: boolean;
}

const WORDS: Record<ArtifactKind, KindWords> = {
  model: { noun: 'models', singular: 'model', describedByMetadata: true },
  dataset: { noun: 'datasets', singular: 'dataset', describedByMetadata: false },
};

interface PushOptions {
  format?: string;
  type?: string;
  inputFormat?: string;
  outputFormat?: string;
  accuracy?: number;
  meta?: Record<string, string>;
}

/** "k=v", repeatable: the version's free key/values. */
export function metaFlag(text: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`"${text}" is not key=value`);
  const key = text.slice(0, eq).trim();
  if (key.length > 63) throw new InvalidArgumentError(`--meta key "${key}" is longer than 63 characters`);
  return { ...previous, [key]: text.slice(eq + 1) };
}

/** 0.978 or 97.8%: a fraction between 0 and 1. */
export function accuracyFlag(text: string): number {
  const trimmed = text.trim();
  const percent = trimmed.endsWith('%');
  const value = Number(percent ? trimmed.slice(0, -1) : trimmed) / (percent ? 100 : 1);
  if (trimmed === '' || trimmed === '%' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw new InvalidArgumentError(`--accuracy "${text}" must be a fraction between 0 and 1 (0.978) or a percentage (97.8%)`);
  }
  return value;
}

const nameArgument = (description: string) => new Argument('<name>', description).argParser(usageParser((text: string) => checkName(text)));
const refArgument = (name: string, description: string) => new Argument(name, description).argParser(usageParser(parseRef));

/** A progress bar for people (a terminal, the table output), a no-op for scripts. */
function progressFor(ctx: CliContext): ProgressFactory {
  return (label, total, start) => progressBar(label, total, { enabled: ctx.output === 'table', start });
}

export function registerArtifactCommands(program: Command, kind: ArtifactKind): void {
  const { noun, singular, describedByMetadata } = WORDS[kind];
  const formats = ARTIFACT_FORMATS[kind];
  const group = program.command(noun).description(`${noun}: immutable numbered versions, pushed and pulled`);

  const push = group
    .command('push')
    .description(`upload a file or a directory as the next version of ${singular} NAME; prints the version`)
    .addArgument(nameArgument(`${singular} name`))
    .argument('<path>', 'a file, or a directory (sent as a tar)')
    .addOption(new Option('--format <format>', 'content format (default: from the file extension, or saved_model.pb in a directory)').choices(formats));
  if (describedByMetadata) {
    push
      .option('--type <type>', 'what the model does: classification, regression, detection, generation, embedding, …')
      .option('--input-format <format>', 'what it takes: tensor, text, image, audio, tabular, …')
      .option('--output-format <format>', 'what it gives')
      .addOption(new Option('--accuracy <a>', 'measured accuracy: 0.978 or 97.8%').argParser(accuracyFlag));
  }
  push
    .addOption(new Option('--meta <key=value>', 'a free key/value (repeat for more)').argParser(metaFlag))
    .action((name: string, file: string, options: PushOptions, command: Command) =>
      withContext(command, async (ctx) => {
        const progress = progressFor(ctx);
        const version = await interruptible(async (signal) => {
          let held = 0;
          let sizeBytes = -1;
          // A coordinator without resumable uploads: the gRPC Push, which a cancel undoes whole.
          let streamed = false;
          try {
            return await pushArtifact(ctx.connection(), kind, name, file, {
              format: options.format,
              metadata: { type: options.type, inputFormat: options.inputFormat, outputFormat: options.outputFormat, accuracy: options.accuracy, labels: options.meta },
              signal,
              progress: (label, total, start) => {
                if (label === 'pushing') sizeBytes = total;
                return progress(label, total, start);
              },
              onProgress: (bytes) => (held = bytes),
              onStreamed: () => (streamed = true),
              onResume: (offset, where) => process.stderr.write(`resuming the upload: ${humanBytes(offset)} of ${humanBytes(sizeBytes)} already ${where === 'bucket' ? 'in the bucket' : 'on the coordinator'}\n`),
            });
          } catch (err) {
            if (!signal.aborted || sizeBytes < 0) throw err;
            // With every byte sent the coordinator may be recording the version as the cancel arrives.
            if (held === sizeBytes && held > 0) {
              throw new InterruptedError(`interrupted after the whole upload was sent; it may have been stored: check with mlfleetctl ${noun} show ${name}`);
            }
            if (streamed) throw new InterruptedError('interrupted; the upload was cancelled and nothing was pushed');
            throw new InterruptedError('interrupted; the coordinator keeps what arrived for an hour: run the same push again to resume');
          }
        });
        ctx.print(pushedView(version));
      }),
    );

  group
    .command('ls')
    .description(`list ${noun}: latest version, count, size, aliases`)
    .option('--tenant <tenant>', "another tenant's (admins)")
    .action((options: { tenant?: string }, command: Command) =>
      withContext(command, async (ctx) => ctx.print(artifactListView((await ctx.client().listArtifacts(kind, options.tenant)).artifacts))),
    );

  group
    .command('show')
    .description(`show a ${singular}'s versions and aliases; NAME:VERSION or NAME@ALIAS shows that version only`)
    .addArgument(refArgument('<ref>', 'NAME, NAME:VERSION or NAME@ALIAS'))
    .action((ref: ArtifactRef, _options: unknown, command: Command) =>
      withContext(command, async (ctx) => {
        const client = ctx.client();
        const artifact = await client.getArtifact(kind, ref.name);
        if (ref.version === undefined && ref.alias === undefined) return ctx.print(artifactDetailView(artifact, Date.now(), kind));
        // The coordinator says which version the ref means (and NOT_FOUND, in its words, when none).
        const { version } = await client.resolve(kind, formatRef(ref));
        const aliases = Object.fromEntries(Object.entries(artifact.aliases).filter(([, v]) => v === version));
        ctx.print(artifactDetailView({ ...artifact, versions: artifact.versions.filter((v) => v.version === version), aliases }, Date.now(), kind));
      }),
    );

  group
    .command('pull')
    .description(
      `download a ${singular} version to DEST: a file to DEST (or DEST/NAME-vVERSION.EXT when DEST is a directory), ` +
        'a directory into DEST (new or empty); checked against its sha256; an interrupted pull resumes',
    )
    .addArgument(refArgument('<ref>', 'NAME (the latest version), NAME:VERSION or NAME@ALIAS'))
    .argument('<dest>', 'where to write it')
    .action((ref: ArtifactRef, dest: string, _options: unknown, command: Command) =>
      withContext(command, async (ctx) => {
        const pulled = await interruptible((signal) => pullArtifact(ctx.connection(), kind, formatRef(ref), dest, { signal, progress: progressFor(ctx) }));
        ctx.print(pulledView(pulled.version, pulled.path, pulled.resumedFrom));
      }),
    );

  group
    .command('alias')
    .description(`point ALIAS of ${singular} NAME at VERSION (NAME@ALIAS then means that version)`)
    .addArgument(nameArgument(`${singular} name`))
    .addArgument(new Argument('<alias>', 'alias name (production, staging, …)').argParser(usageParser((text: string) => checkName(text, 'alias'))))
    .addArgument(new Argument('<version>', 'version number').argParser(countFlag('VERSION')))
    .action((name: string, alias: string, version: number, _options: unknown, command: Command) =>
      withContext(command, async (ctx) => ctx.print(aliasedView(kind, await ctx.client().setAlias(kind, name, alias, version), alias, version))),
    );

  if (kind === 'model') {
    group
      .command('retention')
      .description('keep only the N newest versions of a model: older ones no alias points at and nothing uses are removed (now, on each push, and every minute)')
      .addArgument(nameArgument('model name'))
      .addOption(new Option('--keep <n>', 'how many versions to keep (1..10000); aliased ones count unless --keep-aliased').argParser(usageParser(countFlag('--keep', 10_000))).conflicts('off'))
      .option('--keep-aliased', 'keep aliased versions besides the N (they are never removed either way)')
      .addOption(new Option('--off', 'clear the retention: every version is kept').conflicts('keepAliased'))
      .action((name: string, options: { keep?: number; keepAliased?: boolean; off?: boolean }, command: Command) => {
        if (!options.off && options.keep === undefined) command.error('give --keep N (with --keep-aliased when wanted), or --off to keep every version');
        return withContext(command, async (ctx) => {
          const client = ctx.client();
          const before = await client.getArtifact('model', name);
          const after = await client.setRetention(name, options.off ? 'off' : { keep: options.keep!, keepAliased: options.keepAliased ?? false });
          const left = new Set(after.versions.map((v) => v.version));
          ctx.print(retentionView(after, before.versions.map((v) => v.version).filter((v) => !left.has(v))));
        });
      });
  }

  group
    .command('rm')
    .description(`delete one version of a ${singular} (move its aliases first)`)
    .addArgument(
      new Argument('<name:version>', 'the version to delete').argParser(
        usageParser((text: string) => {
          const ref = parseRef(text);
          if (ref.version === undefined) throw new InvalidArgumentError(`"${text}": name the version to delete, as NAME:VERSION`);
          return ref as ArtifactRef & { version: number };
        }),
      ),
    )
    .action((ref: ArtifactRef & { version: number }, _options: unknown, command: Command) =>
      withContext(command, async (ctx) => ctx.print(deletedView(kind, await ctx.client().deleteVersion(kind, ref.name, ref.version), ref.version))),
    );
}
