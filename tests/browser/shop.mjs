// Helpers shared by the browser tests: Chromium, the demo shop in a fresh context, and bounded waits.
// Not a test file itself (the runner only picks up `*.test.mjs`).

import assert from 'node:assert/strict';
import { createServer, request as httpRequest } from 'node:http';
import { readFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';
import { before, after } from 'node:test';
import { getProfile, startWorker } from '../support/worker.mjs';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const WAIT_MS = 15_000;
export const PROMO = /bags -10%|Bags you looked at/;

/**
 * Launches Debian's Chromium. Playwright turns the back/forward cache off by default; `backForwardCache: true`
 * keeps it on, as in a visitor's browser, for tests that check a page stays eligible for it.
 */
export function launchChromium({ backForwardCache = false } = {}) {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    ignoreDefaultArgs: backForwardCache ? ['--disable-back-forward-cache'] : [],
  });
}

export const pathOf = (r) => new URL(r.url()).pathname;

/**
 * One Worker and one Chromium for the test file that calls it: started before its tests, closed after them. The
 * object returned gets `worker` and `browser` once they are up. `workerOptions` go to `startWorker`.
 */
export function shopForFile(workerOptions = {}) {
  const file = {};
  before(
    async () => {
      file.worker = await startWorker(workerOptions);
      file.browser = await launchChromium();
    },
    { timeout: 180_000 },
  );
  after(async () => {
    await file.browser?.close();
    await file.worker?.stop();
  });
  return file;
}

/**
 * Opens a fresh context and page that record every request and every console message, and count
 * completed decisions through the SDK's `edgecdp:decide` event (installed before any page script runs).
 * `contextOptions` go to `browser.newContext` (for example `extraHTTPHeaders`); `path` is the page to open;
 * `initScript`, if given, runs in the page before any of its scripts.
 */
export async function openShop(t, browser, worker, contextOptions = {}, path = '/', initScript = null) {
  const context = await browser.newContext(contextOptions);
  const requests = [];
  const logs = [];
  context.on('request', (r) => requests.push(r));
  const page = await context.newPage();
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  await page.addInitScript(() => {
    window.__decisions = [];
    document.addEventListener('edgecdp:decide', (e) => window.__decisions.push(e.detail));
  });
  if (initScript) await page.addInitScript(initScript);
  t.after(async () => {
    for (const line of logs) t.diagnostic(`browser ${line}`);
    await context.close();
  });
  await page.goto(`${worker.url}${path}`);
  return { context, page, requests, logs };
}

/** Waits until the page has completed `n` decisions since it loaded; fails with the browser log. */
export async function decisions(shop, n) {
  try {
    await shop.page.waitForFunction((want) => window.__decisions.length >= want, n, { timeout: WAIT_MS });
  } catch (e) {
    throw new Error(`expected ${n} completed decisions: ${e.message}\n${shop.logs.join('\n')}`);
  }
  return shop.page.evaluate(() => window.__decisions.length);
}

export async function hero(page) {
  // The heading carries the message; the configuration may add a line of text below it.
  return page.$eval('[data-edgecdp-slot="hero"]', (el) => ({
    text: (el.querySelector('h2') || el).textContent.trim(),
    block: el.getAttribute('data-edgecdp-block'),
  }));
}

export async function viewProduct(page, productId) {
  await page.click(`button[data-product-id="${productId}"]`);
}

export async function bagIds(page) {
  const ids = await page.$$eval('button[data-category="bags"]', (bs) => bs.map((b) => b.dataset.productId));
  assert.ok(ids.length >= 2, 'the demo page lists at least two bags');
  return ids;
}

/** Reads a profile by anonymous id; fails unless it exists. */
export async function profileOf(worker, anonymousId) {
  const { status, body } = await getProfile(worker, `anonymous_id:${anonymousId}`);
  assert.equal(status, 200, `profile read answered ${status}: ${JSON.stringify(body)}`);
  return body;
}

/** How many `event` the profile of `anonymousId` counts; 0 when there is no profile yet. */
export async function countOf(worker, anonymousId, event) {
  const { status, body } = await getProfile(worker, `anonymous_id:${anonymousId}`);
  if (status === 404) return 0;
  assert.equal(status, 200, `profile read answered ${status}: ${JSON.stringify(body)}`);
  return body.counts[event] ?? 0;
}

/**
 * Polls `probe` until `accept(value)` holds, at most `timeout` ms; returns the last value. Fails saying what
 * was awaited and what was last seen.
 */
export async function eventually(what, probe, accept, { timeout = WAIT_MS, interval = 150 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (accept(last)) return last;
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, interval));
  }
  assert.fail(`${what}: still ${JSON.stringify(last)} after ${timeout} ms`);
}

