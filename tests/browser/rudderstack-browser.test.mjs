// RudderStack's browser SDK v3 (@rudderstack/analytics-js, its npm build with the plugins bundled), unchanged, on
// a site of a second loopback origin, set up with the options RudderStack documents for self-hosting alone:
// `dataPlaneUrl` and `configUrl` both edgecdp. It fetches its source configuration from the Worker
// (`/sourceConfig/`), sends each call to `/v1/{type}` (or `/v1/batch` when batching, or `/beacon/v1/batch` with
// `useBeacon`), with consent as its consent manager's ids. Each call must be stored once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { thirdPartySite, eventually, expectSignedIn } from './shop.mjs';
import { workerForFile, getProfile, identityToken } from '../support/worker.mjs';

const w = workerForFile();
const BUNDLE = join(import.meta.dirname, '../../node_modules/@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js');
let siteUrl, browser;

// `?batch`: its batching queue (POST /v1/batch); `?beacon`: navigator.sendBeacon (POST /beacon/v1/batch).
const page = (workerUrl) => `<!doctype html><meta charset="utf-8"><title>a RudderStack site</title>
<script src="/rsa/index.js"></script>
<script>
  const mode = location.search.slice(1);
  window.ra = new window.rudderanalytics.RudderAnalytics();
  window.ra.load('rs-site', ${JSON.stringify(workerUrl)}, {
    configUrl: ${JSON.stringify(workerUrl)},
    consentManagement: { enabled: true, provider: 'custom', allowedConsentIds: ['C0002', 'C0003'], deniedConsentIds: ['C0004'] },
    useBeacon: mode === 'beacon',
    queueOptions: mode === 'batch' ? { batch: { enabled: true, maxItems: 3, flushInterval: 500 } } : {},
  });
  window.ready = new Promise((resolve) => window.ra.ready(() => resolve()));
</script>`;

const site = thirdPartySite(w, {
  script: (path) => (path === '/rsa/index.js' ? BUNDLE : null),
  page: (workerUrl, path) => (path === '/next' ? '<!doctype html><title>next page</title>' : page(workerUrl)),
  config: (siteUrl) => ({
    sources: [{ id: 'rudder-site', writeKey: 'rs-site', origins: [siteUrl] },
      { id: 'test-backend', type: 'server', key: w.serverKey }],
    consent: { model: 'opt-in', categories: { C0002: 'analytics', C0003: 'personalization', C0004: 'advertising' } },
  }),
});
const setup = async () => { ({ url: siteUrl, browser } = await site()); };

/** The site in a fresh context (the SDK keeps undelivered events in localStorage), recording every request. */
async function openSite(mode = '') {
  await setup();
  const context = await browser.newContext();
  const tab = await context.newPage();
  const requests = [];
  const origins = new Set();
  tab.on('request', (r) => {
    requests.push(`${r.method()} ${new URL(r.url()).pathname}`);
    origins.add(new URL(r.url()).origin);
  });
  await tab.goto(`${siteUrl}/${mode ? `?${mode}` : ''}`);
  await tab.evaluate(() => window.ready);
  return { context, tab, requests, origins };
}

const stored = (anonymousId, accept) => eventually('the calls stored',
  async () => (await getProfile(w, `anonymous_id:${anonymousId}`)).body, accept);

test('its default delivery: config from edgecdp, then page, identify, group and two tracks stored once each', async () => {
  const { context, tab, requests, origins } = await openSite();
  const anonymousId = await tab.evaluate(() => {
    window.ra.page('Shop', 'Home');
    window.ra.identify({ plan: 'pro' }); // traits alone: the SDK sends them in context.traits
    window.ra.track('Clicked Buy', { price: 3 });
    window.ra.track('Clicked Buy', { price: 4 });
    window.ra.group('org-9', { name: 'Acme' });
    return window.ra.getAnonymousId();
  });
  assert.ok(anonymousId, 'the SDK made an anonymous id');
  const profile = await stored(anonymousId, (p) => p?.counts?.['Clicked Buy'] === 2 && p?.counts?.group === 1);
  assert.equal(profile.counts.page, 1);
  assert.equal(profile.counts.identify, 1);
  assert.equal(profile.traits.plan, 'pro');
  assert.deepEqual(profile.consent, { analytics: true, personalization: true, advertising: false });
  // It asked nothing of RudderStack's servers: every request went to the site or to edgecdp.
  assert.deepEqual([...origins].sort(), [siteUrl, w.url].sort());
  assert.ok(requests.includes('GET /sourceConfig/'), requests.join('\n'));
  const posts = requests.filter((r) => r.startsWith('POST'));
  assert.deepEqual([...new Set(posts)].sort(), ['POST /v1/group', 'POST /v1/identify', 'POST /v1/page', 'POST /v1/track']);
  await context.close();
});

