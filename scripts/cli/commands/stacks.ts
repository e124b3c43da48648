// `mlfleetctl stacks …`: the ML technologies deployments and jobs run on — list, show,
// register (from a YAML file with the Stack fields in camelCase, from flags, or both: flags
// override the file), remove. The file is checked for shape here (an unknown or mistyped field
// is bad usage, exit 2, nothing sent); what the values must be is the coordinator's to check,
// and it names every field that is wrong.
import { readFile } from 'node:fs/promises';
import { Argument, Option, type Command } from 'commander';
import YAML from 'yaml';
import type { StackInput } from '../../../shared/client.js';
import { checkImage, checkWorkloadName, ENV_KEY_HINT, ENV_NAME, parseAssignment } from '../../../shared/workload-spec.js';
import { z } from '../../../shared/validation.js';
import { withContext } from '../context.js';
import { badFile, durationFlag, usageParser } from '../flags.js';
import { stackDeletedView, stackDetailView, stackListView, stackRegisteredView } from '../views/stacks.js';
import { commandAfterDashes, repeatable, wholeFlag } from './deploy.js';

/** A stack file: the Stack message's fields in camelCase (`builtin` is the coordinator's). */
const stackFile = z
  .object({
    name: z.string(),
    description: z.string(),
    image: z.string(),
    formats: z.array(z.string()),
    modelMount: z.string(),
    port: z.number().int(),
    protocol: z.string(),
    readinessPath: z.string(),
    readinessTimeoutMs: z.number().int().nonnegative(),
    command: z.array(z.string()),
    // YAML reads `PORT: 8080` as a number and `DEBUG: true` as a boolean; both mean text here.
    env: z.record(z.union([z.string(), z.number(), z.boolean()]).transform(String)),
    gpus: z.boolean(),
    trainCommand: z.array(z.string()),
  })
  .partial()
  .strict();

type StackFile = z.infer<typeof stackFile>;

interface RegisterOptions {
  filename?: string;
  description?: string;
  image?: string;
  format?: string[];
  modelMount?: string;
  port?: number;
  protocol?: string;
  readinessPath?: string;
  readinessTimeout?: number;
  env?: Array<[string, string]>;
  gpus?: boolean;
}

async function readStackFile(filename: string): Promise<StackFile> {
  let content: string;
  try {
    content = await readFile(filename, 'utf8');
  } catch (err) {
    badFile(`cannot read ${filename}: ${(err as Error).message.replace(/^[A-Z]+: /, '')}`);
  }
  let parsed: unknown;
  try {
    parsed = YAML.parse(content);
  } catch (err) {
    badFile(`${filename} is not YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const result = stackFile.safeParse(parsed ?? {});
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `  ${issue.path.join('.') || '(document)'}: ${issue.message}`);
    badFile(`${filename} is not a stack (nothing was sent):\n${problems.join('\n')}`);
  }
  return result.data;
}

const definedOnly = (fields: Partial<StackInput>) => Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)) as Partial<StackInput>;

export function registerStackCommands(program: Command): void {
  const stacks = program.command('stacks').description('the ML technologies models are served (and trained) with');

  stacks
    .command('ls')
    .description('list stacks: image, model formats, port, protocol; built-in or registered')
    .action((_options: unknown, command: Command) => withContext(command, async (ctx) => ctx.print(stackListView((await ctx.client().listStacks()).stacks))));

  stacks
    .command('show')
    .description('show a stack: where the model is mounted, how readiness is checked, its command and environment')
    .addArgument(new Argument('<name>', 'stack name'))
    .action((name: string, _options: unknown, command: Command) => withContext(command, async (ctx) => ctx.print(stackDetailView(await ctx.client().getStack(name)))));

  stacks
    .command('register')
    .description('register a stack, or replace a registered one (admins); built-in stacks cannot be replaced')
    .argument('[name]', 'stack name (default: the file\'s `name`)')
    .argument('[command...]', "after --: the serving command (default: the image's own)")
    .option('-f, --filename <file>', 'a YAML file with the Stack fields in camelCase (flags given too override it)')
    .option('--description <text>', 'what it is')
    .addOption(new Option('--image <image>', 'the container image').argParser(usageParser(checkImage)))
    .addOption(new Option('--format <format>', 'a model format it serves (repeat for more)').argParser(repeatable((text: string) => text)))
    .option('--model-mount <path>', 'absolute path the model is mounted at, read-only')
    .addOption(new Option('--port <port>', 'the port the server listens on in the container').argParser(wholeFlag('--port', 1, 65_535)))
    .option('--protocol <protocol>', 'how it is called: v2, tfserving-rest or http')
    .option('--readiness-path <path>', 'HTTP GET path answering 200 once ready')
    .addOption(new Option('--readiness-timeout <duration>', 'how long it may take to become ready (default: 10m)').argParser(durationFlag('--readiness-timeout')))
    .addOption(
      new Option('--env <KEY=VALUE>', 'an environment variable (repeat for more)').argParser(
        repeatable(usageParser((text: string) => parseAssignment(text, '--env', ENV_NAME, ENV_KEY_HINT))),
      ),
    )
    .option('--gpus', 'it can use GPUs')
    .action(async (name: string | undefined, operands: string[], options: RegisterOptions, command: Command) => {
      const file = options.filename ? await readStackFile(options.filename) : {};
      const flags = definedOnly({
        name,
        description: options.description,
        image: options.image,
        formats: options.format,
        modelMount: options.modelMount,
        port: options.port,
        protocol: options.protocol,
        readinessPath: options.readinessPath,
        readinessTimeoutMs: options.readinessTimeout,
        command: commandAfterDashes(command, operands),
        env: options.env ? { ...file.env, ...Object.fromEntries(options.env) } : undefined,
        gpus: options.gpus,
      });
      const stack: StackInput = { ...file, ...flags };
      if (!stack.name) command.error('give the stack a name: the NAME argument, or `name:` in the file');
      try {
        checkWorkloadName(stack.name, 'stack name');
      } catch (err) {
        command.error((err as Error).message);
      }
      return withContext(command, async (ctx) => ctx.print(stackRegisteredView(await ctx.client().registerStack(stack))));
    });

  stacks
    .command('rm')
    .description('forget a registered stack (admins); refused while a deployment or unfinished job uses it')
    .addArgument(new Argument('<name>', 'stack name'))
    .action((name: string, _options: unknown, command: Command) =>
      withContext(command, async (ctx) => {
        await ctx.client().deleteStack(name);
        ctx.print(stackDeletedView(name));
      }),
    );
}
