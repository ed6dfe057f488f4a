// Hostile input against the real Worker under workerd: the reproducers of the hostile-input issue as regression
// tests, and a bounded, seeded fuzz of every public endpoint that fails on any 5xx from the Worker.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { GRANT, uid, workerForFile, getProfile } from '../support/worker.mjs';
import { liveStorageText } from '../support/storage.mjs';

const w = workerForFile();
const admin = w.admin;
const call = w.call;
const batch = (events, key = 'demo') => call('POST', '/v1/batch', { writeKey: key, batch: events });
const page = (a, extra = {}) => ({ type: 'page', anonymousId: a, context: GRANT, ...extra });

describe('the reproducers', () => {
  test('identity values past KV\'s key limit: the visitor keeps working and is erased completely', async () => {
    for (const victim of ['😀'.repeat(130), 'é'.repeat(256)]) {
      assert.equal((await batch([page(victim)])).status, 200);
      // An e-mail of any length, from the site's backend, becomes an identity with a valid index key.
      const email = `${'a'.repeat(500)}@x.com`;
      const r = await call('POST', '/v1/identify', { anonymousId: victim, traits: { email }, context: GRANT,
        writeKey: w.serverKey });
      assert.equal(r.status, 200, r.text);
      assert.equal((await batch([page(victim)])).status, 200);
      const key = `anonymous_id:${encodeURIComponent(victim)}`;
      const p = await call('GET', `/v1/profiles/${key}`, undefined, admin());
      assert.equal(p.status, 200, p.text);
      assert.equal(p.json.counts.page, 2);
      assert.equal((await call('GET', `/v1/profiles/email:${email}`, undefined, admin())).json.id, p.json.id);
      assert.equal((await call('GET', `/v1/decide?slots=hero&anonymousId=${encodeURIComponent(victim)}`)).status, 200);
      assert.equal((await call('DELETE', `/v1/profiles/${key}`, undefined, admin())).status, 204);
      assert.equal((await call('GET', `/v1/profiles/${key}`, undefined, admin())).status, 404);
      assert.equal((await call('GET', `/v1/profiles/email:${email}`, undefined, admin())).status, 404);
    }
    const long = await call('GET', `/v1/decide?slots=hero&anonymousId=${'x'.repeat(300)}`);
    assert.deepEqual([long.status, long.json.error.code, long.json.error.path], [400, 'too_long', 'anonymousId']);
  });

  test('erasing an id the user refused erases the person it led to, and storage holds nothing of them', async () => {
    const user = uid('full-user');
    // The user holds its 100 anonymous ids (the default limit), identified by the site's backend.
    const ids = Array.from({ length: 100 }, (_, i) => `${user}-a${i}`);
    for (let i = 0; i < ids.length; i += 25) {
      const r = await batch(ids.slice(i, i + 25).map((a) => ({ type: 'identify', userId: user, anonymousId: a, context: GRANT })), w.serverKey);
      assert.equal(r.json.rejected, undefined, JSON.stringify(r.json));
    }
    // A device with three events identifies as the user: the merge is refused (a 101st anonymous id)...
    const device = `${user}-device`;
    await batch([page(device, { messageId: `${device}-1` }), page(device, { messageId: `${device}-2` }),
      page(device, { messageId: `${device}-3` })]);
    await batch([{ type: 'identify', userId: user, anonymousId: device, context: GRANT }], w.serverKey);
    const before = liveStorageText(w.state);
    for (const held of [user, device]) assert.ok(before.includes(held), `${held} held before`);

    const del = await call('DELETE', `/v1/profiles/anonymous_id:${device}`, undefined, admin());
    assert.equal(del.status, 204);
    for (const key of [`anonymous_id:${device}`, `user_id:${user}`, `anonymous_id:${ids[0]}`]) {
      assert.equal((await getProfile(w, key)).status, 404, key);
    }
    const after = liveStorageText(w.state);
    assert.ok(!after.includes(user), 'nothing of the person is left in KV or Durable Object storage');
    assert.equal((await call('DELETE', `/v1/profiles/anonymous_id:${device}`, undefined, admin())).status, 404);
  });

  test('events racing an erasure do not bring the person back', async () => {
    const a = uid('racer');
    const user = `${a}-user`;
    await batch([page(a, { messageId: `${a}-m0` }), { type: 'identify', userId: user, anonymousId: a,
      messageId: `${a}-m1`, traits: { firstName: `${a}-name` }, context: GRANT }], w.serverKey);
    const racing = Array.from({ length: 6 }, (_, i) => batch([page(a, { messageId: `${a}-race${i}` }),
      { type: 'track', event: 'Racing', userId: user, anonymousId: a, messageId: `${a}-race-u${i}`, context: GRANT }],
    w.serverKey));
    const [del, ...answers] = await Promise.all([call('DELETE', `/v1/profiles/user_id:${user}`, undefined, admin()), ...racing]);
    assert.equal(del.status, 204);
    for (const r of answers) assert.equal(r.status, 200);
    // Whatever was applied before the erasure went with it; whatever came after was refused, and said so.
    for (const key of [`anonymous_id:${a}`, `user_id:${user}`]) assert.equal((await getProfile(w, key)).status, 404, key);
    const held = liveStorageText(w.state);
    for (const s of [a, user, `${a}-name`]) assert.ok(!held.includes(s), `${s} is held after the erasure`);
  });

  test('one event storage cannot hold never costs its neighbours', async () => {
    const a = uid('far');
    // 2190 is a clock nothing can correct: the event counts when it was received. 1969 is refused alone.
    const r = await batch([page(a, { timestamp: '2190-01-01T00:00:00Z' }), page(a, { timestamp: '1969-01-01T00:00:00Z' }),
      page(a, { messageId: `${a}-ok` })]);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.rejected.map((x) => [x.index, x.code, x.path]), [[1, 'timestamp_out_of_range', 'batch[1].timestamp']]);
    const p = await getProfile(w, `anonymous_id:${a}`);
    assert.equal(p.body.counts.page, 2);
    assert.ok(Date.parse(p.body.lastSeen) < Date.now() + 60_000, p.body.lastSeen);
    assert.equal((await batch([page(a)])).status, 200, 'the profile keeps working');
  });

  test('a profile cannot be grown past its budget, and keeps working at it', async () => {
    const a = uid('big');
    // 2,000 long event names and 40 identify calls of 24 KB of new traits each, as the probe sent them.
    for (let round = 0; round < 5; round++) {
      const names = Array.from({ length: 400 }, (_, i) => ({ type: 'track', anonymousId: a, context: GRANT,
        event: `${round}-${i}-${'n'.repeat(900)}` }));
      const r = await batch(names);
      assert.equal(r.status, 200);
    }
    let refused = [];
    for (let round = 0; round < 2; round++) {
      const identifies = Array.from({ length: 18 }, (_, i) => ({ type: 'identify', anonymousId: a, context: GRANT,
        traits: Object.fromEntries(Array.from({ length: 24 }, (_, k) => [`r${round}i${i}k${k}`, 'v'.repeat(1000)])) }));
      const r = await batch(identifies);
      assert.equal(r.status, 200);
      refused = refused.concat(r.json.rejected || []);
    }
    assert.ok(refused.length > 0 && refused.every((x) => x.code === 'profile_budget_exceeded'), JSON.stringify(refused.slice(0, 2)));
    assert.match(refused[0].path, /^batch\[\d+\]\.traits\.r\d+i\d+k\d+$/);
    const p = await getProfile(w, `anonymous_id:${a}`);
    assert.equal(p.status, 200);
    const counted = Object.keys(p.body.counts).length;
    assert.ok(counted > 10 && counted < 30, `${counted} names counted`);
    assert.ok(JSON.stringify(p.body.traits).length < 40 * 1024);
    // The profile keeps working: a known name still counts, and the next page view is stored.
    assert.equal((await batch([page(a, { messageId: `${a}-after` })])).json.rejected, undefined);
    assert.equal((await getProfile(w, `anonymous_id:${a}`)).body.counts.page, 1);
  });

  test('a batch writes at most 50 profiles and names the events it refused', async () => {
    const ids = Array.from({ length: 60 }, (_, i) => uid(`many${i}`));
    const r = await batch(ids.map((a) => page(a)));
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.rejected.map((x) => [x.index, x.code, x.path]),
      ids.slice(50).map((_, i) => [50 + i, 'too_many_profiles', `batch[${50 + i}]`]));
    assert.equal((await getProfile(w, `anonymous_id:${ids[49]}`)).status, 200);
    assert.equal((await getProfile(w, `anonymous_id:${ids[50]}`)).status, 404);
  });

  test('a Content-Length no integer holds is refused without a server error', async () => {
    const { hostname, port } = new URL(w.url);
    const answer = await new Promise((resolve, reject) => {
      const s = connect(Number(port), hostname, () => {
        s.write('POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
          'Content-Length: 99999999999999999999\r\nConnection: close\r\n\r\n{"batch":[]}');
      });
      let data = '';
      s.setTimeout(10_000, () => { s.destroy(); resolve(data); });
      s.on('data', (d) => { data += d; });
      s.on('end', () => resolve(data));
      s.on('error', reject);
    });
    // The runtime's HTTP layer may close the connection before the Worker sees the request (status 0 here); what
    // must never come back is a server error.
    const status = Number((answer.match(/^HTTP\/1\.1 (\d{3})/) || [])[1] || 0);
    assert.ok(status < 500, `answered: ${answer.slice(0, 200)}`);
  });

  test('absurd order amounts leave lifetime value a number', async () => {
    const a = uid('rich');
    const order = (m, revenue) => ({ type: 'track', event: 'Order Completed', anonymousId: a, messageId: m,
      properties: { revenue }, context: GRANT });
    await batch([order(`${a}-1`, 1.7e308), order(`${a}-2`, 1.7e308), order(`${a}-3`, 19.99)]);
    const p = await getProfile(w, `anonymous_id:${a}`);
    assert.equal(p.body.computed.orders, 3);
    assert.equal(p.body.computed.lifetimeValue, 19.99);
  });
});

