// Decisions beyond the cases: request context from headers, frequency caps, experiment counts and ?explain=1,
// against the real Worker under workerd with local KV and Durable Objects.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, getProfile } from '../support/worker.mjs';

const GRANT = { consent: { categoryPreferences: { analytics: true, personalization: true } } };
const CONFIG = {
  sources: [{ id: 'web', writeKey: 'demo', origins: [] }],
  segments: [
    { id: 'evening-mobile', when: { all: [{ device: 'mobile' }, { localHour: { gte: 18 } }] } },
    { id: 'shop-page', when: { page: '/shop/*' } },
  ],
  slots: {
    hero: {
      fallback: { html: 'Welcome' },
      blocks: [
        { id: 'evening', audience: { include: ['evening-mobile'] }, html: 'Evening on the phone' },
        { id: 'capped', audience: { include: ['shop-page'] }, cap: { max: 1, per: '1d' }, html: 'Shop offer' },
      ],
    },
    banner: {
      fallback: { html: 'Free returns' },
      blocks: [{ id: 'copy', experiment: { id: 'banner-copy', holdout: 50, goal: { event: 'Order Completed', within: '7d' } },
        variants: [{ id: 'a', html: 'A' }, { id: 'b', html: 'B' }] }],
    },
  },
};
const IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148';

let w;
before(async () => { w = await startWorker({ config: CONFIG }); });
after(async () => { await w?.stop(); });

