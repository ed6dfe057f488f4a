// The demo shop in a real browser against the Worker: consent gating, batching, decisions, persistence.
//
// Run with `node --test tests/browser/`. Each test uses a fresh browser context, so no visitor state
// leaks between tests; the Worker (and its profile store) is shared by the file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PROMO,
  bagIds,
  decisions,
  hero,
  openShop as open,
  pathOf,
  profileOf as profileIn,
  shopForFile,
  viewProduct,
} from './shop.mjs';

const file = shopForFile();

const openShop = (t) => open(t, file.browser, file.worker);
const profileOf = (anonymousId) => profileIn(file.worker, anonymousId);

/** Accepts consent on a fresh page and views both bags; returns the page once the promo is shown. */
async function acceptAndViewBags(t) {
  const shop = await openShop(t);
  const { page } = shop;
  assert.equal((await hero(page)).text, 'Welcome', 'the static fallback shows before any decision');
  assert.ok(await page.isVisible('#consent-banner'), 'the banner shows when no decision is stored');

  await page.click('#consent-accept');
  await decisions(shop, 1);
  assert.ok(await page.isHidden('#consent-banner'), 'accepting hides the banner');
  assert.deepEqual(await hero(page), { text: 'Welcome', block: 'fallback' }, 'a new visitor gets the fallback');

  const [firstBag, secondBag] = await bagIds(page);
  await viewProduct(page, firstBag);
  await decisions(shop, 2);
  assert.deepEqual(await hero(page), { text: 'Welcome', block: 'fallback' }, 'one bag view is not enough');

  await viewProduct(page, secondBag);
  await decisions(shop, 3);
  const shown = await hero(page);
  assert.match(shown.text, PROMO, 'two bag views within 7 days show the bags promo');
  assert.notEqual(shown.block, 'fallback');
  assert.ok(shown.block, 'the hero names the block it shows');
  return shop;
}

test('refusing consent downloads no SDK, sends nothing and stores nothing', async (t) => {
  const shop = await openShop(t);
  const { page, context, requests } = shop;
  assert.ok(await page.isVisible('#consent-banner'), 'the banner shows when no decision is stored');
  assert.ok(
    requests.some((r) => pathOf(r) === '/edgecdp/loader.js'),
    'the page did load the loader (otherwise this test proves nothing)',
  );

  await page.click('#consent-refuse');
  assert.ok(await page.isHidden('#consent-banner'), 'refusing hides the banner');
  const [bag] = await bagIds(page);
  await viewProduct(page, bag);
  // The only fixed wait: long enough for a 1 s batch timer to have fired had anything been queued for sending.
  await page.waitForTimeout(1500);

  const paths = requests.map(pathOf);
  assert.deepEqual(paths.filter((p) => p.startsWith('/v1/')), [], 'no request reaches the collection API');
  assert.deepEqual(
    paths.filter((p) => p.endsWith('/sdk.js') || p.endsWith('.wasm')),
    [],
    'neither the SDK nor the Wasm is downloaded',
  );
  assert.deepEqual(await context.cookies(), [], 'no cookies');
  const storage = await page.evaluate(() => ({ local: localStorage.length, session: sessionStorage.length }));
  assert.deepEqual(storage, { local: 0, session: 0 }, 'localStorage and sessionStorage stay empty');
  assert.equal((await hero(page)).text, 'Welcome');
  assert.equal(
    await page.evaluate(() => typeof window.edgecdp.track),
    'function',
    'the page could still call the stub without errors',
  );
});

