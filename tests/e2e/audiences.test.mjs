// Audiences in motion, through the real Worker under workerd: profile objects track transitions, a real Durable
// Object alarm moves a profile by time alone at the exact instant computed, the local Queue carries transitions
// to the membership index in local D1, and the admin API lists sizes, movements, members and exports. Every
// queue message is sent twice here (EDGECDP_TEST_REDELIVER_AUDIENCES), as an at-least-once queue may deliver it:
// nothing may count twice.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GRANT, uid, workerForFile, getProfile } from '../support/worker.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const config = {
  sources: [{ id: 'web', writeKey: 'aud-key', origins: ['http://127.0.0.1'] }],
  consent: { model: 'opt-out' },
  segments: [
    { id: 'viewers', when: { event: 'Product Viewed', count: { gte: 1 } } },
    { id: 'quiet', when: { inactiveFor: '4s' } },
    { id: 'buyers', when: { event: 'Order Completed', count: { gte: 1 } } },
    { id: 'on-sale-page', when: { page: ['/sale/*'] } },
  ],
};
const w = workerForFile({ config, vars: { EDGECDP_TEST_REDELIVER_AUDIENCES: '1' } });

async function batch(events) {
  const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ writeKey: w.serverKey, batch: events }) });
  assert.equal(r.status, 200, await r.clone().text());
  return r.json();
}
const viewed = (a, extra = {}) => ({ type: 'track', event: 'Product Viewed', anonymousId: a, messageId: uid('m'), context: GRANT, ...extra });
const admin = () => w.admin();
/** Rows of a query on the Worker's local D1, through `wrangler d1 execute --local` on its state directory. */
function d1(sql) {
  const out = execFileSync(join(ROOT, 'node_modules', '.bin', 'wrangler'),
    ['d1', 'execute', 'DB', '--local', '--persist-to', w.state, '--json', '--command', sql],
    { cwd: ROOT, encoding: 'utf8', env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: '1' } });
  return JSON.parse(out)[0].results;
}
const audiences = async () => {
  const r = await fetch(`${w.url}/v1/audiences`, { headers: admin() });
  assert.equal(r.status, 200);
  return r.json();
};
const audience = async (id) => (await audiences()).audiences.find((a) => a.id === id);
const members = async (id, query = '') => {
  const r = await fetch(`${w.url}/v1/audiences/${id}/members${query}`, { headers: admin() });
  assert.equal(r.status, 200, await r.clone().text());
  return r.json();
};
/** Polls (bounded) until `check` answers true: the queue consumer runs about a second after a send. */
async function eventually(check, what, ms = 20_000) {
  const until = Date.now() + ms;
  let last;
  while (Date.now() < until) {
    last = await check();
    if (last === true) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`${what} (last: ${JSON.stringify(last)})`);
}

