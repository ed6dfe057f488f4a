// Segment's own browser SDK (analytics-next, its UMD build from npm), unchanged, on a site of a second loopback
// origin, with only `cdnURL` pointed at the Worker: it loads its settings from the Worker
// (`/v1/projects/{writeKey}/settings`) and sends its calls to the paths it always uses (`/v1/t`, `/v1/p`, `/v1/i`),
// text/plain bodies with the write key inside. Each call must be stored once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { thirdPartySite, eventually, expectSignedIn } from './shop.mjs';
import { workerForFile, getProfile, GRANT, identityToken } from '../support/worker.mjs';

const w = workerForFile();
const UMD = join(import.meta.dirname, '../../node_modules/@segment/analytics-next/dist/umd');
let siteUrl, browser;

const page = (workerUrl) => `<!doctype html><meta charset="utf-8"><title>a Segment site</title>
<script src="/ajs/index.js"></script>
<script>
  // \`?batching\`: analytics.js's batching delivery, which posts to /b with the write key in Basic auth.
  const batching = location.search.includes('batching')
    ? { integrations: { 'Segment.io': { deliveryStrategy: { strategy: 'batching', config: { size: 3, timeout: 500 } } } } }
    : {};
  window.loaded = AnalyticsNext.AnalyticsBrowser.load({ writeKey: 'seg-site', cdnURL: ${JSON.stringify(workerUrl)} }, batching)
    .then(([analytics]) => analytics);
</script>`;

const site = thirdPartySite(w, {
  script: (path) => (path.startsWith('/ajs/') ? join(UMD, path.slice('/ajs/'.length).replace(/\.\./g, '')) : null),
  page: (workerUrl) => page(workerUrl),
  config: (siteUrl) => ({ sources: [{ id: 'segment-site', writeKey: 'seg-site', origins: [siteUrl] }] }),
});
const setup = async () => { ({ url: siteUrl, browser } = await site()); };

/** The site in a fresh context, recording the paths it POSTs to. */
async function openSite(path) {
  await setup();
  const context = await browser.newContext();
  const tab = await context.newPage();
  const posted = [];
  tab.on('request', (r) => { if (r.method() === 'POST') posted.push(new URL(r.url()).pathname); });
  await tab.goto(`${siteUrl}${path}`);
  return { context, tab, posted };
}

test('analytics-next with cdnURL set to edgecdp: page, identify and two tracks are stored once each', async () => {
  const { context, tab, posted } = await openSite('/');
  const anonymousId = await tab.evaluate(async (grant) => {
    const analytics = await window.loaded;
    await analytics.page({}, { context: grant });
    await analytics.identify({ plan: 'pro' }, { context: grant });
    await analytics.track('Clicked Buy', { price: 3 }, { context: grant });
    await analytics.track('Clicked Buy', { price: 4 }, { context: grant });
    return analytics.user().anonymousId();
  }, GRANT);
  assert.ok(anonymousId, 'analytics-next made an anonymous id');
  const profile = await eventually('the calls stored', async () => (await getProfile(w, `anonymous_id:${anonymousId}`)).body,
    (p) => p?.counts?.['Clicked Buy'] === 2);
  assert.equal(profile.counts['Clicked Buy'], 2);
  assert.equal(profile.counts.page, 1);
  assert.equal(profile.traits.plan, 'pro');
  assert.deepEqual([...new Set(posted)].sort(), ['/v1/i', '/v1/p', '/v1/t']);
  await context.close();
});

test('a signed-in visitor: the site\'s identity token in the call\'s context proves the user id', async () => {
  const { context, tab } = await openSite('/');
  const userId = `seg-user-${Date.now()}`;
  const token = identityToken(w, userId);
  const anonymousId = await tab.evaluate(async ({ userId, token, grant }) => {
    const analytics = await window.loaded;
    await analytics.identify(userId, { plan: 'gold' }, { context: { ...grant, identityToken: token } });
    await analytics.track('Signed In Call', {}, { context: grant });
    return analytics.user().anonymousId();
  }, { userId, token, grant: GRANT });
  await expectSignedIn(w, userId, anonymousId, 'Signed In Call', { plan: 'gold' });
  await context.close();
});

test('analytics-next in its batching mode: three calls in one POST to /v1/b, each stored once', async () => {
  const { context, tab, posted } = await openSite('/?batching');
  const anonymousId = await tab.evaluate(async (grant) => {
    const analytics = await window.loaded;
    analytics.track('Batched Call', { n: 1 }, { context: grant });
    analytics.track('Batched Call', { n: 2 }, { context: grant });
    analytics.identify({ tier: 'gold' }, { context: grant });
    return analytics.user().anonymousId();
  }, GRANT);
  const profile = await eventually('the batch stored', async () => (await getProfile(w, `anonymous_id:${anonymousId}`)).body,
    (p) => p?.counts?.['Batched Call'] === 2 && p?.traits?.tier === 'gold');
  assert.equal(profile.counts['Batched Call'], 2);
  assert.deepEqual([...new Set(posted)], ['/v1/b']);
  await context.close();
});

test('a site that is not the source\'s origin gets no settings, and an unknown write key none either', async () => {
  await setup();
  const foreign = await fetch(`${w.url}/v1/projects/seg-site/settings`, { headers: { origin: 'https://elsewhere.example' } });
  assert.equal(foreign.status, 403);
  assert.equal((await foreign.json()).error.code, 'origin_not_allowed');
  const unknown = await fetch(`${w.url}/v1/projects/nobody/settings`);
  assert.equal(unknown.status, 404);
  assert.equal((await unknown.json()).error.code, 'unknown_write_key');
  const own = await fetch(`${w.url}/v1/projects/seg-site/settings`, { headers: { origin: siteUrl } });
  assert.equal(own.status, 200);
  assert.equal(own.headers.get('access-control-allow-origin'), siteUrl);
  assert.equal((await own.json()).integrations['Segment.io'].apiHost, `${new URL(w.url).host}/v1`);
});
