// The overview: every node with its CPU, memory and per-GPU memory use, its state and what it
// caches, in a virtual list (thousands of nodes paint as fast as ten); then the tenants'
// quota use. Nodes come a page at a time: the first page paints, the rest follow.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { items, page } from '../api.js';
import { Bar, ErrorNote, Link, Loading, VirtualList, useSession, isAdmin } from '../components.js';
import { bytes, cpu } from '../format.js';
import { usePoll } from '../hooks.js';
import type { AllocationJson, NodeJson, TenantJson } from '../types.js';
import { NodeActions } from './node-actions.js';

const FIRST_PAGE = 200;
const PAGE = 1000;
const REFRESH_MS = 5_000;

/** Every node, page by page; `onPage` sees the list grow. */
async function allNodes(signal: AbortSignal, onPage: (nodes: NodeJson[]) => void): Promise<NodeJson[]> {
  const nodes: NodeJson[] = [];
  let cursor: string | undefined;
  let limit = FIRST_PAGE;
  do {
    const next = await page<NodeJson>('/nodes', limit, cursor, signal);
    nodes.push(...next.items);
    onPage([...nodes]);
    cursor = next.nextCursor || undefined;
    limit = PAGE;
  } while (cursor);
  return nodes;
}

/** GPU memory in use per node and GPU index, from the allocations placed there. */
export function gpuUse(allocations: readonly AllocationJson[]): Map<string, Map<number, number>> {
  const use = new Map<string, Map<number, number>>();
  for (const a of allocations) {
    if (!a.node || a.gpuIndexes.length === 0 || a.desired === 'stop') continue;
    const perGpu = use.get(a.node) ?? new Map<number, number>();
    for (const index of a.gpuIndexes) perGpu.set(index, (perGpu.get(index) ?? 0) + a.resources.gpuMemoryBytes);
    use.set(a.node, perGpu);
  }
  return use;
}

function NodeState(props: { node: NodeJson }) {
  const { node } = props;
  const state = node.status.toLowerCase();
  return (
    <span class={`state ${state}`} data-state={state}>
      {state}
      {node.cordoned && (
        <span class="state cordoned" data-cordoned="yes">
          cordoned
        </span>
      )}
    </span>
  );
}

export function GpuBars(props: { node: NodeJson; used: Map<number, number> | undefined }) {
  const gpus = props.node.capacity.gpus;
  if (gpus.length === 0) return <span class="muted">no GPUs</span>;
  return (
    <div class="gpus">
      {gpus.map((g) => {
        const used = props.used?.get(g.index) ?? 0;
        return <Bar key={g.index} used={used} total={g.memoryBytes} label={`${g.index}`} title={`GPU ${g.index} ${g.model}: ${bytes(used)} of ${bytes(g.memoryBytes)}`} />;
      })}
    </div>
  );
}

function NodeRow(props: { node: NodeJson; gpus: Map<number, number> | undefined; reload: () => void }) {
  const { node } = props;
  const who = useSession();
  return (
    <div class="node-row" data-testid="node-row" data-node={node.name}>
      <Link href={`/nodes/${encodeURIComponent(node.name)}`} class="name">
        {node.name}
      </Link>
      <NodeState node={node} />
      <Bar used={node.allocated.cpuMillis} total={node.capacity.cpuMillis} label={`CPU ${cpu(node.allocated.cpuMillis)}/${cpu(node.capacity.cpuMillis)}`} />
      <Bar used={node.allocated.memoryBytes} total={node.capacity.memoryBytes} label={`Mem ${bytes(node.allocated.memoryBytes)}/${bytes(node.capacity.memoryBytes)}`} />
      <GpuBars node={node} used={props.gpus} />
      <span class="muted cache" data-cache={node.cacheEntries} title={`${node.cacheEntries} artifacts cached, ${bytes(node.cacheBytes)}`}>
        {node.cacheEntries > 0 ? `${node.cacheEntries} cached · ${bytes(node.cacheBytes)}` : 'nothing cached'}
      </span>
      <span class="actions">{isAdmin(who) && <NodeActions node={node} done={props.reload} />}</span>
    </div>
  );
}