test('accepting consent tracks product views and personalizes the hero', async (t) => {
  const shop = await acceptAndViewBags(t);
  const { page, requests } = shop;

  const stored = await page.evaluate(() => ({
    anonymousId: localStorage.getItem('edgecdp.anonymousId'),
    consent: JSON.parse(localStorage.getItem('edgecdp.consent')),
  }));
  assert.ok(stored.anonymousId, 'the anonymous id is persisted after consent');
  assert.deepEqual(stored.consent, { analytics: true, personalization: true, advertising: false, marketing: false });

  const batches = requests.filter((r) => pathOf(r) === '/v1/batch' && r.method() === 'POST' && r.postData());
  assert.ok(batches.length >= 1, 'events went out in batches');
  const sentEvents = batches.flatMap((r) => JSON.parse(r.postData()).batch);
  assert.ok(sentEvents.length >= 3, `a page view and two product views were sent: ${sentEvents.length}`);
  assert.ok(
    sentEvents.every((e) => e.anonymousId === stored.anonymousId),
    'every event carries the stored anonymous id',
  );
  const decides = requests.filter((r) => pathOf(r) === '/v1/decide');
  const lastDecide = JSON.parse(decides.at(-1).postData());
  assert.equal(lastDecide.anonymousId, stored.anonymousId);
  assert.deepEqual(lastDecide.slots, ['hero']);
  assert.equal(lastDecide.context.page.path, '/');

  // The loader fetched the tracker's Wasm while the SDK loaded (not after it arrived), once, and the SDK used it.
  const wasm = requests.filter((r) => pathOf(r) === '/edgecdp/edgecdp_bg.wasm');
  const sdk = requests.find((r) => pathOf(r) === '/edgecdp/sdk.js');
  assert.equal(wasm.length, 1, 'the Wasm is downloaded once');
  const sdkFirstByte = sdk.timing().startTime + sdk.timing().responseStart;
  assert.ok(wasm[0].timing().startTime < sdkFirstByte, 'the Wasm was requested before the SDK had arrived');

  const profile = await profileOf(stored.anonymousId);
  assert.equal(profile.counts['Product Viewed'], 2, `counts: ${JSON.stringify(profile.counts)}`);
  assert.ok(profile.counts.page >= 1, `counts: ${JSON.stringify(profile.counts)}`);
  assert.equal(profile.consent.analytics, true);
  assert.ok(profile.segments.includes('bag-curious'), `segments: ${JSON.stringify(profile.segments)}`);
});

test('after a reload the stored consent is used and the hero is decided on load', async (t) => {
  const shop = await acceptAndViewBags(t);
  const { page, requests } = shop;
  const anonymousId = await page.evaluate(() => localStorage.getItem('edgecdp.anonymousId'));
  const before = requests.length;

  await page.reload();
  await decisions(shop, 1);
  assert.ok(await page.isHidden('#consent-banner'), 'the banner does not show again');
  const shown = await hero(page);
  assert.match(shown.text, PROMO, 'the same visitor still gets the promo');
  assert.notEqual(shown.block, 'fallback');

  assert.equal(await page.evaluate(() => localStorage.getItem('edgecdp.anonymousId')), anonymousId);
  const decide = requests.slice(before).find((r) => pathOf(r) === '/v1/decide');
  assert.ok(decide, 'the reloaded page asked for a decision without any click');
  assert.equal(JSON.parse(decide.postData()).anonymousId, anonymousId, 'the same visitor is recognized');

  const profile = await profileOf(anonymousId);
  assert.ok(profile.counts.page >= 2, `a page view per load: ${JSON.stringify(profile.counts)}`);
  assert.equal(profile.counts['Product Viewed'], 2, `counts: ${JSON.stringify(profile.counts)}`);
});

// The Wasm Tracker reads JavaScript values through JSON.parse; it must name the same member as the edge, whose
// parser orders members by name ("10" < "9" < "z") where JavaScript puts integer-like names first.
test('the Tracker refuses bad calls with the edge codes and paths', async (t) => {
  const { page } = await openShop(t);
  const got = await page.evaluate(async () => {
    const m = await import('/edgecdp/sdk.js');
    await m.init();
    const tracker = new m.Tracker('demo', 'anon-1');
    tracker.consent({ analytics: true });
    const long = 'x'.repeat(8193);
    const outcome = (f) => {
      try {
        return f() === true ? 'accepted' : 'dropped';
      } catch (e) {
        return `${e.code} ${e.path}`;
      }
    };
    return [
      outcome(() => tracker.track('Viewed', { sku: 'b1', tags: ['x', { n: 1 }] })),
      outcome(() => tracker.track('  ', {})),
      outcome(() => tracker.track('Viewed', { z: long, 10: long, 9: long })),
      outcome(() => tracker.track('Viewed', { items: [{ d: 'ok' }, { d: long }] })),
      outcome(() => tracker.track('Viewed', { s: '\ud800' })),
      outcome(() => tracker.track('Viewed', JSON.parse('{"a":'.repeat(17) + '1' + '}'.repeat(17)))),
      outcome(() => tracker.identify('u1', 'gold')),
      outcome(() => tracker.identify({}, {})),
      outcome(() => tracker.page(undefined, { path: 3 })),
      outcome(() => tracker.consent({ analytics: 'yes' })),
    ];
  });
  assert.deepEqual(got, [
    'accepted',
    'missing_field event',
    'string_too_long properties.10',
    'string_too_long properties.items[1].d',
    'invalid_json ',
    'too_deep properties.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a',
    'invalid_type traits',
    'invalid_type userId',
    'invalid_type context.page.path',
    'invalid_consent ',
  ]);
});
