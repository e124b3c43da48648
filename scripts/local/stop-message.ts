// What `npm start` says when it stops: which of its workloads keep running (a stopped agent
// never stops a workload, DESIGN principle 7, so replicas keep serving and the next start adopts
// them) and the exact command that stops them. Pure: local-cluster.ts gathers the facts.
import { LABELS } from '../../agent/drivers/docker-driver.js';
import type { TaskStatus } from '../../agent/drivers/driver.js';

export interface StopFacts {
  driver: 'docker' | 'process';
  /** The agent's node name: its containers carry it as a label. */
  node: string;
  /** The cluster's id, when the agent has had a welcome; containers carry it as a label. */
  clusterId: string | undefined;
  tasks: TaskStatus[];
}

/** Lines to print after "stopped": nothing when no task of this cluster is running. */
export function stopMessage(facts: StopFacts): string[] {
  const running = facts.tasks.filter((task) => task.running).sort((a, b) => a.allocationId.localeCompare(b.allocationId));
  if (running.length === 0) return [];
  const what = facts.driver === 'docker' ? 'container' : 'process';
  const lines = [
    `${running.length} ${what}${running.length === 1 ? '' : facts.driver === 'docker' ? 's' : 'es'} of this cluster keep${running.length === 1 ? 's' : ''} running ` +
      '(stopping the agent never stops a workload; the next npm start adopts them):',
    ...running.map((task) => `  ${task.kind || 'task'} allocation ${task.allocationId}`),
  ];
  if (facts.driver === 'docker') {
    const filters = [`${LABELS.node}=${facts.node}`, ...(facts.clusterId ? [`${LABELS.cluster}=${facts.clusterId}`] : [])]
      .map((label) => `--filter label=${shellQuote(label)}`)
      .join(' ');
    lines.push(`to stop and remove them: docker rm -f $(docker ps -aq ${filters})`);
  } else {
    // Each process-driver task leads its own process group, which outlives the agent.
    lines.push('to stop them: start the cluster again (npm start) and remove their deployments, or end their process groups (ps -eo pid,pgid,args)');
  }
  lines.push('their deployments stay in the store, so the next npm start runs them again; npx mlfleetctl deployments rm NAME removes one for good');
  return lines;
}

function shellQuote(value: string): string {
  return /^[\w.=:@/-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}
