// Commits a scheduler plan the way Nomad's plan applier does, with optimistic concurrency: every
// node a plan touches has a plan key, the plan was computed from what the leader knew of it
// (the key's modRevision), and the write compares that revision and bumps the key. Two plans
// computed from the same view and both placing on one node cannot both commit: the second
// finds the key moved, writes nothing for that node, and its asks are planned again from a
// fresh read. Large plans are written in chunks (etcd allows 128 operations per transaction);
// a gang's writes always share one chunk, so a gang is placed whole or not at all.
import { keys } from '../../shared/keys.js';
import type { Compare, Op } from '../../shared/store/store.js';
import type { FencedWriter } from '../node-registry.js';
import type { AllocationRecord } from './records.js';

export interface PlanWrite {
  node: string;
  record: AllocationRecord;
  /** Writes of one group are committed together (a gang, or an ask with its preemptions). */
  group: string;
}

export interface CommitResult {
  written: Array<{ record: AllocationRecord; modRevision: number }>;
  /** Nodes whose plan key had moved: their writes were not made. */
  conflicted: Set<string>;
  /** The plan keys' new modRevisions. */
  nodeRevisions: Map<string, number>;
}

export async function commitPlan(
  writer: FencedWriter,
  writes: PlanWrite[],
  readRevisions: ReadonlyMap<string, number>,
  maxOps: number,
): Promise<CommitResult> {
  const result: CommitResult = { written: [], conflicted: new Set(), nodeRevisions: new Map() };
  const groups = new Map<string, PlanWrite[]>();
  for (const write of writes) {
    const group = groups.get(write.group);
    if (group) group.push(write);
    else groups.set(write.group, [write]);
  }
  const chunks: PlanWrite[][] = [];
  let chunk: PlanWrite[] = [];
  let nodes = new Set<string>();
  for (const group of groups.values()) {
    const groupNodes = new Set(group.map((w) => w.node));
    const added = [...groupNodes].filter((n) => !nodes.has(n)).length;
    if (chunk.length > 0 && chunk.length + group.length + nodes.size + added > maxOps) {
      chunks.push(chunk);
      chunk = [];
      nodes = new Set();
    }
    chunk.push(...group);
    for (const n of groupNodes) nodes.add(n);
  }
  if (chunk.length > 0) chunks.push(chunk);

  for (const part of chunks) {
    const partNodes = [...new Set(part.map((w) => w.node))];
    if (partNodes.some((n) => result.conflicted.has(n))) {
      for (const n of partNodes) result.conflicted.add(n);
      continue;
    }
    const compares: Compare[] = partNodes.map((node) => ({
      key: keys.nodePlan(node),
      target: 'modRevision',
      op: '=',
      value: result.nodeRevisions.get(node) ?? readRevisions.get(node) ?? 0,
    }));
    const ops: Op[] = [
      ...part.map((w): Op => ({ type: 'put', key: keys.allocation(w.record.id), value: JSON.stringify(w.record) })),
      ...partNodes.map((node): Op => ({ type: 'put', key: keys.nodePlan(node), value: '' })),
    ];
    const txn = await writer.txn(compares, ops);
    if (!txn.succeeded) {
      for (const n of partNodes) result.conflicted.add(n);
      continue;
    }
    for (const node of partNodes) result.nodeRevisions.set(node, txn.revision);
    for (const w of part) result.written.push({ record: w.record, modRevision: txn.revision });
  }
  return result;
}
