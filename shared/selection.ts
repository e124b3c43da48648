// Model selection as a pure function: from the deployments a caller could use (candidates)
// and what it asks for (criteria), the best one, why it won, and how every eligible one scored.
// No I/O: the coordinator's SelectionService calls it with what its controller and registry
// hold, and a gateway can call it with the routing table it holds.
//
// The rule:
// 1. Hard criteria are filters and are never violated: the model version's type, input format
//    and output format must equal the criteria's ('' matches any); the deployment must be ready
//    (a ready replica with an endpoint); with a maximum latency, its measured p50 must be at
//    most that (a deployment not measured yet is left out then, since nothing says it is under).
// 2. Among the eligible, latency and accuracy are each normalised to 0..1 (min-max across the
//    eligible: the fastest gets latency score 1 and the slowest 0, the most accurate accuracy
//    score 1 and the least 0; when all are equal, all get 1). A deployment not measured yet
//    counts as the slowest measured one, so measured speed is never beaten by a guess; when
//    none is measured, all are equal on latency. Accuracy 0 means unknown and counts as 0.
// 3. score = w · latency score + (1 − w) · accuracy score, with w = 1 for prefer "latency", 0 for
//    "accuracy", else the given latency weight (0.5 when none is given).
// 4. The highest score wins; ties go to the lower measured latency (unmeasured last), then the
//    higher accuracy, then more ready endpoints, then the name (so the answer is deterministic).
import { NotFoundError } from './errors.js';

export interface Candidate {
  deployment: string;
  tenant: string;
  model: string;
  version: number;
  type: string;
  inputFormat: string;
  outputFormat: string;
  /** 0..1 from the version's metadata; 0 when unknown. */
  accuracy: number;
  /** Measured p50 in ms; undefined while not measured yet. */
  latencyMs: number | undefined;
  /** host:port of each ready replica. */
  endpoints: string[];
  ready: boolean;
}

export type Preference = 'latency' | 'accuracy' | '';

export interface Criteria {
  /** Hard criteria; '' matches any. */
  type: string;
  inputFormat: string;
  outputFormat: string;
  /** 'latency' weighs latency only, 'accuracy' accuracy only; '' uses latencyWeight. */
  prefer: Preference;
  /** 0 (all accuracy) … 1 (all latency); used when prefer is ''; default 0.5. */
  latencyWeight?: number;
  /** Only deployments measured at or below this p50 (ms); 0: no ceiling. */
  maxLatencyMs: number;
}

export interface Scored {
  candidate: Candidate;
  /** 0..1, higher is better. */
  score: number;
  latencyScore: number;
  accuracyScore: number;
}

export interface Selected {
  winner: Candidate;
  score: number;
  /** Why it won, for people: "fastest measured p50 3.1 ms among 2 eligible". */
  reason: string;
  /** Every eligible candidate, best first (the winner first). */
  ranked: Scored[];
}

export const DEFAULT_LATENCY_WEIGHT = 0.5;

/** The weight of latency against accuracy that the criteria mean. */
export function latencyWeightOf(criteria: Pick<Criteria, 'prefer' | 'latencyWeight'>): number {
  if (criteria.prefer === 'latency') return 1;
  if (criteria.prefer === 'accuracy') return 0;
  return criteria.latencyWeight ?? DEFAULT_LATENCY_WEIGHT;
}

/** The best eligible candidate; NotFoundError saying why when none is eligible. */
export function select(candidates: readonly Candidate[], criteria: Criteria): Selected {
  const excluded = new Map<string, number>();
  const eligible: Candidate[] = [];
  for (const candidate of candidates) {
    const why = exclusion(candidate, criteria);
    if (why === undefined) eligible.push(candidate);
    else excluded.set(why, (excluded.get(why) ?? 0) + 1);
  }
  if (eligible.length === 0) throw new NotFoundError(notFoundMessage(criteria, candidates.length, excluded));
  const weight = latencyWeightOf(criteria);
  const ranked = score(eligible, weight).sort(better);
  const best = ranked[0]!;
  return { winner: best.candidate, score: best.score, reason: reason(best, ranked, weight, candidates.length - eligible.length), ranked };
}

