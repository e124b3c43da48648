// The coordinator's options: the flag table and its compilation into typed, validated CoordinatorOptions.
import { compile, compileOptional, parseArgs, parseDuration, parseHostPort, type OptionSpec } from '../shared/config.js';
import { InvalidArgumentError } from '../shared/errors.js';
import { compileTls } from '../shared/tls.js';
import type { CoordinatorOptions } from './coordinator.js';
import { loadSourceCredentials } from './sources/source-credentials.js';

const OPTIONS: OptionSpec[] = [
  { key: 'listen', flag: '--listen <addr>', description: 'gRPC address', default: '127.0.0.1:7700' },
  { key: 'httpListen', flag: '--http-listen <addr>', description: '/healthz and /metrics address', default: '127.0.0.1:7701' },
  { key: 'store', flag: '--store <spec>', description: 'sqlite:PATH or etcd:http://h1:2379,http://h2:2379', default: 'sqlite:./.mlfleet/coordinator.db' },
  { key: 'dataDir', flag: '--data-dir <path>', description: 'blobs and bootstrap files', default: './.mlfleet' },
  { key: 'blobStore', flag: '--blob-store <spec>', description: 'blob storage: fs:PATH (default <data-dir>/blobs) or s3://bucket?endpoint=URL&region=R' },
  { key: 'httpAdvertise', flag: '--http-advertise <addr>', description: 'host:port where agents and clients reach --http-listen for blob bytes (default: the host of --advertise, or of --http-listen when not a wildcard, with its port)' },
  { key: 'advertise', flag: '--advertise <addr>', description: 'address agents and clients are redirected to (default: the listen address)' },
  { key: 'nodeTtl', flag: '--node-ttl <duration>', description: 'a node without heartbeats for this long is down', default: '15s' },
  { key: 'electionTtl', flag: '--election-ttl <duration>', description: 'lease of the leader: a dead leader is replaced within about this long', default: '2s' },
  { key: 'uploadIdleTimeout', flag: '--upload-idle-timeout <duration>', description: 'an upload (push, job output) that sends nothing for this long is ended', default: '30s' },
  { key: 'id', flag: '--id <id>', description: 'coordinator identity (default: host name and a random suffix)' },
  { key: 'tlsCert', flag: '--tls-cert <file>', description: 'PEM certificate of the gRPC API (with --tls-key: TLS instead of plain text)' },
  { key: 'tlsKey', flag: '--tls-key <file>', description: 'PEM private key of --tls-cert' },
  { key: 'tlsCa', flag: '--tls-ca <file>', description: 'PEM CA bundle: agents and clients must present a certificate it signed (mutual TLS)' },
  { key: 'sourceCredentials', flag: '--source-credentials <file>', description: 'JSON {"NAME": {"accessKeyId", "secretAccessKey", "sessionToken"?}} (mode 0600) of credentials model sources name with --credentials' },
  { key: 'logLevel', flag: '--log-level <level>', description: 'trace | debug | info | warn | error', default: 'info' },
];

function positive(what: string, min: number) {
  return (text: string) => {
    const ms = parseDuration(text, what);
    if (ms < min) throw new InvalidArgumentError(`${what} must be at least ${min} ms`);
    return ms;
  };
}

export function compileCoordinatorOptions(argv: string[]): CoordinatorOptions & { logLevel: string } {
  const args = parseArgs('mlfleet-coordinator', 'The mlfleet coordinator: the control plane', OPTIONS, argv);
  const hostPort = (text: string) => (parseHostPort(text), text);
  return {
    listen: compile(args, 'listen', hostPort),
    httpListen: compile(args, 'httpListen', hostPort),
    store: compile(args, 'store', (t) => t),
    dataDir: compile(args, 'dataDir', (t) => t),
    blobStore: compileOptional(args, 'blobStore', (t) => t),
    advertise: compileOptional(args, 'advertise', hostPort),
    httpAdvertise: compileOptional(args, 'httpAdvertise', hostPort),
    nodeTtlMs: compile(args, 'nodeTtl', positive('node TTL', 300)),
    electionTtlMs: compile(args, 'electionTtl', positive('election TTL', 1000)),
    uploadIdleMs: compile(args, 'uploadIdleTimeout', positive('upload idle timeout', 1000)),
    id: compileOptional(args, 'id', (t) => t),
    tls: compileTls(args, 'server'),
    sourceCredentials: compileOptional(args, 'sourceCredentials', loadSourceCredentials),
    logLevel: compile(args, 'logLevel', (t) => t),
  };
}

