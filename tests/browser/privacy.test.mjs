// Privacy in Chromium against the real Worker: the edge's HttpOnly id cookie (set after consent, removed on
// withdrawal), the SDK adopting the id that cookie names once script storage is gone, and Sec-GPC recorded
// as a refusal of advertising. (Refusing from the start is in demo.test.mjs: no request, no cookie.)
//
// Run with `node --test tests/browser/`. Each test uses a fresh browser context; the Worker is shared.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getProfile } from '../support/worker.mjs';
import { accept, countOf, decisions, eventually, openShop as open, pathOf, shopForFile } from './shop.mjs';

const COOKIE = 'edgecdp_aid';
const MAX_COOKIE_DAYS = 400;
const SETTLE_MS = 1500;

const file = shopForFile();

const openShop = (t, options) => open(t, file.browser, file.worker, options);
const idCookie = async (context) => (await context.cookies(file.worker.url)).find((c) => c.name === COOKIE);

test('accepting sets the HttpOnly first-party id cookie, and withdrawing removes it', async (t) => {
  const shop = await openShop(t);
  const { page, context } = shop;
  const anonymousId = await accept(shop);

  const cookie = await eventually('the id cookie is set', () => idCookie(context), Boolean);
  assert.equal(cookie.httpOnly, true, 'HttpOnly: page scripts cannot read or change it');
  assert.equal(cookie.sameSite, 'Lax');
  assert.equal(cookie.secure, true);
  const now = Date.now() / 1000;
  assert.ok(cookie.expires > now, `a persistent cookie, not a session one: expires ${cookie.expires}`);
  assert.ok(
    cookie.expires <= now + MAX_COOKIE_DAYS * 86400 + 60,
    `at most ${MAX_COOKIE_DAYS} days: ${((cookie.expires - now) / 86400).toFixed(1)} days`,
  );
  assert.ok(cookie.value.startsWith(`${anonymousId}.`), 'the cookie names this visitor (signed)');
  assert.ok(!(await page.evaluate(() => document.cookie)).includes(COOKIE), 'invisible to document.cookie');

  await page.evaluate(() =>
    window.edgecdp.consent({ analytics: false, personalization: false, advertising: false }),
  );
  await eventually('withdrawing removes the cookie', () => idCookie(context), (c) => c === undefined);
  assert.deepEqual(await context.cookies(), [], 'no cookie at all');
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'and no script storage');
  const profile = await getProfile(file.worker, `anonymous_id:${anonymousId}`);
  assert.equal(profile.body.consent?.analytics, false, `recorded: ${JSON.stringify(profile.body)}`);
});

test('after script storage is cleared, the SDK adopts the id the cookie names and keeps one profile', async (t) => {
  const shop = await openShop(t);
  const { page, context, requests } = shop;
  const first = await accept(shop);
  await eventually('the id cookie is set', () => idCookie(context), Boolean);

  // What Safari does to script-written storage after seven days without a visit; the cookie stays.
  await page.evaluate(() => localStorage.clear());
  await page.reload();
  const before = requests.length;
  await page.click('#consent-accept');
  await decisions(shop, 1);
  const batch = requests.slice(before).find((r) => pathOf(r) === '/v1/batch' && r.postData());
  const sentId = JSON.parse(batch.postData()).batch[0].anonymousId;
  assert.notEqual(sentId, first, 'the page started over with a new id of its own');
  await eventually(
    'the page adopts the id the edge answered',
    () => page.evaluate(() => localStorage.getItem('edgecdp.anonymousId')),
    (id) => id === first,
  );

  await page.evaluate(() => window.edgecdp.track('Came Back', {}));
  const cameBack = () => countOf(file.worker, first, 'Came Back');
  await eventually('the next event is counted in the first profile', cameBack, Boolean);
  await page.waitForTimeout(SETTLE_MS);
  assert.equal(await cameBack(), 1);
  assert.equal(await countOf(file.worker, first, 'page'), 2, 'both page views are in the one profile');
  assert.equal((await getProfile(file.worker, `anonymous_id:${sentId}`)).status, 404, 'no second profile');
});

for (const [gpc, outcome] of [
  [true, 'with Sec-GPC: 1 has it recorded as refused'],
  [false, 'without GPC has it recorded as granted'],
]) {
  test(`a visitor who grants advertising ${outcome}`, async (t) => {
    const shop = await openShop(t, gpc ? { extraHTTPHeaders: { 'Sec-GPC': '1' } } : {});
    const { page } = shop;
    // The banner call of a site whose visitor accepts every purpose.
    await page.evaluate(() => {
      window.edgecdp.consent({ analytics: true, personalization: true, advertising: true });
      window.edgecdp.page();
    });
    const anonymousId = await eventually(
      'the anonymous id is stored',
      () => page.evaluate(() => localStorage.getItem('edgecdp.anonymousId')),
      Boolean,
    );
    const profile = await eventually(
      'the profile is stored',
      () => getProfile(file.worker, `anonymous_id:${anonymousId}`),
      (p) => p.status === 200 && p.body.counts.page >= 1,
    );
    assert.equal(profile.body.consent.analytics, true, JSON.stringify(profile.body.consent));
    assert.equal(profile.body.consent.advertising, !gpc, JSON.stringify(profile.body.consent));
  });
}
