// The decision cases of tests/cases/, decided in Chromium by the browser build (the decide module, js/slots.js)
// on the summaries the real Worker answers (`GET /v1/decide/summary`). The native runner (tests/cases.rs) and
// the Worker's own decisions (tests/e2e/cases.test.mjs) play the same files; all three must give exactly
// expected.json. Each step's impressions go to `POST /v1/impressions`, as the snippet sends them, so caps and
// experiments count them as they count the Worker's decisions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker } from '../support/worker.mjs';
import { caseNames, loadCase, playCase } from '../support/cases.mjs';
import { launchChromium } from './shop.mjs';

let w;
let browser;
let page;
const logs = [];

before(
  async () => {
    w = await startWorker({ config: null });
    browser = await launchChromium();
    page = await (await browser.newContext()).newPage();
    page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
    // Any page of the site: the test imports the decide module into it, as the snippet would.
    await page.goto(`${w.url}/about`);
  },
  { timeout: 180_000 },
);

after(async () => {
  await browser?.close();
  await w?.stop();
});

/** Runs in the page: fetches the summary for the request's ids, decides on it, records what must be. */
async function decideInPage({ request }) {
  const m = await import('/edgecdp/slots.js');
  await m.init();
  const q = new URLSearchParams();
  if (request.anonymousId) q.set('anonymousId', request.anonymousId);
  if (request.userId) q.set('userId', request.userId);
  const prefs = request.context && request.context.consent && request.context.consent.categoryPreferences;
  if (prefs && typeof prefs.personalization === 'boolean') q.set('personalization', String(prefs.personalization));
  const res = await fetch(`/v1/decide/summary?${q}`);
  const summary = await res.json();
  if (!res.ok) return { status: res.status, summary };
  const engine = new m.Engine(summary.rules);
  const body = { slots: request.slots, context: request.context || {} };
  // At the edge's time, as the snippet decides (and as the Worker's own decisions do): an impression the
  // previous step recorded is then never later than this decision.
  const answer = JSON.parse(engine.decide(summary.profile, body, summary.country, false, summary.now));
  const impressions = JSON.parse(engine.impressions());
  let recorded = null;
  if (impressions.length) {
    const ids = { anonymousId: request.anonymousId, userId: request.userId };
    const r = await fetch('/v1/impressions', { method: 'POST', body: JSON.stringify({ ...ids, impressions }) });
    recorded = await r.json();
  }
  return {
    status: res.status,
    cacheControl: res.headers.get('cache-control'),
    keys: Object.keys(summary).sort(),
    rules: atob(summary.rules),
    hasProfile: summary.profile !== null,
    answer,
    impressions,
    recorded,
  };
}

/** What of a case's configuration only the edge may know: its sources' write keys. */
function secretsOf(config) {
  return (config.sources || []).map((s) => s.writeKey).filter((k) => typeof k === 'string' && k.length >= 4);
}

const names = caseNames();
assert.ok(names.length >= 4);

for (const name of names) {
  test(`case ${name} in Chromium`, async (t) => {
    t.after(() => { for (const line of logs.splice(0)) t.diagnostic(`browser ${line}`); });
    const c = loadCase(name);
    await playCase(w, c);
    for (const [i, step] of c.steps.entries()) {
      const got = await page.evaluate(decideInPage, { request: step.request });
      assert.equal(got.status, 200, JSON.stringify(got));
      assert.equal(got.cacheControl, 'private, no-store');
      assert.deepEqual(got.keys, ['configVersion', 'country', 'now', 'profile', 'rules']);
      // The rules are the decision sections only: no write key reaches the device.
      for (const secret of secretsOf(c.config)) assert.ok(!got.rules.includes(secret), `rules hold ${secret}`);
      assert.equal(got.hasProfile, step.response.profileId !== null, `${name}, decide[${i}]: summary iff permitted`);
      assert.deepEqual(got.answer, step.response, `${name}, decide[${i}]`);
      if (got.recorded) assert.equal(got.recorded.recorded, got.impressions.length, JSON.stringify(got.recorded));
    }
  });
}
