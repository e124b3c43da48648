// Model retention as a decision: given a model's policy, its versions (with the aliases that
// point at each) and the versions something uses, which versions to remove and why. Pure: no
// I/O, no clock; the leader applies it (retention-enforcer.ts) and re-checks every removal
// inside the store transaction that makes it.
//
// The rule, newest first by version number (numbers are given out in push order; creation
// times can tie within a millisecond or step back with the clock, so they never order):
// - with keepAliased, an aliased version is kept and not counted;
// - otherwise the first `keep` versions are kept (aliased ones among them count toward it);
// - past those, an aliased version is still kept (an alias always resolves), and so is one in
//   use (a deployment's resolved version, a live replica's version: a rollout's old and new);
// - every other version is removed.

export interface RetentionPolicy {
  /** How many versions to keep, 1..MAX_RETAINED_VERSIONS. */
  keep: number;
  /** Aliased versions are kept without counting toward `keep`. */
  keepAliased: boolean;
}

export const MAX_RETAINED_VERSIONS = 10_000;

export interface RetentionVersion {
  version: number;
  digest: string;
  createdAtMs: number;
  /** The aliases pointing at this version. */
  aliases: readonly string[];
}

export interface RetentionRemoval {
  version: number;
  digest: string;
  /** Why it goes, for the event that records the removal. */
  reason: string;
}

export interface RetentionDecision {
  /** Versions kept, newest first. */
  keep: number[];
  /** Versions to remove, newest first. */
  remove: RetentionRemoval[];
}

export function decideRetention(policy: RetentionPolicy, versions: readonly RetentionVersion[], inUse: ReadonlySet<number>): RetentionDecision {
  const newestFirst = [...versions].sort((a, b) => b.version - a.version);
  const keep: number[] = [];
  const remove: RetentionRemoval[] = [];
  let counted = 0;
  for (const v of newestFirst) {
    const aliased = v.aliases.length > 0;
    if (aliased && policy.keepAliased) {
      keep.push(v.version);
    } else if (counted < policy.keep) {
      counted += 1;
      keep.push(v.version);
    } else if (aliased || inUse.has(v.version)) {
      keep.push(v.version);
    } else {
      const newer = policy.keepAliased ? `the ${policy.keep} newest unaliased version(s)` : `the ${policy.keep} newest version(s)`;
      remove.push({ version: v.version, digest: v.digest, reason: `retention keeps ${newer}; no alias points at it and nothing uses it` });
    }
  }
  return { keep, remove };
}
