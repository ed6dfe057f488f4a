// Workers KV takes at most one write a second per key at Cloudflare (more fail there, and never locally): a burst
// of writes to one profile must stay within it, while what the burst wrote is read back at once. The Worker logs
// each KV write it makes when EDGECDP_LOG_KV_WRITES is set (`kv-write <ms> <key>`); this counts them per key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { workerForFile, getProfile, GRANT, uid } from '../support/worker.mjs';

const w = workerForFile({ vars: { EDGECDP_LOG_KV_WRITES: '1' } });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Every KV write the Worker logged, as [ms, key], oldest first. */
function kvWrites() {
  // eslint-disable-next-line no-control-regex
  const text = w.logs.join('').replace(/\x1b\[[0-9;]*m/g, '');
  return text.split('\n').map((l) => l.match(/kv-write (\d+) (\S+)/)).filter(Boolean)
    .map((m) => [Number(m[1]), m[2]]);
}

/** Asserts that no key was written twice within a second; answers the writes by key. */
function writesByKey(writes) {
  const byKey = new Map();
  for (const [at, key] of writes) byKey.set(key, [...(byKey.get(key) || []), at]);
  for (const [key, times] of byKey) {
    for (let i = 1; i < times.length; i++) {
      assert.ok(times[i] - times[i - 1] >= 1000, `${key} written ${times[i] - times[i - 1]} ms after its previous write: ${JSON.stringify(writes)}`);
    }
  }
  return byKey;
}

test('a burst of batches and identifies on one profile: each KV key written at most once a second, reads fresh', { timeout: 60_000 }, async () => {
  const a = uid('burst');
  const from = kvWrites().length;
  const started = Date.now();
  for (let i = 0; i < 30; i++) {
    const batch = [{ type: 'track', event: 'Burst Event', anonymousId: a, properties: { i }, context: GRANT }];
    if (i % 10 === 5) batch.push({ type: 'identify', anonymousId: a, traits: { plan: `plan-${i}` }, context: GRANT });
    const r = await w.call('POST', '/v1/batch', { writeKey: 'demo', batch });
    assert.equal(r.status, 200, r.text);
    // What was just written is what the next read sees, although KV may not have it yet.
    const p = await getProfile(w, `anonymous_id:${a}`);
    assert.equal(p.body.counts['Burst Event'], i + 1);
  }
  const burst = Date.now() - started;
  // The last write that was due lands within a second or so.
  await sleep(2_500);
  const writes = kvWrites().slice(from);
  const byKey = writesByKey(writes);
  const snapshot = [...byKey.keys()].find((k) => k.startsWith('profile:'));
  assert.ok(snapshot, `no snapshot write among ${JSON.stringify(writes)}`);
  // Thirty writes to the profile became about one snapshot a second, and the last one came after the burst.
  const snaps = byKey.get(snapshot);
  assert.ok(snaps.length <= Math.ceil(burst / 1000) + 1, `${snaps.length} snapshot writes in a ${burst} ms burst`);
  // Each identity's index entry was written once, when it was new, not refreshed on every batch.
  assert.deepEqual(byKey.get(`idx:anonymous_id:${a}`)?.length, 1, JSON.stringify([...byKey]));
  console.log(`burst of 30 batches in ${burst} ms: ${writes.length} KV writes (${snaps.length} snapshots)`);
  // Once settled, the snapshot itself (read from KV, the object no longer asked) has all of it.
  const p = await getProfile(w, `anonymous_id:${a}`);
  assert.equal(p.body.counts['Burst Event'], 30);
  assert.equal(p.body.traits.plan, 'plan-25');
});

test('a sign-in in the middle of a burst merges the visitor into the user: the merge waits for the keys, reads do not', { timeout: 60_000 }, async () => {
  const a = uid('merge');
  const user = uid('merge-user');
  const server = { authorization: `Basic ${Buffer.from(`${w.serverKey}:`).toString('base64')}` };
  const from = kvWrites().length;
  for (let i = 0; i < 20; i++) {
    const batch = [{ type: 'track', event: 'Merge Burst', anonymousId: a, context: GRANT }];
    // The backend signs the visitor in: a user profile is made and absorbs the anonymous one, whose keys were
    // written moments ago.
    if (i === 5) batch.push({ type: 'identify', anonymousId: a, userId: user, traits: { plan: 'pro' }, context: GRANT });
    const r = await w.call('POST', '/v1/batch', { batch }, server);
    assert.equal(r.status, 200, r.text);
    const byAnonymous = await getProfile(w, `anonymous_id:${a}`);
    assert.equal(byAnonymous.body.counts['Merge Burst'], i + 1, `read by anonymous id after batch ${i}`);
    if (i >= 5) {
      const byUser = await getProfile(w, `user_id:${user}`);
      assert.equal(byUser.body.counts['Merge Burst'], i + 1, `read by user id after batch ${i}`);
      assert.equal(byUser.body.id, byAnonymous.body.id);
    }
  }
  await sleep(2_500);
  const byKey = writesByKey(kvWrites().slice(from));
  assert.equal(byKey.get(`idx:anonymous_id:${a}`)?.length, 2, 'written when new, then moved to the user\'s profile');
  const settled = await getProfile(w, `anonymous_id:${a}`);
  assert.equal(settled.body.counts['Merge Burst'], 20);
  assert.equal(settled.body.traits.plan, 'pro');
  assert.ok(settled.body.identities.some((i) => i.type === 'user_id' && i.value === user));
});

test('an erasure right after a write waits out the second of the keys it deletes, and leaves nothing readable', { timeout: 60_000 }, async () => {
  const a = uid('erase-hot');
  const from = kvWrites().length;
  const r = await w.call('POST', '/v1/batch', { writeKey: 'demo', batch: [
    { type: 'identify', anonymousId: a, traits: { email: `${a}@example.com`, plan: 'gold' }, context: GRANT }] });
  assert.equal(r.status, 200, r.text);
  // Within the second of the snapshot's and the index entry's first writes: the erasure waits it out.
  const t0 = Date.now();
  const del = await w.call('DELETE', `/v1/profiles/anonymous_id:${a}`, undefined, w.admin());
  assert.equal(del.status, 204, del.text);
  console.log(`erasure right after the first write answered in ${Date.now() - t0} ms`);
  await sleep(500); // the Worker's log lines reach this process a little after its answer
  assert.equal((await getProfile(w, `anonymous_id:${a}`)).status, 404);
  const d = await w.call('POST', '/v1/decide', { anonymousId: a, slots: ['hero'] });
  assert.equal(d.json.profileId, null, d.text);
  const writes = kvWrites().slice(from);
  const byKey = writesByKey(writes);
  // Written once when new, deleted once when the erasure answered: two writes each, a second apart (writesByKey).
  for (const key of [`idx:anonymous_id:${a}`, ...[...byKey.keys()].filter((k) => k.startsWith('profile:'))]) {
    assert.equal(byKey.get(key)?.length, 2, `${key}: ${JSON.stringify(writes)}`);
  }
});
