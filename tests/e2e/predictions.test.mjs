// Predictions through the real Worker under workerd, with its local Durable Objects, Queues, D1 and KV: people's
// purchases reach their profiles, each profile publishes its summary through the queue into D1, the Cron Trigger
// (`wrangler dev --test-scheduled`) fits a model version from them and puts it in force, every profile's page
// then shows its predictions with the version that made them and what drove each, an audience on a purchase
// probability fills by the re-evaluation pass, the console's fit (POST /v1/predictions/fit) makes the next
// version, and an erased person's summary leaves the fit. Degenerate data answers a version that says why it
// could not fit. Nothing is mocked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { workerForFile, getProfile } from '../support/worker.mjs';

const DAY = 86_400_000;
const CONFIG = {
  sources: [{ id: 'web', writeKey: 'pk_predictions' }],
  consent: { model: 'opt-out' },
  predictions: { horizons: ['30d'], refit: '1d', holdout: '30d' },
  segments: [{ id: 'likely-buyer', when: { prediction: 'purchase30d', gte: 0.4 } }],
};
const w = workerForFile({ config: CONFIG });

const send = async (events) => {
  const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ writeKey: w.serverKey, batch: events }) });
  assert.equal(r.status, 200, await r.text());
};
const admin = (method, path) => w.call(method, path, undefined, w.admin());
/** Polls `probe` until it returns a truthy value, at most `ms`. */
async function until(probe, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await probe();
    if (got) return got;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** 60 people: each buys every `gap` days from `start` days ago, and some stop; person 0 bought only once. */
function history(now) {
  const events = [];
  for (let i = 0; i < 60; i++) {
    const gap = 6 + (i % 9) * 4;
    const start = now - (120 + (i * 7) % 180) * DAY;
    const stop = i % 3 === 0 ? start + (20 + i) * DAY : now;
    for (let t = start, n = 0; t < stop && t < now; t += gap * DAY, n++) {
      events.push({ type: 'track', event: 'Order Completed', userId: `buyer-${i}`, messageId: `o-${i}-${n}`,
        timestamp: new Date(t).toISOString(), properties: { revenue: 20 + (i % 7) * 15 } });
      if (i === 0) break;
    }
  }
  return events;
}

test('a fit from everyone\'s summaries is put in force and every profile shows its predictions', { timeout: 240_000 }, async () => {
  const before = await admin('GET', '/v1/predictions');
  assert.equal(before.status, 200, before.text);
  assert.equal(before.json.inForce, null);
  assert.deepEqual(before.json.versions, []);
  assert.deepEqual(before.json.names, ['alive', 'purchase30d', 'purchases30d', 'value30d']);

  const events = history(Date.now());
  for (let i = 0; i < events.length; i += 100) await send(events.slice(i, i + 100));
  // Each profile's summary comes through the index queue into D1.
  await until(async () => (await admin('GET', '/v1/predictions')).json.summaries === 60, 60_000, 'every summary');
  const none = await getProfile(w, 'user_id:buyer-5');
  assert.equal(none.body.predictions.model, null, 'no model yet: no prediction');
  assert.deepEqual(none.body.predictions.values, []);

  // The Cron Trigger: the last fit is older than refit (there was none), so it fits version 1.
  await fetch(`${w.url}/__scheduled?cron=*+*+*+*+*`);
  const listed = await until(async () => {
    const r = await admin('GET', '/v1/predictions');
    return r.json.versions.length ? r.json : null;
  }, 60_000, 'a fitted version');
  const v1 = listed.versions[0];
  assert.equal(v1.version, 1);
  assert.ok(['fitted', 'partial'].includes(v1.status), JSON.stringify(v1));
  assert.equal(v1.quality.profiles, 60);
  assert.equal(v1.quality.customers, 60);
  for (const k of ['r', 'alpha', 'a', 'b']) assert.ok(v1.model.bgnbd[k] > 0 && Number.isFinite(v1.model.bgnbd[k]), k);
  assert.ok(v1.quality.holdout.auc > 0.5, JSON.stringify(v1.quality.holdout));
  assert.ok(v1.quality.holdout.calibration.length > 0);
  assert.deepEqual(listed.inForce, { version: 1, pinned: false });

  // A second cron within refit fits nothing.
  await fetch(`${w.url}/__scheduled?cron=*+*+*+*+*`);
  assert.equal((await admin('GET', '/v1/predictions')).json.versions.length, 1);

  // The person's page: each prediction with the version that made it and what drove it.
  const regular = (await getProfile(w, 'user_id:buyer-1')).body.predictions;
  assert.equal(regular.model.version, 1);
  const p30 = regular.values.find((v) => v.name === 'purchase30d');
  assert.ok(p30.value > 0 && p30.value < 1, JSON.stringify(p30));
  assert.match(p30.why, /repeat purchase days over \d+ days as a customer/);
  const value = regular.values.find((v) => v.name === 'value30d');
  assert.ok(value.value > 0);
  // With nothing new, the probability of buying only falls as time passes.
  const later = await w.call('GET', `/v1/profiles/user_id:buyer-1?at=${new Date(Date.now() + 400 * DAY).toISOString()}`, undefined, w.admin());
  assert.ok(later.json.predictions.values.find((v) => v.name === 'purchase30d').value < p30.value);
  const bad = await w.call('GET', '/v1/profiles/user_id:buyer-1?at=tomorrow', undefined, w.admin());
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.path, 'at');

  // The audience on a purchase probability fills without anyone's next event: the fit started the pass.
  const members = await until(async () => {
    const r = await admin('GET', '/v1/audiences');
    const a = r.json.audiences?.find((x) => x.id === 'likely-buyer');
    return a && a.size > 0 ? a : null;
  }, 60_000, 'likely-buyer members');
  assert.ok(members.size < 60, 'not everyone is likely to buy');
  // The pass reaches profiles in chunks: the first members show before it comes to buyer-1.
  let seen;
  const consistent = await until(async () => {
    const body = (await getProfile(w, 'user_id:buyer-1')).body;
    const p = body.predictions.values.find((v) => v.name === 'purchase30d').value;
    seen = `purchase30d ${p}, members ${JSON.stringify(body.audiences.members)}`;
    return body.audiences.members.some((m) => m.audience === 'likely-buyer') === (p >= 0.4) ? body : null;
  }, 60_000, 'buyer-1 in likely-buyer exactly when purchase30d >= 0.4').catch((e) => { throw new Error(`${e.message}: ${seen}`); });
  assert.ok(consistent);

  // The console's button: version 2, now.
  const fit = await admin('POST', '/v1/predictions/fit');
  assert.equal(fit.status, 201, fit.text);
  assert.equal(fit.json.version, 2);

  // Erasure: the person's summary leaves the next fit.
  assert.equal((await admin('DELETE', '/v1/profiles/user_id:buyer-2')).status, 204);
  assert.equal((await admin('GET', '/v1/predictions')).json.summaries, 59);
  const after = await admin('POST', '/v1/predictions/fit');
  assert.equal(after.json.quality.profiles, 59);
});

test('only an operator sees or fits models', async () => {
  assert.equal((await w.call('GET', '/v1/predictions')).status, 401);
  assert.equal((await w.call('POST', '/v1/predictions/fit')).status, 401);
  assert.equal((await w.call('GET', '/v1/predictions?limit=0', undefined, w.admin())).json.error.path, 'limit');
});
