// The CMP's consent read at the edge, against the real Worker under workerd: a request that carries only the CMP's
// `euconsent-v2` cookie (strings encoded by the IAB's own library) gets collection, decisions and edge-delivered HTML
// that follow it, before any script runs; a string in a body does the same; a broken one is refused with its path.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { startWorker, getProfile } from '../support/worker.mjs';
import { tcString } from '../support/tcf.mjs';

const PAGE = '<!doctype html><html><body><div data-edgecdp-slot="hero">origin</div></body></html>';
const uid = (p) => `${p}-${Math.random().toString(36).slice(2, 10)}`;
// Analytics is purposes 1, 8 and 9 by default; personalization 1, 5 and 6.
const ANALYTICS = () => tcString({ purposes: [1, 8, 9], cmpId: 31 });
const BOTH = () => tcString({ purposes: [1, 5, 6, 8, 9], cmpId: 31 });
const NOTHING = () => tcString({ purposes: [1], cmpId: 31 });

let w;
let origin;
before(async () => {
  origin = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  await new Promise((r) => origin.listen(0, '127.0.0.1', r));
  const config = JSON.parse(readFileSync(new URL('../../config/demo.json', import.meta.url), 'utf8'));
  config.segments.push({ id: 'viewer', when: { event: 'page', count: { gte: 1 } } });
  config.slots = { hero: { fallback: { html: '<p>fallback</p>' },
    blocks: [{ id: 'for-viewers', audience: { segment: 'viewer' }, html: '<p>for viewers</p>' }] } };
  config.delivery = { origin: `http://127.0.0.1:${origin.address().port}`, paths: ['/site/*'] };
  w = await startWorker({ config });
});
after(async () => {
  await w?.stop();
  origin?.close();
});

const cookie = (tc, extra = '') => ({ cookie: `euconsent-v2=${tc}${extra}` });
async function batch(events, headers = {}) {
  const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json', origin: w.url,
    ...headers }, body: JSON.stringify({ writeKey: 'demo', batch: events }) });
  return { status: r.status, json: await r.json(), setCookie: r.headers.get('set-cookie') };
}
const profile = async (a) => getProfile(w, `anonymous_id:${a}`);
async function trail(a) {
  const r = await fetch(`${w.url}/v1/profiles/anonymous_id:${a}/export`, { headers: { authorization: `Bearer ${w.adminToken}` } });
  assert.equal(r.status, 200);
  return (await r.json()).consentHistory.map((c) => `${c.purpose}=${c.granted}@${c.source}`);
}

