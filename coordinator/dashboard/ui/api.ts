// The dashboard's only door to the coordinator: the REST API (/api/v1/…, docs/rest-api.md) on
// the origin that served the page, with the signed-in token as the Authorization header. The
// token lives in sessionStorage (gone when the tab closes); a `#token=…` fragment, which
// browsers never send to servers, is moved there and wiped from the address bar at start.

const TOKEN_KEY = 'mlfleet.token';

/** Reads `#token=…` once: stores it and replaces the URL without it (no history entry keeps it). */
export function adoptFragmentToken(): void {
  const match = /^#token=([^&]*)/.exec(location.hash);
  if (!match) return;
  const value = decodeURIComponent(match[1] ?? '').trim();
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  history.replaceState(history.state, '', location.pathname + location.search);
}

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** An answer other than 2xx, in the API's words ({"error": {"code", "message"}}). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const token = storedToken();
  return token ? { ...extra, authorization: `Bearer ${token}` } : extra;
}

async function failure(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string } };
    if (body.error) return new ApiError(res.status, body.error.code ?? String(res.status), body.error.message ?? res.statusText);
  } catch {
    // not JSON: the status line says it
  }
  return new ApiError(res.status, String(res.status), text.trim() || res.statusText);
}

export async function get<T>(path: string, signal?: AbortSignal): Promise<T> {
  const res = await fetch(`/api/v1${path}`, { headers: headers(), signal });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

export async function send<T>(method: 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const res = await fetch(`/api/v1${path}`, {
    method,
    headers: headers(body === undefined ? {} : { 'content-type': 'application/json' }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw await failure(res);
  const text = await res.text();
  return (text ? JSON.parse(text) : {}) as T;
}

export interface Page<T> {
  items: T[];
  nextCursor?: string | null;
}

/** One page of a list route; an answer that is a bare array is taken as the whole list. */
export async function page<T>(path: string, limit: number, cursor: string | undefined, signal?: AbortSignal): Promise<Page<T>> {
  const sep = path.includes('?') ? '&' : '?';
  const query = `${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
  const body = await get<Page<T> | T[]>(`${path}${query}`, signal);
  return Array.isArray(body) ? { items: body } : body;
}

/** A list route's items, whatever its shape ({items} or a bare array). */
export async function items<T>(path: string, signal?: AbortSignal): Promise<T[]> {
  const body = await get<Page<T> | T[]>(path, signal);
  return Array.isArray(body) ? body : body.items;
}

/**
 * Reads a streamed answer (logs, Server-Sent Events) chunk by chunk until it ends or `signal`
 * aborts. fetch rather than EventSource: EventSource cannot send an Authorization header.
 */
export async function stream(path: string, onText: (text: string) => void, signal: AbortSignal, extra: Record<string, string> = {}): Promise<void> {
  const res = await fetch(`/api/v1${path}`, { headers: headers(extra), signal });
  if (!res.ok) throw await failure(res);
  if (!res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    onText(value);
  }
}
