// The agent's options: the flag table and its compilation into typed, validated AgentOptions.
import { compile, compileOptional, formatHostPort, parseAddressList, parseArgs, parseBytes, parseDuration, parseHostPort, parseLabels, type OptionSpec } from '../shared/config.js';
import { InvalidArgumentError } from '../shared/errors.js';
import { compileTls } from '../shared/tls.js';
import { nodeName } from '../shared/validation.js';
import { readFileSync } from 'node:fs';

function readTokenFile(file: string): string {
  const token = readFileSync(file, 'utf8').trim();
  if (!token) throw new InvalidArgumentError(`join token file ${file} is empty`);
  return token;
}
import type { AgentOptions } from './agent.js';
import { defaultNodeName } from './node-name.js';
import { DEFAULT_TASK_USER } from './task-user.js';
import { parsePeerUploadMbps } from './delivery/upload-limiter.js';

const OPTIONS: OptionSpec[] = [
  { key: 'coordinator', flag: '--coordinator <addrs>', description: 'coordinator addresses, comma-separated', default: '127.0.0.1:7700' },
  { key: 'name', flag: '--name <name>', description: 'node name (default: the host name)' },
  { key: 'dataDir', flag: '--data-dir <path>', description: 'local state and model cache', default: './.mlfleet/agent' },
  { key: 'labels', flag: '--labels <k=v,...>', description: 'node labels for placement constraints', default: '' },
  { key: 'driver', flag: '--driver <driver>', description: 'docker | process: process runs tasks as plain processes of --task-user, for trusted single-tenant hosts only', default: 'docker' },
  { key: 'taskUser', flag: '--task-user <name>', description: 'the unprivileged user --driver process runs tasks as (the agent must be root to switch)', default: DEFAULT_TASK_USER },
  { key: 'gatewayListen', flag: '--gateway-listen <addr>', description: 'inference gateway address', default: '127.0.0.1:7780' },
  { key: 'gatewayGrpcListen', flag: '--gateway-grpc-listen <addr>', description: "the gateway's Open Inference Protocol gRPC address (default: --gateway-listen's host at its port + 2, 7782 by default; off: none)" },
  { key: 'gatewayQueueSize', flag: '--gateway-queue-size <n>', description: 'requests the gateway holds per deployment while it has no ready replica (scaled to zero, waking); beyond: 503', default: '100' },
  { key: 'gatewayQueueTimeout', flag: '--gateway-queue-timeout <duration>', description: 'how long the gateway holds such a request at most before answering 503, e.g. 30s', default: '30s' },
  { key: 'httpListen', flag: '--http-listen <addr>', description: '/healthz and /metrics address', default: '127.0.0.1:7781' },
  { key: 'advertise', flag: '--advertise <addr>', description: 'address other hosts reach this agent at (default: the gateway address)' },
  { key: 'cacheMaxBytes', flag: '--cache-max-bytes <size>', description: 'model cache budget, e.g. 100Gi', default: '50Gi' },
  { key: 'maxConcurrentDownloads', flag: '--max-concurrent-downloads <n>', description: 'blobs fetched into the model cache at once; others wait their turn', default: '4' },
  { key: 'joinToken', flag: '--join-token <token>', description: 'join token for the first connection (the coordinator wrote one to <data-dir>/join-token)' },
  { key: 'joinTokenFile', flag: '--join-token-file <path>', description: 'file holding the join token' },
  { key: 'peerUploadMbps', flag: '--peer-upload-mbps <n>', description: 'cap on the bytes given to other agents, in Mbit/s (default: half the fastest NIC, else 1000; 0: share no pieces)' },
  { key: 'inventoryFile', flag: '--inventory-file <path>', description: 'JSON capacity that replaces what is detected' },
  { key: 'tlsCert', flag: '--tls-cert <file>', description: 'PEM client certificate for coordinators that require one (mutual TLS)' },
  { key: 'tlsKey', flag: '--tls-key <file>', description: 'PEM private key of --tls-cert' },
  { key: 'tlsCa', flag: '--tls-ca <file>', description: "PEM CA bundle to verify the coordinators' certificates with (any --tls-* flag: TLS instead of plain text)" },
  { key: 'logLevel', flag: '--log-level <level>', description: 'trace | debug | info | warn | error', default: 'info' },
];

/** What the agent says once its logger exists: options given in a way worth warning about. */
export interface OptionWarnings {
  warnings: string[];
}

