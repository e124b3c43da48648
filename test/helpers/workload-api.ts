// The workload services called directly with one token, for tests that drive a coordinator
// without the CLI: `api.call('DeploymentService', 'GetDeployment', { name })`.
import * as grpc from '@grpc/grpc-js';
import { setBearer } from '../../shared/auth.js';
import { mlfleetV1, type WorkloadEvent } from '../../shared/proto.js';

type Unary = (request: unknown, metadata: grpc.Metadata, callback: (err: grpc.ServiceError | null, response: unknown) => void) => void;
export type WorkloadServiceName = 'DeploymentService' | 'JobService' | 'AllocationService';

export class WorkloadApi {
  private readonly clients;

  constructor(
    private readonly address: string,
    private readonly token: string,
  ) {
    const v1 = mlfleetV1();
    this.clients = {
      DeploymentService: new v1.DeploymentService(address, grpc.credentials.createInsecure()),
      JobService: new v1.JobService(address, grpc.credentials.createInsecure()),
      AllocationService: new v1.AllocationService(address, grpc.credentials.createInsecure()),
    };
  }

  call<T>(service: WorkloadServiceName, method: string, request: unknown): Promise<T> {
    const client = this.clients[service];
    const fn = (client as unknown as Record<string, Unary>)[method]!.bind(client);
    return new Promise<T>((resolve, reject) => fn(request, this.metadata(), (err, response) => (err ? reject(err) : resolve(response as T))));
  }

  /** An allocation's logs (not followed), as one Buffer. */
  async logs(allocation: string, tailBytes = 0): Promise<Buffer> {
    const call = this.clients.AllocationService.GetLogs({ allocation, tailBytes, follow: false }, this.metadata());
    const chunks: Buffer[] = [];
    for await (const chunk of call) chunks.push((chunk as { data: Buffer }).data);
    return Buffer.concat(chunks);
  }

  /** The newest workload events of an object ('' : all). */
  async events(object = ''): Promise<WorkloadEvent[]> {
    const client = new (mlfleetV1().EventService)(this.address, grpc.credentials.createInsecure());
    try {
      const seen: WorkloadEvent[] = [];
      for await (const e of client.WatchEvents({ object, replay: 1000, follow: false }, this.metadata())) seen.push(e as WorkloadEvent);
      return seen;
    } finally {
      client.close();
    }
  }

  close(): void {
    for (const client of Object.values(this.clients)) client.close();
  }

  private metadata(): grpc.Metadata {
    return setBearer(new grpc.Metadata(), this.token);
  }
}