describe('the CMP cookie at the edge', () => {
  test('collection follows the cookie alone: its answer is stored with the CMP as the source; a refusing, stale or broken one stores nothing', async () => {
    const a = uid('tcf');
    assert.equal((await batch([{ type: 'page', anonymousId: a }], cookie(ANALYTICS()))).status, 200);
    const p = await profile(a);
    assert.equal(p.status, 200, 'stored on the strength of the cookie');
    assert.equal(p.body.counts.page, 1);
    assert.deepEqual(p.body.consent, { analytics: true, personalization: false, advertising: false });
    assert.deepEqual(await trail(a), ['analytics=true@tcf:31', 'personalization=false@tcf:31', 'advertising=false@tcf:31']);

    for (const [what, headers] of [
      ['no cookie (opt-in)', {}],
      ['purpose 1 only', cookie(NOTHING())],
      ['last updated 400 days ago', cookie(tcString({ purposes: [1, 8, 9], updated: new Date(Date.now() - 400 * 86400e3) }))],
      ['not a TC string', cookie('bm90IGEgc3RyaW5n')],
    ]) {
      const b = uid('none');
      const r = await batch([{ type: 'page', anonymousId: b }], headers);
      assert.equal(r.status, 200, what);
      assert.equal(r.setCookie, null, `${what}: no identity cookie`);
      assert.equal((await profile(b)).status, 404, `${what}: nothing stored`);
    }
  });

  test('a CMP cookie that now refuses analytics removes the identity cookie, as a withdrawal does', async () => {
    const a = uid('gone');
    const granted = await batch([{ type: 'page', anonymousId: a }], cookie(ANALYTICS()));
    const aid = granted.setCookie.split(';')[0];
    assert.match(aid, new RegExp(`^edgecdp_aid=${a}\\.`), 'set while the CMP allowed analytics');
    const refused = await batch([{ type: 'page', anonymousId: a }], { cookie: `${aid}; euconsent-v2=${NOTHING()}` });
    assert.match(refused.setCookie ?? '', /^edgecdp_aid=; Max-Age=0/);
    const p = await profile(a);
    assert.equal(p.body.counts.page, 1, 'the page view under the refusal was not stored');
    assert.equal(p.body.consent.analytics, false, 'the refusal is recorded');
  });

  test('what the event sends wins over the cookie, and GPC still refuses advertising', async () => {
    const a = uid('sent');
    const all = tcString({ purposes: [1, 2, 3, 4, 5, 6, 7, 8, 9] });
    await batch([{ type: 'page', anonymousId: a, context: { consent: { categoryPreferences: { personalization: false } } } }],
      { ...cookie(all), 'sec-gpc': '1' });
    const p = await profile(a);
    assert.deepEqual(p.body.consent, { analytics: true, personalization: false, advertising: false });
    assert.deepEqual(await trail(a), ['personalization=false@event', 'analytics=true@tcf:28', 'advertising=false@gpc']);
  });

  test('decisions follow the cookie: it personalizes, and its refusal wins over a grant recorded before', async () => {
    const a = uid('dec');
    const first = await batch([{ type: 'page', anonymousId: a,
      context: { consent: { categoryPreferences: { analytics: true, personalization: true } } } }]);
    const aid = first.setCookie.split(';')[0];
    const decide = async (tc) => (await (await fetch(`${w.url}/v1/decide?slots=hero`,
      { headers: { cookie: `${aid}; euconsent-v2=${tc}` } })).json()).slots.hero.html;
    assert.equal(await decide(BOTH()), '<p>for viewers</p>');
    assert.equal(await decide(ANALYTICS()), '<p>fallback</p>', 'personalization refused by the CMP now');
    // A server deciding for the visitor passes their string in the body; it stands in for the cookie.
    const r = await fetch(`${w.url}/v1/decide`, { method: 'POST', headers: { 'content-type': 'application/json', cookie: aid },
      body: JSON.stringify({ anonymousId: a, slots: ['hero'], context: { consent: { tcString: ANALYTICS() } } }) });
    assert.equal((await r.json()).slots.hero.html, '<p>fallback</p>');
  });

  test('edge-delivered HTML follows the cookie before any script runs', async () => {
    const a = uid('html');
    const first = await batch([{ type: 'page', anonymousId: a,
      context: { consent: { categoryPreferences: { analytics: true, personalization: true } } } }]);
    const aid = first.setCookie.split(';')[0];
    const page = async (tc) => (await fetch(`${w.url}/site/p.html`, { headers: { cookie: `${aid}; euconsent-v2=${tc}` } })).text();
    assert.match(await page(BOTH()), /<div data-edgecdp-slot="hero"><p>for viewers<\/p><\/div>/);
    assert.match(await page(ANALYTICS()), /<div data-edgecdp-slot="hero"><p>fallback<\/p><\/div>/);
  });

  test('a string in an event: it grants like the cookie, and a broken one refuses that event alone, at its path', async () => {
    const good = uid('body');
    const bad = uid('broken');
    const core = ANALYTICS().split('.')[0];
    const r = await batch([
      { type: 'page', anonymousId: good, context: { consent: { tcString: ANALYTICS() } } },
      { type: 'page', anonymousId: bad, context: { consent: { tcString: core.slice(0, 12) } } },
      { type: 'page', anonymousId: bad, context: { consent: { tcString: `${core}.4AAA` } } },
      { type: 'page', anonymousId: bad, context: { consent: { tcString: 7 } } },
    ]);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.rejected.map((x) => [x.index, x.code, x.path]), [
      [1, 'invalid_tc_string', 'batch[1].context.consent.tcString.core.lastUpdated'],
      [2, 'invalid_tc_string', 'batch[2].context.consent.tcString.segments[1].segmentType'],
      [3, 'invalid_type', 'batch[3].context.consent.tcString'],
    ]);
    assert.equal((await profile(good)).body.counts.page, 1);
    assert.equal((await profile(bad)).status, 404);
    const d = await fetch(`${w.url}/v1/decide`, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ anonymousId: good, slots: ['hero'], context: { consent: { tcString: 'A' } } }) });
    assert.equal(d.status, 400);
    const e = (await d.json()).error;
    assert.equal(e.path, 'context.consent.tcString.core.version');
  });
});
