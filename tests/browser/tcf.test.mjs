// The consent a site's CMP records, read by the loader with no glue code on the page, in Chromium against the real
// Worker: IAB TCF v2 through the IAB's own CMP API (@iabtechlabtcf/cmpapi) with TC strings encoded by
// @iabtechlabtcf/core, and Google Consent Mode v2 through gtag's dataLayer. The page is the demo's /about, which
// loads the loader and calls `edgecdp.page()` and nothing else; the CMP is installed before its scripts run, as a
// site's CMP tag in the head would be.
//
// Run with `node --test tests/browser/tcf.test.mjs` after scripts/build.sh (the Worker serves the built loader).
// Each test uses a fresh browser context; the Worker is shared. Every wait is bounded; the only fixed waits check
// that nothing arrives.

import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { TCString } from '@iabtechlabtcf/core';
import { tcString as encodeTc } from '../support/tcf.mjs';
import { countOf, eventually, openShop as open, pathOf, profileOf, shopForFile } from './shop.mjs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
// Long enough for the SDK's 1 s batch timer to have fired had anything been queued for sending.
const SETTLE_MS = 1500;
// The id and version the CMP API is created with (it requires an id of at least 2); the loader reads neither.
const CMP_ID = 2;
const CMP_VERSION = 1;

const file = shopForFile();

// The IAB's CMP API, bundled once for the page: an IIFE that puts `CmpApi` on window.
let cmpApiBundle;
before(async () => {
  const out = await build({
    stdin: {
      contents: "import { CmpApi } from '@iabtechlabtcf/cmpapi'; window.CmpApi = CmpApi;",
      resolveDir: ROOT,
      loader: 'js',
    },
    bundle: true,
    format: 'iife',
    platform: 'browser',
    minify: true,
    write: false,
    logLevel: 'warning',
  });
  cmpApiBundle = out.outputFiles[0].text;
});

/** A TC string in which the visitor consents to exactly the purposes given (`tests/support/tcf.mjs`). */
const tcString = (purposes) => encodeTc({ purposes, cmpId: CMP_ID });

/** The purposes whose consent the string records, decoded back: the test's own strings say what they should. */
const consented = (s) => [...TCString.decode(s).purposeConsents].filter(([, on]) => on).map(([id]) => id);

/** The demo's /about page with `initScript` run before any of its scripts. */
async function openAbout(t, initScript) {
  const shop = await open(t, file.browser, file.worker, {}, '/about', initScript);
  assert.ok(shop.requests.some((r) => pathOf(r) === '/edgecdp/loader.js'), 'the page loaded the loader');
  return shop;
}

/** The page's requests to the edge's API (collection, decisions), from `from` on. */
const apiCalls = (requests, from = 0) => requests.slice(from).map(pathOf).filter((p) => p.startsWith('/v1/'));
/** The events the page posted to the collection endpoint, from request `from` on, each once (a retry repeats one). */
const sentEvents = (requests, from = 0) => [...new Map(requests.slice(from)
  .filter((r) => pathOf(r) === '/v1/batch' && r.method() === 'POST' && r.postData())
  .flatMap((r) => JSON.parse(r.postData()).batch).map((e) => [e.messageId ?? JSON.stringify(e), e])).values()];
const edgecdpKeys = (page) => page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('edgecdp.')));

/** Nothing reached the edge, the SDK was not downloaded and nothing was stored: the loader is still waiting. */
async function assertNothingSent(shop, when) {
  await shop.page.waitForTimeout(SETTLE_MS);
  assert.deepEqual(apiCalls(shop.requests), [], `${when}: no request reaches the collection endpoint`);
  assert.deepEqual(shop.requests.map(pathOf).filter((p) => p.endsWith('/sdk.js')), [], `${when}: no SDK download`);
  assert.deepEqual(await edgecdpKeys(shop.page), [], `${when}: no edgecdp.* key in localStorage`);
}

/** Waits for the page's anonymous id, written once a consent allowed analytics. */
const anonymousIdOf = (page) => eventually('an anonymous id in localStorage',
  () => page.evaluate(() => localStorage.getItem('edgecdp.anonymousId')), Boolean);

/** Waits until the profile of `anonymousId` counts a page view; answers the profile. */
const storedPageView = (anonymousId) => eventually('the page view is stored',
  async () => (await profileOf(file.worker, anonymousId).catch(() => null)),
  (p) => (p?.counts?.page ?? 0) >= 1);

