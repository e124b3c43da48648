// A model or dataset as the store keeps it: one record per (kind, tenant, name) holding every
// version and the aliases, so a push, an alias move or a delete is one compare-and-swap.
import type { Artifact, ArtifactMetadata, ArtifactSummary, ArtifactVersion } from '../../shared/proto.js';

export type { ArtifactKind } from '../../shared/artifact-ref.js';
import type { ArtifactKind } from '../../shared/artifact-ref.js';
import type { RetentionPolicy } from './retention.js';

/** The label recording which attempt of the source job made a version. */
export const SOURCE_ATTEMPT_LABEL = 'source-attempt';
/** The label recording which job allocation pushed a model version: a repeated push gets that version back. */
export const SOURCE_ALLOCATION_LABEL = 'source-allocation';

export interface VersionRecord {
  version: number;
  digest: string;
  sizeBytes: number;
  format: string;
  directory: boolean;
  createdAtMs: number;
  createdBy: string;
  metadata: ArtifactMetadata;
}

export interface ArtifactRecord {
  kind: ArtifactKind;
  tenant: string;
  name: string;
  versions: VersionRecord[];
  aliases: Record<string, number>;
  /** Versions are never renumbered: a deleted version's number is not given out again. */
  lastVersion: number;
  updatedAtMs: number;
  /** Models only: how many versions are kept (retention.ts); absent when every version is. */
  retention?: RetentionPolicy;
}

export function toProtoVersion(record: ArtifactRecord, version: VersionRecord): ArtifactVersion {
  return { name: record.name, tenant: record.tenant, ...version };
}

export function toProtoArtifact(record: ArtifactRecord): Artifact {
  return {
    name: record.name,
    tenant: record.tenant,
    versions: record.versions.map((v) => toProtoVersion(record, v)),
    aliases: record.aliases,
    retention: record.retention ? { keep: record.retention.keep, keepAliased: record.retention.keepAliased } : null,
  };
}

export function toSummary(record: ArtifactRecord): ArtifactSummary {
  return {
    name: record.name,
    tenant: record.tenant,
    latestVersion: record.versions.at(-1)?.version ?? 0,
    versions: record.versions.length,
    totalBytes: record.versions.reduce((sum, v) => sum + v.sizeBytes, 0),
    aliases: record.aliases,
    updatedAtMs: record.updatedAtMs,
  };
}
