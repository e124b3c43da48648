// Jobs: status, attempts, partitions and gang ranks; one job's logs follow live.
import { items, send } from '../api.js';
import { ConfirmButton, ErrorNote, Link, Loading, mayOperate, useSession } from '../components.js';
import { ago } from '../format.js';
import { usePoll } from '../hooks.js';
import type { JobJson } from '../types.js';
import { FollowLogs } from './logs.js';

const REFRESH_MS = 2_000;
const FINISHED = new Set(['succeeded', 'failed', 'cancelled']);

export function Jobs(props: { selected?: string }) {
  const who = useSession();
  const list = usePoll((signal) => items<JobJson>('/jobs', signal), REFRESH_MS);
  if (!list.data) return list.error ? <ErrorNote error={list.error} /> : <Loading />;
  const selected = props.selected ? list.data.find((j) => j.name === props.selected) : undefined;
  return (
    <section>
      <h2>Jobs</h2>
      <ErrorNote error={list.error} />
      {list.data.length === 0 && <p class="muted">No jobs yet: mlfleetctl jobs run, or apply a YAML spec.</p>}
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Tenant</th>
            <th>Status</th>
            <th>Attempts</th>
            <th>Partitions</th>
            <th>Workers (rank → node)</th>
            <th>Age</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {list.data.map((j) => (
            <tr key={j.name} data-job={j.name} data-status={j.status} class={j.name === props.selected ? 'selected' : ''}>
              <td>
                <Link href={`/jobs/${encodeURIComponent(j.name)}`}>{j.name}</Link>
              </td>
              <td>{j.tenant}</td>
              <td>
                <span class={`state ${j.status}`} title={j.message}>
                  {j.status}
                </span>
              </td>
              <td>
                {j.attempts}/{j.maxRetries + 1}
              </td>
              <td>{j.partitions || '-'}</td>
              <td>
                {j.allocations.map((a) => (
                  <Link key={a.id} href={`/allocations/${a.id}`} class={`chip ${a.status}`}>
                    {a.rank} → {a.node || 'unplaced'}
                  </Link>
                ))}
              </td>
              <td>{ago(j.createdAt)}</td>
              <td>
                {mayOperate(who) && !FINISHED.has(j.status) && (
                  <ConfirmButton label="Cancel" danger question={`Cancel job ${j.name}? Its workers are stopped.`} action={() => send('POST', `/jobs/${encodeURIComponent(j.name)}/cancel`)} done={list.reload} />
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {props.selected && (
        <section class="detail">
          <h3>Logs of {props.selected}</h3>
          {selected?.message && <p class="muted">{selected.message}</p>}
          <FollowLogs path={`/jobs/${encodeURIComponent(props.selected)}/logs`} finished={selected !== undefined && FINISHED.has(selected.status)} />
        </section>
      )}
    </section>
  );
}
