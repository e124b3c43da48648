// One allocation: where and what it runs, its state and reason, and its logs following.
import { get } from '../api.js';
import { ErrorNote, Link, Loading } from '../components.js';
import { ago, bytes, cpu } from '../format.js';
import { usePoll } from '../hooks.js';
import type { AllocationJson } from '../types.js';
import { FollowLogs } from './logs.js';

const DONE = new Set(['failed', 'completed', 'stopped']);

export function AllocationDetail(props: { id: string }) {
  const path = `/allocations/${encodeURIComponent(props.id)}`;
  const allocation = usePoll((signal) => get<AllocationJson>(path, signal), 3_000, [path]);
  if (!allocation.data) return allocation.error ? <ErrorNote error={allocation.error} /> : <Loading />;
  const a = allocation.data;
  const workload = a.kind === 'job' ? `/jobs/${encodeURIComponent(a.workload)}` : '/deployments';
  return (
    <section data-testid="allocation-detail">
      <h2>Allocation {a.id}</h2>
      <dl>
        <dt>Workload</dt>
        <dd>
          <Link href={workload}>{`${a.kind}/${a.workload}`}</Link> ({a.tenant})
        </dd>
        <dt>Node</dt>
        <dd>{a.node ? <Link href={`/nodes/${encodeURIComponent(a.node)}`}>{a.node}</Link> : 'not placed'}</dd>
        <dt>Status</dt>
        <dd>
          <span class={`state ${a.status}`}>{a.status}</span> {a.reason} {a.exitCode ? `(exit ${a.exitCode})` : ''}
        </dd>
        <dt>Asked</dt>
        <dd>
          {cpu(a.resources.cpuMillis)} CPU, {bytes(a.resources.memoryBytes)}
          {a.resources.gpus ? `, ${a.resources.gpus} GPU (${a.gpuIndexes.join(',')})` : ''}
        </dd>
        <dt>Endpoint</dt>
        <dd>{a.endpoint || '-'}</dd>
        {a.kind === 'job' && (
          <>
            <dt>Attempt / rank</dt>
            <dd>
              {a.attempt} / {a.rank}
            </dd>
          </>
        )}
        <dt>Updated</dt>
        <dd>{ago(a.updatedAt)} ago</dd>
      </dl>
      <h3>Logs</h3>
      <FollowLogs path={`${path}/logs`} finished={DONE.has(a.status)} />
    </section>
  );
}