// A small seeded PRNG (mulberry32), so that a failure can be replayed with the same seed.
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = Number(process.env.EDGECDP_FUZZ_SEED || 20261129);
const REQUESTS = Number(process.env.EDGECDP_FUZZ_REQUESTS || 2000);

/** Hostile values of every JSON type, including the ones storage has limits for. */
function hostileValue(r, depth = 0) {
  const pick = (xs) => xs[Math.floor(r() * xs.length)];
  const choices = [
    () => null, () => true, () => 0, () => -1, () => 1.7e308, () => -1.7e308, () => 5e-324, () => 2 ** 53 + 1,
    () => '', () => ' ', () => 'null', () => 'undefined', () => '😀'.repeat(Math.floor(r() * 300)),
    () => 'é'.repeat(256), () => 'x'.repeat(Math.floor(r() * 9000)), () => '\u0000\ud800', () => '<script>alert(1)</script>',
    () => '2190-01-01T00:00:00Z', () => '0001-01-01T00:00:00Z', () => '2026-13-45T99:99:99Z', () => 'javascript:alert(1)',
    () => (depth < 3 ? [hostileValue(r, depth + 1), hostileValue(r, depth + 1)] : []),
    () => (depth < 3 ? { [pick(['a', '__proto__', 'constructor', '$ref', ''])]: hostileValue(r, depth + 1) } : {}),
  ];
  return pick(choices)();
}

