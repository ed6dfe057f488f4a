// Trust at the front door, against the real Worker under workerd: a browser's identity claims count only with
// a token from the site's backend, a stranger who knows someone's user id gets nothing of theirs, server keys are
// secret, and nobody reads a person without being that person or holding a credential. Every attack a probe tried
// is here, with what it must get.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { GRANT, uid, workerForFile, getProfile, identityToken } from '../support/worker.mjs';

const w = workerForFile();
const admin = w.admin;
const basic = (key) => ({ authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}` });
const call = w.call;
const demo = (path, body, headers) => call('POST', path, body, { ...basic('demo'), ...headers });
const viewed = (a) => ({ type: 'track', event: 'Product Viewed', anonymousId: a, properties: { category: 'bags' }, context: GRANT });
const exportOf = async (key) => (await call('GET', `/v1/profiles/${key}/export`, undefined, admin())).json;

/** Alice, from her own browser: two bag views, then she signs in with the token her site's backend made. */
async function alice() {
  const a = uid('visitor');
  const user = `${uid('alice')}@example.com`;
  assert.equal((await demo('/v1/batch', { batch: [viewed(a), viewed(a)] })).status, 200);
  const r = await demo('/v1/identify', { userId: user, anonymousId: a, traits: { firstName: 'Alice' },
    context: { ...GRANT, identityToken: identityToken(w, user) } });
  assert.equal(r.status, 200);
  assert.equal(r.json.unverified, undefined, JSON.stringify(r.json));
  return { a, user };
}

describe('the reproducer of the issue', () => {
  test('a stranger who knows Alice\'s e-mail address gets the fallback and no byte of her data', async () => {
    const { a, user } = await alice();
    const before = await getProfile(w, `user_id:${user}`);
    assert.equal(before.status, 200);
    assert.deepEqual(before.body.counts, { 'Product Viewed': 2, identify: 1 }, 'her sign-in merged her visits');
    assert.equal((await getProfile(w, `anonymous_id:${a}`)).body.id, before.body.id);

    const stranger = uid('stranger');
    const claim = await demo('/v1/identify', { userId: user, anonymousId: stranger, context: GRANT });
    assert.equal(claim.status, 200);
    assert.equal(claim.json.success, true);
    assert.deepEqual(claim.json.unverified.map((u) => [u.index, u.code, u.path]), [[0, 'identity_unproven', 'userId']]);

    for (const path of [`/v1/decide?slots=hero&anonymousId=${stranger}`, `/v1/decide/summary?anonymousId=${stranger}`]) {
      const r = await call('GET', path);
      assert.equal(r.status, 200, path);
      for (const secret of ['Alice', user, before.body.id]) assert.ok(!r.text.includes(secret), `${path} shows ${secret}`);
    }
    const d = await call('GET', `/v1/decide?slots=hero&anonymousId=${stranger}`);
    assert.equal(d.json.slots.hero.block, null);
    assert.deepEqual(d.json.segments, []);

    const byUser = await call('GET', `/v1/decide/summary?userId=${encodeURIComponent(user)}`);
    assert.equal(byUser.status, 403);
    assert.deepEqual([byUser.json.error.code, byUser.json.error.path], ['credential_required', 'userId']);
    assert.ok(!byUser.text.includes('Alice'));

    // Alice's profile gained nothing; the stranger's own profile holds the event and the claim, as unverified.
    const afterwards = await getProfile(w, `user_id:${user}`);
    assert.deepEqual(afterwards.body.counts, before.body.counts);
    assert.deepEqual(afterwards.body.identities, before.body.identities);
    const own = await exportOf(`anonymous_id:${stranger}`);
    assert.notEqual(own.id, before.body.id);
    assert.deepEqual(own.counts, { identify: 1 });
    assert.deepEqual(own.identities, [{ type: 'anonymous_id', value: stranger }]);
    const refused = own.refusedIdentities.map((r) => [r.type, r.value, r.reason]);
    assert.deepEqual(refused, [['user_id', user, 'unverified claim: identity_unproven']]);
  });

  test('with a valid token a second device of Alice joins her profile, as before', async () => {
    const { user } = await alice();
    const laptop = uid('laptop');
    await demo('/v1/batch', { batch: [viewed(laptop)] });
    const r = await demo('/v1/batch', { batch: [{ type: 'identify', userId: user, anonymousId: laptop, context:
      { ...GRANT, identityToken: identityToken(w, user) } }] });
    assert.equal(r.json.unverified, undefined);
    const p = await getProfile(w, `user_id:${user}`);
    assert.deepEqual(p.body.counts, { 'Product Viewed': 3, identify: 2 });
    // Later events of the signed-in browser carry the user id without a token: its link is already proven.
    const later = await demo('/v1/track', { event: 'Product Viewed', userId: user, anonymousId: laptop,
      properties: { category: 'bags' }, context: GRANT });
    assert.equal(later.json.unverified, undefined);
    assert.equal((await getProfile(w, `user_id:${user}`)).body.counts['Product Viewed'], 4);
  });
});

describe('identity tokens', () => {
  const bad = [
    ['forged (another secret)', (user) => identityToken(w, user, { secret: 'not-the-shared-secret-0123456789' }), 'invalid_token_signature'],
    ['expired', (user) => identityToken(w, user, { exp: Math.floor(Date.now() / 1000) - 600 }), 'expired_identity_token'],
    ['for another user', () => identityToken(w, 'someone-else'), 'identity_token_mismatch'],
    ['alg none', (user) => identityToken(w, user, { alg: 'none' }), 'unsupported_token_algorithm'],
    ['not a JWT', () => 'definitely.not.a-jwt', 'invalid_identity_token'],
    ['not a string', () => 42, 'invalid_identity_token'],
  ];
  for (const [name, make, code] of bad) {
    test(`a ${name} token merges nothing and names its code and path`, async () => {
      const { user } = await alice();
      const before = await getProfile(w, `user_id:${user}`);
      const other = uid('other');
      const r = await demo('/v1/batch', { batch: [viewed(other),
        { type: 'identify', userId: user, anonymousId: other, traits: { firstName: 'Mallory' },
          context: { ...GRANT, identityToken: make(user) } }] });
      assert.equal(r.status, 200);
      assert.equal(r.json.rejected, undefined, 'the events themselves are kept');
      assert.deepEqual(r.json.unverified.map((u) => [u.index, u.code, u.path]), [[1, code, 'batch[1].context.identityToken']]);
      const after = await getProfile(w, `user_id:${user}`);
      assert.deepEqual(after.body.counts, before.body.counts);
      assert.equal(after.body.traits.firstName, 'Alice');
      const own = await getProfile(w, `anonymous_id:${other}`);
      assert.deepEqual(own.body.counts, { 'Product Viewed': 1, identify: 1 });
      assert.equal(own.body.traits.firstName, 'Mallory');
    });
  }

  test('an event with only an unproven user id is rejected at its index, its neighbours kept', async () => {
    const a = uid('keep');
    const r = await demo('/v1/batch', { batch: [viewed(a), { type: 'track', event: 'X', userId: uid('nobody'), context: GRANT }] });
    assert.deepEqual(r.json.rejected.map((x) => [x.index, x.code, x.path]), [[1, 'identity_unproven', 'batch[1].anonymousId']]);
    assert.equal((await getProfile(w, `anonymous_id:${a}`)).body.counts['Product Viewed'], 1);
  });

  test('a browser aliases only its own anonymous id', async () => {
    const { a: victim } = await alice();
    const victimProfile = (await getProfile(w, `anonymous_id:${victim}`)).body;
    const mallory = uid('mallory');
    const me = `${mallory}@example.com`;
    const r = await demo('/v1/alias', { userId: me, previousId: victim, anonymousId: mallory,
      context: { ...GRANT, identityToken: identityToken(w, me) } });
    assert.deepEqual(r.json.unverified.map((u) => [u.code, u.path]), [['alias_unproven', 'previousId']]);
    assert.equal((await getProfile(w, `anonymous_id:${victim}`)).body.id, victimProfile.id);
    assert.ok(!(await getProfile(w, `user_id:${me}`)).body.identities.some((i) => i.value === victim));
  });

  test('identifier traits from a browser are claims, not identities; from a server they are identities', async () => {
    const email = `${uid('grace')}@example.org`;
    const a = uid('claims');
    await demo('/v1/identify', { anonymousId: a, traits: { email }, context: GRANT });
    assert.equal((await getProfile(w, `email:${email}`)).status, 404);
    const own = await exportOf(`anonymous_id:${a}`);
    assert.deepEqual(own.refusedIdentities.map((r) => [r.type, r.value, r.reason]),
      [['email', email, 'unverified claim: sent_by_browser']]);
    const b = uid('server');
    await call('POST', '/v1/identify', { anonymousId: b, traits: { email }, context: GRANT }, basic(w.serverKey));
    assert.equal((await getProfile(w, `email:${email}`)).body.identities.some((i) => i.value === b), true);
  });
});

describe('server sources and reads', () => {
  test('a server key decides by user id; a browser may not; a server key from a browser origin is refused', async () => {
    const { user } = await alice();
    const q = `/v1/decide?slots=hero&userId=${encodeURIComponent(user)}`;
    const server = await call('GET', q, undefined, { authorization: `Bearer ${w.serverKey}` });
    assert.equal(server.status, 200);
    assert.equal(server.json.slots.hero.block, 'bags-promo');
    const browser = await call('GET', q);
    assert.deepEqual([browser.status, browser.json.error.code, browser.json.error.path], [403, 'credential_required', 'userId']);
    const post = await call('POST', '/v1/decide', { userId: user, slots: ['hero'] });
    assert.equal(post.status, 403);
    const fromPage = await call('GET', q, undefined, { authorization: `Bearer ${w.serverKey}`, origin: w.url });
    assert.deepEqual([fromPage.status, fromPage.json.error.code], [403, 'server_key_from_browser']);
    const collect = await call('POST', '/v1/batch', { writeKey: w.serverKey, batch: [viewed(uid('x'))] }, { origin: w.url });
    assert.deepEqual([collect.status, collect.json.error.code], [403, 'server_key_from_browser']);
    // The key never shows: not in the configuration, not in any answer.
    const config = await call('GET', '/v1/config', undefined, admin());
    assert.ok(!config.text.includes(w.serverKey));
    assert.match(config.json.sources.find((s) => s.type === 'server').keyHash, /^sha256:[0-9a-f]{64}$/);
    for (const r of [server, browser, fromPage, collect]) assert.ok(!r.text.includes(w.serverKey));
    // A wrong server key is just an unknown key.
    assert.equal((await call('POST', '/v1/batch', { writeKey: `${w.serverKey}x`, batch: [viewed(uid('x'))] })).status, 401);
  });

  test('nobody but the visitor overrides a recorded refusal of personalization', async () => {
    const { a } = await alice();
    await demo('/v1/track', { event: 'Consent Changed', anonymousId: a,
      context: { consent: { categoryPreferences: { analytics: true, personalization: false } } } });
    for (const path of [`/v1/decide?slots=hero&anonymousId=${a}&personalization=true`,
      `/v1/decide/summary?anonymousId=${a}&personalization=true`]) {
      const r = await call('GET', path);
      assert.equal(r.status, 200);
      assert.ok(!r.text.includes('Alice'), path);
    }
    assert.equal((await call('GET', `/v1/decide?slots=hero&anonymousId=${a}&personalization=true`)).json.slots.hero.block, null);
    const body = await call('POST', '/v1/decide', { anonymousId: a, slots: ['hero'],
      context: { consent: { categoryPreferences: { personalization: true } } } });
    assert.equal(body.json.slots.hero.block, null);
  });

  test('the cookie is issued only for an id the browser made or proved', async () => {
    const victim = uid('victim');
    const browser = { origin: w.url };
    const first = await demo('/v1/batch', { batch: [viewed(victim)] }, browser);
    assert.match(first.headers.get('set-cookie') || '', new RegExp(`^edgecdp_aid=${victim}\\.`));
    const stranger = await demo('/v1/batch', { batch: [viewed(victim)] }, browser);
    assert.equal(stranger.headers.get('set-cookie'), null, 'naming an existing id earns no cookie for it');
    assert.equal(stranger.json.anonymousId, undefined);
  });
});

describe('the front door', () => {
  test('Origin: null is a browser, and not an allowed one', async () => {
    const r = await demo('/v1/batch', { batch: [viewed(uid('sandboxed'))] }, { origin: 'null' });
    assert.deepEqual([r.status, r.json.error.code], [403, 'origin_not_allowed']);
    assert.equal((await call('GET', '/v1/decide?slots=hero&anonymousId=x', undefined, { origin: 'null' })).status, 403);
  });

  test('the admin token counts in every Bearer spelling, and nowhere else', async () => {
    const { user } = await alice();
    for (const auth of [`Bearer ${w.adminToken}`, `bearer ${w.adminToken}`, `BEARER  ${w.adminToken}`, `Bearer\t${w.adminToken} `]) {
      assert.equal((await call('GET', `/v1/profiles/user_id:${user}`, undefined, { authorization: auth })).status, 200, auth);
    }
    for (const auth of [`Bearer ${w.adminToken}x`, `Basic ${w.adminToken}`, `${w.adminToken}`, 'Bearer']) {
      assert.equal((await call('GET', `/v1/profiles/user_id:${user}`, undefined, { authorization: auth })).status, 401, auth);
    }
  });

  test('admin and profile answers are never cached nor readable from a browser origin', async () => {
    const { user } = await alice();
    const r = await call('GET', `/v1/profiles/user_id:${user}`, undefined, { ...admin(), origin: w.url });
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.equal(r.headers.get('access-control-allow-origin'), null);
    const pre = await fetch(`${w.url}/v1/profiles/user_id:${user}`, { method: 'OPTIONS',
      headers: { origin: w.url, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } });
    assert.equal(pre.status, 403);
    assert.equal(pre.headers.get('access-control-allow-origin'), null);
    const ok = await fetch(`${w.url}/v1/batch`, { method: 'OPTIONS',
      headers: { origin: w.url, 'access-control-request-method': 'POST' } });
    assert.equal(ok.status, 204);
  });
});

describe('configuration', () => {
  test('a configuration may turn proof off only explicitly; the demo sign-in exists only when enabled', async () => {
    const put = (config) => call('PUT', '/v1/config', config, admin());
    const base = (await call('GET', '/v1/config', undefined, admin())).json;
    // The demo configuration enables the sign-in: it signs a token the Worker then believes.
    const user = uid('demo-user');
    const t = await call('POST', '/v1/demo/identity-token', { userId: user });
    assert.equal(t.status, 200);
    const a = uid('signed');
    const r = await demo('/v1/identify', { userId: user, anonymousId: a, context: { ...GRANT, identityToken: t.json.token } });
    assert.equal(r.json.unverified, undefined);
    assert.equal((await getProfile(w, `anonymous_id:${a}`)).body.id, (await getProfile(w, `user_id:${user}`)).body.id);
    assert.deepEqual((await call('POST', '/v1/demo/identity-token', { userId: '' })).json.error.path, 'userId');

    const invalid = await put({ sources: [{ id: 'b', writeKey: 'k', identityProof: 'maybe' },
      { id: 's', type: 'server', key: 'short' }, { id: 't', type: 'server', key: 'x'.repeat(30), origins: ['https://a.example'] }] });
    assert.equal(invalid.status, 400);
    assert.deepEqual(invalid.json.problems.map((p) => p.path),
      ['sources[0].identityProof', 'sources[1].key', 'sources[2].origins']);

    const { demo: _, ...withoutDemo } = base;
    const sources = base.sources.map((s) => (s.type === 'server' ? s : { ...s, identityProof: 'off' }));
    assert.equal((await put({ ...withoutDemo, sources })).status, 200);
    assert.equal((await call('POST', '/v1/demo/identity-token', { userId: user })).status, 404);
    const trusting = uid('trusting');
    const b = uid('off');
    const off = await demo('/v1/identify', { userId: trusting, anonymousId: b, context: GRANT });
    assert.equal(off.json.unverified, undefined, 'with proof off the claim is believed');
    assert.equal((await getProfile(w, `user_id:${trusting}`)).body.id, (await getProfile(w, `anonymous_id:${b}`)).body.id);
    assert.ok(w.logs.join('').includes('identityProof "off"'), 'the Worker warns at the configuration load');
    // A new isolate whose first request is a decision: the JavaScript shell compiles the configuration, and says
    // the same once its answer is out. The profile objects' alarms (a snapshot due a second after the writes
    // above) go off first: after the restart, one would load the configuration in the Rust Worker and say it.
    await new Promise((r) => setTimeout(r, 2500));
    await w.restart();
    // The log keeps its last 200 lines: what came after a mark of our own is what this isolate said.
    const mark = `--- ${uid('mark')} ---`;
    w.logs.push(mark);
    const said = () => w.logs.slice(w.logs.indexOf(mark)).join('').includes('identityProof "off"');
    const decided = await fetch(`${w.url}/v1/decide`, { method: 'POST', body: JSON.stringify({ anonymousId: b, slots: ['hero'] }) });
    assert.equal(decided.status, 200, await decided.text());
    const deadline = Date.now() + 10_000;
    while (!said() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(said(), 'a new isolate warns at its first load, whichever path loads it');
    assert.equal((await put(base)).status, 200);
  });
});