test('TCF: nothing while the CMP has not answered, the page view once it consents, and a withdrawal followed', async (t) => {
  const granted = tcString([1, 8, 9]);
  const withdrawn = tcString([1, 9]);
  assert.deepEqual(consented(granted), [1, 8, 9]);
  assert.deepEqual(consented(withdrawn), [1, 9]);
  // The CMP API is up (so `__tcfapi` answers, and queues listeners) but has no TC data yet.
  const shop = await openAbout(t, `${cmpApiBundle}\nwindow.__cmp = new CmpApi(${CMP_ID}, ${CMP_VERSION}, true);`);
  const { page, requests } = shop;
  assert.deepEqual(await page.evaluate(() => window.edgecdp._q.map((e) => e[0])), ['page'],
    'the page view waits in the loader');
  let anonymousId;

  await t.test('a. before the CMP answers, and while its UI shows, nothing is sent or stored', async () => {
    await assertNothingSent(shop, 'no TC data yet');
    // The banner is shown: eventStatus `cmpuishown`, with a TC string that grants nothing yet.
    await page.evaluate(() => window.__cmp.update('', true));
    await assertNothingSent(shop, 'the CMP UI is shown');
  });

  await t.test('b. consent to purposes 1, 8 and 9 sends the page view; analytics granted, personalization refused', async () => {
    const from = requests.length;
    // The visitor chose in the banner: eventStatus `useractioncomplete`.
    await page.evaluate((s) => window.__cmp.update(s, false), granted);
    anonymousId = await anonymousIdOf(page);
    const profile = await storedPageView(anonymousId);
    assert.equal(profile.consent.analytics, true, JSON.stringify(profile.consent));
    assert.equal(profile.consent.personalization, false, JSON.stringify(profile.consent));
    assert.equal(profile.counts.page, 1, `counts: ${JSON.stringify(profile.counts)}`);
    const views = sentEvents(requests, from).filter((e) => e.type === 'page');
    assert.equal(views.length, 1, 'the page view made before the CMP answered was sent');
    assert.equal(views[0].anonymousId, anonymousId);
    assert.equal(views[0].context.page.path, '/about');
    assert.deepEqual(views[0].context.consent.categoryPreferences,
      { analytics: true, personalization: false, advertising: false, marketing: false });
    assert.deepEqual(JSON.parse(await page.evaluate(() => localStorage.getItem('edgecdp.consent'))),
      { analytics: true, personalization: false, advertising: false, marketing: false });
  });

  await t.test('c. refusing purpose 8 in the CMP withdraws analytics; a later track is not stored', async () => {
    assert.ok(anonymousId, 'case b gave the page an anonymous id');
    const from = requests.length;
    await page.evaluate((s) => window.__cmp.update(s, false), withdrawn);
    const profile = await eventually('the withdrawal is recorded on the profile',
      () => profileOf(file.worker, anonymousId), (p) => p.consent?.analytics === false);
    assert.equal(profile.counts.page, 1, `counts: ${JSON.stringify(profile.counts)}`);
    const withdrawal = sentEvents(requests, from).find((e) => e.event === 'Segment Consent Preference Updated');
    assert.ok(withdrawal, 'the withdrawal was sent to the edge');
    assert.equal(withdrawal.anonymousId, anonymousId);
    assert.equal(withdrawal.context.consent.categoryPreferences.analytics, false);
    assert.deepEqual(await edgecdpKeys(page), [], 'the visitor is forgotten in the browser');

    const afterWithdrawal = requests.length;
    await page.evaluate(() => window.edgecdp.track('After', {}));
    await page.waitForTimeout(SETTLE_MS);
    assert.deepEqual(sentEvents(requests, afterWithdrawal), [], 'nothing is sent after the withdrawal');
    assert.equal(await countOf(file.worker, anonymousId, 'After'), 0, 'nor stored');
    assert.deepEqual(await edgecdpKeys(page), []);
  });
});

test('TCF: a CMP that already holds a choice (tcloaded) when the loader runs has the page view sent at once', async (t) => {
  const granted = tcString([1, 5, 6, 8, 9]);
  // A returning visitor: the CMP read its stored string before any of the page's scripts ran.
  const shop = await openAbout(t, `${cmpApiBundle}
    window.__cmp = new CmpApi(${CMP_ID}, ${CMP_VERSION}, true);
    window.__cmp.update(${JSON.stringify(granted)}, false);`);
  const anonymousId = await anonymousIdOf(shop.page);
  const profile = await storedPageView(anonymousId);
  assert.equal(profile.consent.analytics, true, JSON.stringify(profile.consent));
  assert.equal(profile.consent.personalization, true, JSON.stringify(profile.consent));
  assert.equal(profile.consent.advertising, false, JSON.stringify(profile.consent));
});

test('Google Consent Mode: nothing under a denied default; the page view once analytics_storage is granted', async (t) => {
  // The site's gtag snippet with a consent default, as Google documents it, and no __tcfapi on the page.
  const shop = await openAbout(t, () => {
    window.dataLayer = window.dataLayer || [];
    window.gtag = function gtag() {
      window.dataLayer.push(arguments);
    };
    window.gtag('consent', 'default', {
      analytics_storage: 'denied',
      ad_storage: 'denied',
      ad_user_data: 'denied',
      ad_personalization: 'denied',
    });
  });
  const { page, requests } = shop;
  assert.equal(await page.evaluate(() => typeof window.__tcfapi), 'undefined');
  await assertNothingSent(shop, 'consent denied by default');

  await page.evaluate(() => window.gtag('consent', 'update', { analytics_storage: 'granted' }));
  const anonymousId = await anonymousIdOf(page);
  const profile = await storedPageView(anonymousId);
  assert.equal(profile.consent.analytics, true, JSON.stringify(profile.consent));
  assert.equal(profile.consent.advertising, false, JSON.stringify(profile.consent));
  const views = sentEvents(requests).filter((e) => e.type === 'page');
  assert.equal(views.length, 1, 'the page view made under the default was sent once');
  assert.equal(views[0].context.page.path, '/about');
  assert.equal(await page.evaluate(() => window.dataLayer.length), 2, 'the dataLayer kept every command');
});
