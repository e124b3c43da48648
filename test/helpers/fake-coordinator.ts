// A fake coordinator for client and CLI tests: a real @grpc/grpc-js server on 127.0.0.1,
// port 0, serving ClusterService and NodeService from an in-memory node table, and minimal
// TenantService, TokenService and EventService from in-memory tables (no roles, no quota
// enforcement: enough to check what the client sends and how it shows the answers), and
// ModelService and DatasetService over an in-memory registry whose pushes can be slowed down
// and whose downloads can be told to corrupt their bytes. It keeps
// the coordinator's contract: a follower answers every leader-only call with UNAVAILABLE and
// the `mlfleet-leader` metadata (empty while no leader is known); GetStatus is answered by all.
import { drainedOrCancelled } from '../../coordinator/api/rpc.js';
import { QUOTA_FIELDS, type QuotaName } from '../../shared/quota.js';
import { freePort } from './net.js';
import { createHash } from 'node:crypto';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { ARTIFACT_FORMATS, checkName, parseRef, type ArtifactKind } from '../../shared/artifact-ref.js';
import { mlfleetV1, type ArtifactVersion } from '../../shared/proto.js';
import type { PushHeader__Output } from '../../shared/gen/mlfleet/v1/PushHeader.js';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  NotLeaderError,
  UnauthenticatedError,
  toGrpcError,
} from '../../shared/errors.js';
import type { Node } from '../../shared/gen/mlfleet/v1/Node.js';
import type { Tenant__Output } from '../../shared/gen/mlfleet/v1/Tenant.js';
import type { Quota__Output } from '../../shared/gen/mlfleet/v1/Quota.js';
import type { TokenInfo__Output } from '../../shared/gen/mlfleet/v1/TokenInfo.js';
import type { AuditEvent__Output } from '../../shared/gen/mlfleet/v1/AuditEvent.js';
import type { ClusterServiceHandlers } from '../../shared/gen/mlfleet/v1/ClusterService.js';
import type { NodeServiceHandlers } from '../../shared/gen/mlfleet/v1/NodeService.js';
import type { TenantServiceHandlers } from '../../shared/gen/mlfleet/v1/TenantService.js';
import type { TokenServiceHandlers } from '../../shared/gen/mlfleet/v1/TokenService.js';
import type { EventServiceHandlers } from '../../shared/gen/mlfleet/v1/EventService.js';
import type { ModelServiceHandlers } from '../../shared/gen/mlfleet/v1/ModelService.js';
import type { PushRequest__Output } from '../../shared/gen/mlfleet/v1/PushRequest.js';
import type { DownloadResponse } from '../../shared/gen/mlfleet/v1/DownloadResponse.js';

export type NodeRecord = Node & { name: string };
export type TenantRecord = Tenant__Output;
export type TokenRecord = TokenInfo__Output;
export type AuditEventRecord = AuditEvent__Output;

export interface FakeCoordinatorOptions {
  role: 'leader' | 'follower';
  /**
   * For a follower, who it says leads: an address, '' for "no leader yet", or a function
   * asked on every call (to script an election).
   */
  leader?: string | (() => string);
  nodes?: NodeRecord[];
  tenants?: TenantRecord[];
  tokens?: TokenRecord[];
  auditEvents?: AuditEventRecord[];
  /** When set, every call must carry `authorization: Bearer <token>`. */
  token?: string;
  store?: string;
  revision?: number;
}

/** One version in the fake registry: what GetArtifact says, and the bytes themselves. */
export interface FakeVersion {
  version: ArtifactVersion;
  content: Buffer;
}

export interface FakeArtifact {
  name: string;
  versions: FakeVersion[];
  aliases: Record<string, number>;
  lastVersion: number;
}

/** How each push ended: stored as a version, cancelled by the client, or refused. */
export interface RecordedPush {
  kind: ArtifactKind;
  name: string;
  header: PushHeader__Output | undefined;
  bytesReceived: number;
  outcome: 'stored' | 'cancelled' | 'failed';
  error?: string;
}

export interface RecordedCall {
  method: string;
  request: unknown;
  authorization: string | undefined;
}

