// Model selection as a pure function (shared/selection.ts): hard criteria are never violated,
// whatever the candidates; latency and accuracy preferences pick what they say; a weight in
// between trades one against the other; a latency ceiling and unmeasured latencies behave as
// documented; nothing eligible is NOT_FOUND saying why.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seededRandom, type Random } from '../../shared/clock.js';
import { NotFoundError } from '../../shared/errors.js';
import { select, type Candidate, type Criteria } from '../../shared/selection.js';

function candidate(deployment: string, fields: Partial<Candidate> = {}): Candidate {
  return {
    deployment,
    tenant: 'default',
    model: deployment,
    version: 1,
    type: 'classification',
    inputFormat: 'text',
    outputFormat: 'tensor',
    accuracy: 0.9,
    latencyMs: 10,
    endpoints: [`node-a:${20_000 + deployment.length}`],
    ready: true,
    ...fields,
  };
}

const classifier: Criteria = { type: 'classification', inputFormat: 'text', outputFormat: 'tensor', prefer: '', maxLatencyMs: 0 };

function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

test('hard criteria are never violated, over many random candidate sets', () => {
  const random = seededRandom(20_240_501);
  const types = ['classification', 'regression', 'detection', ''];
  const formats = ['text', 'tensor', 'image', ''];
  let answered = 0;
  let refused = 0;
  for (let round = 0; round < 2_000; round++) {
    const candidates = Array.from({ length: 1 + Math.floor(random() * 8) }, (_, i) =>
      candidate(`d${i}`, {
        type: pick(random, types),
        inputFormat: pick(random, formats),
        outputFormat: pick(random, formats),
        accuracy: Math.round(random() * 100) / 100,
        latencyMs: random() < 0.2 ? undefined : Math.round(random() * 2000) / 10,
        ready: random() < 0.8,
        endpoints: random() < 0.9 ? ['node-a:20001'] : [],
      }),
    );
    const criteria: Criteria = {
      type: pick(random, types),
      inputFormat: pick(random, formats),
      outputFormat: pick(random, formats),
      prefer: pick(random, ['', 'latency', 'accuracy'] as const),
      latencyWeight: random() < 0.5 ? undefined : random(),
      maxLatencyMs: random() < 0.7 ? 0 : Math.round(random() * 200),
    };
    const meets = (c: Candidate) =>
      (!criteria.type || c.type === criteria.type) &&
      (!criteria.inputFormat || c.inputFormat === criteria.inputFormat) &&
      (!criteria.outputFormat || c.outputFormat === criteria.outputFormat) &&
      c.ready &&
      c.endpoints.length > 0 &&
      (criteria.maxLatencyMs === 0 || (c.latencyMs !== undefined && c.latencyMs <= criteria.maxLatencyMs));
    const eligible = candidates.filter(meets);
    let selected;
    try {
      selected = select(candidates, criteria);
    } catch (err) {
      assert.ok(err instanceof NotFoundError, `only NOT_FOUND is thrown, got ${String(err)}`);
      assert.equal(eligible.length, 0, `round ${round}: refused although ${eligible.length} are eligible`);
      refused += 1;
      continue;
    }
    answered += 1;
    assert.ok(meets(selected.winner), `round ${round}: the winner ${selected.winner.deployment} violates a hard criterion`);
    assert.deepEqual(selected.ranked.map((s) => s.candidate).sort((a, b) => a.deployment.localeCompare(b.deployment)), eligible);
    assert.ok(selected.ranked.every((s) => meets(s.candidate) && s.score >= 0 && s.score <= 1));
    assert.ok(selected.ranked.every((s, i) => i === 0 || s.score <= selected.ranked[i - 1]!.score), 'best first');
    assert.equal(selected.ranked[0]!.candidate, selected.winner);
  }
  assert.ok(answered > 200 && refused > 200, `both outcomes were exercised (${answered} answered, ${refused} refused)`);
});

test('a latency preference picks the measured-faster model', () => {
  const candidates = [
    candidate('accurate', { accuracy: 0.99, latencyMs: 40 }),
    candidate('fast', { accuracy: 0.7, latencyMs: 3.1 }),
    candidate('middle', { accuracy: 0.8, latencyMs: 12 }),
  ];
  const selected = select(candidates, { ...classifier, prefer: 'latency' });
  assert.equal(selected.winner.deployment, 'fast');
  assert.equal(selected.reason, 'fastest measured p50 3.1 ms among 3 eligible');
  assert.deepEqual(selected.ranked.map((s) => [s.candidate.deployment, s.score]), [['fast', 1], ['middle', (40 - 12) / (40 - 3.1)], ['accurate', 0]]);
});

test('an accuracy preference picks the more accurate model', () => {
  const candidates = [candidate('fast', { accuracy: 0.7, latencyMs: 3 }), candidate('accurate', { accuracy: 0.95, latencyMs: 40 })];
  const selected = select(candidates, { ...classifier, prefer: 'accuracy' });
  assert.equal(selected.winner.deployment, 'accurate');
  assert.equal(selected.reason, 'most accurate (accuracy 0.95) among 2 eligible; p50 40 ms');
});