describe('the membership index', () => {
  test('an event enters a profile; the index lists it once, by its main identity, despite redelivery', async () => {
    const a = uid('v');
    await batch([viewed(a)]);
    const p = (await getProfile(w, `anonymous_id:${a}`)).body;
    assert.deepEqual(p.audiences.members.map((m) => m.audience), ['viewers']);
    const entered = p.audiences.transitions.filter((t) => t.audience === 'viewers');
    assert.deepEqual(entered.map((t) => [t.type, t.cause]), [['entered', 'event']]);
    await eventually(async () => (await members('viewers')).members.some((m) => m.profileId === p.id), 'the index lists the member');
    const listed = (await members('viewers')).members.find((m) => m.profileId === p.id);
    assert.deepEqual(listed.identity, { type: 'anonymous_id', value: a });
    assert.equal(listed.since, entered[0].at);
    const stats = await audience('viewers');
    assert.equal(stats.size, 1, 'sent twice, counted once');
    assert.equal(stats.entered.last24h, 1);
    assert.equal(stats.exited.last24h, 0);
    // Identified later: the user's profile takes the visitor's over (a merge), and the index lists that one, by
    // its user id, in place of the anonymous one.
    const user = uid('u');
    await batch([{ type: 'identify', anonymousId: a, userId: user, messageId: uid('m'), context: GRANT }]);
    const known = (await getProfile(w, `user_id:${user}`)).body;
    await eventually(async () => {
      const list = (await members('viewers')).members;
      return (list.find((m) => m.profileId === known.id)?.identity?.value === user && !list.some((m) => m.profileId === p.id)) || list;
    }, 'the index lists the known profile by its user id, and no longer the anonymous one');
    assert.equal((await audience('viewers')).size, 1);
  });

  test('request segments are not audiences', async () => {
    const list = await audiences();
    assert.deepEqual(list.audiences.map((a) => a.id), ['viewers', 'quiet', 'buyers']);
    assert.deepEqual(list.requestSegments, ['on-sale-page']);
  });

  test('a real alarm moves a profile by time alone, at the instant computed, and the index follows', async () => {
    const a = uid('idle');
    await batch([viewed(a)]);
    const before = (await getProfile(w, `anonymous_id:${a}`)).body;
    const due = Date.parse(before.lastSeen) + 4000;
    assert.equal(before.audiences.nextChange, new Date(due).toISOString(), 'the next change is exactly 4 s after the last event');
    assert.ok(!before.audiences.members.some((m) => m.audience === 'quiet'));
    await eventually(async () => {
      const p = (await getProfile(w, `anonymous_id:${a}`)).body;
      return p.audiences.members.some((m) => m.audience === 'quiet') || p.audiences.members;
    }, 'the alarm moved the profile into "quiet"', 15_000);
    const after = (await getProfile(w, `anonymous_id:${a}`)).body;
    const t = after.audiences.transitions.find((x) => x.audience === 'quiet');
    assert.deepEqual([t.type, t.cause, t.at], ['entered', 'time', new Date(due).toISOString()]);
    assert.equal(after.audiences.nextChange, null, 'nothing else changes by time alone');
    await eventually(async () => (await members('quiet')).members.some((m) => m.profileId === after.id && m.since === t.at),
      'the index lists the quiet member since the exact instant');
    // The outlet recorded the Segment Engage event, read straight from local D1 with wrangler's own client.
    const rows = d1(`SELECT seq, event FROM audience_transitions WHERE profile_id = '${after.id}' AND audience = 'quiet'`);
    assert.equal(rows.length, 1, 'recorded once, though the message came twice');
    const e = JSON.parse(rows[0].event);
    assert.equal(e.event, 'Audience Entered');
    assert.equal(e.anonymousId, a);
    assert.equal(e.timestamp, t.at);
    assert.deepEqual(e.properties, { audience_key: 'quiet', quiet: true });
    assert.deepEqual(e.context.personas, { computation_class: 'audience', computation_key: 'quiet', computation_id: 'quiet' });
    assert.deepEqual(e.context.edgecdp, { profileId: after.id, cause: 'time', seq: t.seq });
    assert.equal(rows[0].seq, t.seq);
    // A new event brings it back: it exits by event, and the size follows.
    await batch([viewed(a)]);
    await eventually(async () => !(await members('quiet')).members.some((m) => m.profileId === after.id), 'the member left "quiet"');
    const back = (await getProfile(w, `anonymous_id:${a}`)).body;
    assert.deepEqual(back.audiences.transitions.filter((x) => x.audience === 'quiet').map((x) => [x.type, x.cause]),
      [['entered', 'time'], ['exited', 'event']]);
  });

  test('a merge takes the absorbed profile out of the index; an erasure takes the person out', async () => {
    const user = uid('buyer');
    const phone = uid('phone');
    const laptop = uid('laptop');
    await batch([{ type: 'track', event: 'Order Completed', anonymousId: phone, messageId: uid('m'), context: GRANT }]);
    await batch([{ type: 'identify', anonymousId: laptop, userId: user, messageId: uid('m'), context: GRANT }]);
    const phoneProfile = (await getProfile(w, `anonymous_id:${phone}`)).body;
    await eventually(async () => (await members('buyers')).members.some((m) => m.profileId === phoneProfile.id), 'the phone buyer is listed');
    // The phone's visitor signs in: the user's profile absorbs the phone's, and enters "buyers" by the merge.
    await batch([{ type: 'identify', anonymousId: phone, userId: user, messageId: uid('m'), context: GRANT }]);
    const merged = (await getProfile(w, `user_id:${user}`)).body;
    assert.notEqual(merged.id, phoneProfile.id);
    const t = merged.audiences.transitions.find((x) => x.audience === 'buyers');
    assert.deepEqual([t.type, t.cause], ['entered', 'merge']);
    await eventually(async () => {
      const ids = (await members('buyers')).members.map((m) => m.profileId);
      return (ids.includes(merged.id) && !ids.includes(phoneProfile.id)) || ids;
    }, 'the index lists the survivor, not the absorbed profile');
    assert.equal((await members('buyers')).members.find((m) => m.profileId === merged.id).identity.value, user);
    const sizeBefore = (await audience('buyers')).size;
    const r = await fetch(`${w.url}/v1/profiles/user_id:${user}`, { method: 'DELETE', headers: admin() });
    assert.equal(r.status, 204, await r.text());
    await eventually(async () => !(await members('buyers')).members.some((m) => m.profileId === merged.id), 'the erased person left the index');
    assert.equal((await audience('buyers')).size, sizeBefore - 1);
  });
});

