// Allocations (one placed serving replica or job worker) as mlfleetctl shows them: the stable
// -o json shape, the `ps` table, and the nested tables of `deployments show` and `jobs show`.
// Resources are shown here too, as deployments and jobs ask for them in the same shape.
import type { AllocationInfo } from '../../../shared/proto.js';
import { TERMINAL_STATES, type AllocationState } from '../../../shared/workloads.js';
import { formatBytes, formatCpuMillis, formatDuration } from '../../../shared/units.js';
import { table, type Printable } from '../output.js';
import { allocationJson, resourcesJson, type AllocationJson, type ResourcesJson } from '../../../shared/views/allocations.js';

export { allocationJson, resourcesJson, type AllocationJson, type ResourcesJson };

/** The 8 characters of an id people type (`logs` takes any unique prefix). */
export function shortId(id: string): string {
  return id.slice(0, 8);
}

/** "cpu 500m, memory 512Mi, 1 GPU (H100, 20Gi each)"; "default" where the coordinator picks. */
export function formatResources(r: ResourcesJson): string {
  const parts = [`cpu ${r.cpuMillis > 0 ? formatCpuMillis(r.cpuMillis) : 'default'}`, `memory ${r.memoryBytes > 0 ? formatBytes(r.memoryBytes) : 'default'}`];
  const gpuDetails = [r.gpuModel, r.gpuMemoryBytes > 0 ? `${formatBytes(r.gpuMemoryBytes)}${r.gpus > 0 ? ' each' : ''}` : ''].filter((p) => p !== '');
  if (r.gpus > 0) parts.push(`${r.gpus} GPU${r.gpus === 1 ? '' : 's'}${gpuDetails.length > 0 ? ` (${gpuDetails.join(', ')})` : ''}`);
  else if (r.gpuMemoryBytes > 0) parts.push(`${formatBytes(r.gpuMemoryBytes)} of a shared GPU${r.gpuModel ? ` (${r.gpuModel})` : ''}`);
  if (r.nicMbps > 0) parts.push(`network ${r.nicMbps} Mbps`);
  return parts.join(', ');
}

/** The status, with "stopping" when it is being stopped and has not ended yet. */
export function allocationStatus(a: AllocationJson): string {
  const ended = TERMINAL_STATES.has(a.status as AllocationState);
  const status = a.desired === 'stop' && !ended ? `${a.status} (stopping)` : a.status;
  return a.status === 'failed' && a.reason ? `${status}: ${a.reason}` : status;
}

function gpuColumn(a: AllocationJson): string {
  return a.gpuIndexes.length > 0 ? a.gpuIndexes.join(',') : '-';
}

/** How long ago `ms` was (an age, as in "AGE 3m5s"); "-" when unknown. */
export function age(ms: number, now: number): string {
  return ms > 0 ? formatDuration(Math.max(0, now - ms)) : '-';
}

/** `ps`: a JSON array, or one row per allocation. */
export function allocationListView(allocations: readonly AllocationInfo[], now = Date.now()): Printable {
  const list = allocations.map(allocationJson);
  return {
    data: list,
    table: () =>
      table(
        ['ID', 'WORKLOAD', 'NODE', 'STATUS', 'ENDPOINT', 'GPUS', 'AGE'],
        list.map((a, i) => [shortId(a.id), `${a.kind}/${a.workload}`, a.node || '-', allocationStatus(a), a.endpoint || '-', gpuColumn(a), age(allocations[i]!.createdAtMs, now)]),
      ),
  };
}

/** The allocations of one deployment, nested under `deployments show`. */
export function replicaTable(allocations: readonly AllocationInfo[], now: number): string {
  return table(
    ['ID', 'NODE', 'STATUS', 'ENDPOINT', 'GPUS', 'GEN', 'AGE'],
    allocations.map((info) => {
      const a = allocationJson(info);
      return [shortId(a.id), a.node || '-', allocationStatus(a), a.endpoint || '-', gpuColumn(a), String(a.generation), age(info.createdAtMs, now)];
    }),
  );
}

/** The workers of one job's attempt, nested under `jobs show`. */
export function workerTable(allocations: readonly AllocationInfo[], now: number): string {
  return table(
    ['RANK', 'ID', 'NODE', 'STATUS', 'EXIT', 'GPUS', 'AGE'],
    [...allocations]
      .sort((x, y) => x.rank - y.rank)
      .map((info) => {
        const a = allocationJson(info);
        const ended = a.status === 'completed' || a.status === 'failed';
        return [String(a.rank), shortId(a.id), a.node || '-', allocationStatus(a), ended ? String(a.exitCode) : '-', gpuColumn(a), age(info.createdAtMs, now)];
      }),
  );
}