function hostileEvent(r) {
  const pick = (xs) => xs[Math.floor(r() * xs.length)];
  const e = { type: pick(['track', 'page', 'identify', 'alias', 'group', 'screen', 'nope', 7]),
    anonymousId: r() < 0.8 ? uid('fz') : hostileValue(r), event: 'Fuzzed', context: { ...GRANT } };
  const fields = ['userId', 'messageId', 'timestamp', 'sentAt', 'event', 'name', 'properties', 'traits', 'previousId',
    'groupId', 'context', 'anonymousId'];
  for (let i = Math.floor(r() * 4); i > 0; i--) e[pick(fields)] = hostileValue(r);
  if (r() < 0.3) e.context = { ...GRANT, [pick(['identityToken', 'externalIds', 'page', 'consent', 'location'])]: hostileValue(r) };
  if (r() < 0.2) e.properties = { revenue: hostileValue(r), category: hostileValue(r) };
  return e;
}

/** A query parameter from any value; a lone surrogate cannot be percent-encoded, so it goes as its code. */
function q(v) {
  try { return encodeURIComponent(String(v)); } catch { return '%ED%A0%80'; }
}

function hostileRequest(r) {
  const pick = (xs) => xs[Math.floor(r() * xs.length)];
  const kind = pick(['batch', 'batch', 'single', 'decide', 'decideGet', 'summary', 'impressions', 'token', 'raw']);
  const auth = pick([{ authorization: `Basic ${Buffer.from('demo:').toString('base64')}` }, {},
    { authorization: 'Basic ###' }, { authorization: `Bearer ${'x'.repeat(5000)}` }, { origin: 'null' }]);
  switch (kind) {
    case 'batch':
      return ['POST', '/v1/batch', { writeKey: pick(['demo', 'demo', hostileValue(r)]),
        batch: Array.from({ length: 1 + Math.floor(r() * 5) }, () => hostileEvent(r)) }, auth];
    case 'single':
      return ['POST', `/v1/${pick(['track', 'identify', 'page', 'alias', 'group', 'screen'])}`, hostileEvent(r),
        { authorization: `Basic ${Buffer.from('demo:').toString('base64')}` }];
    case 'decide':
      return ['POST', '/v1/decide', { anonymousId: hostileValue(r), slots: r() < 0.5 ? ['hero'] : hostileValue(r),
        context: { page: hostileValue(r), consent: hostileValue(r), utcOffset: hostileValue(r), timezone: hostileValue(r) } }, auth];
    case 'decideGet':
      return ['GET', `/v1/decide?slots=${q(hostileValue(r))}&anonymousId=${q(hostileValue(r))}`, undefined, auth];
    case 'summary':
      return ['GET', `/v1/decide/summary?anonymousId=${q(hostileValue(r))}&personalization=${q(hostileValue(r))}`, undefined, auth];
    case 'impressions':
      return ['POST', '/v1/impressions', { anonymousId: hostileValue(r), impressions: hostileValue(r) }, auth];
    case 'token':
      return ['POST', '/v1/demo/identity-token', { userId: hostileValue(r) }, auth];
    default:
      return ['POST', pick(['/v1/batch', '/v1/decide', '/v1/impressions']),
        pick(['{', '[]', 'null', '"x"', '{"batch":{}}', '\u0000', '{"batch":[' + '['.repeat(200) + ']}']), auth];
  }
}

test(`fuzz: ${REQUESTS} seeded hostile requests (seed ${SEED}) get no 5xx from the Worker`, { timeout: 600_000 }, async () => {
  const r = rng(SEED);
  const requests = Array.from({ length: REQUESTS }, () => hostileRequest(r));
  const failures = [];
  const statuses = {};
  let next = 0;
  // Four at a time: enough to interleave writes to the same objects, bounded for a two-core machine.
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (next < requests.length) {
      const [method, path, body, headers] = requests[next++];
      const res = await call(method, path, body, headers);
      statuses[res.status] = (statuses[res.status] || 0) + 1;
      if (res.status >= 500) failures.push({ method, path, body: JSON.stringify(body)?.slice(0, 300), answer: res.text.slice(0, 300) });
    }
  }));
  test.diagnostic?.(`statuses: ${JSON.stringify(statuses)}`);
  console.log(`fuzz statuses (seed ${SEED}): ${JSON.stringify(statuses)}`);
  assert.deepEqual(failures, [], `5xx answers:\n${failures.map((f) => JSON.stringify(f)).join('\n')}`);
});
