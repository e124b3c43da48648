// Data that stays fresh: a fetch repeated on a timer (and on demand), cancelled with the view.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api.js';

export interface Polled<T> {
  data: T | undefined;
  error: ApiError | Error | undefined;
  reload(): void;
}

export function usePoll<T>(load: (signal: AbortSignal) => Promise<T>, intervalMs: number, deps: unknown[] = []): Polled<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    setData(undefined);
    setError(undefined);
  }, deps);
  useEffect(() => {
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = () => {
      loadRef.current(abort.signal).then(
        (value) => {
          setData(value);
          setError(undefined);
        },
        (err: Error) => {
          if (!abort.signal.aborted) setError(err);
        },
      ).finally(() => {
        if (!abort.signal.aborted) timer = setTimeout(run, intervalMs);
      });
    };
    run();
    return () => {
      abort.abort();
      clearTimeout(timer);
    };
  }, [tick, intervalMs, ...deps]);
  const reload = useCallback(() => setTick((n) => n + 1), []);
  return { data, error, reload };
}
