// Admission at the RPC edge: how many calls one caller may have open at once, so that no
// caller can take the leader's event loop from its lease renewal and the agents' heartbeats
// (Kubernetes' API Priority and Fairness, reduced to what one process needs: a concurrency
// share per caller, by kind of call, and load shed with a hint instead of queued).
//
// Pure: counters in memory, no I/O and no clock. The edge asks before it runs a handler and
// calls the release it got back once the call has ended, however it ended.
import type { Role } from '../../shared/auth.js';

/** What a call holds while it is open. Uploads are counted per tenant as well as per caller. */
export type Lane = 'unary' | 'stream' | 'upload';

export interface RoleLimits {
  /** Unary calls in flight at once. */
  unary: number;
  /** Server-streaming, bidirectional and client-streaming calls open at once. */
  streams: number;
}

export interface AdmissionLimits {
  perRole: Record<Role, RoleLimits>;
  /** Uploads (Push, job output) in flight at once per tenant, whichever tokens send them. */
  uploadsPerTenant: number;
  /** What a refused caller is told to wait before trying again. */
  retryAfterMs: number;
}

/**
 * Agents hold one session and a few downloads; a join token opens one session; people and
 * their scripts get room for watches and parallel calls, admins a little more.
 */
export const DEFAULT_ADMISSION_LIMITS: AdmissionLimits = {
  perRole: {
    admin: { unary: 128, streams: 128 },
    developer: { unary: 64, streams: 64 },
    consumer: { unary: 64, streams: 32 },
    node: { unary: 32, streams: 16 },
    join: { unary: 4, streams: 2 },
  },
  uploadsPerTenant: 16,
  retryAfterMs: 1_000,
};

export interface Caller {
  tokenId: string;
  role: Role;
  tenant: string;
  /** A node credential's node: its share is the node's, whichever credential it uses. */
  node: string;
}

export type Admitted = { ok: true; release: () => void };
export type Refused = { ok: false; retryAfterMs: number; reason: string };

export class Admission {
  private readonly open = new Map<string, number>();

  constructor(private readonly limits: AdmissionLimits = DEFAULT_ADMISSION_LIMITS) {}

  /** Admits one call of `lane` for `caller`, or says why not and when to try again. */
  admit(caller: Caller, lane: Lane): Admitted | Refused {
    const limits = this.limits.perRole[caller.role];
    const who = caller.role === 'node' && caller.node ? `node ${caller.node}` : `token ${caller.tokenId}`;
    const kind = lane === 'unary' ? 'unary' : 'streams';
    const limit = limits[kind];
    const callerKey = `${kind}\0${who}`;
    if (this.count(callerKey) >= limit) {
      return this.refuse(`${who} already has ${limit} ${kind === 'unary' ? 'calls' : 'streams'} open, the most a ${caller.role} may`);
    }
    const keys = [callerKey];
    if (lane === 'upload') {
      const tenantKey = `upload\0${caller.tenant}`;
      if (this.count(tenantKey) >= this.limits.uploadsPerTenant) {
        return this.refuse(`tenant ${caller.tenant} already has ${this.limits.uploadsPerTenant} uploads in flight, the most a tenant may`);
      }
      keys.push(tenantKey);
    }
    for (const key of keys) this.open.set(key, this.count(key) + 1);
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        for (const key of keys) {
          const left = this.count(key) - 1;
          if (left > 0) this.open.set(key, left);
          else this.open.delete(key);
        }
      },
    };
  }

  /** Calls open now (for metrics and tests): all of them, or one caller's of one kind. */
  inFlight(): number {
    let total = 0;
    for (const [key, n] of this.open) if (!key.startsWith('upload\0')) total += n;
    return total;
  }

  private count(key: string): number {
    return this.open.get(key) ?? 0;
  }

  private refuse(why: string): Refused {
    const { retryAfterMs } = this.limits;
    return { ok: false, retryAfterMs, reason: `${why}; retry after ${retryAfterMs} ms, once some of them have ended` };
  }
}