function Nodes() {
  const [nodes, setNodes] = useState<NodeJson[] | undefined>(undefined);
  const [filter, setFilter] = useState('');
  const listed = usePoll((signal) => allNodes(signal, (some) => setNodes((old) => (old && old.length > some.length ? old : some))), REFRESH_MS);
  const allocations = usePoll((signal) => items<AllocationJson>('/allocations', signal).catch(() => []), REFRESH_MS);
  useEffect(() => {
    if (listed.data) setNodes(listed.data);
  }, [listed.data]);
  const use = useMemo(() => gpuUse(allocations.data ?? []), [allocations.data]);
  const shown = useMemo(() => (nodes && filter ? nodes.filter((n) => n.name.includes(filter)) : nodes), [nodes, filter]);
  if (!nodes) return listed.error ? <ErrorNote error={listed.error} /> : <Loading />;
  const counts = { ready: 0, down: 0, cordoned: 0 };
  for (const n of nodes) {
    if (n.cordoned) counts.cordoned++;
    if (n.status.toLowerCase() === 'ready') counts.ready++;
    else counts.down++;
  }
  return (
    <section>
      <h2>
        Nodes <span class="muted" data-testid="node-count">{nodes.length}</span>
      </h2>
      <p class="summary">
        <span class="state ready">{counts.ready} ready</span> <span class="state down">{counts.down} not ready</span> <span class="state cordoned">{counts.cordoned} cordoned</span>
        <input placeholder="filter by name" value={filter} onInput={(e) => setFilter((e.currentTarget as HTMLInputElement).value)} />
      </p>
      <ErrorNote error={listed.error} />
      <VirtualList
        items={shown ?? []}
        rowHeight={44}
        height={Math.min(560, Math.max(88, (shown?.length ?? 0) * 44))}
        row={(n) => <NodeRow node={n} gpus={use.get(n.name)} reload={listed.reload} />}
        onPainted={() => requestAnimationFrame(() => performance.mark('mlfleet:nodes-painted'))}
      />
    </section>
  );
}

function Tenants() {
  const tenants = usePoll((signal) => items<TenantJson>('/tenants', signal), REFRESH_MS);
  if (!tenants.data) return tenants.error ? <ErrorNote error={tenants.error} /> : null;
  return (
    <section>
      <h2>Tenants' quota use</h2>
      <table>
        <thead>
          <tr>
            <th>Tenant</th>
            <th>CPU</th>
            <th>Memory</th>
            <th>GPUs</th>
            <th>Storage</th>
            <th>Deployments</th>
          </tr>
        </thead>
        <tbody>
          {tenants.data.map((t) => (
            <tr key={t.name} data-tenant={t.name}>
              <td>{t.name}</td>
              <td>
                <Bar used={t.usage.cpuMillis} total={t.quota.cpuMillis} label={`${cpu(t.usage.cpuMillis)}/${t.quota.cpuMillis ? cpu(t.quota.cpuMillis) : '∞'}`} />
              </td>
              <td>
                <Bar used={t.usage.memoryBytes} total={t.quota.memoryBytes} label={`${bytes(t.usage.memoryBytes)}/${t.quota.memoryBytes ? bytes(t.quota.memoryBytes) : '∞'}`} />
              </td>
              <td>
                <Bar used={t.usage.gpus} total={t.quota.gpus} label={`${t.usage.gpus}/${t.quota.gpus || '∞'}`} />
              </td>
              <td>
                <Bar used={t.usage.storageBytes} total={t.quota.storageBytes} label={`${bytes(t.usage.storageBytes)}/${t.quota.storageBytes ? bytes(t.quota.storageBytes) : '∞'}`} />
              </td>
              <td>
                {t.usage.deployments}/{t.quota.maxDeployments || '∞'}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function Overview() {
  return (
    <>
      <Nodes />
      <Tenants />
    </>
  );
}
