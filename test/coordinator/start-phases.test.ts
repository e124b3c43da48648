// Cold-start bookkeeping, pure: the event's wording, the agent's stopwatch, and the leader's
// schedule phase (from the pass first short of a replica to its allocation's commit).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StartPhaseBook } from '../../coordinator/workloads/start-phases.js';
import type { StartPhase } from '../../shared/proto.js';
import { formatStartPhases, orderStartPhases, StartStopwatch, startSeconds } from '../../shared/start-phases.js';

const AGENT: StartPhase[] = [
  { phase: 'load', seconds: 1.02 },
  { phase: 'pull', seconds: 0 },
  { phase: 'start', seconds: 0.31 },
  { phase: 'create', seconds: 0.08 },
];

test('the event reads the phases in start order with their sum', () => {
  assert.equal(formatStartPhases([{ phase: 'schedule', seconds: 0.01 }, ...AGENT]), 'ready in 1.42 s: schedule 0.01 s, pull 0.00 s, create 0.08 s, start 0.31 s, load 1.02 s');
  assert.deepEqual(
    orderStartPhases([...AGENT, { phase: 'pull', seconds: 9 }]).map((p) => p.phase),
    ['pull', 'create', 'start', 'load'],
    'a repeated phase counts once (the first)',
  );
  assert.equal(startSeconds([]), 0);
});

test('the stopwatch times each phase from where the last one ended, on the clock it is given', () => {
  let now = 1_000;
  const watch = new StartStopwatch(() => now);
  now += 500;
  watch.mark('pull');
  now += 80;
  watch.mark('create');
  now += 310;
  watch.mark('start');
  now += 1_020;
  watch.mark('load');
  assert.deepEqual(watch.phases(), [
    { phase: 'pull', seconds: 0.5 },
    { phase: 'create', seconds: 0.08 },
    { phase: 'start', seconds: 0.31 },
    { phase: 'load', seconds: 1.02 },
  ]);
  const back = new StartStopwatch(() => now);
  now -= 5; // a clock stepped back never makes a phase negative
  back.mark('pull');
  assert.deepEqual(back.phases(), [{ phase: 'pull', seconds: 0 }]);
});

test('schedule runs from the pass first finding the deployment short to the commit, oldest ask first', () => {
  const observed: StartPhase[][] = [];
  const book = new StartPhaseBook((phases) => observed.push(phases));
  book.short('d/acme/web', 2, 1_000);
  book.short('d/acme/web', 2, 1_500); // still short of the same two: they keep their time
  book.short('d/acme/web', 3, 2_000); // a third asked for now
  book.committed('d/acme/web', 'a1', 2_010);
  assert.equal(book.scheduleOf('a1'), 1.01);
  book.short('d/acme/web', 2, 2_100);
  book.committed('d/acme/web', 'a2', 2_200);
  assert.equal(book.scheduleOf('a2'), 1.2);
  book.committed('d/acme/web', 'a3', 2_300);
  assert.equal(book.scheduleOf('a3'), 0.3, 'the ask from 2000');

  const message = book.ready('a1', AGENT);
  assert.equal(message, 'ready in 2.42 s: schedule 1.01 s, pull 0.00 s, create 0.08 s, start 0.31 s, load 1.02 s');
  assert.deepEqual(observed[0]!.map((p) => p.phase), ['schedule', 'pull', 'create', 'start', 'load']);
  assert.equal(book.scheduleOf('a1'), undefined, 'forgotten at its first ready');
});

test('no ask, no schedule phase; a scale-down drops the newest asks; a schedule from an agent is ignored', () => {
  const book = new StartPhaseBook();
  book.committed('d/acme/job', 'j1', 5_000);
  assert.equal(book.scheduleOf('j1'), undefined);
  assert.equal(book.ready('j1', [{ phase: 'schedule', seconds: 99 }, ...AGENT]), 'ready in 1.41 s: pull 0.00 s, create 0.08 s, start 0.31 s, load 1.02 s');

  book.short('d/acme/web', 3, 1_000);
  book.short('d/acme/web', 3, 1_000);
  book.short('d/acme/web', 1, 3_000);
  book.committed('d/acme/web', 'a1', 4_000);
  assert.equal(book.scheduleOf('a1'), 3);
  book.committed('d/acme/web', 'a2', 4_000);
  assert.equal(book.scheduleOf('a2'), undefined, 'only one was still asked for');
  book.short('d/acme/web', 1, 5_000);
  book.short('d/acme/web', 0, 6_000); // no longer short: its ask is dropped
  book.committed('d/acme/web', 'a3', 7_000);
  assert.equal(book.scheduleOf('a3'), undefined);
});

test('what it remembers is bounded: the oldest committed allocations and short workloads go first', () => {
  const book = new StartPhaseBook(() => undefined, 3);
  for (let i = 0; i < 5; i++) {
    book.short('k', 1, i);
    book.committed('k', `a${i}`, i + 1);
  }
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => book.scheduleOf(`a${i}`)), [undefined, undefined, 0.001, 0.001, 0.001]);
  book.forget('a4');
  assert.equal(book.scheduleOf('a4'), undefined);
  for (let i = 0; i < 5; i++) book.short(`w${i}`, 1, 100);
  book.committed('w0', 'x0', 200);
  book.committed('w4', 'x4', 200);
  assert.equal(book.scheduleOf('x0'), undefined, 'the oldest short workload was let go');
  assert.equal(book.scheduleOf('x4'), 0.1);
});