export async function compileAgentOptions(argv: string[]): Promise<AgentOptions & { logLevel: string } & OptionWarnings> {
  const args = parseArgs('mlfleet-agent', 'The mlfleet agent: runs workloads on this host', OPTIONS, argv);
  const driver = args.values.driver;
  if (driver !== undefined && driver !== 'docker' && driver !== 'process') {
    throw new InvalidArgumentError(`${args.sources.driver}: driver must be docker or process, not "${driver}"`);
  }
  const name = args.values.name ?? defaultNodeName();
  const parsedName = nodeName.safeParse(name);
  if (!parsedName.success) throw new InvalidArgumentError(`${args.sources.name}: node name "${name}" ${parsedName.error.issues[0]!.message}`);
  const hostPort = (text: string) => (parseHostPort(text), text);
  const warnings: string[] = [];
  if (args.values.joinToken !== undefined && args.sources.joinToken === '--join-token') {
    warnings.push('--join-token on the command line is visible to every local user (ps, /proc/*/cmdline): use --join-token-file PATH (mode 0600) or MLFLEET_JOIN_TOKEN instead');
  }
  return {
    warnings,
    coordinators: compile(args, 'coordinator', parseAddressList),
    name,
    dataDir: compile(args, 'dataDir', (t) => t),
    labels: compile(args, 'labels', parseLabels),
    driver: (driver as 'docker' | 'process' | undefined) ?? 'docker',
    taskUser: compile(args, 'taskUser', (t) => t),
    gatewayListen: compile(args, 'gatewayListen', hostPort),
    gatewayGrpcListen: gatewayGrpcListen(compileOptional(args, 'gatewayGrpcListen', (t) => (t === 'off' ? t : hostPort(t))), compile(args, 'gatewayListen', hostPort)),
    gatewayQueueSize: compile(args, 'gatewayQueueSize', parseQueueSize),
    gatewayQueueTimeoutMs: compile(args, 'gatewayQueueTimeout', parseQueueTimeout),
    httpListen: compile(args, 'httpListen', hostPort),
    advertise: compileOptional(args, 'advertise', hostPort),
    cacheMaxBytes: compile(args, 'cacheMaxBytes', (t) => parseBytes(t, 'cache size')),
    maxConcurrentDownloads: compile(args, 'maxConcurrentDownloads', parseDownloads),
    inventoryFile: compileOptional(args, 'inventoryFile', (t) => t),
    peerUploadMbps: compileOptional(args, 'peerUploadMbps', parsePeerUploadMbps),
    joinToken: compileOptional(args, 'joinToken', (t) => t) ?? compileOptional(args, 'joinTokenFile', readTokenFile),
    tls: compileTls(args, 'client'),
    logLevel: compile(args, 'logLevel', (t) => t),
  };
}


/** --max-concurrent-downloads: a whole number from 1 to 64. */
function parseDownloads(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < 1 || n > 64) {
    throw new InvalidArgumentError(`concurrent downloads must be a whole number from 1 to 64, not "${text}"`);
  }
  return n;
}

/** --gateway-grpc-listen: as given, none for "off", else the gateway's host at its port + 2 (+ 1 is --http-listen's default); port 0 stays 0. */
export function gatewayGrpcListen(given: string | undefined, gatewayListen: string): string | undefined {
  if (given === 'off') return undefined;
  if (given !== undefined) return given;
  const { host, port } = parseHostPort(gatewayListen);
  if (port > 65533) throw new InvalidArgumentError(`--gateway-listen's port ${port} leaves no port + 2 for gRPC inference: give --gateway-grpc-listen`);
  return formatHostPort(host, port === 0 ? 0 : port + 2);
}

/** --gateway-queue-size: a whole number from 0 (hold nothing) to 100000. */
function parseQueueSize(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n > 100_000) {
    throw new InvalidArgumentError(`gateway queue size must be a whole number from 0 to 100000, not "${text}"`);
  }
  return n;
}

/** --gateway-queue-timeout: a duration from 1 ms to 10 minutes. */
function parseQueueTimeout(text: string): number {
  const ms = parseDuration(text, 'gateway queue timeout');
  if (ms < 1 || ms > 600_000) throw new InvalidArgumentError(`gateway queue timeout must be from 1ms to 10m, not "${text}"`);
  return ms;
}
