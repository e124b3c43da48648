// A log that follows: the route's text/plain answer streamed into a <pre> as it comes. When
// the stream ends (or fails) while the workload still runs — a job still pending, a retry —
// it is opened again after a pause, from the start.
import { useEffect, useRef, useState } from 'preact/hooks';
import { stream } from '../api.js';
import { ErrorNote } from '../components.js';

const MAX_CHARS = 1 << 20;
const RETRY_MS = 2_000;

export function FollowLogs(props: { path: string; finished: boolean }) {
  const [text, setText] = useState('');
  const [error, setError] = useState<Error | undefined>(undefined);
  const [live, setLive] = useState(false);
  const finished = useRef(props.finished);
  finished.current = props.finished;
  const pre = useRef<HTMLPreElement>(null);
  useEffect(() => {
    const abort = new AbortController();
    const follow = async () => {
      while (!abort.signal.aborted) {
        let got = '';
        setLive(true);
        try {
          await stream(`${props.path}?follow=1`, (chunk) => {
            got = (got + chunk).slice(-MAX_CHARS);
            setText(got);
            setError(undefined);
          }, abort.signal);
        } catch (err) {
          if (abort.signal.aborted) return;
          setError(err as Error);
        }
        setLive(false);
        if (finished.current) return;
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    };
    setText('');
    void follow();
    return () => abort.abort();
  }, [props.path]);
  useEffect(() => {
    const el = pre.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [text]);
  return (
    <div class="logs">
      <p class="muted">{live ? 'following…' : 'ended'}</p>
      <ErrorNote error={error} />
      <pre ref={pre} data-testid="logs">
        {text}
      </pre>
    </div>
  );
}
