// `mlfleetctl dashboard`: the link that opens the web dashboard signed in with this CLI's
// token. The token rides in the URL's fragment (`#token=…`), which browsers never send to a
// server; the page stores it in the tab's sessionStorage and wipes it from the address bar.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { parseCoordinatorAddresses } from '../../../shared/client.js';
import { formatHostPort, parseHostPort } from '../../../shared/config.js';
import { withContext } from '../context.js';

/** The coordinator's default --http-listen port. */
const DEFAULT_HTTP_PORT = 7701;

/** The dashboard's base URL when --url is not given: the first coordinator's host, its HTTP port. */
export function defaultDashboardUrl(coordinators: string, tls: boolean): string {
  const first = parseCoordinatorAddresses(coordinators)[0]!;
  const { host } = parseHostPort(first);
  return `${tls ? 'https' : 'http'}://${formatHostPort(host, DEFAULT_HTTP_PORT)}/`;
}

export function dashboardLink(base: string, token: string): string {
  const url = new URL(base);
  url.hash = `token=${encodeURIComponent(token)}`;
  return url.toString();
}

function checkUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(`not a URL: ${value}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError(`not an http(s) URL: ${value}`);
  return value;
}

export function registerDashboardCommand(program: Command): void {
  program
    .command('dashboard')
    .description("print a link that opens the web dashboard signed in with this CLI's token")
    .addOption(
      new Option('--url <url>', `the coordinator's HTTP address (--http-advertise); default: the first --coordinator's host, port ${DEFAULT_HTTP_PORT}`)
        .env('MLFLEET_DASHBOARD_URL')
        .argParser(checkUrl),
    )
    .action((options: { url?: string }, command: Command) =>
      withContext(command, async (ctx) => {
        const token = ctx.token();
        if (!token) throw new Error('no token: pass --token, set MLFLEET_TOKEN, or write the token file');
        const base = options.url ?? defaultDashboardUrl(ctx.options.coordinator, ctx.tls() !== undefined);
        const url = dashboardLink(base, token);
        ctx.print({ data: { url }, table: () => `${url}\n(the link carries your token: share it as you would the token)` });
      }),
    );
}
