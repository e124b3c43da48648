// Deployments: replicas and where they run, rollout progress, what the gateways measure
// (request rate, p50), the autoscaler's state; scale behind a confirmation.
import { useState } from 'preact/hooks';
import { items, send } from '../api.js';
import { ConfirmButton, ErrorNote, Link, Loading, mayOperate, useSession } from '../components.js';
import { usePoll } from '../hooks.js';
import type { AllocationJson, DeploymentJson } from '../types.js';

const REFRESH_MS = 2_000;

function Replicas(props: { allocations: AllocationJson[] }) {
  const live = props.allocations.filter((a) => a.desired !== 'stop');
  if (live.length === 0) return <span class="muted">none</span>;
  return (
    <span class="replicas">
      {live.map((a) => (
        <Link key={a.id} href={`/allocations/${a.id}`} class={`chip ${a.status}`}>
          {a.node || 'unplaced'} · {a.status}
        </Link>
      ))}
    </span>
  );
}

function Rollout(props: { d: DeploymentJson }) {
  const { d } = props;
  const current = d.allocations.filter((a) => a.desired !== 'stop' && a.generation === d.generation && a.status === 'ready').length;
  const target = Math.max(1, d.replicas);
  return (
    <div class="rollout" title={`${current} of ${d.replicas} replicas ready at generation ${d.generation}`}>
      <div class="bar">
        <div class="fill" style={{ width: `${Math.min(100, (current / target) * 100).toFixed(0)}%` }} />
        <span>
          gen {d.generation}: {current}/{d.replicas}
          {d.canary ? ` · canary ${d.canary.percent}%` : ''}
        </span>
      </div>
    </div>
  );
}

function Scale(props: { d: DeploymentJson; done: () => void }) {
  const [replicas, setReplicas] = useState(props.d.replicas);
  return (
    <ConfirmButton label="Scale" question={`Scale ${props.d.name} from ${props.d.replicas} replicas?`} action={() => send('POST', `/deployments/${encodeURIComponent(props.d.name)}/scale`, { replicas })} done={props.done}>
      <label>
        Replicas{' '}
        <input type="number" min={0} value={replicas} onInput={(e) => setReplicas(Number((e.currentTarget as HTMLInputElement).value))} />
      </label>
    </ConfirmButton>
  );
}

function Autoscaling(props: { d: DeploymentJson }) {
  const { autoscaling, autoscaler } = props.d;
  if (!autoscaling) return <span class="muted">fixed</span>;
  return (
    <span title={autoscaler?.lastDecision ?? ''}>
      {autoscaling.minReplicas}–{autoscaling.maxReplicas}
      {autoscaler ? ` → ${autoscaler.desiredReplicas}${autoscaler.panicking ? ' (panic)' : ''}${autoscaler.blocked ? ` · ${autoscaler.blocked}` : ''}` : ''}
    </span>
  );
}

export function Deployments() {
  const who = useSession();
  const list = usePoll((signal) => items<DeploymentJson>('/deployments', signal), REFRESH_MS);
  if (!list.data) return list.error ? <ErrorNote error={list.error} /> : <Loading />;
  return (
    <section>
      <h2>Deployments</h2>
      <ErrorNote error={list.error} />
      {list.data.length === 0 && <p class="muted">No deployments yet: mlfleetctl deploy MODEL, or apply a YAML spec.</p>}
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Tenant</th>
            <th>Model</th>
            <th>Status</th>
            <th>Ready</th>
            <th>Rollout</th>
            <th>Req/s</th>
            <th>p50</th>
            <th>Autoscaling</th>
            <th>Replicas</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {list.data.map((d) => {
            const t = d.traffic;
            return (
              <tr key={d.name} data-deployment={d.name} data-status={d.status}>
                <td>{d.name}</td>
                <td>{d.tenant}</td>
                <td>
                  {d.model}
                  {d.resolvedVersion ? <span class="muted"> (v{d.resolvedVersion})</span> : null}
                </td>
                <td>
                  <span class={`state ${d.status}`} title={d.message}>
                    {d.status}
                  </span>
                </td>
                <td data-ready={`${d.readyReplicas}/${d.replicas}`}>
                  {d.readyReplicas}/{d.replicas}
                </td>
                <td>
                  <Rollout d={d} />
                </td>
                <td data-rate={t ? t.requestRate.toFixed(1) : ''} title={t ? `${(t.errorRate * 100).toFixed(1)}% errors` : 'no gateway measured it lately'}>
                  {t ? t.requestRate.toFixed(1) : '-'}
                </td>
                <td data-p50={t ? t.p50Ms.toFixed(1) : ''} title={t ? `p99 ${t.p99Ms.toFixed(1)} ms` : ''}>
                  {t ? `${t.p50Ms.toFixed(1)} ms` : '-'}
                </td>
                <td>
                  <Autoscaling d={d} />
                </td>
                <td>
                  <Replicas allocations={d.allocations} />
                </td>
                <td>{mayOperate(who) && <Scale d={d} done={list.reload} />}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </section>
  );
}
