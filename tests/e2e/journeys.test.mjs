// Journeys and destinations through the real Worker under workerd: a real Durable Object alarm ends a wait, the
// local Queue carries each send to this Worker's consumer, which claims it from the profile's object, signs it
// (Standard Webhooks) and posts it to a webhook sink started here, which verifies the signature and takes each
// message once by its idempotency key. Every delivery message is queued twice (EDGECDP_TEST_REDELIVER_DELIVERIES),
// as an at-least-once queue may deliver it: nothing may arrive twice. Outcomes are read back from the admin API
// (per-destination statistics, the person's export) and local D1.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { GRANT, uid, workerForFile, getProfile, identityToken } from '../support/worker.mjs';
import { startSink, verify } from '../../scripts/webhook-sink.mjs';
import { liveStorageText } from '../support/storage.mjs';

const SECRET = `whsec_${randomBytes(24).toString('base64')}`;
const RELAY_KEY = `relay-${randomBytes(16).toString('hex')}`;
const sink = await startSink({ secret: SECRET });
after(() => sink.close());

const hook = (id, path, extra = {}) => ({ id, type: 'webhook', url: `${sink.url}${path}`, secretEnv: 'EDGECDP_TEST_HOOK_SECRET',
  purpose: 'marketing', channel: 'email', traits: ['email'], backoff: '1s', timeout: '2s', ...extra });
const send = (to, event) => [{ id: 'go', send: to, event }];
const config = (workerUrl = 'http://127.0.0.1:9') => ({
  sources: [{ id: 'web', writeKey: 'journeys-key', origins: ['http://127.0.0.1'] },
    { id: 'relay', type: 'server', key: RELAY_KEY }],
  consent: { model: 'opt-in' },
  destinations: [
    hook('hook', '/hook'),
    hook('flaky', '/flaky', { attempts: 4 }),
    hook('dead', '/dead', { attempts: 2, channel: 'push' }),
    hook('slow', '/slow', { attempts: 1, timeout: '1s', channel: 'sms' }),
    hook('gate', '/gate', { attempts: 3, backoff: '3s', channel: 'post' }),
    { id: 'relay', type: 'tracking-api', url: `${workerUrl}/v1`, writeKeyEnv: 'EDGECDP_TEST_RELAY_KEY',
      purpose: 'analytics', channel: 'warehouse', pressure: false },
  ],
  journeys: [
    { id: 'welcome', trigger: { event: 'Signed Up' }, reentry: 'always',
      steps: [{ id: 'settle-in', wait: '3s' }, { id: 'go', send: 'hook', event: 'Welcome' }] },
    { id: 'flaky', trigger: { event: 'Flaky' }, reentry: 'always', steps: send('flaky', 'Flaky Hello') },
    { id: 'dead', trigger: { event: 'Dead' }, reentry: 'always', steps: send('dead', 'Never') },
    { id: 'slow', trigger: { event: 'Slow' }, reentry: 'always', steps: send('slow', 'Too Slow') },
    { id: 'gate', trigger: { event: 'Gate' }, reentry: 'always', steps: send('gate', 'Gated') },
    { id: 'erase', trigger: { event: 'Erase Me' }, reentry: 'always',
      steps: [{ id: 'wait', wait: '4s' }, { id: 'go', send: 'hook', event: 'After Erasure' }] },
    { id: 'relay', trigger: { event: 'Relay' }, reentry: 'always', steps: send('relay', 'Relayed') },
    { id: 'offer', trigger: { event: 'Offer Seen' }, reentry: 'always', steps: send('hook', 'Offer') },
  ],
});
// The server source `relay` is the backend the tests send with (its key also authenticates the forwarding).
const w = workerForFile({ config: config(), vars: { EDGECDP_TEST_HOOK_SECRET: SECRET, EDGECDP_TEST_RELAY_KEY: RELAY_KEY,
  EDGECDP_TEST_REDELIVER_DELIVERIES: '1' } });

