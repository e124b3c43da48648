// Loads proto/mlfleet/v1 at run time (one set of loader options for every process) and
// re-exports the generated message types under short names.
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType as AgentProto } from './gen/agent.js';
import type { ProtoGrpcType as ClusterProto } from './gen/cluster.js';
import type { ProtoGrpcType as NodesProto } from './gen/nodes.js';
import type { ProtoGrpcType as TenantsProto } from './gen/tenants.js';
import type { ProtoGrpcType as TokensProto } from './gen/tokens.js';
import type { ProtoGrpcType as EventsProto } from './gen/events.js';
import type { ProtoGrpcType as ArtifactsProto } from './gen/artifacts.js';
import type { ProtoGrpcType as WorkloadsProto } from './gen/workloads.js';
import type { ProtoGrpcType as StacksProto } from './gen/stacks.js';
import type { ProtoGrpcType as SelectionProto } from './gen/selection.js';
import type { ProtoGrpcType as DeliveryProto } from './gen/delivery.js';
import type { ProtoGrpcType as SourcesProto } from './gen/sources.js';

export const PROTO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../proto');
export const PROTO_FILES = [
  'mlfleet/v1/agent.proto',
  'mlfleet/v1/cluster.proto',
  'mlfleet/v1/nodes.proto',
  'mlfleet/v1/tenants.proto',
  'mlfleet/v1/tokens.proto',
  'mlfleet/v1/events.proto',
  'mlfleet/v1/artifacts.proto',
  'mlfleet/v1/workloads.proto',
  'mlfleet/v1/stacks.proto',
  'mlfleet/v1/selection.proto',
  'mlfleet/v1/delivery.proto',
  'mlfleet/v1/sources.proto',
];

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

type Proto = AgentProto & ClusterProto & NodesProto & TenantsProto & TokensProto & EventsProto & ArtifactsProto & WorkloadsProto & StacksProto & SelectionProto & DeliveryProto & SourcesProto;

let cached: Proto['mlfleet']['v1'] | undefined;

export function mlfleetV1(): Proto['mlfleet']['v1'] {
  if (!cached) {
    const definition = protoLoader.loadSync(PROTO_FILES, LOADER_OPTIONS);
    cached = (grpc.loadPackageDefinition(definition) as unknown as Proto).mlfleet.v1;
  }
  return cached;
}

