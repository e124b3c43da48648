// mlfleetctl's global flags (--coordinator, --token, --tls-*, -o) and what every command action gets
// from them: the output format and a coordinator client that is created on first use and
// closed when the action ends, whatever happens.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { CoordinatorClient, DEFAULT_COORDINATOR, parseCoordinatorAddresses } from '../../shared/client.js';
import type { Connection } from '../../shared/sdk/artifacts.js';
import { channelCredentials, loadTls, type TlsMaterial } from '../../shared/tls.js';
import { OUTPUT_FORMATS, print, type OutputFormat, type Printable } from './output.js';

export interface GlobalOptions {
  coordinator: string;
  token?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  output: OutputFormat;
}

/** Where `--token` is read from when neither the flag nor MLFLEET_TOKEN is set. */
export function tokenFilePath(): string {
  return path.join(homedir(), '.config', 'mlfleet', 'token');
}

export function addGlobalOptions(program: Command): Command {
  return program
    .addOption(
      new Option('--coordinator <addr[,addr...]>', 'coordinator address(es); the leader is found among them')
        .env('MLFLEET_COORDINATOR')
        .default(DEFAULT_COORDINATOR)
        .argParser(checkAddresses),
    )
    .addOption(new Option('--token <token>', `API token (default: the file ${tokenFilePath().replace(homedir(), '~')})`).env('MLFLEET_TOKEN'))
    .addOption(new Option('--tls-ca <file>', "PEM CA bundle to verify the coordinator's certificate with (any --tls-* flag: TLS)").env('MLFLEET_TLS_CA'))
    .addOption(new Option('--tls-cert <file>', 'PEM client certificate, for a coordinator that requires one (mutual TLS)').env('MLFLEET_TLS_CERT'))
    .addOption(new Option('--tls-key <file>', 'PEM private key of --tls-cert').env('MLFLEET_TLS_KEY'))
    .addOption(new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('table'));
}

/** An empty address list is bad usage (exit 2), not a failed request. */
function checkAddresses(value: string): string {
  try {
    parseCoordinatorAddresses(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return value;
}

function readTokenFile(): string | undefined {
  try {
    return readFileSync(tokenFilePath(), 'utf8').trim() || undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read the token file ${tokenFilePath()}: ${(err as Error).message}`);
  }
}

export class CliContext {
  private coordinatorClient: CoordinatorClient | undefined;

  constructor(readonly options: GlobalOptions) {}

  static from(command: Command): CliContext {
    return new CliContext(command.optsWithGlobals<GlobalOptions>());
  }

  get output(): OutputFormat {
    return this.options.output;
  }

  client(): CoordinatorClient {
    const { tlsCert: cert, tlsKey: key, tlsCa: ca } = this.options;
    this.coordinatorClient ??= new CoordinatorClient(this.options.coordinator, {
      credentials: channelCredentials(loadTls({ cert, key, ca }, 'client')),
      token: this.token(),
    });
    return this.coordinatorClient;
  }

  /** The TLS material of --tls-* (for HTTP blob transfers as for gRPC); undefined without TLS. */
  tls(): TlsMaterial | undefined {
    const { tlsCert: cert, tlsKey: key, tlsCa: ca } = this.options;
    return loadTls({ cert, key, ca }, 'client');
  }

  /** The caller's token (--token, MLFLEET_TOKEN, or the token file); undefined when none is given. */
  token(): string | undefined {
    return this.options.token || readTokenFile();
  }

  /** What the SDK's transfers and inference take: this context's client, token and TLS. */
  connection(): Connection {
    return { client: this.client(), coordinator: String(this.options.coordinator), token: this.token(), tls: this.tls() };
  }

  print(printable: Printable): void {
    print(this.output, printable);
  }

  close(): void {
    this.coordinatorClient?.close();
    this.coordinatorClient = undefined;
  }
}

/** Runs one command action with a context that is closed afterwards. */
export async function withContext(command: Command, run: (ctx: CliContext) => Promise<void>): Promise<void> {
  const ctx = CliContext.from(command);
  try {
    await run(ctx);
  } finally {
    ctx.close();
  }
}
