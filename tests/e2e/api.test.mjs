// The HTTP contract (schema/openapi.json) against the real Worker under workerd, with local KV and Durable Objects.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, getProfile } from '../support/worker.mjs';

const GRANT = { consent: { categoryPreferences: { analytics: true, personalization: true } } };
let w;
before(async () => { w = await startWorker(); });
after(async () => { await w?.stop(); });

const uid = (p) => `${p}-${Math.random().toString(36).slice(2, 10)}`;
async function post(path, body, headers = {}) {
  const r = await fetch(`${w.url}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json; try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, json, text, headers: r.headers };
}
const admin = () => ({ authorization: `Bearer ${w.adminToken}` });
const pageEvent = (a, extra = {}) => ({ type: 'page', anonymousId: a, context: GRANT, ...extra });
const viewed = (a, category, extra = {}) =>
  ({ type: 'track', event: 'Product Viewed', anonymousId: a, properties: { category }, context: GRANT, ...extra });

describe('health', () => {
  test('GET /healthz answers ok with a version', async () => {
    const r = await fetch(`${w.url}/healthz`);
    assert.equal(r.status, 200);
    const body = await r.json();
    assert.equal(body.ok, true);
    assert.match(body.version, /^\d+\.\d+\.\d+/);
  });

  test('a known path asked with another method is 405 naming the methods it answers, an unknown /v1 path 404, both as JSON errors', async () => {
    const cases = [['GET', '/v1/batch', 405, 'POST, OPTIONS'], ['PATCH', '/v1/config', 405, 'GET, PUT, OPTIONS'],
      ['PUT', '/v1/profiles/user_id:x', 405, 'GET, DELETE, OPTIONS'], ['POST', '/healthz', 405, 'GET'],
      // Methods workers-rs does not know (QUERY) are not read as GET; workerd itself refuses unknown ones (501).
      ['QUERY', '/v1/config', 405, 'GET, PUT, OPTIONS'], ['QUERY', '/healthz', 405, 'GET'],
      ['GET', '/v1/nothing-here', 404, null], ['GET', '/v1/profiles/a/b/c', 404, null]];
    for (const [method, path, status, allow] of cases) {
      const r = await fetch(`${w.url}${path}`, { method });
      assert.equal(r.status, status, `${method} ${path}`);
      assert.equal(r.headers.get('allow'), allow, `${method} ${path}`);
      assert.equal((await r.json()).error.code, status === 405 ? 'method_not_allowed' : 'not_found');
    }
  });
});

describe('collection', () => {
  test('valid events are kept beside rejected ones, each rejection with index, code and path', async () => {
    const a = uid('mixed');
    const r = await post('/v1/batch', { writeKey: 'demo', batch: [
      pageEvent(a),
      { type: 'track', anonymousId: a, context: GRANT },
      { type: 'warp', anonymousId: a },
      viewed(a, 'bags'),
      { type: 'page', context: GRANT },
      { type: 'page', anonymousId: a, timestamp: 'not a time' },
      { type: 'identify', anonymousId: a, traits: 'gold' },
    ] });
    assert.equal(r.status, 200);
    assert.equal(r.json.success, true);
    assert.deepEqual(r.json.rejected.map((x) => [x.index, x.code, x.path]), [
      [1, 'missing_field', 'batch[1].event'],
      [2, 'unknown_type', 'batch[2].type'],
      [4, 'missing_identity', 'batch[4]'],
      [5, 'invalid_timestamp', 'batch[5].timestamp'],
      [6, 'invalid_type', 'batch[6].traits'],
    ]);
    for (const x of r.json.rejected) assert.ok(x.message.length > 0);
    const p = await getProfile(w, `anonymous_id:${a}`);
    assert.equal(p.status, 200);
    assert.deepEqual(p.body.counts, { page: 1, 'Product Viewed': 1 });
  });

  test('a retried messageId is accepted and counted once', async () => {
    const a = uid('retry');
    const e = viewed(a, 'shoes', { messageId: `${a}-m1` });
    for (let i = 0; i < 3; i++) assert.equal((await post('/v1/batch', { writeKey: 'demo', batch: [e] })).status, 200);
    const p = await getProfile(w, `anonymous_id:${a}`);
    assert.equal(p.body.counts['Product Viewed'], 1);
  });

  test('single-event endpoints accept the write key as Basic auth and fix the event type', async () => {
    const u = uid('user');
    // A site's server, as Segment's server libraries send: its secret key as the Basic auth user name.
    const basic = { authorization: `Basic ${Buffer.from(`${w.serverKey}:`).toString('base64')}` };
    let r = await post('/v1/identify', { userId: u, traits: { firstName: 'Ada', plan: 'gold' }, context: GRANT }, basic);
    assert.equal(r.status, 200);
    r = await post('/v1/track', { userId: u, event: 'Signed Up', context: GRANT }, basic);
    assert.equal(r.status, 200);
    r = await post('/v1/track', { type: 'page', userId: u, context: GRANT }, basic);
    assert.equal(r.json.rejected[0].code, 'type_mismatch');
    const p = await getProfile(w, `user_id:${u}`);
    assert.equal(p.status, 200);
    assert.deepEqual(p.body.counts, { identify: 1, 'Signed Up': 1 });
    assert.deepEqual(p.body.traits, { firstName: 'Ada', plan: 'gold' });
    assert.deepEqual(p.body.identities, [{ type: 'user_id', value: u }]);
    assert.ok(p.body.segments.includes('known'));
  });

  test('write keys: missing or unknown answers 401 and stores nothing', async () => {
    const a = uid('nokey');
    let r = await post('/v1/batch', { batch: [pageEvent(a)] });
    assert.equal(r.status, 401);
    assert.equal(r.json.error.code, 'missing_write_key');
    r = await post('/v1/batch', { writeKey: 'nope', batch: [pageEvent(a)] });
    assert.equal(r.status, 401);
    assert.equal(r.json.error.code, 'invalid_write_key');
    assert.equal((await getProfile(w, `anonymous_id:${a}`)).status, 404);
  });

  test('origins: a foreign origin gets 403, a listed origin gets CORS headers, preflight answers', async () => {
    const a = uid('cors');
    let r = await post('/v1/batch', { writeKey: 'demo', batch: [pageEvent(a)] }, { origin: 'https://evil.example' });
    assert.equal(r.status, 403);
    assert.equal(r.json.error.code, 'origin_not_allowed');
    r = await post('/v1/batch', { writeKey: 'demo', batch: [pageEvent(a)] }, { origin: 'http://localhost:8787' });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('access-control-allow-origin'), 'http://localhost:8787');
    const pre = await fetch(`${w.url}/v1/batch`, { method: 'OPTIONS', headers: {
      origin: 'http://localhost:8787', 'access-control-request-method': 'POST' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-methods'), 'POST, OPTIONS');
    const bad = await fetch(`${w.url}/v1/batch`, { method: 'OPTIONS', headers: { origin: 'https://evil.example' } });
    assert.equal(bad.status, 403);
  });

  test('bad bodies get 400 or 413 with a JSON error, never a 500', async () => {
    let r = await post('/v1/batch', '{"batch": [', {});
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_json');
    r = await post('/v1/batch', { writeKey: 'demo', batch: 'nope' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.path, 'batch');
    r = await post('/v1/batch', '[1,2,3]');
    assert.equal(r.status, 400);
    const huge = { writeKey: 'demo', batch: [{ type: 'page', anonymousId: 'x', properties: { s: 'x'.repeat(510 * 1024) } }] };
    r = await post('/v1/batch', huge);
    assert.equal(r.status, 413);
    assert.equal(r.json.error.code, 'payload_too_large');
    r = await post('/v1/track', { event: 'E', anonymousId: 'x', properties: { s: 'x'.repeat(33 * 1024) } }, {});
    assert.equal(r.status, 413);
    // One oversized event in a batch is rejected alone; its neighbour is kept.
    const a = uid('big');
    r = await post('/v1/batch', { writeKey: 'demo', batch: [
      { ...pageEvent(a), properties: { s: 'x'.repeat(33 * 1024) } }, pageEvent(a)] });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.rejected.map((x) => [x.index, x.code]), [[0, 'event_too_large']]);
    assert.equal((await getProfile(w, `anonymous_id:${a}`)).body.counts.page, 1);
  });

  test('batches the shell serves answer, set cookies and store exactly as the Rust Worker\'s', async () => {
    const { gzipSync } = await import('node:zlib');
    // A plain body of a declared length is the JavaScript shell's (js/edge.js), a gzip one the Rust Worker's; both
    // run `edge::collecting`, so everything but the visitor's id (and the cookie signing it) is the same.
    const send = async (path, body, headers, zipped) => {
      const text = JSON.stringify(body);
      const r = await fetch(`${w.url}${path}`, { method: 'POST', body: zipped ? gzipSync(text) : text,
        headers: { 'content-type': 'application/json', ...(zipped ? { 'content-encoding': 'gzip' } : {}), ...headers } });
      const kept = [...r.headers].filter(([k]) => !/^(content-length|content-encoding|transfer-encoding|date)$/.test(k));
      return { status: r.status, body: await r.text(), headers: kept };
    };
    const listed = { origin: 'http://localhost:8787' };
    const cookie = (r) => r.headers.find(([k]) => k === 'set-cookie')?.[1].split(';')[0];
    const jar = cookie(await send('/v1/batch', { writeKey: 'demo', batch: [pageEvent(uid('jar'))] }, listed, false));
    const basic = { authorization: `Basic ${Buffer.from(`${w.serverKey}:`).toString('base64')}` };
    const cases = [
      ['a browser\'s batch with rejected events', '/v1/batch', listed,
        (a) => ({ writeKey: 'demo', batch: [pageEvent(a), { type: 'warp', anonymousId: a }, viewed(a, 'bags')] })],
      ['a withdrawal of analytics', '/v1/batch', { ...listed, cookie: jar }, (a) => ({ writeKey: 'demo', batch: [
        { type: 'page', anonymousId: a, context: { consent: { categoryPreferences: { analytics: false } } } }] })],
      ['a server\'s single event', '/v1/track', basic, (a) => ({ userId: a, event: 'Signed Up', context: GRANT })],
      ['a beacon', '/beacon/v1/batch?writeKey=demo', listed, (a) => ({ batch: [viewed(a, 'shoes')] })],
      ['no write key', '/v1/batch', {}, (a) => ({ batch: [pageEvent(a)] })],
      ['a foreign origin', '/v1/batch', { origin: 'https://evil.example' },
        (a) => ({ writeKey: 'demo', batch: [pageEvent(a)] })],
      ['a server key in a URL', `/beacon/v1/batch?writeKey=${w.serverKey}`, {}, (a) => ({ batch: [pageEvent(a)] })],
      ['a bad field', '/v1/batch', {}, () => ({ writeKey: 'demo', batch: 'nope' })],
    ];
    for (const [what, path, headers, body] of cases) {
      const [a, b] = [uid('by-shell'), uid('by-rust')];
      const byShell = await send(path, body(a), headers, false);
      const byRust = await send(path, body(b), headers, true);
      const seen = (r, id) => JSON.stringify(r).replaceAll(id, 'ID').replace(/edgecdp_aid=[^;]+;/, 'edgecdp_aid=V;');
      assert.equal(seen(byShell, a), seen(byRust, b), what);
      const kind = path === '/v1/track' ? 'user_id' : 'anonymous_id';
      const [pa, pb] = [await getProfile(w, `${kind}:${a}`), await getProfile(w, `${kind}:${b}`)];
      assert.deepEqual([pa.status, pa.body?.counts], [pb.status, pb.body?.counts], what);
    }
    // The cases above reach what they are about: stored events, a cookie set and one cleared, each refusal.
    const byShell = [];
    for (const [, path, headers, body] of cases) byShell.push(await send(path, body(uid('again')), headers, false));
    assert.deepEqual(byShell.map((r) => r.status), [200, 200, 200, 200, 401, 403, 403, 400]);
    assert.match(cookie(byShell[0]), /^edgecdp_aid=.+/);
    assert.equal(cookie(byShell[1]), 'edgecdp_aid=');
    assert.equal(cookie(byShell[2]), undefined);
  });

  test('events without consent are answered 200 and not stored', async () => {
    const a = uid('noconsent');
    const r = await post('/v1/batch', { writeKey: 'demo', batch: [
      { type: 'page', anonymousId: a },
      { type: 'page', anonymousId: a, context: { consent: { categoryPreferences: { analytics: false } } } }] });
    assert.equal(r.status, 200);
    assert.equal(r.json.rejected, undefined);
    assert.equal((await getProfile(w, `anonymous_id:${a}`)).status, 404);
  });

  test('the consent model follows the visitor country: US is opt-out, elsewhere opt-in', async () => {
    const us = uid('us');
    const fr = uid('fr');
    await post('/v1/batch', { writeKey: 'demo', batch: [{ type: 'page', anonymousId: us }] }, { 'x-edgecdp-country': 'US' });
    await post('/v1/batch', { writeKey: 'demo', batch: [{ type: 'page', anonymousId: fr }] }, { 'x-edgecdp-country': 'FR' });
    assert.equal((await getProfile(w, `anonymous_id:${us}`)).body.counts.page, 1);
    assert.equal((await getProfile(w, `anonymous_id:${fr}`)).status, 404);
    // An explicit refusal wins even where the model is opt-out.
    const no = uid('us-refused');
    await post('/v1/batch', { writeKey: 'demo', batch: [{ type: 'page', anonymousId: no,
      context: { consent: { categoryPreferences: { analytics: false } } } }] }, { 'x-edgecdp-country': 'US' });
    assert.equal((await getProfile(w, `anonymous_id:${no}`)).status, 404);
  });

  test('concurrent writes to one profile lose nothing (serialized by its Durable Object)', async () => {
    const a = uid('burst');
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) =>
      post('/v1/batch', { writeKey: 'demo', batch: [viewed(a, 'bags', { messageId: `${a}-${i}` })] })));
    assert.deepEqual([...new Set(results.map((r) => r.status))], [200]);
    const p = await getProfile(w, `anonymous_id:${a}`);
    assert.equal(p.body.counts['Product Viewed'], 50);
  });
});

describe('profiles and admin', () => {
  test('admin endpoints need the bearer token', async () => {
    let r = await fetch(`${w.url}/v1/profiles/anonymous_id:x`);
    assert.equal(r.status, 401);
    r = await fetch(`${w.url}/v1/profiles/anonymous_id:x`, { headers: { authorization: 'Bearer wrong' } });
    assert.equal(r.status, 401);
    assert.equal((await r.json()).error.code, 'invalid_admin_token');
    r = await fetch(`${w.url}/v1/config`);
    assert.equal(r.status, 401);
  });

  test('a profile shows identities, counts, consent, segments and first/last seen', async () => {
    const a = uid('shape');
    await post('/v1/batch', { writeKey: 'demo', batch: [
      pageEvent(a, { timestamp: '2026-01-01T10:00:00Z' }), viewed(a, 'bags'), viewed(a, 'bags')] });
    const p = await getProfile(w, `anonymous_id:${a}`);
    assert.equal(p.status, 200);
    assert.match(p.body.id, /^p_[0-9a-f]{32}$/);
    assert.deepEqual(p.body.identities, [{ type: 'anonymous_id', value: a }]);
    assert.deepEqual(p.body.consent, { analytics: true, personalization: true });
    assert.deepEqual(p.body.segments, ['bag-curious']);
    // Computed traits from the configuration, and the built-in ones.
    assert.deepEqual(p.body.computed.traits, { bagViews7d: 2, pageViews30d: 0 }, 'the January page view is outside 30 days');
    assert.equal(p.body.computed.sessions, 2);
    assert.equal(p.body.computed.windows['7d']['Product Viewed'], 2);
    assert.equal(p.body.firstSeen, '2026-01-01T10:00:00.000Z');
    assert.ok(Date.parse(p.body.lastSeen) > Date.parse(p.body.firstSeen));
    assert.equal((await getProfile(w, 'anonymous_id:never-seen')).status, 404);
    const bad = await fetch(`${w.url}/v1/profiles/nocolon`, { headers: admin() });
    assert.equal(bad.status, 400);
  });
});

describe('configuration', () => {
  test('an invalid configuration is refused with every problem and the previous one stays', async () => {
    const before = await fetch(`${w.url}/v1/config`, { headers: admin() });
    const version = before.headers.get('x-edgecdp-config-version');
    const doc = await before.json();
    assert.equal(doc.sources[0].writeKey, 'demo');
    const r = await fetch(`${w.url}/v1/config`, { method: 'PUT', headers: admin(), body: JSON.stringify({
      segments: [{ id: 'x', when: { event: 'E', count: { gte: 'two' } } }, { id: 'y', when: { segment: 'nope' } }],
      slots: { hero: { blocks: [{ id: 'b' }] } } }) });
    assert.equal(r.status, 400);
    const body = await r.json();
    assert.equal(body.error.code, 'invalid_config');
    assert.deepEqual(body.problems.map((p) => p.path).sort(), [
      'segments[0].when.count.gte', 'segments[1].when.segment', 'slots.hero.blocks[0].variants']);
    const after = await fetch(`${w.url}/v1/config`, { headers: admin() });
    assert.equal(after.headers.get('x-edgecdp-config-version'), version);
    assert.deepEqual(await after.json(), doc);
    // Collection still works under the previous configuration.
    assert.equal((await post('/v1/batch', { writeKey: 'demo', batch: [pageEvent(uid('still'))] })).status, 200);
  });

  test('versions are handed out one at a time, even to writes at the same moment', async () => {
    const before = await fetch(`${w.url}/v1/config`, { headers: admin() });
    const start = Number(before.headers.get('x-edgecdp-config-version'));
    const base = await before.json();
    // Ten valid configurations at once, each told apart by a segment of its own.
    const docs = Array.from({ length: 10 }, (_, i) => ({
      ...base, segments: [...(base.segments || []), { id: `race-${i}`, when: { identified: true } }] }));
    const answers = await Promise.all(docs.map((doc) =>
      fetch(`${w.url}/v1/config`, { method: 'PUT', headers: admin(), body: JSON.stringify(doc) })));
    assert.deepEqual(answers.map((r) => r.status), Array(10).fill(200));
    const versions = await Promise.all(answers.map(async (r) => (await r.json()).version));
    assert.deepEqual([...versions].sort((a, b) => a - b), Array.from({ length: 10 }, (_, i) => start + 1 + i),
      `ten distinct, consecutive versions: ${versions}`);
    // The configuration in force is the one that got the last version, under that version.
    const after = await fetch(`${w.url}/v1/config`, { headers: admin() });
    assert.equal(Number(after.headers.get('x-edgecdp-config-version')), start + 10);
    assert.equal(after.headers.get('etag'), `"${start + 10}"`);
    assert.deepEqual(await after.json(), docs[versions.indexOf(start + 10)]);
  });

  test('a write based on a version that is no longer current is refused (If-Match)', async () => {
    const read = await fetch(`${w.url}/v1/config`, { headers: admin() });
    const etag = read.headers.get('etag');
    const doc = await read.json();
    const put = (body, ifMatch) => fetch(`${w.url}/v1/config`, {
      method: 'PUT', headers: { ...admin(), 'if-match': ifMatch }, body: JSON.stringify(body) });
    const first = await put({ ...doc, segments: [...(doc.segments || []), { id: 'editor-a', when: { identified: true } }] }, etag);
    assert.equal(first.status, 200);
    const { version } = await first.json();
    assert.equal(first.headers.get('etag'), `"${version}"`);
    assert.equal(first.headers.get('x-edgecdp-config-version'), String(version));
    // A second editor who read the same version loses nothing silently: 412, and the first write stays.
    const second = await put({ ...doc, segments: [...(doc.segments || []), { id: 'editor-b', when: { identified: true } }] }, etag);
    assert.equal(second.status, 412);
    const err = (await second.json()).error;
    assert.equal(err.code, 'version_conflict');
    assert.match(err.message, new RegExp(`version ${version}`));
    const now = await fetch(`${w.url}/v1/config`, { headers: admin() });
    assert.equal(now.headers.get('etag'), `"${version}"`);
    assert.ok((await now.json()).segments.some((s) => s.id === 'editor-a'));
    // Only "7", W/"7" or 7 name a version; anything else is refused before it can be misread.
    for (const tag of ['latest', '+7', '""7""', `"${version}`, '"-1"', '1e3']) {
      const bad = await put(doc, tag);
      assert.equal(bad.status, 400, tag);
      const e = (await bad.json()).error;
      assert.deepEqual([e.code, e.path], ['invalid_header', 'If-Match'], tag);
    }
  });
});