describe('new definitions', () => {
  test('a configuration change reaches profiles nobody touches, through the re-evaluation pass', async () => {
    const a = uid('shoes');
    await batch([viewed(a, { properties: { category: 'shoes' } })]);
    const p = (await getProfile(w, `anonymous_id:${a}`)).body;
    assert.ok(!p.audiences.members.some((m) => m.audience === 'shoe-fans'));
    const next = { ...config, segments: [...config.segments,
      { id: 'shoe-fans', when: { event: 'Product Viewed', where: { category: 'shoes' }, count: { gte: 1 } } }] };
    const put = await fetch(`${w.url}/v1/config`, { method: 'PUT', headers: admin(), body: JSON.stringify(next) });
    assert.equal(put.status, 200, await put.clone().text());
    // No event for this visitor: the pass finds it, its object re-evaluates it, and the index lists it.
    await eventually(async () => (await members('shoe-fans')).members.some((m) => m.profileId === p.id), 'the pass entered the profile');
    const after = (await getProfile(w, `anonymous_id:${a}`)).body;
    const t = after.audiences.transitions.find((x) => x.audience === 'shoe-fans');
    assert.deepEqual([t.type, t.cause], ['entered', 'configuration']);
    assert.equal(after.counts['Product Viewed'], 1, 'the pass changed nothing else');
  });
});

describe('reading the index', () => {
  test('members page with a cursor, and the export streams every member as NDJSON or CSV', async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) {
      const a = uid(`page${i}`);
      await batch([viewed(a, { event: 'Order Completed' })]);
      ids.push((await getProfile(w, `anonymous_id:${a}`)).body.id);
    }
    await eventually(async () => (await members('buyers', '?limit=1000')).members.filter((m) => ids.includes(m.profileId)).length === ids.length,
      'every new buyer is listed');
    const all = (await members('buyers', '?limit=1000')).members;
    const seen = [];
    let cursor = '';
    for (let pages = 0; pages < 20; pages++) {
      const page = await members('buyers', `?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      assert.ok(page.members.length <= 2);
      seen.push(...page.members.map((m) => m.profileId));
      if (!page.next) break;
      cursor = page.next;
    }
    assert.deepEqual(seen, all.map((m) => m.profileId), 'the pages together are the whole list, in order, once');
    const nd = await fetch(`${w.url}/v1/audiences/buyers/export`, { headers: admin() });
    assert.equal(nd.status, 200);
    assert.match(nd.headers.get('content-type'), /application\/x-ndjson/);
    const lines = (await nd.text()).trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines, all);
    const csv = await fetch(`${w.url}/v1/audiences/buyers/export?format=csv`, { headers: admin() });
    assert.match(csv.headers.get('content-type'), /text\/csv/);
    const rows = (await csv.text()).trim().split('\n');
    assert.equal(rows[0], 'profileId,identityType,identityValue,since');
    assert.deepEqual(rows.slice(1), all.map((m) => [m.profileId, m.identity.type, m.identity.value, m.since].join(',')));
  });

  test('only the admin credential reads audiences, and bad parameters name their path', async () => {
    for (const path of ['/v1/audiences', '/v1/audiences/buyers/members', '/v1/audiences/buyers/export']) {
      assert.equal((await fetch(`${w.url}${path}`)).status, 401, path);
      assert.equal((await fetch(`${w.url}${path}`, { headers: { authorization: 'Bearer wrong' } })).status, 401, path);
    }
    const bad = await fetch(`${w.url}/v1/audiences/buyers/members?limit=0`, { headers: admin() });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.path, 'limit');
    for (const days of ['0', '91', 'week', '']) {
      const history = await fetch(`${w.url}/v1/audiences/buyers/history?days=${days}`, { headers: admin() });
      assert.equal(history.status, 400, days);
      const e = (await history.json()).error;
      assert.deepEqual([e.code, e.path, e.message], ['invalid_days', 'days', 'days must be a whole number from 1 to 90']);
    }
    const cursor = await fetch(`${w.url}/v1/audiences/buyers/members?cursor=${'p'.repeat(5000)}`, { headers: admin() });
    assert.equal(cursor.status, 400);
    const refused = (await cursor.json()).error;
    assert.deepEqual([refused.code, refused.path], ['invalid_cursor', 'cursor']);
    const format = await fetch(`${w.url}/v1/audiences/buyers/export?format=xml`, { headers: admin() });
    assert.equal(format.status, 400);
    assert.equal((await format.json()).error.path, 'format');
    const missing = await fetch(`${w.url}/v1/audiences/on-sale-page/members`, { headers: admin() });
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).error.code, 'audience_not_found');
  });
});
