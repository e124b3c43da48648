// One node: capacity and use, per-GPU memory, labels, its cache and its allocations.
import { get, items } from '../api.js';
import { Bar, ErrorNote, Link, Loading, isAdmin, useSession } from '../components.js';
import { ago, bytes, cpu, shortDigest, shortId } from '../format.js';
import { usePoll } from '../hooks.js';
import type { AllocationJson, NodeJson } from '../types.js';
import { NodeActions } from './node-actions.js';
import { GpuBars, gpuUse } from './overview.js';

const REFRESH_MS = 3_000;

export function NodeDetail(props: { name: string }) {
  const who = useSession();
  const path = `/nodes/${encodeURIComponent(props.name)}`;
  const node = usePoll((signal) => get<NodeJson>(path, signal), REFRESH_MS, [path]);
  const allocations = usePoll((signal) => items<AllocationJson>(`/allocations?node=${encodeURIComponent(props.name)}`, signal), REFRESH_MS, [props.name]);
  if (!node.data) return node.error ? <ErrorNote error={node.error} /> : <Loading />;
  const n = node.data;
  const placed = (allocations.data ?? []).filter((a) => a.node === n.name);
  return (
    <section data-testid="node-detail" data-node={n.name}>
      <h2>
        <Link href="/">nodes</Link> / {n.name} <span class={`state ${n.status.toLowerCase()}`}>{n.status.toLowerCase()}</span>
        {n.cordoned && <span class="state cordoned">cordoned</span>}
      </h2>
      {isAdmin(who) && <NodeActions node={n} done={node.reload} />}
      <dl>
        <dt>Address</dt>
        <dd>{n.address || '-'}</dd>
        <dt>Heartbeat</dt>
        <dd>{ago(n.lastHeartbeat)} ago</dd>
        <dt>Labels</dt>
        <dd>{Object.entries(n.labels).map(([k, v]) => <span key={k} class="chip">{`${k}=${v}`}</span>)}</dd>
        <dt>CPU</dt>
        <dd>
          <Bar used={n.allocated.cpuMillis} total={n.capacity.cpuMillis} label={`${cpu(n.allocated.cpuMillis)}/${cpu(n.capacity.cpuMillis)}`} />
        </dd>
        <dt>Memory</dt>
        <dd>
          <Bar used={n.allocated.memoryBytes} total={n.capacity.memoryBytes} label={`${bytes(n.allocated.memoryBytes)}/${bytes(n.capacity.memoryBytes)}`} />
        </dd>
        <dt>GPUs</dt>
        <dd>
          <GpuBars node={n} used={gpuUse(placed).get(n.name)} />
          {n.capacity.gpus.map((g) => (
            <div key={g.index} class="muted">
              {g.index}: {g.model} {bytes(g.memoryBytes)}
            </div>
          ))}
        </dd>
      </dl>
      <h3>Cache</h3>
      {!n.cache || n.cache.length === 0 ? (
        <p class="muted">Nothing cached.</p>
      ) : (
        <table>
          <tbody>
            {n.cache.map((c) => (
              <tr key={c.digest}>
                <td class="mono">{shortDigest(c.digest)}</td>
                <td>{bytes(c.sizeBytes)}</td>
                <td>{c.inUse ? 'in use' : ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h3>Allocations</h3>
      <ErrorNote error={allocations.error} />
      <table>
        <tbody>
          {placed.map((a) => (
            <tr key={a.id}>
              <td>
                <Link href={`/allocations/${a.id}`}>{shortId(a.id)}</Link>
              </td>
              <td>
                {a.kind}/{a.workload}
              </td>
              <td>{a.status}</td>
              <td>{a.gpuIndexes.length ? `GPU ${a.gpuIndexes.join(',')}` : ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