test('a signed-in visitor: the site\'s identity token passed in the call\'s options proves the user id', async () => {
  const { context, tab } = await openSite();
  const userId = `rs-user-${Date.now()}`;
  const token = identityToken(w, userId);
  const anonymousId = await tab.evaluate(({ userId, token }) => {
    window.ra.identify(userId, { plan: 'gold' }, { identityToken: token });
    window.ra.track('Signed In Call');
    return window.ra.getAnonymousId();
  }, { userId, token });
  await expectSignedIn(w, userId, anonymousId, 'Signed In Call', { plan: 'gold' });
  await context.close();
});

test('its batching queue: three calls in one POST to /v1/batch, each stored once', async () => {
  const { context, tab, requests } = await openSite('batch');
  const anonymousId = await tab.evaluate(() => {
    window.ra.track('Batched Call', { n: 1 });
    window.ra.track('Batched Call', { n: 2 });
    window.ra.identify({ tier: 'gold' });
    return window.ra.getAnonymousId();
  });
  const profile = await stored(anonymousId, (p) => p?.counts?.['Batched Call'] === 2 && p?.traits?.tier === 'gold');
  assert.equal(profile.counts['Batched Call'], 2);
  assert.deepEqual([...new Set(requests.filter((r) => r.startsWith('POST')))], ['POST /v1/batch']);
  await context.close();
});

test('its beacon delivery: calls made just before the visitor leaves arrive at /beacon/v1/batch, each once', async () => {
  await setup();
  const context = await browser.newContext();
  // Playwright does not report beacons sent as a page goes; the page notes each one (same-origin storage
  // survives the navigation), and sends it unchanged.
  await context.addInitScript(() => {
    const send = navigator.sendBeacon.bind(navigator);
    navigator.sendBeacon = (url, data) => {
      const seen = JSON.parse(localStorage.getItem('beacons') || '[]');
      localStorage.setItem('beacons', JSON.stringify([...seen, new URL(url).pathname + new URL(url).search]));
      return send(url, data);
    };
  });
  const tab = await context.newPage();
  await tab.goto(`${siteUrl}/?beacon`);
  await tab.evaluate(() => window.ready);
  const anonymousId = await tab.evaluate(() => {
    window.ra.track('Beacon Call', { n: 1 });
    window.ra.track('Beacon Call', { n: 2 });
    return window.ra.getAnonymousId();
  });
  await tab.goto(`${siteUrl}/next`);
  const profile = await stored(anonymousId, (p) => p?.counts?.['Beacon Call'] === 2);
  assert.equal(profile.counts['Beacon Call'], 2);
  const beacons = await tab.evaluate(() => JSON.parse(localStorage.getItem('beacons') || '[]'));
  assert.ok(beacons.includes('/beacon/v1/batch?writeKey=rs-site'), JSON.stringify(beacons));
  await context.close();
});

test('the source configuration: only for a browser source\'s key, from its origins; a server key never in a URL', async () => {
  await setup();
  const foreign = await fetch(`${w.url}/sourceConfig/?writeKey=rs-site`, { headers: { origin: 'https://elsewhere.example' } });
  assert.equal(foreign.status, 403);
  assert.equal((await foreign.json()).error.code, 'origin_not_allowed');
  const unknown = await fetch(`${w.url}/sourceConfig/?writeKey=nobody`);
  assert.equal(unknown.status, 404);
  assert.equal((await unknown.json()).error.code, 'unknown_write_key');
  const none = await fetch(`${w.url}/sourceConfig/`);
  assert.equal(none.status, 401);
  const own = await fetch(`${w.url}/sourceConfig/?writeKey=rs-site`, { headers: { origin: siteUrl } });
  assert.equal(own.status, 200);
  assert.equal(own.headers.get('access-control-allow-origin'), siteUrl);
  const body = await own.json();
  assert.deepEqual([body.source.id, body.source.enabled, body.source.destinations], ['rudder-site', true, []]);
  // A server source's secret key sent in a beacon's URL is refused before it is used.
  const server = await fetch(`${w.url}/beacon/v1/batch?writeKey=${w.serverKey}`, { method: 'POST',
    body: JSON.stringify({ batch: [{ type: 'track', event: 'X', anonymousId: 'a' }] }) });
  assert.equal(server.status, 403);
  assert.equal((await server.json()).error.code, 'server_key_in_url');
});