export class FakeCoordinator {
  readonly calls: RecordedCall[] = [];
  readonly nodes = new Map<string, NodeRecord>();
  readonly tenants = new Map<string, TenantRecord>();
  /** By id; the secrets CreateToken handed out are in `secrets`, by id. */
  readonly tokens = new Map<string, TokenRecord>();
  readonly secrets = new Map<string, string>();
  /** Any order; ListAuditEvents answers newest (highest id) first. */
  auditEvents: AuditEventRecord[];
  role: 'leader' | 'follower';
  leader: string | (() => string);
  /** Other coordinators GetStatus reports, besides this one. */
  peers: { address: string; role: string }[] = [];
  /** The registry, per kind, by name. */
  readonly artifacts: Record<ArtifactKind, Map<string, FakeArtifact>> = { model: new Map(), dataset: new Map() };
  readonly pushes: RecordedPush[] = [];
  /** Wait this long after each pushed chunk: a slow coordinator, so the client feels backpressure. */
  pushChunkDelayMs = 0;
  /** Serve every download with one byte flipped, as a corrupted disk or a tampering proxy would. */
  corruptDownloads = false;
  /** The size of each Download chunk. */
  downloadChunkBytes = 64 * 1024;
  /** Wait this long before each Download chunk: a slow link, to interrupt a pull halfway. */
  downloadChunkDelayMs = 0;

  private constructor(
    private readonly server: grpc.Server,
    readonly address: string,
    private readonly options: FakeCoordinatorOptions,
  ) {
    this.role = options.role;
    this.leader = options.leader ?? '';
    for (const node of options.nodes ?? []) this.nodes.set(node.name, node);
    for (const tenant of options.tenants ?? []) this.tenants.set(tenant.name, tenant);
    for (const token of options.tokens ?? []) this.tokens.set(token.id, token);
    this.auditEvents = [...(options.auditEvents ?? [])];
  }

  static async start(options: FakeCoordinatorOptions): Promise<FakeCoordinator> {
    const server = new grpc.Server();
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    const fake = new FakeCoordinator(server, `127.0.0.1:${port}`, options);
    const v1 = mlfleetV1();
    server.addService(v1.ClusterService.service, fake.clusterHandlers());
    server.addService(v1.NodeService.service, fake.nodeHandlers());
    server.addService(v1.TenantService.service, fake.tenantHandlers());
    server.addService(v1.TokenService.service, fake.tokenHandlers());
    server.addService(v1.EventService.service, fake.eventHandlers());
    server.addService(v1.ModelService.service, fake.artifactHandlers('model'));
    server.addService(v1.DatasetService.service, fake.artifactHandlers('dataset'));
    return fake;
  }