const CONSENT = { consent: { categoryPreferences: { analytics: true, marketing: true } } };
async function track(userId, event, context = CONSENT, properties = {}) {
  const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ writeKey: RELAY_KEY,
    batch: [{ type: 'identify', userId, messageId: uid('m'), traits: { email: `${userId}@example.com` }, context },
      { type: 'track', event, userId, messageId: uid('m'), properties, context }] }) });
  assert.equal(r.status, 200, await r.clone().text());
}
/** Polls (bounded) until `check` answers true. */
async function eventually(check, what, ms = 30_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`${what} did not happen within ${ms} ms`);
}
const received = (path, userId) => sink.requests.filter((r) => r.path === path && JSON.parse(r.body).userId === userId);
async function stats() {
  const r = await fetch(`${w.url}/v1/destinations`, { headers: w.admin() });
  assert.equal(r.status, 200, await r.clone().text());
  return Object.fromEntries((await r.json()).destinations.map((d) => [d.id, d]));
}

describe('journeys through the Worker', () => {
  test('a real alarm ends the wait; the send arrives once, signed, with the journey and only the named traits', async () => {
    const user = uid('welcome');
    const started = Date.now();
    await track(user, 'Signed Up');
    await eventually(() => received('/hook', user).length > 0, 'the welcome message');
    const got = received('/hook', user);
    const arrived = got[0].at - started;
    assert.ok(arrived >= 3000, `sent after the 3 s wait, not after ${arrived} ms`);
    // Queued twice, sent once: the second message found the delivery settled.
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(received('/hook', user).length, 1, 'one request, though every message was queued twice');
    const r = got[0];
    assert.ok(r.valid && verify(SECRET, r.headers, r.body), 'the Standard Webhooks signature verifies');
    assert.ok(!verify(`whsec_${randomBytes(24).toString('base64')}`, r.headers, r.body), 'and not with another secret');
    const body = JSON.parse(r.body);
    assert.equal(body.type, 'track');
    assert.equal(body.event, 'Welcome');
    assert.equal(body.messageId, r.headers['webhook-id'], 'one idempotency key: header and messageId');
    assert.equal(body.context.journey.id, 'welcome');
    assert.equal(body.context.journey.step, 'go');
    assert.deepEqual(body.context.traits, { email: `${user}@example.com` });
    // The person's consent as it stands when the send leaves, with Google Consent Mode v2's signals derived from it
    // (analytics and marketing granted; advertising and personalization never were).
    assert.deepEqual(body.context.consent, {
      categoryPreferences: { analytics: true, personalization: false, advertising: false, marketing: true },
      googleConsentMode: { ad_storage: 'denied', analytics_storage: 'granted', ad_user_data: 'denied', ad_personalization: 'denied' },
    });
    // The person's export holds the delivery, and the profile the finished instance.
    const e = await fetch(`${w.url}/v1/profiles/user_id:${user}/export`, { headers: w.admin() });
    const exported = await e.json();
    const sent = exported.deliveries.filter((d) => d.outcome === 'sent');
    assert.equal(sent.length, 1);
    assert.equal(sent[0].id, r.headers['webhook-id']);
    assert.equal(sent[0].destination, 'hook');
    assert.equal(exported.journeys.ended[0].reason, 'completed');
    assert.equal(exported.journeys.outbox.length, 0, 'a settled send leaves the outbox');
    const stats = await (await fetch(`${w.url}/v1/journeys`, { headers: w.admin() })).json();
    assert.ok(stats.journeys.find((j) => j.id === 'welcome').ended.completed >= 1, 'the index counts the completed instance');
  });

  test('a page cannot make a journey write to an address nobody proved: 0 messages, suppressed as contact_unverified', async () => {
    // The relay attack: with the public write key, a page names a victim's address and its own text, with
    // marketing consent, then triggers a journey, once per fresh anonymous id to get past every cap.
    const before = (await stats()).hook.suppressed.contact_unverified || 0;
    const victim = `${uid('victim')}@victim.example`;
    const page = (body) => fetch(`${w.url}/v1/batch`, { method: 'POST', headers: { origin: 'http://127.0.0.1' },
      body: JSON.stringify({ writeKey: 'journeys-key', batch: body }) });
    const visitors = [uid('attacker'), uid('attacker'), uid('attacker')];
    for (const a of visitors) {
      const r = await page([
        { type: 'identify', anonymousId: a, traits: { email: victim, firstName: 'Click http://phish.example' }, context: CONSENT },
        { type: 'track', event: 'Offer Seen', anonymousId: a, context: CONSENT }]);
      assert.equal(r.status, 200, await r.clone().text());
    }
    await eventually(async () => ((await stats()).hook.suppressed.contact_unverified || 0) >= before + 3, 'the suppressions');
    await new Promise((r) => setTimeout(r, 1000));
    const toVictim = sink.requests.filter((r) => r.body.includes(victim) || r.body.includes('phish.example'));
    assert.equal(toVictim.length, 0, 'nothing reached the sink for the victim');
    // The person's page shows the address as unproven, and the suppression in their deliveries.
    const e = await (await fetch(`${w.url}/v1/profiles/anonymous_id:${visitors[0]}/export`, { headers: w.admin() })).json();
    assert.deepEqual(e.contactPoints, {});
    assert.equal(e.deliveries.find((d) => d.destination === 'hook').reason, 'contact_unverified');

    // The same page, signed in by the site's backend with a token that proves the address, is written to.
    const user = uid('signed-in');
    const email = `${user}@example.com`;
    const token = identityToken(w, user, { claims: { email, email_verified: true } });
    const a = uid('browser');
    const r = await page([
      { type: 'identify', userId: user, anonymousId: a, traits: { firstName: 'Ana' }, context: { ...CONSENT, identityToken: token } },
      { type: 'track', event: 'Offer Seen', userId: user, anonymousId: a, context: CONSENT }]);
    assert.equal(r.status, 200, await r.clone().text());
    await eventually(() => received('/hook', user).length > 0, 'the message to the proven address');
    assert.equal(JSON.parse(received('/hook', user)[0].body).context.traits.email, email);
    const p = await getProfile(w, `user_id:${user}`);
    assert.equal(p.body.contactPoints.email.by, 'token');
  });

  test('a destination that fails twice gets the message on the third attempt, with one key throughout', async () => {
    sink.fail('/flaky', 2, 503);
    const user = uid('flaky');
    await track(user, 'Flaky');
    await eventually(() => received('/flaky', user).some((r) => r.status === 200), 'the third attempt', 30_000);
    const attempts = received('/flaky', user);
    assert.deepEqual(attempts.map((a) => a.status), [503, 503, 200]);
    assert.equal(new Set(attempts.map((a) => a.headers['webhook-id'])).size, 1, 'the same webhook-id on every attempt');
    assert.ok(attempts.every((a) => a.valid), 'each attempt signed anew, and valid');
    assert.ok(attempts[2].at - attempts[1].at >= attempts[1].at - attempts[0].at - 500, 'the backoff grows');
    const s = (await stats()).flaky;
    assert.equal(s.sent, 1);
    assert.equal(s.retried, 2);
    assert.equal(s.deadLettered, 0);
  });

  test('a destination that keeps failing is dead-lettered after its last attempt, and the stats show it', async () => {
    sink.failAlways('/dead', 500);
    const user = uid('dead');
    await track(user, 'Dead');
    await eventually(async () => (await stats()).dead.deadLettered === 1, 'the dead-lettering', 30_000);
    assert.equal(received('/dead', user).length, 2, 'two attempts, as configured');
    const s = (await stats()).dead;
    assert.equal(s.failedAttempts, 2);
    assert.equal(s.sent, 0);
    // A destination that does not answer within its timeout fails the attempt too.
    sink.stall('/slow', 4000);
    const slow = uid('slow');
    await track(slow, 'Slow');
    await eventually(async () => (await stats()).slow.deadLettered === 1, 'the timeout', 30_000);
    const e = await (await fetch(`${w.url}/v1/profiles/user_id:${slow}/export`, { headers: w.admin() })).json();
    assert.match(e.deliveries.find((d) => d.outcome === 'dead_lettered').reason, /timeout after 1000 ms/);
  });

  test('consent withdrawn between two attempts stops the send, and the reason is recorded', async () => {
    sink.fail('/gate', 1, 503);
    const user = uid('gate');
    await track(user, 'Gate');
    await eventually(() => received('/gate', user).length === 1, 'the first attempt');
    // The retry comes 3 s later: consent to marketing is withdrawn before it.
    const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ writeKey: RELAY_KEY,
      batch: [{ type: 'track', event: 'Preferences Saved', userId: user, messageId: uid('m'),
        context: { consent: { categoryPreferences: { analytics: true, marketing: false } } } }] }) });
    assert.equal(r.status, 200);
    await eventually(async () => (await stats()).gate.suppressed.consent === 1, 'the suppression', 30_000);
    assert.equal(received('/gate', user).length, 1, 'nothing left after consent was withdrawn');
  });

  test('an erasure cancels the journey waiting on the profile: nothing is sent and the log names nobody', async () => {
    const user = uid('erased');
    // A send that went before the erasure: its row in the outcome log holds the profile id until then.
    await track(user, 'Offer Seen');
    await eventually(() => received('/hook', user).length > 0, 'the offer');
    await track(user, 'Erase Me');
    await new Promise((r) => setTimeout(r, 1000));
    const before = await getProfile(w, `user_id:${user}`);
    const sent = received('/hook', user)[0].headers['webhook-id'];
    assert.ok(!sent.includes(before.body.id), `the delivery id ${sent} names no profile`);
    assert.equal(before.body.journeys.instances[0].journey, 'erase', 'the instance waits on the profile');
    // The journey index counts the person at the step they wait at, and no longer once they are erased.
    const atWait = async () => {
      const r = await fetch(`${w.url}/v1/journeys`, { headers: w.admin() });
      assert.equal(r.status, 200);
      return (await r.json()).journeys.find((j) => j.id === 'erase').steps.find((s) => s.step === 'wait').running;
    };
    await eventually(async () => (await atWait()) === 1, 'the index counting the waiting person', 10_000);
    const d = await fetch(`${w.url}/v1/profiles/user_id:${user}`, { method: 'DELETE', headers: w.admin() });
    assert.equal(d.status, 204);
    await new Promise((r) => setTimeout(r, 6000));
    assert.equal(received('/hook', user).length, 1, 'the wait ended with the profile: nothing more was sent');
    // Nothing in any live row of KV, the objects' storage or D1 (the outcome log, the indexes) names the profile.
    await eventually(async () => !liveStorageText(w.state).includes(before.body.id), 'no row naming the erased profile', 10_000);
    assert.equal(await atWait(), 0, 'the erased person is gone from the journey index');
    assert.equal((await getProfile(w, `user_id:${user}`)).status, 404);
  });

  test('Segment-spec forwarding reaches another edgecdp (this one) as a track call, once', async () => {
    const put = await fetch(`${w.url}/v1/config`, { method: 'PUT', body: JSON.stringify(config(w.url)),
      headers: { ...w.admin(), 'content-type': 'application/json' } });
    assert.equal(put.status, 200, await put.clone().text());
    const user = uid('relay');
    await track(user, 'Relay', { consent: { categoryPreferences: { analytics: true } } });
    await eventually(async () => (await getProfile(w, `user_id:${user}`)).body.counts?.Relayed === 1, 'the relayed event');
    await new Promise((r) => setTimeout(r, 2500));
    const p = await getProfile(w, `user_id:${user}`);
    assert.equal(p.body.counts.Relayed, 1, 'queued twice, counted once');
    assert.equal((await stats()).relay.sent, 1);
  });

  test('who may call: the statistics need the admin token', async () => {
    assert.equal((await fetch(`${w.url}/v1/destinations`)).status, 401);
    assert.equal((await fetch(`${w.url}/v1/journeys`)).status, 401);
    assert.equal((await fetch(`${w.url}/v1/destinations`, { headers: { authorization: 'Bearer nope' } })).status, 401);
  });
});
