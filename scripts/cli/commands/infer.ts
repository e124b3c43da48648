// `mlfleetctl infer REF --input FILE.json`: one inference through an agent's gateway (Open
// Inference Protocol v2 over HTTP). REF is `name` (any ready replica), `name:3` (replicas of
// version 3) or `name@alias` (the version the alias names, resolved by the coordinator). The
// input file is the protocol's request body (`{"inputs": [...]}`); `-` reads stdin.
import { readFileSync } from 'node:fs';
import { Argument, InvalidArgumentError, Option, type Command } from 'commander';
import { parseRef } from '../../../shared/artifact-ref.js';
import { parseHostPort } from '../../../shared/config.js';
import { DEFAULT_GATEWAY, inferThrough } from '../../../shared/sdk/infer.js';
import { withContext } from '../context.js';


interface InferOptions {
  input: string;
  gateway: string;
  tenant?: string;
}

export function registerInferCommand(program: Command): void {
  program
    .command('infer')
    .description('one inference through an inference gateway')
    .addArgument(new Argument('<ref>', 'model: name, name:VERSION or name@ALIAS').argParser(refArgument))
    .requiredOption('--input <file>', 'the request body as JSON ({"inputs": [...]}), or - for stdin')
    .addOption(new Option('--gateway <addr>', 'an agent\'s inference gateway').env('MLFLEET_GATEWAY').default(DEFAULT_GATEWAY).argParser(gatewayArgument))
    .option('--tenant <tenant>', "another tenant's model (admins), or the tenant whose public model is meant")
    .action((ref: string, options: InferOptions, command: Command) => {
      const body = readInput(options.input, command);
      return withContext(command, async (ctx) => {
        const parsedAnswer = await inferThrough(ctx.client(), ref, body, { gateway: options.gateway, tenant: options.tenant, token: ctx.token() });
        ctx.print({ data: parsedAnswer, table: () => JSON.stringify(parsedAnswer, null, 2) });
      });
    });
}

function refArgument(text: string): string {
  try {
    parseRef(text);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return text;
}

function gatewayArgument(text: string): string {
  try {
    parseHostPort(text);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return text;
}

/** The input, checked to be JSON before anything is sent (bad usage otherwise). */
function readInput(file: string, command: Command): string {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    command.error(`cannot read --input ${file}: ${(err as Error).message}`, { exitCode: 2 });
  }
  try {
    JSON.parse(text!);
  } catch (err) {
    command.error(`--input ${file} is not JSON: ${(err as Error).message}`, { exitCode: 2 });
  }
  return text!;
}