  callsTo(method: string): RecordedCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      // Calls in flight are not worth waiting for in a test.
      const force = setTimeout(() => this.server.forceShutdown(), 200);
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }

  private currentLeader(): string {
    if (this.role === 'leader') return this.address;
    return typeof this.leader === 'function' ? this.leader() : this.leader;
  }

  /** Records the call and checks the token; answers the error to send, if any. */
  private admit(method: string, call: { metadata: grpc.Metadata; request?: unknown }, leaderOnly: boolean): unknown {
    const header = call.metadata.get('authorization')[0];
    const authorization = header === undefined ? undefined : String(header);
    this.calls.push({ method, request: call.request, authorization });
    if (this.options.token && authorization !== `Bearer ${this.options.token}`) {
      return new UnauthenticatedError('a valid token is required; pass --token or set MLFLEET_TOKEN');
    }
    if (leaderOnly && this.role !== 'leader') return new NotLeaderError(this.currentLeader());
    return undefined;
  }

  private clusterHandlers(): ClusterServiceHandlers {
    return {
      GetStatus: (call, callback) => {
        const refused = this.admit('GetStatus', call, false);
        if (refused) return callback(toGrpcError(refused));
        callback(null, {
          leader: this.currentLeader(),
          coordinators: [
            { id: 'fake-self', address: this.address, role: this.role },
            ...this.peers.map((p, i) => ({ id: `fake-peer-${i}`, ...p })),
          ],
          store: this.options.store ?? 'sqlite',
          revision: this.options.revision ?? 42,
        });
      },
    };
  }

  private nodeHandlers(): NodeServiceHandlers {
    const withNode = (
      method: string,
      change: (node: NodeRecord) => void,
    ): grpc.handleUnaryCall<{ name: string }, Node> => (call, callback) => {
      const refused = this.admit(method, call, true);
      if (refused) return callback(toGrpcError(refused));
      const node = this.nodes.get(call.request.name);
      if (!node) return callback(toGrpcError(new NotFoundError(`node "${call.request.name}" not found; list nodes with mlfleetctl nodes ls`)));
      change(node);
      callback(null, node);
    };
    return {
      ListNodes: (call, callback) => {
        const refused = this.admit('ListNodes', call, true);
        if (refused) return callback(toGrpcError(refused));
        const { status, selector } = call.request;
        const nodes = [...this.nodes.values()].filter(
          (n) => (!status || n.status === status) && Object.entries(selector).every(([k, v]) => n.labels?.[k] === v),
        );
        callback(null, { nodes, revision: this.options.revision ?? 42 });
      },
      GetNode: withNode('GetNode', () => {}),
      CordonNode: withNode('CordonNode', (n) => (n.cordoned = true)),
      UncordonNode: withNode('UncordonNode', (n) => (n.cordoned = false)),
      DrainNode: withNode('DrainNode', (n) => {
        n.cordoned = true;
        n.status = 'draining';
      }),
      RemoveNode: withNode('RemoveNode', (n) => this.nodes.delete(n.name)),
      PrefetchModel: this.unaryHandler('PrefetchModel', ({ ref }) => {
        const { version } = this.resolveVersion('model', ref);
        return { digest: version.digest, sizeBytes: version.sizeBytes };
      }),
    };
  }

  /** The stored bytes of `name:version` (to compare a pull with). */
  content(kind: ArtifactKind, name: string, version: number): Buffer | undefined {
    return this.artifacts[kind].get(name)?.versions.find((v) => v.version.version === version)?.content;
  }

  private findArtifact(kind: ArtifactKind, name: string): FakeArtifact {
    const artifact = this.artifacts[kind].get(name);
    if (!artifact) throw new NotFoundError(`${kind} "${name}" not found`);
    return artifact;
  }

  private resolveVersion(kind: ArtifactKind, text: string): FakeVersion {
    const ref = parseRef(text);
    const artifact = this.findArtifact(kind, ref.name);
    const wanted = ref.alias !== undefined ? artifact.aliases[ref.alias] : ref.version;
    if (ref.alias !== undefined && wanted === undefined) throw new NotFoundError(`${kind} "${ref.name}" has no alias "${ref.alias}"`);
    const found = wanted === undefined ? artifact.versions.at(-1) : artifact.versions.find((v) => v.version.version === wanted);
    if (!found) throw new NotFoundError(`${kind} "${ref.name}" has no version ${wanted ?? ''}`.trim());
    return found;
  }

  private artifactView(artifact: FakeArtifact) {
    return { name: artifact.name, tenant: 'default', versions: artifact.versions.map((v) => v.version), aliases: artifact.aliases };
  }

  private artifactHandlers(kind: ArtifactKind): ModelServiceHandlers {
    const service = kind === 'model' ? 'ModelService' : 'DatasetService';
    return {
      Push: (call, callback) => {
        const refused = this.admit(`${service}.Push`, call, true);
        if (refused) return callback(toGrpcError(refused));
        const record: RecordedPush = { kind, name: '', header: undefined, bytesReceived: 0, outcome: 'failed' };
        this.pushes.push(record);
        let cancelled = false;
        call.on('cancelled', () => {
          cancelled = true;
          call.destroy(new Error('the client cancelled the push'));
        });
        const receive = async () => {
          const parts: Buffer[] = [];
          for await (const message of call as AsyncIterable<PushRequest__Output>) {
            if (!record.header) {
              if (message.msg !== 'header' || !message.header) throw new InvalidArgumentError('the first message of a push must be its header');
              record.header = message.header;
              record.name = checkName(message.header.name);
              if (!ARTIFACT_FORMATS[kind].includes(message.header.format)) throw new InvalidArgumentError(`format "${message.header.format}" is not a ${kind} format`);
              continue;
            }
            if (message.msg !== 'chunk' || !message.chunk?.length) throw new InvalidArgumentError('after the header a push sends non-empty chunks');
            parts.push(message.chunk);
            record.bytesReceived += message.chunk.length;
            if (this.pushChunkDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.pushChunkDelayMs));
          }
          const header = record.header;
          if (!header) throw new InvalidArgumentError('the push sent nothing');
          if (record.bytesReceived !== header.sizeBytes) {
            throw new InvalidArgumentError(`the push declared ${header.sizeBytes} bytes but sent ${record.bytesReceived}`);
          }
          const content = Buffer.concat(parts);
          const digest = `sha256:${createHash('sha256').update(content).digest('hex')}`;
          if (header.digest && header.digest !== digest) throw new InvalidArgumentError(`the content hashes to ${digest}, not the declared ${header.digest}`);
          const artifact: FakeArtifact = this.artifacts[kind].get(header.name) ?? { name: header.name, versions: [], aliases: {}, lastVersion: 0 };
          this.artifacts[kind].set(header.name, artifact);
          artifact.lastVersion += 1;
          const version: ArtifactVersion = {
            name: header.name,
            version: artifact.lastVersion,
            digest,
            sizeBytes: content.length,
            format: header.format,
            directory: header.directory,
            createdAtMs: Date.now(),
            createdBy: 'tok-1',
            metadata: header.metadata,
            tenant: 'default',
          };
          artifact.versions.push({ version, content });
          return version;
        };
        receive().then(
          (version) => {
            record.outcome = 'stored';
            callback(null, version);
          },
          (err: unknown) => {
            record.outcome = cancelled ? 'cancelled' : 'failed';
            record.error = (err as Error).message;
            callback(toGrpcError(err));
          },
        );
      },
      Download: (call) => {
        const refused = this.admit(`${service}.Download`, call, true);
        if (refused) return call.emit('error', toGrpcError(refused));
        const send = async () => {
          const { ref, digest, offset } = call.request;
          const found = digest
            ? [...this.artifacts[kind].values()].flatMap((a) => a.versions).find((v) => v.version.digest === digest)
            : this.resolveVersion(kind, ref);
          if (!found) throw new NotFoundError(`no ${kind} version has content ${digest}`);
          if (offset > found.content.length) throw new InvalidArgumentError(`offset ${offset} is past the end of the content (${found.content.length} bytes)`);
          let content = found.content;
          if (this.corruptDownloads && content.length > 0) {
            content = Buffer.from(content);
            const at = Math.floor(content.length / 2);
            content[at] = content[at]! ^ 0xff;
          }
          call.write({ version: found.version } satisfies DownloadResponse);
          for (let at = offset; at < content.length && !call.cancelled; at += this.downloadChunkBytes) {
            if (this.downloadChunkDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.downloadChunkDelayMs));
            const chunk = content.subarray(at, Math.min(at + this.downloadChunkBytes, content.length));
            if (!call.write({ chunk } satisfies DownloadResponse)) await drainedOrCancelled(call);
          }
        };
        send().then(
          () => call.end(),
          (err: unknown) => {
            if (!call.cancelled) call.emit('error', toGrpcError(err));
          },
        );
      },
      ListArtifacts: this.unaryHandler(`${service}.ListArtifacts`, () => ({
        artifacts: [...this.artifacts[kind].values()]
          .sort((a, b) => a.name.localeCompare(b.name))
          .map((a) => ({
            name: a.name,
            tenant: 'default',
            latestVersion: a.versions.at(-1)?.version.version ?? 0,
            versions: a.versions.length,
            totalBytes: a.versions.reduce((sum, v) => sum + v.content.length, 0),
            aliases: a.aliases,
            updatedAtMs: Math.max(0, ...a.versions.map((v) => Number(v.version.createdAtMs))),
          })),
      })),
      GetArtifact: this.unaryHandler(`${service}.GetArtifact`, ({ name }) => this.artifactView(this.findArtifact(kind, name))),
      Resolve: this.unaryHandler(`${service}.Resolve`, ({ ref }) => this.resolveVersion(kind, ref).version),
      SetAlias: this.unaryHandler(`${service}.SetAlias`, ({ name, alias, version }) => {
        const artifact = this.findArtifact(kind, name);
        checkName(alias, 'alias');
        if (!artifact.versions.some((v) => v.version.version === version)) throw new NotFoundError(`${kind} "${name}" has no version ${version}`);
        artifact.aliases[alias] = version;
        return this.artifactView(artifact);
      }),
      DeleteVersion: this.unaryHandler(`${service}.DeleteVersion`, ({ name, version }) => {
        const artifact = this.findArtifact(kind, name);
        if (!artifact.versions.some((v) => v.version.version === version)) throw new NotFoundError(`${kind} "${name}" has no version ${version}`);
        const aliased = Object.entries(artifact.aliases).filter(([, v]) => v === version).map(([a]) => a);
        if (aliased.length > 0) throw new FailedPreconditionError(`${kind} ${name}:${version} is aliased as ${aliased.join(', ')}; move or remove the alias first`);
        artifact.versions = artifact.versions.filter((v) => v.version.version !== version);
        return this.artifactView(artifact);
      }),
      // The real coordinator's retention is tested against the real coordinator (retention.test.ts).
      SetRetention: (_call, callback) => callback({ code: grpc.status.UNIMPLEMENTED, details: 'the fake coordinator keeps every version' }),
    };
  }

  private tenantHandlers(): TenantServiceHandlers {
    const find = (name: string): TenantRecord => {
      const tenant = this.tenants.get(name);
      if (!tenant) throw new NotFoundError(`tenant "${name}" not found; list tenants with mlfleetctl tenants ls`);
      return tenant;
    };
    return {
      CreateTenant: this.unaryHandler('CreateTenant', ({ name, description, quota }) => {
        if (this.tenants.has(name)) throw new AlreadyExistsError(`tenant "${name}" already exists`);
        const tenant: TenantRecord = { name, description, quota: { ...emptyQuota(), ...quota }, usage: emptyUsage(), createdAtMs: Date.now() };
        this.tenants.set(name, tenant);
        return tenant;
      }),
      ListTenants: this.unaryHandler('ListTenants', () => ({
        tenants: [...this.tenants.values()].sort((a, b) => a.name.localeCompare(b.name)),
      })),
      GetTenant: this.unaryHandler('GetTenant', ({ name }) => find(name)),
      SetTenantQuota: this.unaryHandler('SetTenantQuota', ({ name, quota, clear }) => {
        const tenant = find(name);
        const next: Quota__Output = { ...emptyQuota(), ...tenant.quota };
        for (const [field, value] of Object.entries(quota ?? {}) as [keyof Quota__Output, number][]) if (value > 0) next[field] = value;
        for (const item of clear) {
          const field = QUOTA_FIELDS[item as QuotaName];
          if (!field) throw new InvalidArgumentError(`cannot clear "${item}"; clear one of ${Object.keys(QUOTA_FIELDS).join(', ')}`);
          next[field] = 0;
        }
        tenant.quota = next;
        return tenant;
      }),
    };
  }

  private tokenHandlers(): TokenServiceHandlers {
    return {
      CreateToken: this.unaryHandler('CreateToken', ({ tenant, role, description, ttlMs, singleUse }) => {
        const n = this.tokens.size + 1;
        const now = Date.now();
        const info: TokenRecord = {
          id: `tok-${n}`,
          tenant,
          role,
          node: '',
          description,
          createdAtMs: now,
          createdBy: 'bootstrap',
          revokedAtMs: 0,
          expiresAtMs: ttlMs > 0 ? now + ttlMs : 0,
          singleUse,
          usedAtMs: 0,
          usedBy: '',
        };
        this.tokens.set(info.id, info);
        this.secrets.set(info.id, `mlf_secret_${n}`);
        return { info, token: `mlf_secret_${n}` };
      }),
      ListTokens: this.unaryHandler('ListTokens', ({ tenant, includeRevoked }) => ({
        tokens: [...this.tokens.values()].filter((t) => (!tenant || t.tenant === tenant) && (includeRevoked || t.revokedAtMs === 0)),
      })),
      RevokeToken: this.unaryHandler('RevokeToken', ({ id }) => {
        const token = this.tokens.get(id);
        if (!token) throw new NotFoundError(`token "${id}" not found; list tokens with mlfleetctl tokens ls --all`);
        if (token.revokedAtMs === 0) token.revokedAtMs = Date.now();
        return token;
      }),
    };
  }

  private eventHandlers(): EventServiceHandlers {
    return {
      // Pages as the real one does: newest first, the token says where the last page ended.
      ListAuditEvents: this.unaryHandler('ListAuditEvents', ({ tenant, limit, beforeId, pageToken }) => {
        const older = this.auditEvents
          .filter((e) => (!tenant || e.tenant === tenant) && (!beforeId || e.id < beforeId) && (!pageToken || e.id < Number(pageToken)))
          .sort((a, b) => b.id - a.id);
        const events = older.slice(0, limit || 100);
        return { events, nextPageToken: older.length > events.length ? String(events.at(-1)!.id) : '' };
      }),
      // Workload events need a real coordinator; the CLI's events tests run against one.
      WatchEvents: (call) => call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'the fake coordinator has no workload events' }),
    };
  }

  /** A leader-only unary handler: records the call, checks the token, maps thrown errors. */
  private unaryHandler<Req, Res>(method: string, answer: (request: Req) => Res): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const refused = this.admit(method, call, true);
      if (refused) return callback(toGrpcError(refused));
      try {
        callback(null, answer(call.request));
      } catch (err) {
        callback(toGrpcError(err));
      }
    };
  }
}

