// Delivery of events in Chromium against the real Worker: nothing tracked is lost when the visitor navigates
// away, reloads, goes offline or has two tabs open; the persisted outbox follows consent and stays bounded; the
// shop stays eligible for the back/forward cache.
//
// Run with `node --test tests/browser/`. Each test uses a fresh browser context (its own storage, cookies and
// network conditions), so no visitor state leaks between tests; the Worker is shared by the file. Every
// wait is bounded; the only fixed waits check that nothing more arrives after a count was reached.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker } from '../support/worker.mjs';
import {
  API_ONLY,
  EVERYTHING,
  WAIT_MS,
  accept,
  countOf,
  eventually,
  launchChromium,
  openShop as open,
  pathOf,
  startNetworkSwitch,
  storedOutboxEvents,
} from './shop.mjs';

// Long enough for the SDK's 1 s batch timer and a retry to have sent anything still queued.
const SETTLE_MS = 1500;
const N = 5;

let worker;
let browser;
let net;

before(
  async () => {
    worker = await startWorker();
    browser = await launchChromium();
    net = await startNetworkSwitch();
  },
  { timeout: 180_000 },
);

after(async () => {
  await browser?.close();
  await net?.close();
  await worker?.stop();
});

const openShop = (t) => open(t, browser, worker);
/** A shop whose traffic passes through the network switch, which the test turns back on when it ends. */
function openShopBehindSwitch(t) {
  net.blocked = [];
  t.after(() => {
    net.block = null;
  });
  return open(t, browser, worker, { proxy: { server: net.server } });
}
const count = (anonymousId, event) => countOf(worker, anonymousId, event);

/** Waits until the profile counts `n` of `event`, then checks that no duplicate is counted after. */
async function arrivesOnce(page, anonymousId, event, n) {
  await eventually(`${event} counted in ${anonymousId}`, () => count(anonymousId, event), (c) => c >= n);
  await page.waitForTimeout(SETTLE_MS);
  assert.equal(await count(anonymousId, event), n, `${event} is counted exactly ${n} time(s)`);
}

/** Tracks `n` events named `event` from the page, each with its index. */
function trackMany(page, event, n) {
  return page.evaluate(
    ([name, k]) => {
      for (let i = 0; i < k; i++) window.edgecdp.track(name, { i });
    },
    [event, n],
  );
}

/** Records, per messageId, how many /v1/batch requests carrying it the edge answered with 200. */
function recordDeliveries(context) {
  const delivered = new Map();
  context.on('response', (res) => {
    const req = res.request();
    if (pathOf(req) !== '/v1/batch' || res.status() !== 200 || !req.postData()) return;
    for (const e of JSON.parse(req.postData()).batch) {
      delivered.set(e.messageId, (delivered.get(e.messageId) ?? 0) + 1);
    }
  });
  return delivered;
}

test('an event tracked right before following a link is counted once', async (t) => {
  const shop = await openShop(t);
  const { page } = shop;
  const anonymousId = await accept(shop);

  // The batch timer (1 s) has not fired when the link is followed: only the hide handlers can save the event.
  await page.evaluate(() => window.edgecdp.track('Left Quickly', { step: 1 }));
  await page.click('a[href="/about"]');
  await page.waitForURL('**/about');
  assert.equal(await page.textContent('h1'), 'About this shop');

  await arrivesOnce(page, anonymousId, 'Left Quickly', 1);
  await eventually(
    'the delivered body leaves the persisted outbox',
    () => storedOutboxEvents(page),
    (events) => events === null || !events.some((e) => e.event === 'Left Quickly'),
  );
});

test('a call made right after consent, before the SDK could load, survives leaving the page at once', async (t) => {
  const shop = await openShop(t);
  const { page, context } = shop;
  // The SDK cannot load on this page: everything the visitor does here waits in the loader.
  await context.route('**/edgecdp/sdk.js', (route) => route.abort());
  await page.evaluate(() => {
    window.edgecdp.consent({ analytics: true, personalization: true });
    window.edgecdp.track('Very Early', { step: 1 });
  });
  await context.unroute('**/edgecdp/sdk.js');
  await page.goto(`${worker.url}/about`);
  // The next page's SDK sends what the loader kept, once, and the loader's copy goes.
  const anonymousId = await eventually('an anonymous id on the next page',
    () => page.evaluate(() => localStorage.getItem('edgecdp.anonymousId')), (id) => !!id);
  await arrivesOnce(page, anonymousId, 'Very Early', 1);
  assert.equal(await page.evaluate(() => localStorage.getItem('edgecdp.early')), null, 'the kept calls are gone');
  await page.reload();
  await page.waitForTimeout(SETTLE_MS);
  assert.equal(await count(anonymousId, 'Very Early'), 1, 'a reload sends nothing again');
});

