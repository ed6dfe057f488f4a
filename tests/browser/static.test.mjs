// Delivery way 3 in Chromium: a site made of static files (www/static.html, `data-decide="device"`) whose
// slots the snippet fills on the device, with the browser decide module and the visitor's summary from the
// real Worker. Consent gates all of it; impressions the device served are posted back so caps count them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { PROMO, bagIds, countOf, decisions, eventually, hero, openShop, pathOf, shopForFile, viewProduct }
  from './shop.mjs';

// The demo configuration, plus a block for everyone that may be shown once a day: below the bags promo.
const config = JSON.parse(readFileSync(new URL('../../config/demo.json', import.meta.url), 'utf8'));
config.slots.hero.blocks.push({ id: 'first-visit', priority: 1, cap: { max: 1, per: '1d' },
  html: '<h2>First visit: 10% off</h2>' });

// And, for one test only (its page carries the campaign), a block for a visitor idle for 4 s: a program written at
// the first decision holds until then, and a decision after it must fetch the visitor's program again.
config.slots.hero.blocks.push({ id: 'back', priority: 100,
  audience: { all: [{ inactiveFor: '4s' }, { utm: { campaign: ['later'] } }] }, html: '<h2>Welcome back</h2>' });

const file = shopForFile({ config });

const open = (t, path = '/static') => openShop(t, file.browser, file.worker, {}, path);
const paths = (requests, from = 0) => requests.slice(from).map((r) => `${r.method()} ${pathOf(r)}`);
const summaries = (requests, from = 0) => paths(requests, from).filter((p) => p === 'GET /v1/decide/summary');

/**
 * Waits for the page's POST /v1/impressions to be answered; answers what was sent and the status. (The request
 * is a keepalive one, whose answer body the browser does not hand to tests; the cap test shows it counted.)
 */
async function impressionsPosted(page) {
  const res = await page.waitForResponse((r) => pathOf(r.request()) === '/v1/impressions', { timeout: 15_000 });
  return { sent: JSON.parse(res.request().postData()), status: res.status() };
}

test('refusing consent leaves the fallback and asks for no summary', async (t) => {
  const shop = await open(t);
  const { page, requests } = shop;
  await page.click('#consent-refuse');
  await page.waitForTimeout(1500);
  assert.deepEqual(await hero(page), { text: 'Welcome', block: null }, 'the static fallback stays');
  const sent = paths(requests);
  assert.deepEqual(sent.filter((p) => p.includes('/v1/')), [], 'no request reaches the API, no summary');
  assert.deepEqual(sent.filter((p) => /slots\.js|decide_bg\.wasm|sdk\.js/.test(p)), [], 'nothing is downloaded');
});

test('consent fills the slot on the device; the personalized block follows the visitor', async (t) => {
  const shop = await open(t);
  const { page, requests } = shop;
  const impression = impressionsPosted(page);
  await page.click('#consent-accept');
  await decisions(shop, 1);
  assert.deepEqual(await hero(page), { text: 'First visit: 10% off', block: 'first-visit' });
  const sent = paths(requests);
  assert.equal(summaries(requests).length, 1, `one summary per page load: ${sent.join(', ')}`);
  assert.ok(sent.includes('GET /edgecdp/slots.js') && sent.includes('GET /edgecdp/decide_bg.wasm'), sent.join(', '));
  assert.ok(!sent.includes('POST /v1/decide'), 'the edge decides nothing');
  const { sent: body, status } = await impression;
  assert.equal(status, 200);
  assert.deepEqual(body.impressions, [{ block: 'first-visit', variant: 'default' }]);
  assert.equal(body.anonymousId, await page.evaluate(() => localStorage.getItem('edgecdp.anonymousId')));

  const anonymousId = await page.evaluate(() => localStorage.getItem('edgecdp.anonymousId'));
  for (const bag of await bagIds(page)) await viewProduct(page, bag);
  await eventually('both bag views stored', () => countOf(file.worker, anonymousId, 'Product Viewed'), (n) => n === 2);
  const before = requests.length;
  await page.reload();
  await decisions(shop, 1);
  const shown = await hero(page);
  assert.match(shown.text, PROMO, 'two bag views within 7 days show the bags promo, decided on the device');
  assert.equal(shown.block, 'bags-promo');
  assert.equal(summaries(requests, before).length, 1, 'one summary for the reloaded page');
  assert.ok(!paths(requests, before).includes('POST /v1/decide'));
});

