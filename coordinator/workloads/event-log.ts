// Workload events: what happened to deployments, jobs, their allocations and nodes. Kept in the
// store (the newest MAX_EVENTS), handed to live watchers on the leader as they are recorded.
// Recording never fails the action it describes: a lost event is logged, not thrown.
import type { Clock } from '../../shared/clock.js';
import { keys } from '../../shared/keys.js';
import type { Logger } from '../../shared/log.js';
import type { WorkloadEvent } from '../../shared/proto.js';
import type { Store } from '../../shared/store/store.js';
import type { FencedWriter } from '../node-registry.js';

export const MAX_EVENTS = 10_000;

export type EventInput = Omit<WorkloadEvent, 'id' | 'timeMs'>;

export class EventLog {
  private nextId = 1;
  private readonly watchers = new Set<(event: WorkloadEvent) => void>();
  private stored = 0;
  private writes: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly store: Store,
    private readonly writer: FencedWriter,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  static async load(store: Store, writer: FencedWriter, clock: Clock, log: Logger): Promise<EventLog> {
    const events = new EventLog(store, writer, clock, log);
    const { kvs } = await store.range(keys.eventsPrefix);
    events.stored = kvs.length;
    const last = kvs.at(-1);
    if (last) events.nextId = (JSON.parse(last.value) as WorkloadEvent).id + 1;
    return events;
  }

  record(input: EventInput): WorkloadEvent {
    const event: WorkloadEvent = { ...input, id: this.nextId++, timeMs: this.clock.now() };
    for (const watcher of this.watchers) watcher(event);
    this.writes = this.writes
      .then(() => this.writer.txn([], [{ type: 'put', key: keys.event(event.id), value: JSON.stringify(event) }]))
      .then(() => this.trim())
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message, event: event.type }, 'could not store a workload event'));
    return event;
  }

  /** The newest `limit` events matching `filter`, oldest first. */
  async recent(limit: number, filter: (event: WorkloadEvent) => boolean): Promise<WorkloadEvent[]> {
    if (limit === 0) return [];
    await this.writes;
    const { kvs } = await this.store.range(keys.eventsPrefix);
    const matching: WorkloadEvent[] = [];
    for (let i = kvs.length - 1; i >= 0 && matching.length < limit; i--) {
      const event = JSON.parse(kvs[i]!.value) as WorkloadEvent;
      if (filter(event)) matching.push(event);
    }
    return matching.reverse();
  }

  /** Calls `watcher` with every event recorded from now on; returns the unsubscribe. */
  watch(watcher: (event: WorkloadEvent) => void): () => void {
    this.watchers.add(watcher);
    return () => this.watchers.delete(watcher);
  }

  /** Waits for the events recorded so far to be stored. */
  flush(): Promise<unknown> {
    return this.writes;
  }

  private async trim(): Promise<void> {
    this.stored += 1;
    if (this.stored <= MAX_EVENTS + MAX_EVENTS / 10) return;
    const { kvs } = await this.store.range(keys.eventsPrefix);
    const surplus = kvs.slice(0, Math.max(0, kvs.length - MAX_EVENTS));
    for (let i = 0; i < surplus.length; i += 500) {
      await this.writer.txn([], surplus.slice(i, i + 500).map((kv) => ({ type: 'delete' as const, key: kv.key })));
    }
    this.stored = kvs.length - surplus.length;
  }
}