test('a page left right after tracking stays eligible for the back/forward cache', async (t) => {
  const bfBrowser = await launchChromium({ backForwardCache: true });
  t.after(() => bfBrowser.close());
  const shop = await open(t, bfBrowser, worker);
  const { page } = shop;
  await page.addInitScript(() => addEventListener('pageshow', (e) => (window.__restored = e.persisted)));
  await page.reload(); // Applies the init script to the shop page itself.
  const anonymousId = await accept(shop);

  await page.evaluate(() => {
    window.__sameDocument = true;
    window.edgecdp.track('Left And Back', { step: 1 });
  });
  await page.click('a[href="/about"]');
  await page.waitForURL('**/about');
  // A page restored from the cache fires no load event, so wait only for the navigation to commit.
  await page.goBack({ waitUntil: 'commit' });
  await page.waitForFunction(() => typeof window.__restored === 'boolean', null, { timeout: WAIT_MS });
  assert.deepEqual(
    await page.evaluate(() => [window.__restored, window.__sameDocument]),
    [true, true],
    'the very same document came back from the back/forward cache (no unload listener keeps it out)',
  );
  await arrivesOnce(page, anonymousId, 'Left And Back', 1);

  await page.evaluate(() => window.edgecdp.track('Left And Back', { step: 2 }));
  await arrivesOnce(page, anonymousId, 'Left And Back', 2);
  await eventually(
    'the delivered bodies leave the persisted outbox',
    () => storedOutboxEvents(page),
    (events) => events === null || !events.some((e) => e.event === 'Left And Back'),
  );
});

test('an event the leaving page could not deliver waits in storage and the next page sends it', async (t) => {
  const shop = await openShopBehindSwitch(t);
  const { page } = shop;
  const anonymousId = await accept(shop);

  // The collection endpoint is unreachable while the visitor leaves and while the next page starts; pages load.
  net.block = API_ONLY;
  await page.evaluate(() => window.edgecdp.track('Stranded', { step: 1 }));
  await page.goto(`${worker.url}/about`);
  assert.equal(await page.textContent('h1'), 'About this shop');

  const waiting = await eventually(
    'the next page finds the event in the persisted outbox',
    () => storedOutboxEvents(page),
    (events) => events !== null && events.some((e) => e.event === 'Stranded'),
  );
  assert.ok(waiting.every((e) => e.anonymousId === anonymousId), 'the stored events keep their visitor');
  await eventually('the next page tried to send it', () => net.blocked.length, (n) => n > 0);
  assert.equal(await count(anonymousId, 'Stranded'), 0, 'nothing arrived while the endpoint was unreachable');

  // Reachable again: the next page's retry (backoff with jitter, starting at 1 s) delivers it.
  net.block = null;
  await arrivesOnce(page, anonymousId, 'Stranded', 1);
  await eventually(
    'the delivered body leaves the persisted outbox',
    () => storedOutboxEvents(page),
    (events) => events === null || !events.some((e) => e.event === 'Stranded'),
  );
});

test('events tracked offline wait in storage and arrive once when the browser is back online', async (t) => {
  const shop = await openShop(t);
  const { page, context } = shop;
  const anonymousId = await accept(shop);
  const delivered = recordDeliveries(context);

  await context.setOffline(true);
  await trackMany(page, 'Offline Event', N);
  const stored = await eventually(
    `the ${N} offline events are persisted`,
    () => storedOutboxEvents(page),
    (events) => events !== null && events.filter((e) => e.event === 'Offline Event').length === N,
  );
  const ids = stored.filter((e) => e.event === 'Offline Event').map((e) => e.messageId);
  assert.equal(new Set(ids).size, N, 'each event has its own messageId');
  await page.waitForTimeout(SETTLE_MS);
  assert.equal(await count(anonymousId, 'Offline Event'), 0, 'nothing arrived while offline');

  const online = Date.now();
  await context.setOffline(false);
  await arrivesOnce(page, anonymousId, 'Offline Event', N);
  t.diagnostic(`delivered within ${Date.now() - online - SETTLE_MS} ms of going online`);
  assert.deepEqual(
    ids.map((id) => delivered.get(id) ?? 0),
    ids.map(() => 1),
    'each event was delivered in exactly one accepted request',
  );
  await eventually(
    'the delivered bodies leave the persisted outbox',
    () => storedOutboxEvents(page),
    (events) => events === null || !events.some((e) => e.event === 'Offline Event'),
  );
});

test('events tracked offline survive a reload while offline and arrive once after reconnecting', async (t) => {
  const shop = await openShopBehindSwitch(t);
  const { page, context } = shop;
  const anonymousId = await accept(shop);

  // Offline for the page (navigator.onLine, the online event) and for the network (see startNetworkSwitch).
  await context.setOffline(true);
  net.block = EVERYTHING;
  await trackMany(page, 'Reload Event', N);
  // Reload at once, before the batch timer fires: the page being left writes its queue to storage. Offline,
  // the reload itself fails and shows the browser's error page, so only storage can carry the events over.
  await page.reload({ timeout: WAIT_MS }).catch(() => {});
  await page.waitForTimeout(SETTLE_MS);
  assert.equal(await count(anonymousId, 'Reload Event'), 0, 'nothing arrived while offline');

  net.block = null;
  await context.setOffline(false);
  await page.goto(`${worker.url}/`);
  await arrivesOnce(page, anonymousId, 'Reload Event', N);
  assert.equal(
    await page.evaluate(() => localStorage.getItem('edgecdp.anonymousId')),
    anonymousId,
    'the same visitor after the reload',
  );
  await eventually(
    'the delivered bodies leave the persisted outbox',
    () => storedOutboxEvents(page),
    (events) => events === null || !events.some((e) => e.event === 'Reload Event'),
  );
});

