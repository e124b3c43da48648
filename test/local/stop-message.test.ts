// What `npm start` says when it stops about the workloads that keep running.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import type { TaskStatus } from '../../agent/drivers/driver.js';
import { stopMessage } from '../../scripts/local/stop-message.js';

const task = (allocationId: string, running: boolean, kind = 'deployment'): TaskStatus => ({
  allocationId,
  kind,
  running,
  exitCode: running ? undefined : 0,
  startedAtMs: 1,
  finishedAtMs: running ? 0 : 2,
  reason: '',
});

test('nothing running: nothing more to say', () => {
  assert.deepEqual(stopMessage({ driver: 'docker', node: 'h', clusterId: 'c1', tasks: [] }), []);
  assert.deepEqual(stopMessage({ driver: 'docker', node: 'h', clusterId: 'c1', tasks: [task('a', false, 'job')] }), []);
});

test('running containers are named, with the docker command that stops only this cluster\'s on this node', () => {
  const lines = stopMessage({ driver: 'docker', node: 'my host', clusterId: 'c1', tasks: [task('b2', true), task('a1', true), task('j', false, 'job')] });
  assert.match(lines[0]!, /^2 containers of this cluster keep running/);
  assert.deepEqual(lines.slice(1, 3), ['  deployment allocation a1', '  deployment allocation b2']);
  const command = lines.find((l) => l.startsWith('to stop and remove them: '))!.slice('to stop and remove them: '.length);
  assert.equal(command, "docker rm -f $(docker ps -aq --filter label='mlfleet.node=my host' --filter label=mlfleet.cluster=c1)");
  // The command is valid shell: the quoted filter reaches docker as one argument.
  const argv = execFileSync('bash', ['-c', `printf '%s\\n' ${command.replace(/^docker rm -f \$\((.*)\)$/, '$1')}`], { encoding: 'utf8' }).trim().split('\n');
  assert.deepEqual(argv, ['docker', 'ps', '-aq', '--filter', 'label=mlfleet.node=my host', '--filter', 'label=mlfleet.cluster=c1']);
  assert.ok(lines.some((l) => l.includes('npx mlfleetctl deployments rm NAME')));
});

test('one running process of the process driver', () => {
  const lines = stopMessage({ driver: 'process', node: 'h', clusterId: undefined, tasks: [task('a', true)] });
  assert.match(lines[0]!, /^1 process of this cluster keeps running/);
  assert.ok(lines.some((l) => l.startsWith('to stop them: ')));
  assert.ok(!lines.some((l) => l.includes('docker')));
});
