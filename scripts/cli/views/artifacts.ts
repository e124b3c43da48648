// Models and datasets as mlfleetctl shows them: the stable -o json shapes (DESIGN "Interfaces
// users touch": `models show -o json` is `name`, `versions`, `aliases`) and their tables. Both
// kinds share every view; only the words differ.
import type { ArtifactKind } from '../../../shared/artifact-ref.js';
import type { Artifact, ArtifactSummary, ArtifactVersion } from '../../../shared/proto.js';
import { formatBytes } from '../../../shared/units.js';
import { ago, formatLabels, isoOrNull, keyValues, table, type Printable } from '../output.js';
import { artifactJson, artifactSummaryJson, artifactVersionJson, modelDescriptionJson, type ArtifactJson, type ArtifactMetadataJson, type ArtifactSummaryJson, type ArtifactVersionJson, type ModelDescriptionJson, metadataJson, sortedAliases } from '../../../shared/views/artifacts.js';

export { artifactJson, artifactVersionJson, modelDescriptionJson, type ArtifactJson, type ArtifactMetadataJson, type ArtifactSummaryJson, type ArtifactVersionJson, type ModelDescriptionJson };

/** "97.8MiB": sizes people read, in binary units. */
export function humanBytes(bytes: number): string {
  return `${formatBytes(bytes)}B`;
}

/** "keep 5 newest (aliased kept besides)", or "keep all". */
export function formatRetention(retention: ArtifactJson['retention']): string {
  if (!retention) return 'keep all';
  return `keep ${retention.keep} newest${retention.keepAliased ? ' unaliased (aliased versions kept besides)' : ' (aliased versions count, and are never removed)'}`;
}

/** "production=3, staging=4", or "-". */
function formatAliases(aliases: Record<string, number>): string {
  const entries = Object.entries(sortedAliases(aliases));
  return entries.length === 0 ? '-' : entries.map(([alias, version]) => `${alias}=${version}`).join(', ');
}

/** sha256:0123456789ab: enough to tell versions apart in a table; -o json has the whole digest. */
function shortDigest(digest: string): string {
  const [algorithm, hex] = digest.split(':');
  return hex ? `${algorithm}:${hex.slice(0, 12)}` : digest;
}

/** `models ls`: a JSON array, or one row per name. */
export function artifactListView(artifacts: readonly ArtifactSummary[], now = Date.now()): Printable {
  const list: ArtifactSummaryJson[] = artifacts.map(artifactSummaryJson);
  return {
    data: list,
    table: () =>
      table(
        ['NAME', 'LATEST', 'VERSIONS', 'SIZE', 'ALIASES', 'UPDATED'],
        artifacts.map((a, i) => [
          a.name,
          a.latestVersion > 0 ? String(a.latestVersion) : '-',
          String(a.versions),
          humanBytes(a.totalBytes),
          formatAliases(list[i]!.aliases),
          ago(a.updatedAtMs, now),
        ]),
      ),
  };
}

/** `models show`: the artifact (its versions oldest first), or a header and one row per version. */
export function artifactDetailView(artifact: Artifact, now = Date.now(), kind?: ArtifactKind): Printable {
  const data = artifactJson(artifact, kind);
  const aliasesOf = (version: number) =>
    Object.entries(data.aliases)
      .filter(([, v]) => v === version)
      .map(([alias]) => alias);
  return {
    data,
    table: () => {
      const head = keyValues([
        ['Name', data.name],
        ['Aliases', formatAliases(data.aliases)],
        // Only when set, so that models that keep every version read as before.
        ...(data.retention ? [['Retention', formatRetention(data.retention)] as [string, string]] : []),
      ]);
      if (artifact.versions.length === 0) return `${head}\nno versions`;
      const rows = artifact.versions.map((v) => {
        const m = metadataJson(v.metadata);
        return [
          String(v.version),
          v.format + (v.directory ? ' (dir)' : ''),
          humanBytes(v.sizeBytes),
          shortDigest(v.digest),
          ago(v.createdAtMs, now),
          aliasesOf(v.version).join(',') || '-',
          m.type || '-',
          m.inputFormat || m.outputFormat ? `${m.inputFormat || '?'} → ${m.outputFormat || '?'}` : '-',
          m.accuracy > 0 ? String(m.accuracy) : '-',
          Object.keys(m.labels).length > 0 ? formatLabels(m.labels) : '-',
          m.sourceJob ? [m.sourceJob, ...m.sourceDatasets].join(' ← ') : '-',
        ];
      });
      // SOURCE only when some version has lineage (a job pushed it), so hand-pushed models read as before.
      const lineage = rows.some((row) => row.at(-1) !== '-');
      const columns = ['VERSION', 'FORMAT', 'SIZE', 'DIGEST', 'CREATED', 'ALIASES', 'TYPE', 'INPUT → OUTPUT', 'ACCURACY', 'META', ...(lineage ? ['SOURCE'] : [])];
      return `${head}\n${table(columns, lineage ? rows : rows.map((row) => row.slice(0, -1)))}`;
    },
  };
}

/** `models push`: the new version, or one line naming it. */
export function pushedView(version: ArtifactVersion): Printable {
  return {
    data: artifactVersionJson(version),
    table: () => `pushed ${version.name}:${version.version} (${version.digest}, ${humanBytes(version.sizeBytes)})`,
  };
}

/** `models pull`: what was written where, or one line saying so. */
export function pulledView(version: ArtifactVersion, path: string, resumedFrom: number): Printable {
  return {
    data: { ...artifactVersionJson(version), path },
    table: () =>
      `pulled ${version.name}:${version.version} (${version.digest}, ${humanBytes(version.sizeBytes)}${resumedFrom > 0 ? `, resumed at ${humanBytes(resumedFrom)}` : ''}) to ${path}`,
  };
}

/** `models alias`: the artifact as it is now, or one line. */
export function aliasedView(kind: ArtifactKind, artifact: Artifact, alias: string, version: number): Printable {
  return { data: artifactJson(artifact), table: () => `${kind} ${artifact.name}@${alias} now points at version ${version}` };
}

/** `models retention`: the model as it is now, or one line. */
export function retentionView(artifact: Artifact, removed: number[]): Printable {
  const data = artifactJson(artifact, 'model');
  return {
    data,
    table: () => `model ${artifact.name}: ${formatRetention(data.retention)}${removed.length > 0 ? `; removed version(s) ${removed.join(', ')}` : ''}`,
  };
}

/** `models rm`: the artifact as it is now, or one line. */
export function deletedView(kind: ArtifactKind, artifact: Artifact, version: number): Printable {
  return { data: artifactJson(artifact), table: () => `deleted ${kind} ${artifact.name}:${version}` };
}