for (const [name, withdrawn, keepsId] of [
  ['withdrawing analytics', { analytics: false, personalization: true, advertising: false }, true],
  ['refusing everything', { analytics: false, personalization: false, advertising: false }, false],
]) {
  test(`${name} removes the persisted outbox and its events are never sent`, async (t) => {
    const shop = await openShop(t);
    const { page, context } = shop;
    const anonymousId = await accept(shop);

    await context.setOffline(true);
    await trackMany(page, 'Withdrawn Event', 2);
    await eventually(
      'the offline events are persisted',
      () => storedOutboxEvents(page),
      (events) => events !== null && events.filter((e) => e.event === 'Withdrawn Event').length === 2,
    );

    await page.evaluate((prefs) => window.edgecdp.consent(prefs), withdrawn);
    const left = await page.evaluate(() => ({
      outbox: localStorage.getItem('edgecdp.outbox'),
      anonymousId: localStorage.getItem('edgecdp.anonymousId'),
    }));
    assert.equal(left.outbox, null, 'the persisted outbox is removed at once');
    assert.equal(left.anonymousId !== null, keepsId, `the stored id ${keepsId ? 'stays' : 'goes'}`);

    await context.setOffline(false);
    await page.evaluate(() => window.edgecdp.track('Withdrawn Event', { after: true }));
    await page.waitForTimeout(SETTLE_MS * 2);
    assert.equal(await count(anonymousId, 'Withdrawn Event'), 0, 'nothing queued under the old consent is sent');
    assert.equal(await page.evaluate(() => localStorage.getItem('edgecdp.outbox')), null, 'nothing is persisted');
  });
}

test('two tabs offline share the persisted outbox and lose none of each other\'s events', async (t) => {
  const shop = await openShopBehindSwitch(t);
  const { page: tabA, context } = shop;
  const anonymousId = await accept(shop);
  const tabB = await context.newPage();
  await tabB.goto(`${worker.url}/`);
  // The loader deletes its queue once the SDK has taken over the stub.
  await tabB.waitForFunction(() => window.edgecdp && !window.edgecdp._q, null, { timeout: WAIT_MS });

  await context.setOffline(true);
  net.block = EVERYTHING;
  const stored = (page, event, n) =>
    eventually(
      `${n} ${event} persisted`,
      () => storedOutboxEvents(page),
      (events) => events !== null && events.filter((e) => e.event === event).length === n,
    );
  await trackMany(tabA, 'Tab A', 3);
  await stored(tabA, 'Tab A', 3);
  await trackMany(tabB, 'Tab B', 3);
  await stored(tabB, 'Tab B', 3);
  await stored(tabB, 'Tab A', 3);

  // Both tabs write the outbox again as they close; neither may drop what the other stored.
  await tabB.close();
  await tabA.close();
  assert.equal(await count(anonymousId, 'Tab A'), 0, 'nothing arrived while offline');

  net.block = null;
  await context.setOffline(false);
  const next = await context.newPage();
  await next.goto(`${worker.url}/`);
  await arrivesOnce(next, anonymousId, 'Tab A', 3);
  assert.equal(await count(anonymousId, 'Tab B'), 3, 'the other tab\'s events arrived too, once');
});

test('the persisted outbox is capped in bytes, dropping the oldest bodies', async (t) => {
  const shop = await openShop(t);
  const { page, context } = shop;
  const anonymousId = await accept(shop);

  await context.setOffline(true);
  // 12 events of about 28 KB (strings are limited to 8 KB each): about 340 KB of bodies, over the 256 KB the
  // outbox keeps.
  await page.evaluate(() => {
    const pad = 'x'.repeat(7000);
    for (let i = 0; i < 12; i++) window.edgecdp.track('Big Event', { i, a: pad, b: pad, c: pad, d: pad });
  });
  const kept = await eventually(
    'the big events are persisted',
    () => storedOutboxEvents(page),
    (events) => events !== null && events.some((e) => e.event === 'Big Event' && e.properties.i === 11),
  );
  const bytes = await page.evaluate(() =>
    JSON.parse(localStorage.getItem('edgecdp.outbox')).reduce((n, b) => n + new TextEncoder().encode(b).length, 0),
  );
  assert.ok(bytes <= 256 * 1024, `the stored bodies hold ${bytes} bytes`);
  const indexes = kept.filter((e) => e.event === 'Big Event').map((e) => e.properties.i);
  assert.ok(indexes.length < 12 && indexes.length >= 6, `kept events: ${indexes}`);
  assert.deepEqual(indexes, indexes.map((_, k) => 12 - indexes.length + k), 'the newest are kept, in order');

  await context.setOffline(false);
  await arrivesOnce(page, anonymousId, 'Big Event', indexes.length);
});
