// The console's Predictions view in Chromium against the running Worker (issue 30): with purchases of 40 people
// stored and their summaries in D1, the marketer presses "Fit a version now", and the view shows the version in
// force, its status and holdout figures, the calibration chart drawn from the version's own bins, its parameters;
// then a person's page shows their predictions with the model version and what drove each. A screenshot goes to
// tests/.tmp/console/ (looked at by hand).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './shop.mjs';
import { signedIn } from './console-session.mjs';
import { startWorker } from '../support/worker.mjs';

const SHOTS = join(dirname(fileURLToPath(import.meta.url)), '..', '.tmp', 'console');
mkdirSync(SHOTS, { recursive: true });
const DAY = 86_400_000;
let w;
let browser;

before(async () => {
  w = await startWorker({ config: { sources: [{ id: 'web', writeKey: 'pk_console_predictions' }], consent: { model: 'opt-out' },
    predictions: { horizons: ['30d', '90d'] } } });
  browser = await launchChromium();
  const now = Date.now();
  const batch = [];
  for (let i = 0; i < 40; i++) {
    const gap = 5 + (i % 8) * 5;
    const start = now - (100 + i * 4) * DAY;
    // A quarter of them stop buying a month after they started.
    const stop = i % 4 === 0 ? start + 30 * DAY : now;
    for (let t = start, n = 0; t < stop; t += gap * DAY, n++) {
      batch.push({ type: 'track', event: 'Order Completed', userId: `c-${i}`, messageId: `c-${i}-${n}`,
        timestamp: new Date(t).toISOString(), properties: { revenue: 15 + (i % 5) * 20 } });
    }
  }
  for (let i = 0; i < batch.length; i += 100) {
    const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ writeKey: w.serverKey, batch: batch.slice(i, i + 100) }) });
    assert.equal(r.status, 200);
  }
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await fetch(`${w.url}/v1/predictions`, { headers: { authorization: `Bearer ${w.adminToken}` } });
    if ((await r.json()).summaries === 40) break;
    if (Date.now() > deadline) throw new Error('the summaries did not all arrive');
    await new Promise((res) => setTimeout(res, 300));
  }
});
after(async () => { await browser?.close(); await w?.stop(); });

test('the marketer fits a version, reads its quality and calibration, and sees a person\'s predictions', async (t) => {
  const { page } = await signedIn(browser, w, t);
  await page.click('#nav a[href="#/predictions"]');
  await page.waitForSelector('#fit-now');
  assert.match(await page.textContent('#view'), /No model is in force yet\. 40 profiles have published a summary/);
  await page.click('#fit-now');
  await page.waitForSelector('#calibration');
  assert.match(await page.textContent('#view'), /Version 1 is in force\./);
  const row = await page.$$eval('#versions tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  assert.equal(row.length, 1);
  assert.equal(row[0][0], '1');
  assert.ok(['fitted', 'partial'].includes(row[0][2]), row[0][2]);
  assert.equal(row[0][3], '40');
  assert.ok(Number(row[0][4]) > 0.5, `holdout AUC ${row[0][4]}`);
  // The chart: two bars per tenth the version's figures have, as the API answers them.
  const api = await (await fetch(`${w.url}/v1/predictions`, { headers: { authorization: `Bearer ${w.adminToken}` } })).json();
  const bins = api.versions[0].quality.holdout.calibration.length;
  assert.equal(await page.$$eval('#calibration rect', (r) => r.length), 2 * bins);
  const params = await page.textContent('#view');
  for (const p of ['BG/NBD r', 'BG/NBD alpha', 'BG/NBD a', 'BG/NBD b']) assert.ok(params.includes(p), p);
  await page.screenshot({ path: join(SHOTS, 'predictions.png'), fullPage: true });

  // A person's page: the predictions with the version that made them and what drove each.
  await page.click('#nav a[href="#/person"]');
  await page.selectOption('#find-type', 'user_id');
  await page.fill('#find-value', 'c-1');
  await page.click('#find button[type=submit]');
  await page.waitForSelector('#predictions');
  const card = await page.textContent('#predictions');
  assert.match(card, /Predictions \(model version 1, fitted /);
  assert.match(card, /purchase30d\d+\.\d%\d+ repeat purchase days over \d+ days as a customer/);
});
