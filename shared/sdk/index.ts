// mlfleet's client SDK, the package's main export:
//
//   import { connect } from 'mlfleet';
//   const fleet = await connect({ coordinator: 'coord-1:7700', token: process.env.MLFLEET_TOKEN });
//   await fleet.models.put('linear', './linear.onnx', { alias: 'production' });
//
// connect() checks that the coordinator answers and takes the token before it resolves, so a
// wrong address or token fails here rather than at the first operation.
import { CoordinatorClient, DEFAULT_COORDINATOR, parseCoordinatorAddresses } from '../client.js';
import { channelCredentials, loadTls, type TlsFiles } from '../tls.js';
import { Fleet } from './fleet.js';

export interface ConnectOptions {
  /** host:port of the coordinator, or several ("a:7700,b:7700" or an array): the leader is found among them. Default 127.0.0.1:7700. */
  coordinator?: string | readonly string[];
  /** An API token (`mlfleetctl tokens create`); sent as a bearer token to the coordinator and the gateways. */
  token?: string;
  /** PEM file paths, as mlfleetctl's --tls-ca/--tls-cert/--tls-key: any of them means TLS. */
  tls?: TlsFiles;
  /** The inference gateway fleet.infer uses unless told (host:port; default 127.0.0.1:7780). */
  gateway?: string;
  /** Budget for one call, redirects included (default 10 s). */
  deadlineMs?: number;
}

/** Connects to a cluster; rejects (UnauthenticatedError, UnavailableError, …) when it cannot be used. */
export async function connect(options: ConnectOptions = {}): Promise<Fleet> {
  const coordinator = options.coordinator ?? DEFAULT_COORDINATOR;
  const addresses = parseCoordinatorAddresses(coordinator);
  const tls = loadTls(options.tls ?? {}, 'client');
  const client = new CoordinatorClient(addresses, { token: options.token, credentials: channelCredentials(tls), deadlineMs: options.deadlineMs });
  try {
    await client.clusterStatus();
  } catch (err) {
    client.close();
    throw err;
  }
  return new Fleet(client, { coordinator: addresses.join(','), token: options.token, tls, gateway: options.gateway });
}

export { Fleet, Artifacts, Deployments, Jobs } from './fleet.js';
export type { TenantOptions, PutOptions, DownloadOptions, DownloadedJson, VersionSelector, WaitDeploymentOptions, LogsOptions, FleetInferOptions } from './fleet.js';
export type { VersionMetadata, PushContent } from './artifacts.js';
export type { Progress, ProgressFactory } from './artifact-transfer.js';
export { DEFAULT_GATEWAY, type InferRequest, type InferResponse, type InferTensor } from './infer.js';
export { DEFAULT_COORDINATOR, CoordinatorClient } from '../client.js';
export type { DeploymentInput, JobInput, JobOutputInput, ResourceInput } from '../workload-spec.js';
export type { ArtifactJson, ArtifactVersionJson, ArtifactSummaryJson, ArtifactMetadataJson } from '../views/artifacts.js';
export type { DeploymentJson } from '../views/deployments.js';
export type { JobJson } from '../views/jobs.js';
export type { AllocationJson } from '../views/allocations.js';
export type { TlsFiles } from '../tls.js';
export {
  MlfleetError,
  InvalidArgumentError,
  NotFoundError,
  AlreadyExistsError,
  FailedPreconditionError,
  ConflictError,
  ResourceExhaustedError,
  DeadlineExceededError,
  DataLossError,
  PermissionDeniedError,
  UnauthenticatedError,
  NotLeaderError,
  UnavailableError,
  InternalError,
} from '../errors.js';
export { InterruptedError } from '../interrupted-error.js';
