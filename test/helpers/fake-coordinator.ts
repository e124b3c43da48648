// A fake coordinator for client and CLI tests: a real @grpc/grpc-js server on 127.0.0.1,
// port 0, serving ClusterService and NodeService from an in-memory node table. It keeps the
// coordinator's contract: a follower answers every NodeService call with UNAVAILABLE and the
// `mlfleet-leader` metadata (empty while no leader is known); GetStatus is answered by all.
import { freePort } from './net.js';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { mlfleetV1 } from '../../shared/proto.js';
import { NotFoundError, NotLeaderError, UnauthenticatedError, toGrpcError } from '../../shared/errors.js';
import type { Node } from '../../shared/gen/mlfleet/v1/Node.js';
import type { ClusterServiceHandlers } from '../../shared/gen/mlfleet/v1/ClusterService.js';
import type { NodeServiceHandlers } from '../../shared/gen/mlfleet/v1/NodeService.js';

export type NodeRecord = Node & { name: string };

export interface FakeCoordinatorOptions {
  role: 'leader' | 'follower';
  /**
   * For a follower, who it says leads: an address, '' for "no leader yet", or a function
   * asked on every call (to script an election).
   */
  leader?: string | (() => string);
  nodes?: NodeRecord[];
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