/**
 * Consents on a fresh page, which shows (and records) the block capped at one a day; after a reload the cap
 * must hold: the fallback. `initScript` runs in the page first.
 */
async function capHoldsAfterReload(t, initScript = null) {
  const shop = await openShop(t, file.browser, file.worker, {}, '/static', initScript);
  const { page } = shop;
  const impression = impressionsPosted(page);
  await page.click('#consent-accept');
  await decisions(shop, 1);
  assert.equal((await hero(page)).block, 'first-visit');
  assert.equal((await impression).status, 200);
  await page.reload();
  await decisions(shop, 1);
  assert.deepEqual(await hero(page), { text: 'Welcome', block: 'fallback' }, 'capped at one a day: the fallback');
}

test('an impression served on the device counts toward its cap', (t) => capHoldsAfterReload(t));

test('deciding again on the same page counts the impression the page just served', async (t) => {
  const shop = await open(t);
  const { page, requests } = shop;
  await page.click('#consent-accept');
  await decisions(shop, 1);
  assert.equal((await hero(page)).block, 'first-visit');
  // The same page asks again (say, for a slot it adds later): the summary it holds predates its own impression,
  // but the engine recorded it, so the cap holds as it would at the edge, with no second summary request.
  const again = await page.evaluate(() => window.edgecdp.decide(['hero']));
  assert.equal(again.slots.hero.block, null, JSON.stringify(again));
  assert.equal(summaries(requests).length, 1);
});

test('a device whose clock is two days fast still decides at the edge\'s time', async (t) => {
  // Only Date.now is moved, as a wrong system clock would move it for the snippet. Two days ahead, the
  // impression would be outside the cap's day; at the edge's time it is inside.
  await capHoldsAfterReload(t, () => {
    const real = Date.now.bind(Date);
    Date.now = () => real() + 2 * 24 * 3600 * 1000;
  });
});

test('a consenting visitor on a page without slots does not download the decide module', async (t) => {
  const shop = await open(t, '/static-about');
  const { page, requests } = shop;
  const batch = page.waitForResponse((r) => pathOf(r.request()) === '/v1/batch', { timeout: 15_000 });
  await page.evaluate(() => {
    window.edgecdp.consent({ analytics: true, personalization: true, advertising: false });
    window.edgecdp.page();
  });
  await batch;
  // Long enough for a decision that would follow the delivered page view to have started.
  await page.waitForTimeout(500);
  const sent = paths(requests);
  assert.ok(sent.includes('GET /edgecdp/sdk.js'), 'the SDK did load (otherwise this proves nothing)');
  assert.deepEqual(sent.filter((p) => /slots\.js|decide_bg\.wasm|\/v1\/decide/.test(p)), []);
});

test('a program past its span is fetched again before the page decides', async (t) => {
  const shop = await open(t, '/static?utm_campaign=later');
  const { page, requests } = shop;
  await page.click('#consent-accept');
  await decisions(shop, 1);
  assert.equal((await hero(page)).block, 'first-visit', 'active a moment ago: not back yet');
  assert.equal(summaries(requests).length, 1);
  // Idle past the inactivity bound: the program written at the first decision says it no longer holds.
  await page.waitForTimeout(4500);
  const again = await page.evaluate(() => window.edgecdp.decide(['hero']));
  assert.equal(again.slots.hero.block, 'back', JSON.stringify(again));
  assert.equal(summaries(requests).length, 2, 'the program was fetched again');
  assert.ok(!paths(requests).includes('POST /v1/decide'), 'the device decided, not the edge');
});