/** Clicks Accept in the banner and waits for the first decision, which follows the first delivered batch. */
export async function accept(shop) {
  assert.ok(await shop.page.isVisible('#consent-banner'), 'the banner shows when no decision is stored');
  await shop.page.click('#consent-accept');
  await decisions(shop, 1);
  const anonymousId = await shop.page.evaluate(() => localStorage.getItem('edgecdp.anonymousId'));
  assert.ok(anonymousId, 'accepting stores an anonymous id');
  return anonymousId;
}

/** The events waiting in the page's persisted outbox (`localStorage["edgecdp.outbox"]`), parsed. */
export function storedOutboxEvents(page) {
  return page.evaluate(() => {
    const raw = localStorage.getItem('edgecdp.outbox');
    if (raw === null) return null;
    return JSON.parse(raw).flatMap((body) => JSON.parse(body).batch);
  });
}

/**
 * A switch for the network between the browser and the Worker: an HTTP proxy on a free loopback port that
 * forwards everything unchanged, except requests `block(url)` matches, whose connection it drops as a dead
 * network would. Chromium's offline emulation (`context.setOffline`) does not reach a keepalive request that
 * an unloading page leaves behind (and the unloading page reads `navigator.onLine` as true), so tests that
 * leave a page while the network is down also cut it here. Use it with
 * `browser.newContext({proxy: {server: net.server}})`.
 */
export async function startNetworkSwitch() {
  const hop = new Set(['proxy-connection', 'connection', 'keep-alive', 'proxy-authorization']);
  const net = { block: null, blocked: [], server: '' };
  const sockets = new Set();
  const server = createServer((req, res) => {
    const url = new URL(req.url);
    if (net.block && net.block(url)) {
      net.blocked.push(`${req.method} ${url.pathname}`);
      req.socket.destroy();
      return;
    }
    const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !hop.has(k)));
    // A fresh connection per request (no keep-alive pool): twice in full runs a page load through the switch
    // stalled until it timed out, and a pooled connection wrangler dev had closed is the likely cause.
    const upstream = httpRequest(url, { method: req.method, headers, agent: false }, (up) => {
      const raw = [];
      for (let i = 0; i < up.rawHeaders.length; i += 2) {
        if (!hop.has(up.rawHeaders[i].toLowerCase())) raw.push(up.rawHeaders[i], up.rawHeaders[i + 1]);
      }
      res.writeHead(up.statusCode, raw);
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  net.server = `http://127.0.0.1:${server.address().port}`;
  net.close = () =>
    new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return net;
}

/** Blocks what a browser without a network could not reach: everything. */
export const EVERYTHING = () => true;
/** Blocks only the edge's API, so pages still load while events cannot be delivered. */
export const API_ONLY = (url) => url.pathname.startsWith('/v1/');

/**
 * The signed-in user's profile once `event` arrived: it holds the traits the sign-in sent and the browser's
 * anonymous id (the browser joined the user's profile). For the third-party SDK tests, which sign in through
 * the SDK's own identify with the site's identity token.
 */
export async function expectSignedIn(worker, userId, anonymousId, event, traits) {
  const profile = await eventually('the user\'s profile', async () => (await getProfile(worker, `user_id:${userId}`)).body,
    (p) => p?.counts?.[event] === 1);
  for (const [k, v] of Object.entries(traits)) assert.equal(profile.traits[k], v, k);
  assert.ok(profile.identities.some((i) => i.type === 'anonymous_id' && i.value === anonymousId), JSON.stringify(profile.identities));
}

/**
 * A site on a second loopback origin, for a third-party SDK's test: `script(path)` names the file served as
 * JavaScript at `path` (the SDK's bundle), or null; every other path gets `page(workerUrl, path)`. Started on
 * first use, after the file's Worker (its own `before` hook) is up: it loads `config(siteUrl)` into the Worker and
 * launches Chromium. Answers a function resolving to `{url, browser}`; both close after the file.
 */
export function thirdPartySite(worker, { script, page, config }) {
  let server;
  let browser;
  let ready;
  after(async () => {
    await browser?.close();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve()));
  });
  return () => (ready ??= (async () => {
    server = createServer(async (req, res) => {
      const path = req.url.split('?')[0];
      try {
        const file = script(path);
        if (file) res.writeHead(200, { 'content-type': 'text/javascript' }).end(await readFile(file));
        else res.writeHead(200, { 'content-type': 'text/html' }).end(page(worker.url, path));
      } catch {
        res.writeHead(404).end();
      }
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${server.address().port}`;
    const put = await worker.call('PUT', '/v1/config', config(url), worker.admin());
    assert.equal(put.status, 200, put.text);
    browser = await launchChromium();
    return { url, browser };
  })());
}
