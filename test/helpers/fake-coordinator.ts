// A fake coordinator for client and CLI tests: a real @grpc/grpc-js server on 127.0.0.1,
// port 0, serving ClusterService and NodeService from an in-memory node table, and minimal
// TenantService, TokenService and EventService from in-memory tables (no roles, no quota
// enforcement: enough to check what the client sends and how it shows the answers). It keeps
// the coordinator's contract: a follower answers every leader-only call with UNAVAILABLE and
// the `mlfleet-leader` metadata (empty while no leader is known); GetStatus is answered by all.
import { freePort } from './net.js';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { mlfleetV1 } from '../../shared/proto.js';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, NotLeaderError, UnauthenticatedError, toGrpcError } from '../../shared/errors.js';
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
  private admit(method: string, call: grpc.ServerUnaryCall<unknown, unknown>, leaderOnly: boolean): unknown {
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
          const field = QUOTA_CLEAR_FIELDS[item];
          if (!field) throw new InvalidArgumentError(`cannot clear "${item}"; clear one of ${Object.keys(QUOTA_CLEAR_FIELDS).join(', ')}`);
          next[field] = 0;
        }
        tenant.quota = next;
        return tenant;
      }),
    };
  }

  private tokenHandlers(): TokenServiceHandlers {
    return {
      CreateToken: this.unaryHandler('CreateToken', ({ tenant, role, description, ttlMs }) => {
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
      ListAuditEvents: this.unaryHandler('ListAuditEvents', ({ tenant, limit, beforeId }) => ({
        events: this.auditEvents
          .filter((e) => (!tenant || e.tenant === tenant) && (!beforeId || e.id < beforeId))
          .sort((a, b) => b.id - a.id)
          .slice(0, limit || 100),
      })),
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

/** SetTenantQuotaRequest.clear's names → the Quota field each one resets. */
const QUOTA_CLEAR_FIELDS: Record<string, keyof Quota__Output> = {
  cpu: 'cpuMillis',
  memory: 'memoryBytes',
  gpus: 'gpus',
  'gpu-memory': 'gpuMemoryBytes',
  storage: 'storageBytes',
  deployments: 'maxDeployments',
};

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
export async function silentServer(): Promise<{ address: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
