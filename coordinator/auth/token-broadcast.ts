// How token changes reach the gateways: every change at once when changes are rare, and at most
// one message per window while they come in a burst. A fleet enrolling thousands of hosts
// creates a node credential per join, and each credential goes to every gateway: one message per
// change and session would be a message per pair of nodes (12.5 million for 5,000 joins). The
// window grows with the number of sessions a message goes to (what one costs): 50 ms for a few
// agents, a second for 5,000 and more. A revocation is never held back: it goes out at once, with
// whatever additions were waiting, so that a revoked token stops working within a session's
// latency (DESIGN principle 11).
import type { Clock, Timer } from '../../shared/clock.js';
import type { GatewayToken__Output as GatewayToken } from '../../shared/gen/mlfleet/v1/GatewayToken.js';
import type { TokenTable__Output as TokenTable } from '../../shared/gen/mlfleet/v1/TokenTable.js';

/** The window for `sessions` sessions: additions closer together than this go out together. */
export function broadcastWindowMs(sessions: number): number {
  return Math.min(1_000, Math.max(50, sessions / 5));
}

export class TokenBroadcast {
  private readonly pending = new Map<string, GatewayToken>();
  private timer: Timer | undefined;
  private lastSentMs = -Infinity;

  constructor(
    private readonly clock: Clock,
    private readonly send: (change: TokenTable) => void,
    private readonly windowMs: () => number,
  ) {}

  /** One record's change, as tokenChange() gives it. */
  change(change: TokenTable): void {
    for (const token of change.tokens) this.pending.set(token.id, token);
    for (const id of change.removed) this.pending.delete(id);
    if (change.removed.length > 0) {
      this.flush(change.removed);
      return;
    }
    if (this.timer) return;
    const wait = this.lastSentMs + this.windowMs() - this.clock.now();
    if (wait <= 0) this.flush([]);
    else this.timer = this.clock.setTimeout(() => this.flush([]), wait);
  }

  /** Drops what waits (the leader stepped down: its sessions are gone). */
  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.pending.clear();
  }

  private flush(removed: string[]): void {
    this.timer?.cancel();
    this.timer = undefined;
    const tokens = [...this.pending.values()];
    this.pending.clear();
    this.lastSentMs = this.clock.now();
    this.send({ reset: false, complete: true, tokens, removed });
  }
}
