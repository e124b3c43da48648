// SQLite as a store shared by processes: separate OS processes (sqlite-campaigner.js) open the
// same file and campaign. SQLite's locking serializes their writes, a watch in one process
// sees the commits of another, and leadership passes between them one holder at a time.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Election } from '../../shared/store/election.js';
import { SqliteStore } from '../../shared/store/sqlite-store.js';
import { WatchReader, within } from './support.js';

const CAMPAIGNER = fileURLToPath(new URL('./sqlite-campaigner.js', import.meta.url));

interface Report {
  name: string;
  ready?: boolean;
  elected?: number;
  violation?: string;
  done?: boolean;
}

class Campaigner {
  readonly reports: Report[] = [];
  readonly exited: Promise<number | null>;
  private listeners: (() => void)[] = [];

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      this.reports.push(JSON.parse(line) as Report);
      this.listeners.forEach((listener) => listener());
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', (code) => {
        if (code !== 0 && code !== null) process.stderr.write(`${name} exited ${code}: ${stderr}\n`);
        resolve(code);
      }),
    );
  }

  /** Resolves once a report passes `test` (past or future). */
  until(test: (report: Report) => boolean): Promise<Report> {
    return new Promise((resolve) => {
      const check = () => {
        const found = this.reports.find(test);
        if (!found) return;
        this.listeners = this.listeners.filter((l) => l !== check);
        resolve(found);
      };
      this.listeners.push(check);
      check();
    });
  }

  get elections(): number {
    return this.reports.filter((r) => r.elected !== undefined).length;
  }
}

function startCampaigner(t: TestContext, file: string, name: string, mode: 'rotate' | 'hold'): Campaigner {
  const child = spawn(process.execPath, [CAMPAIGNER, file, name, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  const campaigner = new Campaigner(name, child);
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await campaigner.exited;
  });
  return campaigner;
}

async function sharedFile(t: TestContext): Promise<{ file: string; store: SqliteStore }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlfleet-sqlite-processes-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'store.db');
  const store = await SqliteStore.create(file, { pollIntervalMs: 20, sweepIntervalMs: 50 });
  t.after(() => store.close());
  return { file, store };
}

test('two processes on one SQLite file: one leader at a time, and each sees the other’s writes', async (t) => {
  const { file, store } = await sharedFile(t);
  const holder = new WatchReader(store.watch('/holder', { fromRevision: 1 }));
  t.after(() => holder.watch.close());
  const campaigners = [startCampaigner(t, file, 'p1', 'rotate'), startCampaigner(t, file, 'p2', 'rotate')];

  // The parent watches /holder, written only by the children: every claim is released before
  // the next one, and both processes get their turns.
  const claims = new Map<string, number>();
  let previous: string | undefined;
  while (Math.min(claims.get('p1') ?? 0, claims.get('p2') ?? 0) < 5) {
    const [event] = await holder.take(1, 10_000);
    assert.ok(event);
    if (event.type === 'put') {
      assert.equal(previous, undefined, `${event.value} claimed /holder while ${previous} held it`);
      previous = event.value;
      claims.set(event.value, (claims.get(event.value) ?? 0) + 1);
    } else {
      assert.ok(previous, 'a release follows a claim');
      previous = undefined;
    }
  }

  // The children stop when they see the parent's write.
  await store.put('/stop', 'now');
  const codes = await within('both processes to stop', 10_000, Promise.all(campaigners.map((c) => c.exited)));
  assert.deepEqual(codes, [0, 0]);
  for (const campaigner of campaigners) {
    assert.deepEqual(campaigner.reports.filter((r) => r.violation), [], `${campaigner.name} saw no other leader`);
    assert.ok(campaigner.elections >= 5);
  }
});

test('when the leading process is killed, the other process leads once its lease expires', async (t) => {
  const { file, store } = await sharedFile(t);
  const [p1, p2] = [startCampaigner(t, file, 'p1', 'hold'), startCampaigner(t, file, 'p2', 'hold')] as const;
  const first = await within('a process to lead', 10_000, Promise.race([p1, p2].map((p) => p.until((r) => r.elected !== undefined).then(() => p))));
  const other = first === p1 ? p2 : p1;
  const election = new Election(store, '/election');
  assert.equal((await election.leader())?.value, first.name);
  assert.equal(other.elections, 0, 'the other waits');

  first.child.kill('SIGKILL');
  const killedAt = Date.now();
  await within('the other process to lead', 5_000, other.until((r) => r.elected !== undefined));
  const failoverMs = Date.now() - killedAt;
  // A 500 ms lease, swept every 50 ms, seen by a 20 ms poll: well under the 3 s a failover may take.
  assert.ok(failoverMs < 2_000, `failover took ${failoverMs} ms`);
  assert.equal((await election.leader())?.value, other.name);

  await store.put('/stop', 'now');
  assert.equal(await within('the survivor to stop', 10_000, other.exited), 0);
});