export type { AgentMessage__Output as AgentMessage } from './gen/mlfleet/v1/AgentMessage.js';
export type { CoordinatorMessage } from './gen/mlfleet/v1/CoordinatorMessage.js';
export type { CoordinatorMessage__Output as CoordinatorMessageOut } from './gen/mlfleet/v1/CoordinatorMessage.js';
export type { AgentMessage as AgentMessageIn } from './gen/mlfleet/v1/AgentMessage.js';
export type { Hello__Output as Hello } from './gen/mlfleet/v1/Hello.js';
export type { Heartbeat__Output as Heartbeat } from './gen/mlfleet/v1/Heartbeat.js';
export type { Capacity__Output as Capacity } from './gen/mlfleet/v1/Capacity.js';
export type { GpuDevice__Output as GpuDevice } from './gen/mlfleet/v1/GpuDevice.js';
export type { Nic__Output as Nic } from './gen/mlfleet/v1/Nic.js';
export type { Disk__Output as Disk } from './gen/mlfleet/v1/Disk.js';
export type { Resources__Output as Resources } from './gen/mlfleet/v1/Resources.js';
export type { Usage__Output as Usage } from './gen/mlfleet/v1/Usage.js';
export type { CacheEntry__Output as CacheEntry } from './gen/mlfleet/v1/CacheEntry.js';
export type { DeliveryCounters__Output as DeliveryCounters } from './gen/mlfleet/v1/DeliveryCounters.js';
export type { BlobLocation__Output as BlobLocation } from './gen/mlfleet/v1/BlobLocation.js';
export type { BlobSource__Output as BlobSourceInfo } from './gen/mlfleet/v1/BlobSource.js';
export type { PushTicket__Output as PushTicket } from './gen/mlfleet/v1/PushTicket.js';
export type { DeliveryServiceClient } from './gen/mlfleet/v1/DeliveryService.js';
export type { Node__Output as Node } from './gen/mlfleet/v1/Node.js';
export type { ClusterStatus__Output as ClusterStatus } from './gen/mlfleet/v1/ClusterStatus.js';
export type { AgentServiceClient } from './gen/mlfleet/v1/AgentService.js';
export type { ClusterServiceClient } from './gen/mlfleet/v1/ClusterService.js';
export type { NodeServiceClient } from './gen/mlfleet/v1/NodeService.js';
export type { Tenant__Output as Tenant } from './gen/mlfleet/v1/Tenant.js';
export type { Quota__Output as Quota } from './gen/mlfleet/v1/Quota.js';
export type { TokenInfo__Output as TokenInfo } from './gen/mlfleet/v1/TokenInfo.js';
export type { AuditEvent__Output as AuditEvent } from './gen/mlfleet/v1/AuditEvent.js';
export type { TenantServiceClient } from './gen/mlfleet/v1/TenantService.js';
export type { TokenServiceClient } from './gen/mlfleet/v1/TokenService.js';
export type { EventServiceClient } from './gen/mlfleet/v1/EventService.js';
export type { ArtifactVersion__Output as ArtifactVersion } from './gen/mlfleet/v1/ArtifactVersion.js';
export type { Artifact__Output as Artifact } from './gen/mlfleet/v1/Artifact.js';
export type { ArtifactMetadata__Output as ArtifactMetadata } from './gen/mlfleet/v1/ArtifactMetadata.js';
export type { ArtifactSummary__Output as ArtifactSummary } from './gen/mlfleet/v1/ArtifactSummary.js';
export type { PushRequest } from './gen/mlfleet/v1/PushRequest.js';
export type { PushHeader } from './gen/mlfleet/v1/PushHeader.js';
export type { DownloadResponse__Output as DownloadResponse } from './gen/mlfleet/v1/DownloadResponse.js';
export type { ModelServiceClient } from './gen/mlfleet/v1/ModelService.js';
export type { DatasetServiceClient } from './gen/mlfleet/v1/DatasetService.js';
export type { WorkloadEvent__Output as WorkloadEvent } from './gen/mlfleet/v1/WorkloadEvent.js';
export type { ResourceRequest__Output as ResourceRequest } from './gen/mlfleet/v1/ResourceRequest.js';
export type { DeploymentSpec__Output as DeploymentSpec } from './gen/mlfleet/v1/DeploymentSpec.js';
export type { Deployment__Output as Deployment } from './gen/mlfleet/v1/Deployment.js';
export type { AutoscalerView__Output as AutoscalerView } from './gen/mlfleet/v1/AutoscalerView.js';
export type { DeploymentTraffic__Output as DeploymentTraffic } from './gen/mlfleet/v1/DeploymentTraffic.js';
export type { GatewayLoad__Output as GatewayLoad } from './gen/mlfleet/v1/GatewayLoad.js';
export type { DeploymentLoad__Output as DeploymentLoad } from './gen/mlfleet/v1/DeploymentLoad.js';
export type { StartPhase__Output as StartPhase } from './gen/mlfleet/v1/StartPhase.js';
export type { JobSpec__Output as JobSpec } from './gen/mlfleet/v1/JobSpec.js';
export type { JobOutput__Output as JobOutput } from './gen/mlfleet/v1/JobOutput.js';
export type { Job__Output as Job } from './gen/mlfleet/v1/Job.js';
export type { AllocationInfo__Output as AllocationInfo } from './gen/mlfleet/v1/AllocationInfo.js';
export type { Allocation__Output as Allocation } from './gen/mlfleet/v1/Allocation.js';
export type { AllocationStatus__Output as AllocationStatus } from './gen/mlfleet/v1/AllocationStatus.js';
export type { DeploymentServiceClient } from './gen/mlfleet/v1/DeploymentService.js';
export type { JobServiceClient } from './gen/mlfleet/v1/JobService.js';
export type { AllocationServiceClient } from './gen/mlfleet/v1/AllocationService.js';
export type { Stack__Output as Stack } from './gen/mlfleet/v1/Stack.js';
export type { StackServiceClient } from './gen/mlfleet/v1/StackService.js';
export type { SelectRequest__Output as SelectRequest } from './gen/mlfleet/v1/SelectRequest.js';
export type { SelectResponse__Output as SelectResponse } from './gen/mlfleet/v1/SelectResponse.js';
export type { SelectionCandidate__Output as SelectionCandidate } from './gen/mlfleet/v1/SelectionCandidate.js';
export type { SelectionServiceClient } from './gen/mlfleet/v1/SelectionService.js';
export type { Source__Output as Source } from './gen/mlfleet/v1/Source.js';
export type { SourceSpec__Output as SourceSpec } from './gen/mlfleet/v1/SourceSpec.js';
export type { SourceStatus__Output as SourceStatus } from './gen/mlfleet/v1/SourceStatus.js';
export type { SourceImport__Output as SourceImport } from './gen/mlfleet/v1/SourceImport.js';
export type { SyncSourceResponse__Output as SyncSourceResponse } from './gen/mlfleet/v1/SyncSourceResponse.js';
export type { SourceServiceClient } from './gen/mlfleet/v1/SourceService.js';