describe('decisions', () => {
  test('the hero shows the fallback until the second bag view, then the bags block', async () => {
    const a = uid('decide');
    const decideHero = async () => (await post('/v1/decide', { anonymousId: a, slots: ['hero'] })).json;
    let d = await decideHero();
    assert.equal(d.slots.hero.block, null);
    assert.match(d.slots.hero.html, /Welcome/);
    await post('/v1/batch', { writeKey: 'demo', batch: [pageEvent(a), viewed(a, 'bags')] });
    d = await decideHero();
    assert.equal(d.slots.hero.block, null);
    await post('/v1/batch', { writeKey: 'demo', batch: [viewed(a, 'bags')] });
    d = await decideHero();
    assert.equal(d.slots.hero.block, 'bags-promo');
    assert.ok(['a', 'b'].includes(d.slots.hero.variant));
    assert.deepEqual(d.segments, ['bag-curious']);
    assert.match(d.profileId, /^p_/);
    // The same visitor gets the same variant every time.
    assert.equal((await decideHero()).slots.hero.variant, d.slots.hero.variant);
    // GET, for CMS pages and servers, gives the same answer.
    const g = await (await fetch(`${w.url}/v1/decide?slots=hero&anonymousId=${a}`)).json();
    assert.deepEqual(g.slots, d.slots);
  });

  test('without personalization consent every slot answers its fallback', async () => {
    const a = uid('nopers');
    const onlyAnalytics = { consent: { categoryPreferences: { analytics: true, personalization: false } } };
    await post('/v1/batch', { writeKey: 'demo', batch: [viewed(a, 'bags', { context: onlyAnalytics }),
      viewed(a, 'bags', { context: onlyAnalytics })] });
    const p = await getProfile(w, `anonymous_id:${a}`);
    assert.deepEqual(p.body.segments, ['bag-curious']);
    const d = (await post('/v1/decide', { anonymousId: a, slots: ['hero'] })).json;
    assert.equal(d.slots.hero.block, null);
    assert.deepEqual(d.segments, []);
    assert.equal(d.profileId, null);
  });

  test('trait values are HTML-escaped in content', async () => {
    // Visitors are assigned variants by a hash of their profile id; try a few until one gets variant "a",
    // the variant that shows {{traits.firstName}}.
    let served;
    for (let i = 0; i < 20 && served?.variant !== 'a'; i++) {
      const a = uid('xss');
      await post('/v1/batch', { writeKey: 'demo', batch: [
        { type: 'identify', anonymousId: a, traits: { firstName: '<script>alert(1)</script>' }, context: GRANT },
        viewed(a, 'bags'), viewed(a, 'bags')] });
      served = (await post('/v1/decide', { anonymousId: a, slots: ['hero'] })).json.slots.hero;
    }
    assert.equal(served.variant, 'a');
    assert.doesNotMatch(served.html, /<script>/);
    assert.match(served.html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  });

  test('unknown slots are reported by path and bad decide bodies get 400', async () => {
    let r = await post('/v1/decide', { anonymousId: 'x', slots: ['hero', 'sidebar'] });
    assert.equal(r.status, 200);
    assert.ok(r.json.slots.hero);
    assert.deepEqual(r.json.rejected.map((x) => [x.code, x.path]), [['unknown_slot', 'slots[1]']]);
    r = await post('/v1/decide', { anonymousId: 'x', slots: ['hero', 7] });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.path, 'slots[1]');
    r = await post('/v1/decide', 'not json');
    assert.equal(r.status, 400);
    const g = await fetch(`${w.url}/v1/decide`);
    assert.equal(g.status, 400);
  });
});

describe('without an admin token', () => {
  test('every admin endpoint answers 401 admin_disabled', async () => {
    const bare = await startWorker({ adminToken: null, config: null });
    try {
      for (const [method, path] of [['GET', '/v1/profiles/anonymous_id:x'], ['GET', '/v1/config'], ['PUT', '/v1/config']]) {
        const r = await fetch(`${bare.url}${path}`, { method, headers: { authorization: 'Bearer anything' },
          body: method === 'PUT' ? '{}' : undefined });
        assert.equal(r.status, 401, `${method} ${path}`);
        assert.equal((await r.json()).error.code, 'admin_disabled');
      }
      // With no configuration at all there are no sources, so every write key is unknown.
      const r = await fetch(`${bare.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ writeKey: 'demo', batch: [] }) });
      assert.equal(r.status, 401);
    } finally {
      await bare.stop();
    }
  });
});
