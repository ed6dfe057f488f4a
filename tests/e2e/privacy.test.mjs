// Privacy at the edge, against the real Worker under workerd: the signed first-party cookie, GPC, hashed
// traits, access (export) and erasure, checked down to what local KV and Durable Object storage hold.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startWorker, getProfile } from '../support/worker.mjs';
import { kvValuesText, liveStorageText } from '../support/storage.mjs';

const GRANT = { consent: { categoryPreferences: { analytics: true, personalization: true } } };
let w;
before(async () => {
  const config = JSON.parse(readFileSync(new URL('../../config/demo.json', import.meta.url), 'utf8'));
  config.privacy = { hashTraits: ['email', 'phone'] };
  w = await startWorker({ config });
});
after(async () => { await w?.stop(); });

const uid = (p) => `${p}-${Math.random().toString(36).slice(2, 10)}`;
const admin = () => ({ authorization: `Bearer ${w.adminToken}` });
async function batch(events, headers = {}, writeKey = 'demo') {
  const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ writeKey, batch: events }) });
  return { status: r.status, json: await r.json(), setCookie: r.headers.get('set-cookie') };
}
const browser = (extra = {}) => ({ origin: w.url, ...extra });
const cookieOf = (setCookie) => setCookie.split(';')[0];

describe('first-party cookie', () => {
  test('set HttpOnly, Secure, SameSite=Lax, at most 400 days, only for a consenting browser', async () => {
    const a = uid('c');
    const r = await batch([{ type: 'page', anonymousId: a, context: GRANT }], browser());
    assert.equal(r.status, 200);
    assert.equal(r.json.anonymousId, a);
    const attrs = r.setCookie.split(';').map((s) => s.trim());
    assert.match(attrs[0], new RegExp(`^edgecdp_aid=${a}\\.[0-9a-f]{64}$`));
    for (const want of ['HttpOnly', 'Secure', 'SameSite=Lax', 'Path=/']) assert.ok(attrs.includes(want), want);
    const maxAge = Number(attrs.find((x) => x.startsWith('Max-Age=')).slice(8));
    assert.ok(maxAge > 0 && maxAge <= 400 * 86400, `Max-Age ${maxAge}`);

    // Without consent: nothing stored, no cookie. Server-side sources (no Origin): no cookie either.
    assert.equal((await batch([{ type: 'page', anonymousId: uid('n') }], browser())).setCookie, null);
    assert.equal((await batch([{ type: 'page', anonymousId: uid('s'), context: GRANT }])).setCookie, null);
  });

  test('a valid cookie is the browser identity: a new script id is mapped to it', async () => {
    const a = uid('first');
    const cookie = cookieOf((await batch([{ type: 'page', anonymousId: a, context: GRANT }], browser())).setCookie);
    // The browser lost its script storage and made a new id; the cookie still says who it is.
    const r = await batch([{ type: 'page', anonymousId: uid('fresh'), context: GRANT }], browser({ cookie }));
    assert.equal(r.json.anonymousId, a);
    assert.equal((await getProfile(w, `anonymous_id:${a}`)).body.counts.page, 2);
    // GET /v1/decide serves the visitor of the cookie.
    const d = await (await fetch(`${w.url}/v1/decide?slots=hero`, { headers: { cookie } })).json();
    assert.match(d.profileId, /^p_/);
  });

  test('a forged or guessed cookie is ignored', async () => {
    const victim = uid('victim');
    const good = cookieOf((await batch([{ type: 'page', anonymousId: victim, context: GRANT }], browser())).setCookie);
    const sig = good.split('.').pop();
    const forged = `edgecdp_aid=${victim}.${sig.replace(/^./, (c) => (c === '0' ? '1' : '0'))}`;
    const attacker = uid('attacker');
    const r = await batch([{ type: 'page', anonymousId: attacker, context: GRANT }], browser({ cookie: forged }));
    assert.equal(r.json.anonymousId, attacker);
    assert.equal((await getProfile(w, `anonymous_id:${victim}`)).body.counts.page, 1, 'the victim is untouched');
    assert.equal((await getProfile(w, `anonymous_id:${attacker}`)).body.counts.page, 1);
    const unsigned = await batch([{ type: 'page', anonymousId: uid('x'), context: GRANT }],
      browser({ cookie: `edgecdp_aid=${victim}` }));
    assert.notEqual(unsigned.json.anonymousId, victim);
  });

  test('withdrawing analytics consent stops collection and removes the cookie', async () => {
    const a = uid('w');
    const cookie = cookieOf((await batch([{ type: 'page', anonymousId: a, context: GRANT }], browser())).setCookie);
    const r = await batch([{ type: 'page', anonymousId: a,
      context: { consent: { categoryPreferences: { analytics: false } } } }], browser({ cookie }));
    assert.match(r.setCookie, /^edgecdp_aid=; Max-Age=0/);
    await batch([{ type: 'page', anonymousId: a }], browser({ cookie }));
    const p = await getProfile(w, `anonymous_id:${a}`);
    assert.equal(p.body.counts.page, 1, 'nothing collected after the withdrawal');
    assert.equal(p.body.consent.analytics, false);
  });
});

