// `mlfleetctl infer REF --input FILE.json`: one inference through an agent's gateway (Open
// Inference Protocol v2 over HTTP). REF is `name` (any ready replica), `name:3` (replicas of
// version 3) or `name@alias` (the version the alias names, resolved by the coordinator). The
// input file is the protocol's request body (`{"inputs": [...]}`); `-` reads stdin.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { Argument, InvalidArgumentError, Option, type Command } from 'commander';
import { parseRef } from '../../../shared/artifact-ref.js';
import { parseHostPort } from '../../../shared/config.js';
import { withContext } from '../context.js';

export const DEFAULT_GATEWAY = '127.0.0.1:7780';

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
        const parsed = parseRef(ref);
        let version = parsed.version;
        if (parsed.alias !== undefined) version = (await ctx.client().resolve('model', ref)).version;
        const path = `/v2/models/${encodeURIComponent(parsed.name)}${version === undefined ? '' : `/versions/${version}`}/infer`;
        const answer = await post(options.gateway, path, body, options.tenant, ctx.token());
        const parsedAnswer = JSON.parse(answer.body || '{}') as { error?: string };
        if (answer.status !== 200) throw new Error(`the gateway answered ${answer.status}: ${parsedAnswer.error ?? answer.body}`);
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

/** The request, with the caller's token (a public deployment also answers without one). */
function post(gateway: string, path: string, body: string, tenant: string | undefined, token: string | undefined): Promise<{ status: number; body: string }> {
  const { host, port } = parseHostPort(gateway);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) };
    if (tenant) headers['mlfleet-tenant'] = tenant;
    if (token) headers.authorization = `Bearer ${token}`;
    const req = http.request({ host, port, path, method: 'POST', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', (err) => reject(new Error(`cannot reach the gateway at ${gateway}: ${err.message}`)));
    req.end(body);
  });
}
