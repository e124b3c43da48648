// A process that campaigns on a shared SQLite file: the other side of
// sqlite-processes.test.ts. Usage: node sqlite-campaigner.js FILE NAME rotate|hold
//   rotate: lead, claim /holder (a plain compare-and-swap that fails if anyone else holds it),
//           give it back, resign, campaign again;
//   hold:   lead until leadership is lost.
// It reports on stdout, one JSON object a line, and stops when the parent writes /stop (a
// write by another process, seen through this process's watch).
import { setTimeout as delay } from 'node:timers/promises';
import { Election } from '../../shared/store/election.js';
import { SqliteStore } from '../../shared/store/sqlite-store.js';

const [file, name, mode] = process.argv.slice(2);
if (!file || !name || (mode !== 'rotate' && mode !== 'hold')) {
  process.stderr.write('usage: sqlite-campaigner FILE NAME rotate|hold\n');
  process.exit(2);
}

const report = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ name, ...event })}\n`);

const store = await SqliteStore.create(file, { pollIntervalMs: 20, sweepIntervalMs: 50 });
const election = new Election(store, '/election', { ttlMs: 500 });
const stop = new AbortController();
const stopWatch = store.watch('/stop', { fromRevision: 1 });
const stopping = (async () => {
  for await (const batch of stopWatch) {
    if (batch.some((event) => event.type === 'put')) break;
  }
  stop.abort(new Error('stopped by the parent'));
})();

report({ ready: true });
while (!stop.signal.aborted) {
  let leadership;
  try {
    leadership = await election.campaign(name, stop.signal);
  } catch {
    break; // stopped while waiting in line
  }
  report({ elected: leadership.createRevision });
  if (mode === 'hold') {
    await new Promise((resolve) => {
      stop.signal.addEventListener('abort', resolve, { once: true });
      leadership.lost.addEventListener('abort', resolve, { once: true });
    });
  } else {
    const claim = await store.txn(
      [{ key: '/holder', target: 'version', op: '=', value: 0 }],
      [{ type: 'put', key: '/holder', value: name }],
      [{ type: 'get', key: '/holder' }],
    );
    if (!claim.succeeded) report({ violation: `${name} leads while /holder is held: ${JSON.stringify(claim.results)}` });
    await delay(20);
    await store.txn([{ key: '/holder', target: 'value', op: '=', value: name }], [{ type: 'delete', key: '/holder' }]);
  }
  await leadership.resign();
}
stopWatch.close();
await stopping;
await store.close();
report({ done: true });
