// A real headless Chromium for the dashboard's tests (Debian's chromium, driven by
// puppeteer-core; MLFLEET_CHROMIUM names another binary), closed in t.after(). Pages record
// the requests they make and the errors they log, so a test can check what went over the wire.
import type { TestContext } from 'node:test';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

export const CHROMIUM = process.env.MLFLEET_CHROMIUM ?? '/usr/bin/chromium';

export async function openBrowser(t: TestContext): Promise<Browser> {
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in CI containers has no user namespaces for the sandbox; /dev/shm is small there.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run'],
  });
  t.after(() => browser.close());
  return browser;
}

export interface WatchedPage {
  page: Page;
  /** Every request: URL and Authorization header. */
  requests: Array<{ url: string; authorization: string | undefined }>;
  /** Console errors and page errors (a CSP violation shows here). */
  errors: string[];
}

export async function newPage(browser: Browser, width = 1400, height = 900): Promise<WatchedPage> {
  const page = await browser.newPage();
  await page.setViewport({ width, height });
  const watched: WatchedPage = { page, requests: [], errors: [] };
  page.on('request', (req) => watched.requests.push({ url: req.url(), authorization: req.headers().authorization }));
  page.on('console', (msg) => {
    if (msg.type() === 'error') watched.errors.push(msg.text());
  });
  page.on('pageerror', (err) => watched.errors.push(String(err)));
  return watched;
}

/** Opens the dashboard with `#token=…`, as the link of `mlfleetctl dashboard`, and waits until it is signed in. */
export async function signIn(browser: Browser, base: string, token: string, path = '/'): Promise<WatchedPage> {
  const watched = await newPage(browser);
  await watched.page.goto(`${base}${path}#token=${encodeURIComponent(token)}`);
  await watched.page.waitForSelector('header .who', { timeout: 15_000 });
  return watched;
}

/** Clicks an action's button, then Confirm in its dialog. */
export async function confirmAction(page: Page, buttonSelector: string): Promise<void> {
  await page.click(buttonSelector);
  await page.waitForSelector('[role=dialog] [data-confirm=yes]');
  await page.click('[role=dialog] [data-confirm=yes]');
  await page.waitForSelector('[role=dialog]', { hidden: true, timeout: 15_000 });
}