describe('consent signals and minimization', () => {
  test('Sec-GPC: 1 is stored as a refusal of advertising, even when the page grants it', async () => {
    const a = uid('gpc');
    const prefs = { consent: { categoryPreferences: { analytics: true, advertising: true } } };
    await batch([{ type: 'page', anonymousId: a, context: prefs }], { 'sec-gpc': '1' });
    const p = await getProfile(w, `anonymous_id:${a}`);
    assert.equal(p.body.consent.advertising, false);
    const x = await (await fetch(`${w.url}/v1/profiles/anonymous_id:${a}/export`, { headers: admin() })).json();
    assert.deepEqual(x.consentHistory.filter((c) => c.purpose === 'advertising').map((c) => [c.granted, c.source]),
      [[true, 'event'], [false, 'gpc']]);
  });

  test('e-mail and phone are stored only hashed; IP addresses are not stored at all', async () => {
    const a = uid('hash');
    await batch([{ type: 'identify', anonymousId: a, context: { ...GRANT, ip: '203.0.113.77' },
      traits: { email: 'Grace.Hopper@Example.org', phone: '+1 (555) 010-9999', plan: 'gold' } }]);
    const p = await getProfile(w, `anonymous_id:${a}`);
    assert.match(p.body.traits.email, /^sha256:[0-9a-f]{64}$/);
    assert.match(p.body.traits.phone, /^sha256:[0-9a-f]{64}$/);
    assert.equal(p.body.traits.plan, 'gold');
    const held = liveStorageText(w.state);
    assert.ok(held.includes(a), 'the check reads real storage');
    for (const secret of ['Grace.Hopper', 'grace.hopper', '5550109999', '010-9999', '203.0.113.77']) {
      assert.ok(!held.includes(secret), `${secret} is stored`);
    }
  });
});

