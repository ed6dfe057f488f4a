// Import jobs through the real Worker under workerd: a CRM file (CSV) and a year of orders (NDJSON) for the same
// customers, some of whom browsed the site first, go to R2 (local), D1 (local) and the imports Queue (local), and
// the consumer applies them through the profiles' Durable Objects. Everything expected is computed here from the
// files themselves. Journeys that would send on those orders, if they were live, post to a webhook sink: it must
// receive nothing. Hostile files get their answer and keep the good rows beside them; a job interrupted by a
// restart of the runtime finishes.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { workerForFile, getProfile, identityToken, uid } from '../support/worker.mjs';
import { startSink } from '../../scripts/webhook-sink.mjs';

const SECRET = `whsec_${randomBytes(24).toString('base64')}`;
const CRM_KEY = `crm-${randomBytes(16).toString('hex')}`;
const OTHER_KEY = `other-${randomBytes(16).toString('hex')}`;
const sink = await startSink({ secret: SECRET });
after(() => sink.close());

const DAY = 86_400_000;
const hook = { id: 'hook', type: 'webhook', url: `${sink.url}/hook`, secretEnv: 'EDGECDP_TEST_HOOK_SECRET',
  purpose: 'marketing', channel: 'email', traits: ['email'], backoff: '1s', timeout: '2s' };
const config = {
  sources: [{ id: 'web', writeKey: 'imports-web', origins: ['http://127.0.0.1'] },
    { id: 'crm', type: 'server', key: CRM_KEY }, { id: 'other', type: 'server', key: OTHER_KEY }],
  consent: { model: 'opt-in' },
  identity: { identifiers: { user_id: { limit: 1, priority: 1 }, email: { limit: 5, priority: 2 },
    crm_id: { limit: 1, priority: 3 }, anonymous_id: { limit: 100, priority: 9 } } },
  destinations: [hook],
  segments: [
    { id: 'repeat-buyer', when: { event: 'Order Completed', count: { gte: 2 }, within: '365d' } },
    { id: 'gold', when: { trait: 'plan', eq: 'gold' } },
  ],
  journeys: [
    { id: 'thanks', trigger: { event: 'Order Completed' }, reentry: 'always', steps: [{ id: 'go', send: 'hook', event: 'Thanks' }] },
    { id: 'cart', trigger: { event: 'Product Added' }, reentry: 'always', steps: [{ id: 'go', send: 'hook', event: 'Cart' }] },
    { id: 'vip', trigger: { audience: 'repeat-buyer' }, reentry: 'always', steps: [{ id: 'go', send: 'hook', event: 'Vip' }] },
  ],
};
const w = workerForFile({ config, vars: { EDGECDP_TEST_HOOK_SECRET: SECRET, EDGECDP_IMPORT_STALE_SECONDS: '2',
  EDGECDP_IMPORT_MAX_BYTES: String(64 * 1024 * 1024) } });

