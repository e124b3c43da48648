// The leader's side of model retention: applies retention.ts's decision (through
// ArtifactRegistry.applyRetention) when a model's versions or policy change, and on a periodic
// sweep that catches what those missed (a removal refused while a version was in use, a
// failover between a push and its retention). Each removal is an event naming the version and
// why. Runs only while this coordinator leads: started in establishLeadership, closed in
// revokeLeadership.
import type { Clock, Timer } from '../../shared/clock.js';
import type { Logger } from '../../shared/log.js';
import type { WorkloadEvent } from '../../shared/proto.js';
import type { Store } from '../../shared/store/store.js';
import { keys } from '../../shared/keys.js';
import type { FencedWriter } from '../node-registry.js';
import type { ArtifactKind, ArtifactRecord } from './artifact-record.js';
import type { ArtifactRegistry } from './artifact-registry.js';

/** How often every model with a retention is checked again. */
export const RETENTION_SWEEP_MS = 60_000;

export interface RetentionEnforcerDeps {
  store: Store;
  registry: ArtifactRegistry;
  writer: FencedWriter;
  /** Where each removal is recorded (the leader's event log). */
  event(input: Omit<WorkloadEvent, 'id' | 'timeMs'>): void;
  clock: Clock;
  log: Logger;
  sweepMs?: number;
}

export class RetentionEnforcer {
  private timer: Timer | undefined;
  private sweeping: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly deps: RetentionEnforcerDeps) {}

  /** Hooks into the registry (pushes, SetRetention) and starts the sweep. */
  start(): void {
    this.deps.registry.versionsChanged = (kind, tenant, name) => this.enforce(kind, tenant, name);
    this.timer = this.deps.clock.setInterval(() => void this.sweep(), this.deps.sweepMs ?? RETENTION_SWEEP_MS);
  }

  close(): void {
    this.closed = true;
    this.timer?.cancel();
    if (this.deps.registry.versionsChanged) this.deps.registry.versionsChanged = undefined;
  }

  /** Applies one model's retention; never throws (a failure is logged, and the sweep retries). */
  async enforce(kind: ArtifactKind, tenant: string, name: string): Promise<void> {
    if (kind !== 'model' || this.closed) return;
    try {
      const removals = await this.deps.registry.applyRetention(this.deps.writer, tenant, name);
      for (const r of removals) {
        this.deps.log.info({ tenant, model: name, version: r.version, digest: r.digest }, 'retention removed a version');
        this.deps.event({ tenant, object: `model/${name}`, allocation: '', node: '', type: 'VersionRemoved', message: `version ${r.version} removed: ${r.reason}` });
      }
    } catch (err) {
      this.deps.log.warn({ err, tenant, model: name }, 'could not apply retention; the next sweep tries again');
    }
  }

  /** Checks every model with a retention, one at a time; one sweep at a time. */
  sweep(): Promise<void> {
    this.sweeping ??= (async () => {
      try {
        const { kvs } = await this.deps.store.range(keys.artifactsPrefix('model'));
        for (const kv of kvs) {
          if (this.closed) return;
          const record = JSON.parse(kv.value) as ArtifactRecord;
          if (record.retention && record.versions.length > record.retention.keep) await this.enforce('model', record.tenant, record.name);
        }
      } catch (err) {
        this.deps.log.warn({ err }, 'retention sweep failed; the next one retries');
      } finally {
        this.sweeping = undefined;
      }
    })();
    return this.sweeping;
  }
}
