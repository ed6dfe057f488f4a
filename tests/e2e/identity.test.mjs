// Identity resolution and the profile store, against the real Worker under workerd with local KV and
// Durable Objects: nothing lost under concurrency, one person one profile, merges that respect limits,
// junk ids that create nothing, splits that undo a merge, and erasure that follows merges.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { GRANT, uid, workerForFile, getProfile } from '../support/worker.mjs';
import { liveStorageText } from '../support/storage.mjs';

const w = workerForFile();
const admin = w.admin;
async function batch(events) {
  // Identity claims are a site's backend's here: sent with the server source's secret key, so they are believed.
  const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ writeKey: w.serverKey, batch: events }) });
  return { status: r.status, json: await r.json() };
}
const exportOf = async (key) => (await fetch(`${w.url}/v1/profiles/${key}/export`, { headers: admin() })).json();
const viewed = (a, extra = {}) =>
  ({ type: 'track', event: 'Product Viewed', anonymousId: a, properties: { category: 'bags' }, context: GRANT, ...extra });

describe('the store loses nothing', () => {
  test('200 concurrent events for one visitor count exactly 200', async () => {
    const a = uid('burst');
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) =>
      batch([viewed(a, { messageId: `${a}-${i}` })])));
    assert.deepEqual([...new Set(results.map((r) => r.status))], [200]);
    const p = await getProfile(w, `anonymous_id:${a}`);
    assert.equal(p.body.counts['Product Viewed'], 200);
    assert.equal(p.body.computed.windows['1d']['Product Viewed'], 200);
  });

  test('two first events for a new visitor at once make one profile, and retries count once', async () => {
    const a = uid('twin');
    const e = viewed(a, { messageId: `${a}-same` });
    await Promise.all([batch([e]), batch([e]), batch([viewed(a, { messageId: `${a}-other` })])]);
    const p = await getProfile(w, `anonymous_id:${a}`);
    assert.equal(p.body.counts['Product Viewed'], 2);
  });
});

describe('one person, one profile', () => {
  test('two devices identifying as the same user at the same time end as one profile with both histories', async () => {
    const user = uid('user');
    const phone = uid('phone');
    const laptop = uid('laptop');
    await batch([{ type: 'page', anonymousId: phone, messageId: `${phone}-p`, context: GRANT }, viewed(phone, { messageId: `${phone}-v` })]);
    await batch([{ type: 'page', anonymousId: laptop, messageId: `${laptop}-p`, context: GRANT }]);
    const identify = (a) => ({ type: 'identify', anonymousId: a, userId: user, messageId: `${a}-id`, traits: { plan: 'gold' }, context: GRANT });
    const [r1, r2] = await Promise.all([batch([identify(phone)]), batch([identify(laptop)])]);
    assert.equal(r1.status, 200);
    assert.equal(r2.status, 200);
    const byUser = await getProfile(w, `user_id:${user}`);
    const byPhone = await getProfile(w, `anonymous_id:${phone}`);
    const byLaptop = await getProfile(w, `anonymous_id:${laptop}`);
    assert.equal(byPhone.body.id, byUser.body.id);
    assert.equal(byLaptop.body.id, byUser.body.id);
    assert.deepEqual(byUser.body.counts, { page: 2, 'Product Viewed': 1, identify: 2 });
    assert.deepEqual(byUser.body.identities.map((i) => `${i.type}:${i.value}`).sort(),
      [`anonymous_id:${laptop}`, `anonymous_id:${phone}`, `user_id:${user}`].sort());
    const x = await exportOf(`user_id:${user}`);
    assert.equal(x.merges.length, 2);
    assert.ok(x.merges.every((m) => m.splittable));
    // Later anonymous events from either device land on the same profile.
    await batch([viewed(laptop, { messageId: `${laptop}-later` })]);
    assert.equal((await getProfile(w, `user_id:${user}`)).body.counts['Product Viewed'], 2);
  });

  test('a conflicting second user id never merges, and the refusal is recorded', async () => {
    const a = uid('shared-device');
    const first = uid('alice');
    const second = uid('bob');
    await batch([{ type: 'identify', anonymousId: a, userId: first, messageId: `${a}-1`, context: GRANT }]);
    await batch([{ type: 'identify', anonymousId: a, userId: second, messageId: `${a}-2`, context: GRANT }]);
    const alice = await getProfile(w, `user_id:${first}`);
    const bob = await getProfile(w, `user_id:${second}`);
    assert.equal(bob.status, 200);
    assert.notEqual(alice.body.id, bob.body.id);
    assert.deepEqual(alice.body.identities.filter((i) => i.type === 'user_id').map((i) => i.value), [first]);
    assert.deepEqual(bob.body.identities.filter((i) => i.type === 'user_id').map((i) => i.value), [second]);
    assert.equal((await getProfile(w, `anonymous_id:${a}`)).body.id, alice.body.id, 'the device stays with its profile');
    const x = await exportOf(`user_id:${second}`);
    assert.equal(x.refusedIdentities.length, 1);
    assert.equal(x.refusedIdentities[0].value, a);
    assert.match(x.refusedIdentities[0].reason, /user_id/);
  });

  test('an identify e-mail trait becomes an identity the profile can be found by, normalized', async () => {
    const a = uid('mail');
    const email = `${a}@Example.COM`;
    await batch([{ type: 'identify', anonymousId: a, traits: { email: `  ${email} ` }, context: GRANT }]);
    const byEmail = await getProfile(w, `email:${email.toLowerCase()}`);
    assert.equal(byEmail.status, 200);
    assert.equal(byEmail.body.id, (await getProfile(w, `anonymous_id:${a}`)).body.id);
  });

  test('junk ids never create or merge profiles', async () => {
    const r = await batch([
      { type: 'identify', anonymousId: 'undefined', userId: 'null', context: GRANT },
      { type: 'page', anonymousId: 'anonymous', context: GRANT },
    ]);
    assert.deepEqual(r.json.rejected.map((x) => [x.index, x.code, x.path]),
      [[0, 'blocked_identity', 'batch[0].userId'], [1, 'blocked_identity', 'batch[1].anonymousId']]);
    for (const key of ['user_id:null', 'anonymous_id:undefined', 'anonymous_id:anonymous']) {
      assert.equal((await getProfile(w, key)).status, 404, key);
    }
    // A junk user id beside a real anonymous id: the event counts for the visitor, and no user id is linked.
    const a = uid('real');
    await batch([{ type: 'identify', anonymousId: a, userId: '0', context: GRANT }]);
    const p = await getProfile(w, `anonymous_id:${a}`);
    assert.deepEqual(p.body.identities, [{ type: 'anonymous_id', value: a }]);
    assert.equal((await getProfile(w, 'user_id:0')).status, 404);
  });
});

