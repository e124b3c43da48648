// The dashboard's shell: sign-in (a typed token, or one carried in `#token=…`), who the token
// is (GET /api/v1/whoami: the role decides which actions show), the navigation and the pages.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, adoptFragmentToken, forgetToken, get, storeToken, storedToken } from './api.js';
import { ErrorNote, Link, Session } from './components.js';
import { match, navigate, usePath } from './router.js';
import type { Whoami } from './types.js';
import { AllocationDetail } from './pages/allocation-detail.js';
import { ArtifactDetail, Artifacts } from './pages/artifacts.js';
import { Deployments } from './pages/deployments.js';
import { Events } from './pages/events.js';
import { Jobs } from './pages/jobs.js';
import { NodeDetail } from './pages/node-detail.js';
import { Overview } from './pages/overview.js';

function SignIn(props: { error: Error | undefined; signedIn: (who: Whoami) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<Error | undefined>(props.error);
  const submit = (e: Event) => {
    e.preventDefault();
    storeToken(token.trim());
    get<Whoami>('/whoami').then(props.signedIn, (err: Error) => {
      forgetToken();
      setError(err);
    });
  };
  return (
    <form class="signin" onSubmit={submit}>
      <h1>mlfleet</h1>
      <p>Sign in with an API token (mlfleetctl tokens create, or the link mlfleetctl dashboard prints).</p>
      <input type="password" name="token" autocomplete="off" placeholder="token" value={token} onInput={(e) => setToken((e.currentTarget as HTMLInputElement).value)} />
      <button type="submit" class="primary" disabled={!token.trim()}>
        Sign in
      </button>
      <ErrorNote error={error} />
    </form>
  );
}

const NAV: Array<[string, string]> = [
  ['/', 'Overview'],
  ['/deployments', 'Deployments'],
  ['/jobs', 'Jobs'],
  ['/models', 'Models'],
  ['/datasets', 'Datasets'],
  ['/events', 'Events'],
];

function Page(props: { path: string }) {
  const { path } = props;
  let m: Record<string, string> | null;
  if (path === '/' || path === '/nodes') return <Overview />;
  if ((m = match('/nodes/:name', path))) return <NodeDetail name={m.name ?? ''} />;
  if (path === '/deployments') return <Deployments />;
  if (path === '/jobs') return <Jobs />;
  if ((m = match('/jobs/:name', path))) return <Jobs selected={m.name ?? ''} />;
  if (path === '/models' || path === '/datasets') return <Artifacts kind={path === '/models' ? 'models' : 'datasets'} />;
  if ((m = match('/models/:name', path))) return <ArtifactDetail kind="models" name={m.name ?? ''} />;
  if ((m = match('/datasets/:name', path))) return <ArtifactDetail kind="datasets" name={m.name ?? ''} />;
  if (path === '/events') return <Events />;
  if ((m = match('/allocations/:id', path))) return <AllocationDetail id={m.id ?? ''} />;
  return <p>No such page. <Link href="/">Overview</Link></p>;
}

function App() {
  const path = usePath();
  const [who, setWho] = useState<Whoami | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [checking, setChecking] = useState(storedToken() !== null);
  useEffect(() => {
    if (!storedToken()) return;
    get<Whoami>('/whoami').then(
      (w) => (setWho(w), setChecking(false)),
      (err: Error) => {
        if (err instanceof ApiError && err.status === 401) forgetToken();
        setError(err);
        setChecking(false);
      },
    );
  }, []);
  if (checking) return <p class="muted">Signing in…</p>;
  if (!who) return <SignIn error={error} signedIn={(w) => (setError(undefined), setWho(w))} />;
  const section = NAV.filter(([href]) => href !== '/' && path.startsWith(href))[0]?.[0] ?? '/';
  return (
    <Session.Provider value={who}>
      <header>
        <strong>mlfleet</strong>
        <nav>
          {NAV.map(([href, label]) => (
            <Link key={href} href={href} class={href === section ? 'current' : ''}>
              {label}
            </Link>
          ))}
        </nav>
        <span class="who" data-role={who.role}>
          {who.role}
          {who.tenant ? ` · ${who.tenant}` : ''}
        </span>
        <button
          onClick={() => {
            forgetToken();
            setWho(undefined);
            navigate('/');
          }}
        >
          Sign out
        </button>
      </header>
      <main>
        <Page path={path} />
      </main>
    </Session.Provider>
  );
}

adoptFragmentToken();
render(<App />, document.getElementById('app')!);
