// The decision cases of tests/cases/, decided in Chromium by the browser build (the decide module and its shell,
// js/slots.js) on the device programs the real Worker answers (`GET /v1/decide/summary`). The native runner
// (tests/cases.rs) and the Worker's own decisions (tests/e2e/cases.test.mjs) play the same files; all three must
// give exactly expected.json. Each step's impressions go to `POST /v1/impressions`, as the snippet sends them, so
// caps and experiments count them as they count the Worker's decisions. A step the shell leaves to the edge (an
// unknown slot) goes to `POST /v1/decide`, as the snippet sends it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker } from '../support/worker.mjs';
import { caseNames, credentialFor, loadCase, playCase } from '../support/cases.mjs';
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

/**
 * Runs in the page: fetches the summary for the request's visitor (unless the caller brings one), decides on it,
 * and records what must be. A step that decides for a userId is a server's: the test fetches that summary and
 * posts its impressions itself with the case's server credential (a browser may not name a user id), and the
 * page only decides.
 */
async function decideInPage({ request, given }) {
  const m = await import('/edgecdp/slots.js');
  await m.init();
  let res = given;
  let summary = given && given.summary;
  if (!given) {
    const q = new URLSearchParams();
    if (request.anonymousId) q.set('anonymousId', request.anonymousId);
    const prefs = request.context && request.context.consent && request.context.consent.categoryPreferences;
    if (prefs && typeof prefs.personalization === 'boolean') q.set('personalization', String(prefs.personalization));
    const r = await fetch(`/v1/decide/summary?${q}`);
    summary = await r.json();
    res = { status: r.status, cacheControl: r.headers.get('cache-control') };
    if (!r.ok) return { status: r.status, summary };
  }
  // The page's consent went to the summary (which checked it); the snippet sends none with a decision.
  const { consent, ...context } = request.context || {};
  const body = { slots: request.slots, context };
  // At the edge's time, as the snippet decides (and as the Worker's own decisions do): an impression the
  // previous step recorded is then never later than this decision.
  const got = m.decideOn(m.ready(summary), body, summary.now);
  let answer;
  let impressions = [];
  let viaEdge = false;
  if (got === m.EDGE) {
    viaEdge = true;
    const r = await fetch('/v1/decide', { method: 'POST', body: JSON.stringify({ ...body, anonymousId: request.anonymousId }) });
    answer = await r.json();
  } else {
    ({ answer, impressions } = got);
  }
  let recorded = null;
  if (impressions.length && !given) {
    const r = await fetch('/v1/impressions', { method: 'POST',
      body: JSON.stringify({ anonymousId: request.anonymousId, impressions }) });
    recorded = await r.json();
  }
  return {
    status: res.status,
    cacheControl: res.cacheControl,
    keys: Object.keys(summary).sort(),
    text: JSON.stringify(summary),
    hasProfile: summary.profileId !== null,
    answer,
    impressions,
    recorded,
    viaEdge,
  };
}

/** A server's step: the summary for a userId, fetched with the case's credential. */
async function serverSummary(c, request) {
  const q = new URLSearchParams({ userId: request.userId });
  const prefs = request.context && request.context.consent && request.context.consent.categoryPreferences;
  if (prefs && typeof prefs.personalization === 'boolean') q.set('personalization', String(prefs.personalization));
  const r = await fetch(`${w.url}/v1/decide/summary?${q}`, { headers: credentialFor(c, request) });
  return { status: r.status, cacheControl: r.headers.get('cache-control'), summary: await r.json() };
}

/** What of a case's configuration only the edge may know: its sources' write keys. */
function secretsOf(config) {
  return (config.sources || []).flatMap((s) => [s.writeKey, s.key]).filter((k) => typeof k === 'string' && k.length >= 4);
}

const names = caseNames();
assert.ok(names.length >= 4);

for (const name of names) {
  test(`case ${name} in Chromium`, async (t) => {
    t.after(() => { for (const line of logs.splice(0)) t.diagnostic(`browser ${line}`); });
    const c = loadCase(name);
    await playCase(w, c);
    for (const [i, step] of c.steps.entries()) {
      const given = step.request.userId ? await serverSummary(c, step.request) : null;
      const got = await page.evaluate(decideInPage, { request: step.request, given });
      if (given && got.impressions.length) {
        const r = await fetch(`${w.url}/v1/impressions`, { method: 'POST', headers: credentialFor(c, step.request),
          body: JSON.stringify({ userId: step.request.userId, impressions: got.impressions }) });
        got.recorded = await r.json();
      }
      assert.equal(got.status, 200, JSON.stringify(got));
      assert.equal(got.cacheControl, 'private, no-store');
      assert.deepEqual(got.keys, ['answers', 'configVersion', 'country', 'now', 'profileId', 'program', 'segments', 'slots',
        'validUntil']);
      // The program and its answers only: no write key reaches the device.
      for (const secret of secretsOf(c.config)) assert.ok(!got.text.includes(secret), `the summary holds ${secret}`);
      // Only a request the shell does not read goes to the edge (here: an unknown slot).
      assert.equal(got.viaEdge, 'rejected' in step.response, `${name}, decide[${i}]: decided on the device`);
      assert.equal(got.hasProfile, step.response.profileId !== null, `${name}, decide[${i}]: summary iff permitted`);
      assert.deepEqual(got.answer, step.response, `${name}, decide[${i}]`);
      if (got.recorded) assert.equal(got.recorded.recorded, got.impressions.length, JSON.stringify(got.recorded));
    }
  });
}