const uid = (p) => `${p}-${Math.random().toString(36).slice(2, 10)}`;
const admin = () => ({ authorization: `Bearer ${w.adminToken}` });
async function call(method, path, body, headers = {}) {
  const r = await fetch(`${w.url}${path}`, { method, headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json; try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, json };
}
const seen = (a) => call('POST', '/v1/batch', { writeKey: 'demo', batch: [{ type: 'page', anonymousId: a, context: GRANT }] });
const decide = (a, slots, extra = {}, headers = {}, query = '') =>
  call('POST', `/v1/decide${query}`, { anonymousId: a, slots, ...extra }, headers);

describe('request context', () => {
  test('device from User-Agent and local hour from the time zone header choose a block', async () => {
    const a = uid('ctx');
    assert.equal((await seen(a)).status, 200);
    // An offset that makes it evening now, and one that makes it morning, whatever the hour in UTC.
    const utcHour = new Date().getUTCHours();
    // Hours east of UTC (-11..12, a real offset) at which it is `hour` o'clock now.
    const eastAt = (hour) => {
      const shift = ((hour - utcHour) % 24 + 24) % 24;
      return shift > 12 ? shift - 24 : shift;
    };
    const zoneAt = (hour) => {
      const east = eastAt(hour); // Etc/GMT signs are inverted
      return east === 0 ? 'Etc/GMT' : `Etc/GMT${east > 0 ? '-' : '+'}${Math.abs(east)}`;
    };
    const evening = await decide(a, ['hero'], {}, { 'user-agent': IPHONE, 'x-edgecdp-timezone': zoneAt(20) });
    assert.equal(evening.json.slots.hero.block, 'evening', JSON.stringify(evening.json));
    const morning = await decide(a, ['hero'], {}, { 'user-agent': IPHONE, 'x-edgecdp-timezone': zoneAt(8) });
    assert.equal(morning.json.slots.hero.block, null);
    const desktop = await decide(a, ['hero'], {}, { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64)', 'x-edgecdp-timezone': zoneAt(20) });
    assert.equal(desktop.json.slots.hero.block, null);
    // The body's context wins over headers (a server asking on a visitor's behalf).
    const relayed = await decide(a, ['hero'], { context: { userAgent: IPHONE, utcOffset: eastAt(20) * 60 } });
    assert.equal(relayed.json.slots.hero.block, 'evening', JSON.stringify(relayed.json));
    const bad = await decide(a, ['hero'], { context: { utcOffset: 'noon' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.path, 'context.utcOffset');
  });
});

describe('frequency caps', () => {
  test('a block capped at one a day is shown once, then the next answer is given, and explain says why', async () => {
    const a = uid('cap');
    await seen(a);
    const page = { context: { page: { path: '/shop/bags' } } };
    const first = await decide(a, ['hero'], page);
    assert.equal(first.json.slots.hero.block, 'capped');
    const second = await decide(a, ['hero'], page);
    assert.equal(second.json.slots.hero.block, null);
    assert.equal(second.json.slots.hero.html, 'Welcome');
    // The impression is on the profile, for access requests too.
    const exported = await call('GET', `/v1/profiles/anonymous_id:${a}/export`, undefined, admin());
    assert.equal(exported.json.impressions.capped.length, 1);

    const denied = await decide(a, ['hero'], page, {}, '?explain=1');
    assert.equal(denied.status, 401);
    const explained = await decide(a, ['hero'], page, admin(), '?explain=1');
    assert.equal(explained.status, 200);
    const skipped = Object.fromEntries(explained.json.explain.slots.hero.skipped.map((s) => [s.block, s.reason]));
    assert.deepEqual(skipped, { evening: 'audience', capped: 'capped' });
    assert.match(explained.json.explain.slots.hero.skipped[0].detail, /evening-mobile/);
    assert.equal(explained.json.explain.personalized, true);
  });
});

describe('experiments', () => {
  test('exposures once per profile, sticky assignment, conversions within the window, rates per variant', async () => {
    const visitors = Array.from({ length: 8 }, (_, i) => uid(`exp${i}`));
    const assigned = {};
    for (const a of visitors) {
      await seen(a);
      const r = await decide(a, ['banner']);
      assigned[a] = r.json.slots.banner.variant;
      assert.equal(r.json.slots.banner.experiment, 'banner-copy');
      if (assigned[a] === 'control') assert.equal(r.json.slots.banner.html, 'Free returns');
      // Asked again: the same variant, and no second exposure.
      const again = await decide(a, ['banner']);
      assert.equal(again.json.slots.banner.variant, assigned[a]);
    }
    const buyer = visitors[0];
    await call('POST', '/v1/batch', { writeKey: 'demo', batch: [
      { type: 'track', event: 'Order Completed', anonymousId: buyer, properties: { revenue: 20 }, context: GRANT }] });
    // An order by someone never exposed converts nothing.
    const stranger = uid('stranger');
    await call('POST', '/v1/batch', { writeKey: 'demo', batch: [
      { type: 'track', event: 'Order Completed', anonymousId: stranger, context: GRANT }] });

    assert.equal((await call('GET', '/v1/experiments/banner-copy')).status, 401);
    assert.equal((await call('GET', '/v1/experiments/nope', undefined, admin())).status, 404);
    const stats = await call('GET', '/v1/experiments/banner-copy', undefined, admin());
    assert.equal(stats.status, 200);
    assert.deepEqual(stats.json.variants.map((v) => v.variant), ['control', 'a', 'b']);
    const expected = { control: 0, a: 0, b: 0 };
    for (const a of visitors) expected[assigned[a]] += 1;
    for (const v of stats.json.variants) {
      assert.equal(v.exposures, expected[v.variant], `${v.variant} exposures`);
      const converted = v.variant === assigned[buyer] ? 1 : 0;
      assert.equal(v.conversions, converted, `${v.variant} conversions`);
      assert.equal(v.conversionRate, v.exposures ? converted / v.exposures : 0);
    }
    const profile = await getProfile(w, `anonymous_id:${buyer}`);
    assert.equal(profile.status, 200);
  });

  test('a person merged from two exposed devices counts once, in the variant seen first', async () => {
    const counts = async () => {
      const stats = await call('GET', '/v1/experiments/banner-copy', undefined, admin());
      return Object.fromEntries(stats.json.variants.map((v) => [v.variant, v.exposures]));
    };
    const before = await counts();
    const [phone, laptop] = [uid('phone'), uid('laptop')];
    const variants = [];
    for (const a of [phone, laptop]) {
      await seen(a);
      variants.push((await decide(a, ['banner'])).json.slots.banner.variant);
    }
    const user = uid('user');
    for (const a of [phone, laptop]) {
      const r = await call('POST', '/v1/batch', { writeKey: w.serverKey, batch: [
        { type: 'identify', userId: user, anonymousId: a, traits: {}, context: GRANT }] });
      assert.equal(r.status, 200);
    }
    const merged = await getProfile(w, `user_id:${user}`);
    assert.equal(merged.status, 200);
    assert.ok(merged.body.identities.some((i) => i.value === laptop), 'the laptop was absorbed');
    // The person keeps the phone's assignment (the earlier one) and is counted once, there.
    const server = { authorization: `Bearer ${w.serverKey}` };
    assert.equal((await call('POST', '/v1/decide', { userId: user, slots: ['banner'] }, server)).json.slots.banner.variant,
      variants[0]);
    const after = await counts();
    const delta = Object.fromEntries(Object.keys(after).map((v) => [v, after[v] - (before[v] || 0)]));
    assert.deepEqual(delta, { control: 0, a: 0, b: 0, [variants[0]]: 1 }, `variants seen: ${variants}`);
  });
});

describe('the JavaScript shell', () => {
  test('decisions the shell serves answer exactly as the Rust Worker\'s, and record impressions the same', async () => {
    const { gzipSync } = await import('node:zlib');
    // A gzip body is the Rust Worker's (the shell reads only plain bodies of a declared length); a plain POST and a
    // GET are the shell's once the configuration is compiled in the isolate (the first request here compiles it).
    const rust = async (b) => {
      const r = await fetch(`${w.url}/v1/decide`, { method: 'POST', body: gzipSync(JSON.stringify(b)),
        headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } });
      return { status: r.status, json: await r.json() };
    };
    // A visitor in the experiment (half are in its holdout, served the fallback, which records nothing).
    let a, body, byRust;
    for (let tries = 0; tries < 20 && !byRust?.json.slots?.banner.block; tries++) {
      a = uid('shell');
      await seen(a);
      body = { anonymousId: a, slots: ['hero', 'banner'], context: { page: { path: '/blog/' } } };
      byRust = await rust(body);
    }
    assert.equal(byRust.json.slots.banner.block, 'copy', 'a visitor in the experiment within 20 tries');
    const byShell = await decide(a, body.slots, { context: body.context });
    const byGet = await call('GET', `/v1/decide?slots=hero,banner&anonymousId=${a}`, undefined,
      { referer: `${w.url}/blog/` });
    assert.equal(byRust.status, 200, JSON.stringify(byRust.json));
    assert.deepEqual(byShell, byRust);
    assert.deepEqual(byGet, byRust);
    // Each answer that served the experiment's block is on the profile, whichever path served it.
    const exposed = await call('GET', `/v1/profiles/anonymous_id:${a}/export`, undefined, admin());
    const served = (profile) => profile.json.impressions.copy?.length ?? 0;
    assert.equal(served(exposed), 3,
      JSON.stringify(exposed.json.impressions));
    // Errors are the same too: a bad field, with its path.
    const bad = { anonymousId: a, slots: 'hero' };
    const [badRust, badShell] = [await rust(bad), await call('POST', '/v1/decide', bad)];
    assert.equal(badShell.status, 400);
    assert.deepEqual(badShell, badRust);
    const noSlots = await call('GET', `/v1/decide?anonymousId=${a}`);
    assert.equal(noSlots.status, 400);
    assert.equal(noSlots.json.error.path, 'slots');

    // A device's summary and its impressions: `?explain` sends a summary to the Rust Worker (which ignores it), a
    // gzip body sends impressions there; the answers are the same but for the edge's time.
    const summary = async (query) => {
      const r = await call('GET', `/v1/decide/summary?anonymousId=${a}${query}`);
      assert.equal(r.status, 200, JSON.stringify(r.json));
      assert.ok(Number.isInteger(r.json.now));
      // The program starts at the edge's time (its version byte, then 8 bytes of it).
      const program = r.json.program && Buffer.from(r.json.program, 'base64').subarray(9).toString('base64');
      return { ...r.json, now: 0, program };
    };
    assert.deepEqual(await summary(''), await summary('&explain=1'));
    const shown = { anonymousId: a, impressions: [{ block: 'copy', variant: 'a', experiment: 'banner-copy' }] };
    const viaShell = await call('POST', '/v1/impressions', shown);
    const viaRust = await fetch(`${w.url}/v1/impressions`, { method: 'POST', body: gzipSync(JSON.stringify(shown)),
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } });
    assert.deepEqual(viaShell, { status: 200, json: { success: true, recorded: 1 } });
    assert.deepEqual({ status: viaRust.status, json: await viaRust.json() }, viaShell);
    const recorded = await call('GET', `/v1/profiles/anonymous_id:${a}/export`, undefined, admin());
    assert.equal(served(recorded), served(exposed) + 2);
    // And the headers (after the counts above: each decision here records its impression too): the shell makes its own Response from the step's (`ShellStep::head`).
    const origin = new URL(w.url).origin;
    const headersOf = async (path, init) => {
      const r = await fetch(`${w.url}${path}`, { ...init, headers: { origin, ...init.headers } });
      await r.arrayBuffer();
      return { status: r.status, headers: [...r.headers].filter(([k]) => !/^(content-length|content-encoding|transfer-encoding|date)$/.test(k)) };
    };
    const json = { 'content-type': 'application/json' };
    const plain = await headersOf('/v1/decide', { method: 'POST', headers: json, body: JSON.stringify(body) });
    const zipped = await headersOf('/v1/decide', { method: 'POST', body: gzipSync(JSON.stringify(body)),
      headers: { ...json, 'content-encoding': 'gzip' } });
    assert.deepEqual(plain, zipped);
    assert.deepEqual(Object.fromEntries(plain.headers), { 'access-control-allow-credentials': 'true',
      'access-control-allow-origin': origin, 'cache-control': 'no-store',
      'content-type': 'application/json; charset=utf-8', vary: 'Origin' });
    const privately = await headersOf(`/v1/decide/summary?anonymousId=${a}`, {});
    assert.deepEqual(privately, await headersOf(`/v1/decide/summary?anonymousId=${a}&explain=1`, {}));
    assert.equal(Object.fromEntries(privately.headers)['cache-control'], 'private, no-store');
  });
});
