// The live event stream (GET /api/v1/events, Server-Sent Events), newest first, filterable by
// object, type and text; a dropped stream is reopened from the last event it saw
// (Last-Event-ID), so nothing is shown twice or missed.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { stream } from '../api.js';
import { ErrorNote } from '../components.js';
import { SseParser } from '../sse.js';
import type { WorkloadEventJson } from '../types.js';

const KEEP = 1_000;
const RETRY_MS = 2_000;

export function Events() {
  const [events, setEvents] = useState<WorkloadEventJson[]>([]);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [filter, setFilter] = useState('');
  useEffect(() => {
    const abort = new AbortController();
    const parser = new SseParser();
    const follow = async () => {
      while (!abort.signal.aborted) {
        try {
          await stream(
            '/events?replay=200',
            (chunk) =>
              parser.push(chunk, (e) => {
                if (e.event !== 'message' && e.event !== 'event') return;
                const event = JSON.parse(e.data) as WorkloadEventJson;
                setEvents((old) => [event, ...old].slice(0, KEEP));
                setError(undefined);
              }),
            abort.signal,
            parser.lastId ? { 'last-event-id': parser.lastId } : {},
          );
        } catch (err) {
          if (abort.signal.aborted) return;
          setError(err as Error);
        }
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    };
    void follow();
    return () => abort.abort();
  }, []);
  const shown = useMemo(() => {
    const words = filter.toLowerCase().split(/\s+/).filter(Boolean);
    if (words.length === 0) return events;
    return events.filter((e) => {
      const text = `${e.object} ${e.type} ${e.node} ${e.tenant} ${e.message}`.toLowerCase();
      return words.every((w) => text.includes(w));
    });
  }, [events, filter]);
  return (
    <section>
      <h2>Events</h2>
      <p>
        <input placeholder="filter: words that must all appear (deployment/web Failed …)" value={filter} onInput={(e) => setFilter((e.currentTarget as HTMLInputElement).value)} class="wide" />
      </p>
      <ErrorNote error={error} />
      <table>
        <thead>
          <tr>
            <th>#</th>
            <th>Time</th>
            <th>Object</th>
            <th>Type</th>
            <th>Node</th>
            <th>Message</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((e) => (
            <tr key={e.id} data-event={e.id}>
              <td>{e.id}</td>
              <td>{e.time ? new Date(e.time).toLocaleTimeString() : '-'}</td>
              <td>{e.object}</td>
              <td>{e.type}</td>
              <td>{e.node}</td>
              <td>{e.message}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {shown.length === 0 && <p class="muted">Waiting for events…</p>}
    </section>
  );
}
