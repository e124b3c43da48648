// Small pieces every page uses: links that route without reloading, usage bars, the
// confirmation every admin action goes through, errors in the API's words, a virtual list.
import { createContext, type ComponentChildren } from 'preact';
import { useContext, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api.js';
import { navigate } from './router.js';
import type { Whoami } from './types.js';

export const Session = createContext<Whoami>({ role: '', tenant: '' });

export function useSession(): Whoami {
  return useContext(Session);
}

/** Node actions (cordon, uncordon, drain) are admins' (coordinator/auth/rules.ts). */
export function isAdmin(who: Whoami): boolean {
  return who.role === 'admin';
}

/** Scaling a deployment and cancelling a job: admins and developers. */
export function mayOperate(who: Whoami): boolean {
  return who.role === 'admin' || who.role === 'developer';
}

export function Link(props: { href: string; children: ComponentChildren; class?: string }) {
  return (
    <a
      href={props.href}
      class={props.class}
      onClick={(e) => {
        if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        navigate(props.href);
      }}
    >
      {props.children}
    </a>
  );
}

/** used/total as a bar; over 90 % is red. */
export function Bar(props: { used: number; total: number; label: string; title?: string }) {
  const share = props.total > 0 ? Math.min(1, props.used / props.total) : 0;
  return (
    <div class="bar" title={props.title ?? props.label} data-share={share.toFixed(3)}>
      <div class={share > 0.9 ? 'fill hot' : 'fill'} style={{ width: `${(share * 100).toFixed(1)}%` }} />
      <span>{props.label}</span>
    </div>
  );
}

export function ErrorNote(props: { error: Error | undefined }) {
  if (!props.error) return null;
  const e = props.error;
  const text = e instanceof ApiError ? (e.status === 403 ? `Your token may not see this (${e.message}).` : `${e.code}: ${e.message}`) : e.message;
  return (
    <p class="error" role="alert">
      {text}
    </p>
  );
}

export function Loading() {
  return <p class="muted">Loading…</p>;
}

/**
 * A button that asks before it acts: the dialog names the action and its target; Confirm runs
 * it and shows its error, if any, in the dialog.
 */
export function ConfirmButton(props: { label: string; question: string; action: () => Promise<unknown>; done?: () => void; danger?: boolean; children?: ComponentChildren }) {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | undefined>(undefined);
  const confirm = () => {
    setBusy(true);
    props.action().then(
      () => {
        setBusy(false);
        setOpen(false);
        props.done?.();
      },
      (err: Error) => {
        setBusy(false);
        setError(err);
      },
    );
  };
  return (
    <>
      <button class={props.danger ? 'action danger' : 'action'} data-action={props.label.toLowerCase()} onClick={() => (setError(undefined), setOpen(true))}>
        {props.label}
      </button>
      {open && (
        <div class="backdrop">
          <div class="dialog" role="dialog" aria-modal="true">
            <p>{props.question}</p>
            {props.children}
            <ErrorNote error={error} />
            <div class="buttons">
              <button onClick={() => setOpen(false)} disabled={busy}>
                Cancel
              </button>
              <button class={props.danger ? 'danger' : 'primary'} data-confirm="yes" onClick={confirm} disabled={busy}>
                {busy ? 'Working…' : props.label}
              </button>
            </div>
          </div>
        </div>
      )}
    </>
  );
}

/**
 * Renders only the rows in view (plus a margin) of a list of any length: thousands of nodes
 * cost as many DOM nodes as fit on the screen. Rows have one fixed height.
 */
export function VirtualList<T>(props: { items: readonly T[]; rowHeight: number; height: number; row: (item: T, index: number) => ComponentChildren; onPainted?: () => void }) {
  const [top, setTop] = useState(0);
  const painted = useRef(false);
  const { items, rowHeight, height } = props;
  const first = Math.max(0, Math.floor(top / rowHeight) - 5);
  const last = Math.min(items.length, Math.ceil((top + height) / rowHeight) + 5);
  useEffect(() => {
    if (!painted.current && items.length > 0) {
      painted.current = true;
      props.onPainted?.();
    }
  }, [items.length]);
  return (
    <div class="virtual" style={{ height: `${height}px` }} onScroll={(e) => setTop((e.currentTarget as HTMLElement).scrollTop)}>
      <div style={{ height: `${items.length * rowHeight}px`, position: 'relative' }}>
        {items.slice(first, last).map((item, i) => (
          <div class="vrow" key={first + i} style={{ top: `${(first + i) * rowHeight}px`, height: `${rowHeight}px` }}>
            {props.row(item, first + i)}
          </div>
        ))}
      </div>
    </div>
  );
}
