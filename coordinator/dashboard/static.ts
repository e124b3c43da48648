// The web dashboard's files on the coordinator's HTTP listener (docs/dashboard.md): the fixed
// set esbuild wrote to dist/dashboard/ (scripts/build-dashboard.mjs), read once at start and
// answered from memory, GET and HEAD only, with a Content-Security-Policy that lets the page
// load nothing but its own files and talk to nothing but this origin. The page itself holds
// no data: it asks the REST API (/api/v1/…) with the token it was signed in with.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExtraRoutes } from '../../shared/http-server.js';
import { assetFor, cacheControl, contentType } from './asset-path.js';

/** Where `npm run build` puts the dashboard, from dist/coordinator/dashboard/static.js. */
export const DEFAULT_DASHBOARD_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'dashboard');

export const DASHBOARD_CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

interface Asset {
  body: Buffer;
  headers: Record<string, string>;
}

const COMMON_HEADERS = {
  'content-security-policy': DASHBOARD_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

function loadAssets(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  if (!existsSync(dir)) return assets;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const body = readFileSync(path.join(dir, entry.name));
    assets.set(entry.name, {
      body,
      headers: { ...COMMON_HEADERS, 'content-type': contentType(entry.name), 'cache-control': cacheControl(entry.name), 'content-length': String(body.length) },
    });
  }
  return assets;
}

/** The dashboard's route: answers every path that is not another route's (see asset-path.ts). */
export function dashboardRoutes(dir = DEFAULT_DASHBOARD_DIR): ExtraRoutes {
  const assets = loadAssets(dir);
  const names = new Set(assets.keys());
  return async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const pathname = (req.url ?? '/').split('?')[0] ?? '/';
    const answer = assetFor(pathname, names);
    if (answer.kind === 'not-mine') return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return true;
    }
    const asset = answer.kind === 'file' ? assets.get(answer.name) : answer.kind === 'index' ? assets.get('index.html') : undefined;
    if (!asset) {
      const why = answer.kind === 'missing' ? 'not found\n' : 'the dashboard is not built: run npm run build\n';
      res.writeHead(404, { ...COMMON_HEADERS, 'content-type': 'text/plain' }).end(why);
      return true;
    }
    res.writeHead(200, asset.headers);
    res.end(req.method === 'HEAD' ? undefined : asset.body);
    return true;
  };
}