function emptyQuota(): Quota__Output {
  return { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, storageBytes: 0, maxDeployments: 0 };
}

function emptyUsage(): NonNullable<TenantRecord['usage']> {
  return { cpuMillis: 0, memoryBytes: 0, gpus: 0, gpuMemoryBytes: 0, storageBytes: 0, deployments: 0 };
}

/** A node as an agent with two GPUs and one NIC would register it. */
export function sampleNode(name: string, overrides: Partial<NodeRecord> = {}): NodeRecord {
  return {
    name,
    status: 'ready',
    cordoned: false,
    address: '10.0.0.7:7780',
    labels: { zone: 'a', gpu: 'h100' },
    capacity: {
      cpuMillis: 32_000,
      memoryBytes: 256 * 2 ** 30,
      gpus: [
        { index: 0, uuid: 'GPU-0a1b2c3d', model: 'NVIDIA H100 80GB HBM3', memoryBytes: 80 * 2 ** 30, computeCapability: '9.0' },
        { index: 1, uuid: 'GPU-4e5f6a7b', model: 'NVIDIA H100 80GB HBM3', memoryBytes: 80 * 2 ** 30, computeCapability: '9.0' },
      ],
      nics: [{ name: 'eth0', speedMbps: 25_000, ipv4: '10.0.0.7' }],
      disks: [{ mount: '/', fsType: 'ext4', sizeBytes: 2 ** 40, availableBytes: 2 ** 39 }],
    },
    allocated: { cpuMillis: 4_000, memoryBytes: 16 * 2 ** 30, gpus: 1, gpuMemoryBytes: 80 * 2 ** 30, nicMbps: 0 },
    lastHeartbeatMs: Date.now() - 2_000,
    agentVersion: '0.1.0',
    registeredAtMs: Date.now() - 3_600_000,
    statusChangedAtMs: Date.now() - 3_600_000,
    ...overrides,
  };
}

/** An address nothing listens on: a port the OS just handed out and took back. */
export async function deadAddress(): Promise<string> {
  return `127.0.0.1:${await freePort()}`;
}

/** A TCP server that accepts connections and never says a word: a coordinator that hangs. */
export async function silentServer(): Promise<{ address: string; connected: Promise<void>; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let onConnection: () => void = () => undefined;
  const connected = new Promise<void>((resolve) => (onConnection = resolve));
  const server = net.createServer((socket) => {
    onConnection();
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    /** Resolves once a client has connected (and so is waiting for an answer). */
    connected,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
