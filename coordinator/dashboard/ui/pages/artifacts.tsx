// Models and datasets: each name's versions, aliases and sizes; a version's lineage (the job
// and dataset versions that made it) and, for models, the deployments that use it.
import { get, items } from '../api.js';
import { ErrorNote, Link, Loading } from '../components.js';
import { ago, bytes, shortDigest } from '../format.js';
import { usePoll } from '../hooks.js';
import type { ArtifactJson, ArtifactSummaryJson, DeploymentJson } from '../types.js';

const REFRESH_MS = 5_000;

export type ArtifactKind = 'models' | 'datasets';

function aliasList(aliases: Record<string, number>): string {
  return Object.entries(aliases)
    .map(([alias, version]) => `${alias}→${version}`)
    .join(', ');
}

export function Artifacts(props: { kind: ArtifactKind }) {
  const list = usePoll((signal) => items<ArtifactSummaryJson>(`/${props.kind}`, signal), REFRESH_MS, [props.kind]);
  const title = props.kind === 'models' ? 'Models' : 'Datasets';
  if (!list.data) return list.error ? <ErrorNote error={list.error} /> : <Loading />;
  return (
    <section>
      <h2>{title}</h2>
      <ErrorNote error={list.error} />
      {list.data.length === 0 && <p class="muted">None yet: mlfleetctl {props.kind} push NAME PATH.</p>}
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Latest</th>
            <th>Versions</th>
            <th>Size</th>
            <th>Aliases</th>
            <th>Updated</th>
          </tr>
        </thead>
        <tbody>
          {list.data.map((a) => (
            <tr key={a.name} data-artifact={a.name}>
              <td>
                <Link href={`/${props.kind}/${encodeURIComponent(a.name)}`}>{a.name}</Link>
              </td>
              <td>{a.latestVersion}</td>
              <td>{a.versions}</td>
              <td>{bytes(a.totalBytes)}</td>
              <td>{aliasList(a.aliases)}</td>
              <td>{ago(a.updatedAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function ArtifactDetail(props: { kind: ArtifactKind; name: string }) {
  const path = `/${props.kind}/${encodeURIComponent(props.name)}`;
  const artifact = usePoll((signal) => get<ArtifactJson>(path, signal), REFRESH_MS, [path]);
  const deployments = usePoll((signal) => (props.kind === 'models' ? items<DeploymentJson>('/deployments', signal) : Promise.resolve([])), REFRESH_MS, [props.kind]);
  if (!artifact.data) return artifact.error ? <ErrorNote error={artifact.error} /> : <Loading />;
  const a = artifact.data;
  const usedBy = (version: number) =>
    (deployments.data ?? []).filter((d) => d.resolvedVersion === version && (d.model === a.name || d.model.startsWith(`${a.name}:`) || d.model.startsWith(`${a.name}@`)));
  return (
    <section>
      <h2>
        <Link href={`/${props.kind}`}>{props.kind}</Link> / {a.name}
      </h2>
      <p>Aliases: {aliasList(a.aliases) || <span class="muted">none</span>}</p>
      <table>
        <thead>
          <tr>
            <th>Version</th>
            <th>Digest</th>
            <th>Size</th>
            <th>Format</th>
            <th>Made by</th>
            {props.kind === 'models' && <th>Used by</th>}
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {[...a.versions].reverse().map((v) => (
            <tr key={v.version} data-version={v.version}>
              <td>{v.version}</td>
              <td class="mono">{shortDigest(v.digest)}</td>
              <td>{bytes(v.sizeBytes)}</td>
              <td>{v.format}</td>
              <td>
                {v.metadata.sourceJob ? <Link href={`/jobs/${encodeURIComponent(v.metadata.sourceJob.replace(/^job\//, ''))}`}>{v.metadata.sourceJob}</Link> : <span class="muted">pushed</span>}
                {v.metadata.sourceDatasets.map((ds) => (
                  <Link key={ds} href={`/datasets/${encodeURIComponent(ds.split(':')[0] ?? ds)}`} class="chip">
                    {ds}
                  </Link>
                ))}
              </td>
              {props.kind === 'models' && (
                <td>
                  {usedBy(v.version).map((d) => (
                    <span key={d.name} class="chip">
                      {d.name}
                    </span>
                  ))}
                </td>
              )}
              <td>{ago(v.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
