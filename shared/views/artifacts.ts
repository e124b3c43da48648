// The -o json shape of mlfleetctl and the REST API (coordinator/rest/): one copy for both.
// Moved from scripts/cli/views/artifacts.ts, which keeps the table and detail renderings.
import type { ArtifactKind } from '../artifact-ref.js';
import type { Artifact, ArtifactMetadata, ArtifactSummary, ArtifactVersion } from '../proto.js';
import { isoOrNull, sortedRecord } from './json.js';

/** What a model is, as its metadata describes it (and as a job's output model will be). */
export interface ModelDescriptionJson {
  type: string;
  inputFormat: string;
  outputFormat: string;
  /** 0 when unknown. */
  accuracy: number;
  labels: Record<string, string>;
}

export interface ArtifactMetadataJson extends ModelDescriptionJson {
  /** Lineage of a version a job pushed: "job/NAME" and the dataset versions it read ("name:3"); '' and [] otherwise. */
  sourceJob: string;
  sourceDatasets: string[];
}

export interface ArtifactVersionJson {
  name: string;
  version: number;
  /** sha256:<hex> */
  digest: string;
  sizeBytes: number;
  format: string;
  /** The content is a directory (stored as a tar; `pull` unpacks it). */
  directory: boolean;
  /** ISO-8601; null when the coordinator did not say. */
  createdAt: string | null;
  metadata: ArtifactMetadataJson;
}

export interface ArtifactJson {
  name: string;
  /** Oldest first. */
  versions: Omit<ArtifactVersionJson, 'name'>[];
  /** alias → version */
  aliases: Record<string, number>;
  /** Models: how many versions are kept; null when every version is. */
  retention?: { keep: number; keepAliased: boolean } | null;
}

export interface ArtifactSummaryJson {
  name: string;
  latestVersion: number;
  versions: number;
  totalBytes: number;
  aliases: Record<string, number>;
  updatedAt: string | null;
}

export function modelDescriptionJson(metadata: ArtifactMetadata | null | undefined): ModelDescriptionJson {
  return {
    type: metadata?.type ?? '',
    inputFormat: metadata?.inputFormat ?? '',
    outputFormat: metadata?.outputFormat ?? '',
    accuracy: metadata?.accuracy ?? 0,
    labels: sortedRecord(metadata?.labels ?? {}),
  };
}

export function metadataJson(metadata: ArtifactMetadata | null): ArtifactMetadataJson {
  return {
    ...modelDescriptionJson(metadata),
    sourceJob: metadata?.sourceJob ?? '',
    sourceDatasets: [...(metadata?.sourceDatasets ?? [])],
  };
}

export function artifactVersionJson(version: ArtifactVersion): ArtifactVersionJson {
  return {
    name: version.name,
    version: version.version,
    digest: version.digest,
    sizeBytes: version.sizeBytes,
    format: version.format,
    directory: version.directory,
    createdAt: isoOrNull(version.createdAtMs),
    metadata: metadataJson(version.metadata),
  };
}

export function sortedAliases(aliases: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(aliases).sort(([a], [b]) => a.localeCompare(b)));
}

/** Models carry their retention (null: every version kept); datasets have none. */
export function artifactJson(artifact: Artifact, kind?: ArtifactKind): ArtifactJson {
  return {
    name: artifact.name,
    versions: artifact.versions.map((v) => {
      const { name: _name, ...rest } = artifactVersionJson(v);
      return rest;
    }),
    aliases: sortedAliases(artifact.aliases ?? {}),
    ...(kind === 'model' ? { retention: artifact.retention ? { keep: artifact.retention.keep, keepAliased: artifact.retention.keepAliased } : null } : {}),
  };
}

export function artifactSummaryJson(a: ArtifactSummary): ArtifactSummaryJson {
  return {
    name: a.name,
    latestVersion: a.latestVersion,
    versions: a.versions,
    totalBytes: a.totalBytes,
    aliases: sortedAliases(a.aliases ?? {}),
    updatedAt: isoOrNull(a.updatedAtMs),
  };
}
