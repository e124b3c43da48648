// A scripted agent for coordinator tests: opens a real session (join token), says hello with
// the capacity it is given, records every desired set it is sent, and reports allocation
// states when the test says so. What a real agent does with its set is the agent tests' job.
import type { TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { setBearer } from '../../shared/auth.js';
import { mlfleetV1, type AgentMessageIn, type Allocation, type CoordinatorMessageOut } from '../../shared/proto.js';
import type { RunSpec } from '../../shared/workloads.js';
import type { RouteTable__Output } from '../../shared/gen/mlfleet/v1/RouteTable.js';
import { DesiredAssembler } from '../../shared/desired-pieces.js';
import { until } from './eventually.js';

export interface FakeAgentOptions {
  cpuMillis?: number;
  memoryBytes?: number;
  gpus?: Array<{ model: string; memoryBytes: number }>;
  labels?: Record<string, string>;
  cache?: string[];
  /** Hello.peer_upload_mbps (default 0: serves no pieces). */
  peerUploadMbps?: number;
  /** Hello.address, its gateway (default `<name>:7780`). */
  address?: string;
}

export class FakeAgent {
  /** The newest desired set. */
  desired: Allocation[] = [];
  revision = 0;
  sets = 0;
  /** Desired-set messages received (a large set comes in several pieces). */
  desiredPieces = 0;
  /** The newest routing table for its gateway. */
  routes: RouteTable__Output = { revision: 0, models: [] };
  private readonly client: grpc.Client;
  private call: grpc.ClientDuplexStream<AgentMessageIn, CoordinatorMessageOut> | undefined;
  private heartbeats: NodeJS.Timeout | undefined;
  /** How the leader ended the current session (undefined while it is open). */
  endedWith: grpc.ServiceError | undefined;
  /** The node credential the leader issued when this agent joined (what a real agent pushes job outputs with). */
  credential: string | undefined;
  /** The cluster's id, from the last welcome. */
  clusterId: string | undefined;
  /** The key the leader's peer grants verify with, from the last welcome. */
  grantPublicKey: Buffer | undefined;
  /** Latency samples the next heartbeat carries, as a gateway would report them. */
  readonly latencies: Array<{ tenant: string; model: string; allocation: string; count: number; errors: number; p50Ms: number; p99Ms: number }> = [];

  constructor(
    readonly name: string,
    private readonly address: string,
    private readonly token: string,
    private readonly options: FakeAgentOptions = {},
  ) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure());
  }

  static async start(t: TestContext, name: string, address: string, token: string, options: FakeAgentOptions = {}): Promise<FakeAgent> {
    const agent = new FakeAgent(name, address, token, options);
    t.after(() => agent.close());
    await agent.connect();
    return agent;
  }

  /**
   * Opens a session (with its credential once it has one, as a real agent does: the join token
   * admits a new node only); `statuses` go in the hello, as after an agent restart.
   */
  async connect(statuses: Array<{ id: string; state: string; reason?: string; exitCode?: number }> = []): Promise<void> {
    const def = mlfleetV1().AgentService.service.Session;
    const call = this.client.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, setBearer(new grpc.Metadata(), this.credential ?? this.token)) as unknown as grpc.ClientDuplexStream<AgentMessageIn, CoordinatorMessageOut>;
    this.call = call;
    let welcomed = false;
    const assembler = new DesiredAssembler();
    call.on('data', (message: CoordinatorMessageOut) => {
      if (message.msg === 'welcome' && message.welcome) {
        welcomed = true;
        if (message.welcome.nodeCredential) this.credential = message.welcome.nodeCredential;
        this.clusterId = message.welcome.clusterId;
        this.grantPublicKey = message.welcome.grantPublicKey;
        let seq = 0;
        clearInterval(this.heartbeats);
        this.heartbeats = setInterval(() => call.write({ heartbeat: { seq: ++seq, sentAtMs: Date.now(), latencies: this.latencies.splice(0) } }), message.welcome.heartbeatIntervalMs);
      }
      if (message.msg === 'routes' && message.routes) this.routes = message.routes;
      if (message.msg === 'desired' && message.desired) {
        this.desiredPieces += 1;
        const set = assembler.add(message.desired);
        if (set && set.revision >= this.revision) {
          this.revision = set.revision;
          this.desired = set.allocations;
          this.sets += 1;
        }
      }
    });
    this.endedWith = undefined;
    call.on('error', (err: grpc.ServiceError) => {
      clearInterval(this.heartbeats);
      if (this.call === call) this.endedWith = err;
    });
    const { cpuMillis = 8000, memoryBytes = 32 * 2 ** 30, gpus = [], labels = {}, cache = [], peerUploadMbps = 0, address = `${this.name}:7780` } = this.options;
    call.write({
      hello: {
        nodeName: this.name,
        agentVersion: 'fake',
        address,
        peerUploadMbps,
        labels,
        capacity: {
          cpuMillis,
          memoryBytes,
          gpus: gpus.map((g, index) => ({ index, uuid: `GPU-${this.name}-${index}`, model: g.model, memoryBytes: g.memoryBytes, computeCapability: '9.0', migEnabled: false, driverVersion: '550' })),
          nics: [],
          disks: [],
        },
        allocations: statuses.map((s) => ({ id: s.id, state: s.state, reason: s.reason ?? '', exitCode: s.exitCode ?? 0, endpoint: '', updatedAtMs: Date.now() })),
        cache: cache.map((digest) => ({ digest, sizeBytes: 1, inUse: false })),
      },
    });
    // A stream that ends before the welcome fails the connect at once, with its reason (a
    // real agent then retries; a test may too).
    await until(`${this.name} welcomed`, () => {
      if (!welcomed && this.call === call && this.endedWith) throw this.endedWith;
      return welcomed && this.sets > 0;
    });
  }

  /** Reports allocation states, as the reconciler does when they change. */
  report(...statuses: Array<{ id: string; state: string; reason?: string; exitCode?: number; endpoint?: string; outputVersion?: number; startPhases?: Array<{ phase: string; seconds: number }> }>): void {
    this.call!.write({
      status: {
        allocations: statuses.map((s) => ({ id: s.id, state: s.state, reason: s.reason ?? '', exitCode: s.exitCode ?? 0, endpoint: s.endpoint ?? '', updatedAtMs: Date.now(), outputVersion: s.outputVersion ?? 0, startPhases: s.startPhases ?? [] })),
        cache: [],
      },
    });
  }

  /** Reports the blobs its cache holds whole, as an agent's status report does. */
  reportCache(digests: Array<{ digest: string; sizeBytes: number }>): void {
    this.call!.write({ status: { allocations: [], cache: digests.map((d) => ({ ...d, inUse: false })) } });
  }

  /** Reports every allocation of its set in `state`. */
  reportAll(state: string, filter: (a: Allocation) => boolean = () => true): void {
    const matching = this.desired.filter(filter);
    if (matching.length > 0) this.report(...matching.map((a) => ({ id: a.id, state, endpoint: state === 'ready' ? `${this.name}:${a.hostPort}` : '' })));
  }

  run(a: Allocation): RunSpec {
    return JSON.parse(a.specJson) as RunSpec;
  }

  disconnect(): void {
    clearInterval(this.heartbeats);
    this.call?.cancel();
    this.call = undefined;
  }

  close(): void {
    this.disconnect();
    this.client.close();
  }
}