describe('explain and undo', () => {
  test('a wrong merge can be split back into two profiles', async () => {
    const user = uid('u');
    const kiosk = uid('kiosk');
    await batch([viewed(kiosk, { messageId: `${kiosk}-1` }), viewed(kiosk, { messageId: `${kiosk}-2` })]);
    const kioskBefore = await getProfile(w, `anonymous_id:${kiosk}`);
    await batch([{ type: 'identify', userId: user, anonymousId: uid('own'), messageId: `${user}-0`, context: GRANT }]);
    await batch([{ type: 'track', event: 'Signed In', anonymousId: kiosk, userId: user, messageId: `${user}-1`, context: GRANT }]);
    const merged = await getProfile(w, `user_id:${user}`);
    assert.equal(merged.body.counts['Product Viewed'], 2);
    const r = await fetch(`${w.url}/v1/profiles/user_id:${user}/split`, { method: 'POST', headers: admin(),
      body: JSON.stringify({ profileId: kioskBefore.body.id }) });
    assert.equal(r.status, 200, await r.clone().text());
    const after = await getProfile(w, `user_id:${user}`);
    const kioskAfter = await getProfile(w, `anonymous_id:${kiosk}`);
    assert.equal(kioskAfter.body.id, kioskBefore.body.id);
    assert.deepEqual(kioskAfter.body.counts, { 'Product Viewed': 2 });
    assert.equal(after.body.counts['Product Viewed'], undefined);
    assert.equal(after.body.counts['Signed In'], 1, 'events after the merge stay with the survivor');
    assert.ok(!after.body.identities.some((i) => i.value === kiosk));
    // Splitting again, or a profile that was never absorbed, is a clear 404.
    const again = await fetch(`${w.url}/v1/profiles/user_id:${user}/split`, { method: 'POST', headers: admin(),
      body: JSON.stringify({ profileId: kioskBefore.body.id }) });
    assert.equal(again.status, 404);
    assert.equal((await again.json()).error.code, 'merge_not_found');
    const bad = await fetch(`${w.url}/v1/profiles/user_id:${user}/split`, { method: 'POST', headers: admin(), body: '{}' });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.path, 'profileId');
  });

  test('erasure after a merge leaves nothing, tombstones and absorbed ids included', async () => {
    const user = uid('erase-u');
    const a = uid('erase-a');
    await batch([viewed(a, { messageId: `${a}-1` })]);
    const absorbedId = (await getProfile(w, `anonymous_id:${a}`)).body.id;
    await batch([{ type: 'identify', anonymousId: a, userId: user, messageId: `${a}-2`, traits: { firstName: `${a}-name` }, context: GRANT }]);
    const survivorId = (await getProfile(w, `user_id:${user}`)).body.id;
    assert.notEqual(survivorId, absorbedId);
    assert.ok(liveStorageText(w.state).includes(absorbedId), 'the merge record names the absorbed profile');
    const del = await fetch(`${w.url}/v1/profiles/user_id:${user}`, { method: 'DELETE', headers: admin() });
    assert.equal(del.status, 204);
    const held = liveStorageText(w.state);
    for (const s of [user, a, survivorId, `${a}-1`, `${a}-2`, `${a}-name`]) {
      assert.ok(!held.includes(s), `${s} is still held after erasure`);
    }
    assert.equal((await getProfile(w, `anonymous_id:${a}`)).status, 404);
  });
});