describe('access and erasure', () => {
  test('export answers everything held about the person', async () => {
    const a = uid('exp');
    await batch([
      { type: 'page', anonymousId: a, messageId: `${a}-1`, context: GRANT },
      { type: 'track', event: 'Product Viewed', anonymousId: a, messageId: `${a}-2`, properties: { category: 'bags' } },
      { type: 'identify', anonymousId: a, userId: `${a}-user`, messageId: `${a}-3`, traits: { plan: 'gold' } },
    ], {}, w.serverKey);
    const r = await fetch(`${w.url}/v1/profiles/user_id:${a}-user/export`, { headers: admin() });
    assert.equal(r.status, 200);
    const x = await r.json();
    assert.deepEqual(x.identities.map((i) => `${i.type}:${i.value}`).sort(), [`anonymous_id:${a}`, `user_id:${a}-user`]);
    // Identifying merged the visitor's anonymous profile into the user's, and the export says so.
    assert.equal(x.merges.length, 1);
    assert.deepEqual(x.merges[0].identities, [{ type: 'anonymous_id', value: a }]);
    assert.deepEqual(x.recentEvents.map((e) => e.event), ['page', 'Product Viewed', 'identify']);
    assert.deepEqual(x.recentEvents[1].properties, { category: 'bags' });
    assert.deepEqual(x.messageIds, [`${a}-1`, `${a}-2`, `${a}-3`]);
    assert.ok(x.traitsSetAt.plan);
    assert.deepEqual(x.consentHistory.map((c) => c.purpose), ['analytics', 'personalization']);
    assert.equal((await fetch(`${w.url}/v1/profiles/user_id:${a}-user/export`)).status, 401);
    // The KV snapshot holds what decisions read, not the writer's own parts (message ids, merge records), so an
    // export once it is settled (over 2 s old) still reads them from the object.
    await new Promise((r) => setTimeout(r, 2500));
    const kv = kvValuesText(w.state);
    assert.ok(kv.includes(`${a}-user`), 'the snapshot is read');
    for (const id of [`${a}-1`, `${a}-2`, `${a}-3`]) assert.ok(!kv.includes(id), `${id} in KV`);
    const settled = await (await fetch(`${w.url}/v1/profiles/user_id:${a}-user/export`, { headers: admin() })).json();
    assert.deepEqual([settled.messageIds, settled.merges.length], [x.messageIds, 1]);
  });

  test('after erasure no KV key and no Durable Object storage holds anything of that person', async () => {
    const a = uid('erase');
    const user = `${a}-user`;
    const events = [
      { type: 'page', anonymousId: a, messageId: `${a}-m1`, context: GRANT },
      { type: 'identify', anonymousId: a, userId: user, messageId: `${a}-m2`, traits: { firstName: `${a}-name` } },
      { type: 'track', event: 'Product Viewed', anonymousId: a, messageId: `${a}-m3`, properties: { sku: `${a}-sku` } },
    ];
    // The site's backend identifies the visitor (a browser would need a token for the same).
    await batch(events, {}, w.serverKey);
    const other = uid('bystander');
    await batch([{ type: 'page', anonymousId: other, context: GRANT }]);
    const profileId = (await getProfile(w, `user_id:${user}`)).body.id;
    const before = liveStorageText(w.state);
    for (const s of [a, user, profileId, `${a}-m1`, `${a}-name`, `${a}-sku`]) assert.ok(before.includes(s), `${s} held before`);

    const del = await fetch(`${w.url}/v1/profiles/anonymous_id:${a}`, { method: 'DELETE', headers: admin() });
    assert.equal(del.status, 204);
    for (const key of [`anonymous_id:${a}`, `user_id:${user}`]) {
      assert.equal((await getProfile(w, key)).status, 404, key);
    }
    const held = liveStorageText(w.state);
    for (const s of [a, user, profileId, `${a}-m1`, `${a}-m3`, `${a}-name`, `${a}-sku`]) {
      assert.ok(!held.includes(s), `${s} is still held after erasure`);
    }
    assert.ok(held.includes(other), 'other people are untouched');
    assert.equal((await fetch(`${w.url}/v1/profiles/anonymous_id:${a}`, { method: 'DELETE', headers: admin() })).status, 404);

    // Events sent again right after the erasure (as events racing it would be) do not bring the person back:
    // for a minute the erased profile refuses them, and says so.
    const again = await batch(events, {}, w.serverKey);
    assert.deepEqual([...new Set(again.json.rejected.map((r) => r.code))], ['profile_erased']);
    assert.equal((await getProfile(w, `anonymous_id:${a}`)).status, 404);
    assert.ok(!liveStorageText(w.state).includes(`${a}-m1`), 'nothing of the person came back');
  });
});