const basic = (key) => ({ authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}` });

/** Starts an import: the body is the file; answers {status, json}. */
async function upload(body, { type = 'text/csv', query = {}, key = CRM_KEY, headers = {} } = {}) {
  const q = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
  const r = await fetch(`${w.url}/v1/imports?${q}`, { method: 'POST', body,
    headers: { 'content-type': type, ...basic(key), ...headers } });
  const text = await r.text();
  let json; try { json = JSON.parse(text); } catch { json = text; }
  return { status: r.status, json, headers: r.headers };
}

async function job(id, key = CRM_KEY) {
  const r = await fetch(`${w.url}/v1/imports/${id}`, { headers: basic(key) });
  assert.equal(r.status, 200, await r.clone().text());
  return r.json();
}

/** Polls (bounded) until the job has ended; runs the cron now and then, as Cloudflare would every minute. */
async function ended(id, ms = 90_000) {
  const until = Date.now() + ms;
  let last;
  for (let i = 0; Date.now() < until; i++) {
    last = await job(id);
    if (['done', 'failed', 'cancelled'].includes(last.state)) return last;
    if (i % 8 === 7) await fetch(`${w.url}/__scheduled?cron=*+*+*+*+*`);
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`job ${id} did not end within ${ms} ms: ${JSON.stringify(last)}`);
}

const iso = (t) => new Date(t).toISOString();

// The customers: the CRM's rows, and each one's orders over the past year (none of them recent).
const RUN = uid('run');
const customers = Array.from({ length: 30 }, (_, i) => ({
  user: `${RUN}-u${i}`, email: `${RUN}-c${i}@shop.example`, crm: `${RUN}-crm${i}`,
  plan: i % 3 === 0 ? 'gold' : 'silver', orders: i % 4,
}));
const now = Date.now();
const ordersOf = (c, i) => Array.from({ length: c.orders }, (_, j) => ({
  at: now - (12 + 40 * j + i) * DAY, revenue: 10 + i + j * 0.5, id: j === 0 ? `${c.user}-o${j}` : undefined,
}));

function crmCsv() {
  const lines = ['email,user_id,crm_id,first_name,plan,signed_up,newsletter,notes'];
  customers.forEach((c, i) => {
    const name = i === 7 ? '"=HYPERLINK(""http://evil.example"",""win"")"' : `Name ${i}`;
    lines.push(`${c.email},${c.user},${c.crm},${name},${c.plan},${iso(now - 400 * DAY)},${i % 2 ? 'yes' : 'no'},"likes, commas"`);
    if (i === 10) lines.push(`bad-${RUN}@shop.example,,,Bad,gold,not-a-date,yes,`);
  });
  return `${lines.join('\r\n')}\r\n`;
}
const CRM_MAPPING = { email: 'identities.email', user_id: 'userId', crm_id: 'identities.crm_id',
  first_name: 'traits.firstName', plan: 'traits.plan', signed_up: 'timestamp', newsletter: 'consent.marketing' };

function ordersNdjson() {
  const lines = [];
  customers.forEach((c, i) => {
    for (const o of ordersOf(c, i)) {
      lines.push(JSON.stringify({ type: 'track', event: 'Order Completed', userId: c.user, timestamp: iso(o.at),
        ...(o.id ? { messageId: o.id } : {}), properties: { revenue: o.revenue, currency: 'EUR' } }));
    }
    // A cart from two years ago: it must start no cart journey now.
    lines.push(JSON.stringify({ type: 'track', event: 'Product Added', userId: c.user, timestamp: iso(now - 730 * DAY) }));
  });
  lines.splice(5, 0, '{"type":"track","event":"Order Completed","userId":');
  lines.splice(9, 0, JSON.stringify({ type: 'track', event: 'Order Completed', userId: customers[0].user,
    timestamp: '2190-01-01T00:00:00Z' }));
  return `${lines.join('\n')}\n`;
}

describe('a CRM file and a year of orders become profiles, history and audiences', () => {
  const browsed = customers.slice(0, 5);
  let crmJob;
  let ordersJob;

  test('some customers browsed first (signed in, so their web profile has their user id)', async () => {
    for (const c of browsed) {
      const anonymousId = `${c.user}-anon`;
      const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json', origin: 'http://127.0.0.1' },
        body: JSON.stringify({ writeKey: 'imports-web', batch: [
          { type: 'page', anonymousId, messageId: uid('m'), context: { consent: { categoryPreferences: { analytics: true } } } },
          { type: 'identify', anonymousId, userId: c.user, messageId: uid('m'),
            context: { identityToken: identityToken(w, c.user), consent: { categoryPreferences: { analytics: true } } } },
        ] }) });
      assert.equal(r.status, 200, await r.text());
    }
    // One of them then refused analytics: the import's declared consent must not bring their orders in.
    const c = browsed[4];
    const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json', ...basic(CRM_KEY) },
      body: JSON.stringify({ batch: [{ type: 'track', event: 'Preferences Saved', userId: c.user, messageId: uid('m'),
        context: { consent: { categoryPreferences: { analytics: false } } } }] }) });
    assert.equal(r.status, 200, await r.text());
  });

  test('the CRM file: a job runs to done, its bad row listed by line and its unknown column named', async () => {
    const r = await upload(crmCsv(), { query: { mapping: CRM_MAPPING, consent: 'analytics,personalization', basis: 'contract' } });
    assert.equal(r.status, 202, JSON.stringify(r.json));
    assert.match(r.json.id, /^imp_[0-9a-f]{32}$/);
    assert.equal(r.headers.get('location'), `/v1/imports/${r.json.id}`);
    crmJob = await ended(r.json.id);
    assert.equal(crmJob.state, 'done', JSON.stringify(crmJob));
    assert.deepEqual(crmJob.unknownColumns, ['notes']);
    // 31 rows: 30 customers and one bad date, on line 13 (the header is line 1; the bad row follows customer 10).
    assert.deepEqual(crmJob.rows, { read: 31, applied: 29, duplicates: 0, refused: 1, rejected: 1 });
    assert.deepEqual(crmJob.rejects.map((x) => [x.line, x.code, x.path]), [[13, 'invalid_timestamp', 'signed_up']]);
    assert.ok(crmJob.rowsPerSecond > 0);
  });

  test('the orders file: history at its own time; a malformed line and a line from 2190 are rejected by line', async () => {
    const r = await upload(ordersNdjson(), { type: 'application/x-ndjson', query: { consent: 'analytics', basis: 'consent' } });
    assert.equal(r.status, 202, JSON.stringify(r.json));
    ordersJob = await ended(r.json.id);
    assert.equal(ordersJob.state, 'done', JSON.stringify(ordersJob));
    const rows = customers.reduce((n, c) => n + c.orders + 1, 0) + 2;
    const refusedPerson = browsed[4].orders + 1;
    assert.deepEqual(ordersJob.rows, { read: rows, applied: rows - 2 - refusedPerson, duplicates: 0, refused: refusedPerson, rejected: 2 });
    assert.deepEqual(ordersJob.rejects.map((x) => [x.line, x.code]), [[6, 'invalid_json'], [10, 'timestamp_out_of_range']]);
    const download = await fetch(`${w.url}/v1/imports/${ordersJob.id}/rejects`, { headers: basic(CRM_KEY) });
    assert.equal(download.headers.get('content-type'), 'application/x-ndjson');
    assert.deepEqual((await download.text()).trim().split('\n').map((l) => JSON.parse(l).line), [6, 10]);
  });

  test('each profile: merged with its web visits, counts and lifetime value as the files say, audiences right', async () => {
    for (const [i, c] of customers.entries()) {
      const { status, body: p } = await getProfile(w, `user_id:${c.user}`);
      if (i === 4) {
        // Refused analytics on the web: the CRM's consent basis did not override it; nothing imported is kept.
        assert.equal(status, 200);
        assert.equal(p.consent.analytics, false, JSON.stringify(p.consent));
        assert.equal(p.counts['Order Completed'], undefined);
        continue;
      }
      assert.equal(status, 200, `${c.user}: ${JSON.stringify(p)}`);
      const orders = ordersOf(c, i);
      assert.equal(p.counts['Order Completed'] || 0, orders.length, c.user);
      assert.equal(p.computed.orders, orders.length);
      assert.ok(Math.abs(p.computed.lifetimeValue - orders.reduce((s, o) => s + o.revenue, 0)) < 1e-9, c.user);
      assert.equal(p.traits.plan, c.plan);
      assert.equal(p.traits.email, c.email, 'the e-mail, as the CRM wrote it');
      const ids = p.identities.map((x) => `${x.type}:${x.value}`);
      assert.ok(ids.includes(`crm_id:${c.crm}`) && ids.includes(`email:${c.email}`), ids.join(' '));
      if (i < 4) {
        assert.ok(ids.includes(`anonymous_id:${c.user}-anon`), 'merged with the web visits');
        assert.equal(p.counts.page, 1);
      }
      const want = [...(orders.length >= 2 ? ['repeat-buyer'] : []), ...(c.plan === 'gold' ? ['gold'] : [])].sort();
      assert.deepEqual([...p.segments].sort(), want, c.user);
      assert.equal(p.consent.marketing, i % 2 === 1, 'the row\'s own consent column');
      // The contact point came from a server's word (the import): it is proven.
      assert.deepEqual([p.contactPoints.email?.verified, p.contactPoints.email?.by], [true, 'server'], JSON.stringify(p.contactPoints));
      if (orders.length) assert.equal(p.computed.lastOrderAt, iso(orders[0].at));
    }
    // The formula is text, never evaluated.
    const { body: seven } = await getProfile(w, `email:${customers[7].email}`);
    assert.equal(seven.traits.firstName, '=HYPERLINK("http://evil.example","win")');
  });

  test('no journey started, waited or sent for history', async () => {
    await new Promise((r) => setTimeout(r, 2500));
    assert.deepEqual(sink.requests.filter((r) => r.path === '/hook'), []);
    const { body: p } = await getProfile(w, `user_id:${customers[3].user}`);
    assert.deepEqual([p.journeys.instances, p.journeys.outbox], [[], []]);
  });

  test('the same files again change nothing', async () => {
    const before = await getProfile(w, `user_id:${customers[3].user}`);
    const again = await upload(crmCsv(), { query: { mapping: CRM_MAPPING, consent: 'analytics,personalization', basis: 'contract' } });
    assert.equal(again.status, 202);
    const j = await ended(again.json.id);
    assert.equal(j.duplicateOf, crmJob.id, 'the same file, read the same way');
    // The orders again, with a changed line order (another file, the same rows): every row is a duplicate.
    const shuffled = ordersNdjson().trim().split('\n').reverse().join('\n');
    const r = await upload(shuffled, { type: 'application/x-ndjson', query: { consent: 'analytics' } });
    const k = await ended(r.json.id);
    assert.equal(k.rows.applied, 0, JSON.stringify(k.rows));
    const after = await getProfile(w, `user_id:${customers[3].user}`);
    assert.deepEqual(after.body.counts, before.body.counts);
    assert.equal(after.body.computed.lifetimeValue, before.body.computed.lifetimeValue);
  });
});

describe('hostile files get their answer and keep the good rows beside them', () => {
  test('a 10 MB line is rejected by its line; the rows around it are kept', async () => {
    const user = uid('long');
    const row = (e, d) => JSON.stringify({ type: 'track', event: e, userId: user, timestamp: iso(now - d * DAY) });
    const body = `${row('A', 3)}\n{"type":"track","event":"${'x'.repeat(10 * 1024 * 1024)}"}\n${row('B', 2)}\n`;
    const r = await upload(body, { type: 'application/x-ndjson', query: { consent: 'analytics' } });
    assert.equal(r.status, 202, JSON.stringify(r.json));
    const j = await ended(r.json.id);
    assert.deepEqual(j.rejects.map((x) => [x.line, x.code]), [[2, 'row_too_long']]);
    assert.deepEqual(j.rows, { read: 3, applied: 2, duplicates: 0, refused: 0, rejected: 1 });
    const { body: p } = await getProfile(w, `user_id:${user}`);
    assert.deepEqual([p.counts.A, p.counts.B], [1, 1]);
  });

  test('a gzip bomb is refused at the limit (413); a gzip file is read inflated', async () => {
    const bomb = gzipSync(Buffer.alloc(80 * 1024 * 1024, 0x20));
    const r = await upload(bomb, { type: 'application/x-ndjson', headers: { 'content-encoding': 'gzip' } });
    assert.equal(r.status, 413, JSON.stringify(r.json));
    assert.equal(r.json.error.code, 'payload_too_large');
    const user = uid('gz');
    const good = gzipSync(`${JSON.stringify({ type: 'identify', userId: user, timestamp: iso(now - DAY), traits: { plan: 'gold' } })}\n`);
    const g = await upload(good, { type: 'application/x-ndjson', headers: { 'content-encoding': 'gzip' }, query: { consent: 'analytics' } });
    assert.equal(g.status, 202, JSON.stringify(g.json));
    assert.equal((await ended(g.json.id)).rows.applied, 1);
    assert.equal((await getProfile(w, `user_id:${user}`)).body.traits.plan, 'gold');
  });

  test('without a basis under opt-in, nothing is stored for a person who never consented', async () => {
    const user = uid('nobasis');
    const r = await upload(`${JSON.stringify({ type: 'track', event: 'Order Completed', userId: user, timestamp: iso(now - 5 * DAY) })}\n`,
      { type: 'application/x-ndjson' });
    const j = await ended(r.json.id);
    assert.deepEqual(j.rows, { read: 1, applied: 0, duplicates: 0, refused: 1, rejected: 0 });
    assert.equal((await getProfile(w, `user_id:${user}`)).status, 404);
  });

  test('who may import and read jobs: a browser key, another source, no credential', async () => {
    const body = `${JSON.stringify({ type: 'track', event: 'X', userId: 'u', timestamp: iso(now - DAY) })}\n`;
    const browser = await upload(body, { type: 'application/x-ndjson', key: 'imports-web' });
    assert.deepEqual([browser.status, browser.json.error.code], [403, 'server_key_required']);
    const none = await fetch(`${w.url}/v1/imports`, { method: 'POST', body, headers: { 'content-type': 'application/x-ndjson' } });
    assert.equal(none.status, 401);
    const mine = await upload(body, { type: 'application/x-ndjson', query: { consent: 'analytics' } });
    const other = await fetch(`${w.url}/v1/imports/${mine.json.id}`, { headers: basic(OTHER_KEY) });
    assert.deepEqual([other.status, (await other.json()).error.code], [403, 'import_of_another_source']);
    const list = await (await fetch(`${w.url}/v1/imports`, { headers: basic(OTHER_KEY) })).json();
    assert.ok(list.imports.every((j) => j.source === 'other'));
    const admin = await (await fetch(`${w.url}/v1/imports`, { headers: w.admin() })).json();
    assert.ok(admin.imports.some((j) => j.id === mine.json.id));
    const unknown = await fetch(`${w.url}/v1/imports/imp_${'0'.repeat(32)}`, { headers: basic(CRM_KEY) });
    assert.equal(unknown.status, 404);
  });

  test('bad declarations: each with its status, code and path', async () => {
    const pdf = await upload('x', { type: 'application/pdf' });
    assert.deepEqual([pdf.status, pdf.json.error.code, pdf.json.error.path], [415, 'unsupported_media_type', 'Content-Type']);
    const missing = await upload('email,plan\na@b.example,gold\n', { query: { mapping: { Email: 'identities.email' } } });
    assert.deepEqual([missing.status, missing.json.error.path], [400, 'mapping.Email']);
    const badTarget = await upload('email\n', { query: { mapping: { email: 'identities.fax' } } });
    assert.deepEqual([badTarget.status, badTarget.json.error.path], [400, 'mapping.email']);
    const br = await upload('x', { type: 'application/x-ndjson', headers: { 'content-encoding': 'br' } });
    assert.equal(br.status, 415);
    const named = await fetch(`${w.url}/v1/imports`, { method: 'POST', headers: { 'content-type': 'application/json', ...basic(CRM_KEY) },
      body: JSON.stringify({ object: 'nothing/here.csv', format: 'csv', mapping: { email: 'identities.email' } }) });
    assert.deepEqual([named.status, (await named.json()).error.code], [400, 'object_not_found']);
  });
});

describe('a job interrupted by a restart of the runtime finishes with exact counts', () => {
  test('restart mid-job, then the cron hands on the lost chunks', async () => {
    const people = 600;
    const per = 5;
    const lines = [];
    for (let i = 0; i < people; i++) {
      for (let j = 0; j < per; j++) {
        lines.push(JSON.stringify({ type: 'track', event: 'Order Completed', userId: `${RUN}-r${i}`,
          timestamp: iso(now - (j + 2) * DAY - i), properties: { revenue: 1 + j, note: 'x'.repeat(200) } }));
      }
    }
    const r = await upload(`${lines.join('\n')}\n`, { type: 'application/x-ndjson', query: { consent: 'analytics' } });
    assert.equal(r.status, 202, JSON.stringify(r.json));
    assert.ok(r.json.chunks.total >= 4, JSON.stringify(r.json.chunks));
    // Wait until it is under way, then kill the runtime.
    const until = Date.now() + 60_000;
    let j = r.json;
    while (j.chunks.done < 1 && Date.now() < until) {
      await new Promise((res) => setTimeout(res, 100));
      j = await job(r.json.id);
    }
    assert.ok(j.chunks.done < j.chunks.total, `still running when the runtime dies: ${JSON.stringify(j.chunks)}`);
    await w.restart();
    const done = await ended(r.json.id, 120_000);
    assert.equal(done.state, 'done');
    assert.equal(done.rows.read, people * per);
    assert.equal(done.rows.applied + done.rows.duplicates, people * per, JSON.stringify(done.rows));
    assert.equal(done.rows.rejected + done.rows.refused, 0);
    for (const i of [0, 1, 150, 299, 300, 451, 599]) {
      const { body: p } = await getProfile(w, `user_id:${RUN}-r${i}`);
      assert.equal(p.counts['Order Completed'], per, `${RUN}-r${i}: each order once`);
      assert.equal(p.computed.lifetimeValue, 15);
    }
  });

  test('a cancelled job stops; what it applied stays; no chunk of any job is left in R2', async () => {
    const lines = [];
    for (let i = 0; i < 20_000; i++) {
      lines.push(JSON.stringify({ type: 'track', event: 'Product Viewed', userId: `${RUN}-c${i % 2000}`,
        timestamp: iso(now - 3 * DAY - i), properties: { note: 'y'.repeat(200) } }));
    }
    const r = await upload(`${lines.join('\n')}\n`, { type: 'application/x-ndjson', query: { consent: 'analytics' } });
    assert.equal(r.status, 202, JSON.stringify(r.json));
    assert.ok(r.json.chunks.total >= 10, JSON.stringify(r.json.chunks));
    const c = await fetch(`${w.url}/v1/imports/${r.json.id}/cancel`, { method: 'POST', headers: basic(CRM_KEY) });
    assert.equal(c.status, 200, await c.clone().text());
    assert.equal((await c.json()).state, 'cancelled');
    const again = await fetch(`${w.url}/v1/imports/${r.json.id}/cancel`, { method: 'POST', headers: basic(CRM_KEY) });
    assert.equal(again.status, 409);
    // Every job here has ended: each chunk was applied and deleted, or belongs to the cancelled job and is deleted
    // when its message comes. The local R2 keeps each object's bytes as a file: none may remain.
    const blobs = join(w.state, 'v3', 'r2', 'edgecdp-imports', 'blobs');
    const left = () => (existsSync(blobs) ? readdirSync(blobs) : []);
    const until = Date.now() + 60_000;
    while (left().length && Date.now() < until) await new Promise((res) => setTimeout(res, 250));
    assert.deepEqual(left(), [], 'no chunk is kept once its job has ended');
    const j = await job(r.json.id);
    assert.equal(j.state, 'cancelled');
    assert.ok(j.rows.applied < 20_000, JSON.stringify(j.rows));
  });
});