/** Why a candidate is left out (the first hard criterion it fails), or undefined. */
function exclusion(c: Candidate, criteria: Criteria): string | undefined {
  if (criteria.type && c.type !== criteria.type) return c.type ? `of type ${c.type}` : 'of no declared type';
  if (criteria.inputFormat && c.inputFormat !== criteria.inputFormat) return c.inputFormat ? `taking ${c.inputFormat}` : 'of no declared input format';
  if (criteria.outputFormat && c.outputFormat !== criteria.outputFormat) return c.outputFormat ? `giving ${c.outputFormat}` : 'of no declared output format';
  if (!c.ready || c.endpoints.length === 0) return 'not ready';
  if (criteria.maxLatencyMs > 0) {
    if (c.latencyMs === undefined) return 'not measured yet';
    if (c.latencyMs > criteria.maxLatencyMs) return `over ${formatMs(criteria.maxLatencyMs)}`;
  }
  return undefined;
}

function score(eligible: readonly Candidate[], weight: number): Scored[] {
  const measured = eligible.map((c) => c.latencyMs).filter((l): l is number => l !== undefined);
  const fastest = Math.min(...measured);
  const slowest = Math.max(...measured);
  const leastAccurate = Math.min(...eligible.map((c) => c.accuracy));
  const mostAccurate = Math.max(...eligible.map((c) => c.accuracy));
  return eligible.map((candidate) => {
    const latency = candidate.latencyMs ?? slowest;
    const latencyScore = measured.length === 0 ? 1 : normalised(slowest - latency, slowest - fastest);
    const accuracyScore = normalised(candidate.accuracy - leastAccurate, mostAccurate - leastAccurate);
    return { candidate, score: weight * latencyScore + (1 - weight) * accuracyScore, latencyScore, accuracyScore };
  });
}

/** value / range, or 1 when every candidate is the same (range 0). */
function normalised(value: number, range: number): number {
  return range > 0 ? value / range : 1;
}

function better(a: Scored, b: Scored): number {
  const x = a.candidate;
  const y = b.candidate;
  return (
    b.score - a.score ||
    (x.latencyMs ?? Infinity) - (y.latencyMs ?? Infinity) ||
    y.accuracy - x.accuracy ||
    y.endpoints.length - x.endpoints.length ||
    `${x.tenant}/${x.deployment}`.localeCompare(`${y.tenant}/${y.deployment}`)
  );
}

function reason(best: Scored, ranked: readonly Scored[], weight: number, excluded: number): string {
  const c = best.candidate;
  const among = ranked.length === 1 ? 'the only eligible deployment' : `among ${ranked.length} eligible`;
  const latency = c.latencyMs === undefined ? 'p50 not measured yet' : `p50 ${formatMs(c.latencyMs)}`;
  const accuracy = c.accuracy > 0 ? `accuracy ${c.accuracy}` : 'accuracy unknown';
  const left = excluded > 0 ? ` (${excluded} other${excluded === 1 ? '' : 's'} left out)` : '';
  const anyMeasured = ranked.some((s) => s.candidate.latencyMs !== undefined);
  let why: string;
  if (ranked.length === 1) why = `${among}: ${latency}, ${accuracy}`;
  else if (weight === 1) {
    why = anyMeasured ? `fastest measured ${latency} ${among}` : `no latency measured yet ${among}; the most accurate (${accuracy})`;
  } else if (weight === 0) why = `most accurate (${accuracy}) ${among}; ${latency}`;
  else why = `best score ${best.score.toFixed(2)} ${among} at latency weight ${weight}: ${latency}, ${accuracy}`;
  return why + left;
}

function notFoundMessage(criteria: Criteria, total: number, excluded: Map<string, number>): string {
  const model = criteria.type ? `${/^[aeiou]/i.test(criteria.type) ? 'an' : 'a'} ${criteria.type} model` : 'a model';
  const io = [criteria.inputFormat && `taking ${criteria.inputFormat}`, criteria.outputFormat && `giving ${criteria.outputFormat}`].filter(Boolean).join(' and ');
  const within = criteria.maxLatencyMs > 0 ? ` within a p50 of ${formatMs(criteria.maxLatencyMs)}` : '';
  const counts = [...excluded].sort(([a, x], [b, y]) => y - x || a.localeCompare(b)).map(([why, n]) => `${n} ${why}`);
  const detail = total === 0 ? 'there are no deployments' : `${total} deployment${total === 1 ? '' : 's'}: ${counts.join(', ')}`;
  return `no ready deployment serves ${model}${io ? ` ${io}` : ''}${within} (${detail})`;
}

/** 3.1 → "3.1 ms", 12.345 → "12.3 ms", 250 → "250 ms". */
export function formatMs(ms: number): string {
  return `${Number(ms.toFixed(ms < 100 ? 1 : 0))} ms`;
}