test('a weight between the two trades latency against accuracy', () => {
  // fast: latency score 1, accuracy score 0; accurate: latency 0, accuracy 1; balanced: 0.75 on both.
  const candidates = [
    candidate('fast', { accuracy: 0.6, latencyMs: 10 }),
    candidate('accurate', { accuracy: 1, latencyMs: 50 }),
    candidate('balanced', { accuracy: 0.9, latencyMs: 20 }),
  ];
  const winner = (latencyWeight: number) => select(candidates, { ...classifier, latencyWeight }).winner.deployment;
  assert.equal(winner(0), 'accurate');
  assert.equal(winner(0.1), 'accurate');
  assert.equal(winner(0.5), 'balanced');
  assert.equal(winner(0.9), 'fast');
  assert.equal(winner(1), 'fast');
  // No weight and no preference: 0.5.
  const balanced = select(candidates, classifier);
  assert.equal(balanced.winner.deployment, 'balanced');
  assert.ok(Math.abs(balanced.score - 0.75) < 1e-9, `score ${balanced.score}`);
  assert.equal(balanced.reason, 'best score 0.75 among 3 eligible at latency weight 0.5: p50 20 ms, accuracy 0.9');
});

test('a maximum latency leaves out slower and unmeasured deployments, and says so', () => {
  const candidates = [
    candidate('slow-accurate', { accuracy: 0.99, latencyMs: 80 }),
    candidate('unmeasured', { accuracy: 0.98, latencyMs: undefined }),
    candidate('quick', { accuracy: 0.8, latencyMs: 30 }),
  ];
  const selected = select(candidates, { ...classifier, prefer: 'accuracy', maxLatencyMs: 50 });
  assert.equal(selected.winner.deployment, 'quick');
  assert.deepEqual(selected.ranked.map((s) => s.candidate.deployment), ['quick']);
  assert.equal(selected.reason, 'the only eligible deployment: p50 30 ms, accuracy 0.8 (2 others left out)');
  assert.throws(() => select(candidates, { ...classifier, maxLatencyMs: 20 }), {
    code: 'NOT_FOUND',
    message: 'no ready deployment serves a classification model taking text and giving tensor within a p50 of 20 ms (3 deployments: 2 over 20 ms, 1 not measured yet)',
  });
});

test('an unmeasured latency counts as the slowest measured one', () => {
  const candidates = [
    candidate('measured-slow', { accuracy: 0.8, latencyMs: 40 }),
    candidate('unmeasured', { accuracy: 0.8, latencyMs: undefined }),
    candidate('measured-fast', { accuracy: 0.8, latencyMs: 5 }),
  ];
  const latency = select(candidates, { ...classifier, prefer: 'latency' });
  assert.equal(latency.winner.deployment, 'measured-fast');
  const scores = Object.fromEntries(latency.ranked.map((s) => [s.candidate.deployment, s.latencyScore]));
  assert.deepEqual(scores, { 'measured-fast': 1, 'measured-slow': 0, unmeasured: 0 });
  // A tie on score goes to the measured one: measured speed is never beaten by a guess.
  assert.deepEqual(latency.ranked.map((s) => s.candidate.deployment), ['measured-fast', 'measured-slow', 'unmeasured']);

  // Nothing measured: latency says nothing, so accuracy decides even when latency is preferred.
  const none = [candidate('a', { accuracy: 0.7, latencyMs: undefined }), candidate('b', { accuracy: 0.9, latencyMs: undefined })];
  const guessed = select(none, { ...classifier, prefer: 'latency' });
  assert.equal(guessed.winner.deployment, 'b');
  assert.equal(guessed.reason, 'no latency measured yet among 2 eligible; the most accurate (accuracy 0.9)');
});

test('nothing eligible is NOT_FOUND with the reason', () => {
  const candidates = [
    candidate('r1', { type: 'regression' }),
    candidate('r2', { type: 'regression' }),
    candidate('down', { ready: false, endpoints: [] }),
  ];
  assert.throws(() => select(candidates, classifier), (err: unknown) => {
    assert.ok(err instanceof NotFoundError);
    assert.equal(err.message, 'no ready deployment serves a classification model taking text and giving tensor (3 deployments: 2 of type regression, 1 not ready)');
    return true;
  });
  assert.throws(() => select([], { ...classifier, type: 'embedding', inputFormat: '', outputFormat: '' }), {
    message: 'no ready deployment serves an embedding model (there are no deployments)',
  });
  assert.throws(() => select([candidate('img', { inputFormat: 'image' })], { ...classifier, type: '' }), {
    message: 'no ready deployment serves a model taking text and giving tensor (1 deployment: 1 taking image)',
  });
});
