// The export end to end (issue 29): events from the demo site's snippet in Chromium and from Segment's
// analytics-node, a merge, an audience change and a journey's send, through the real Worker under wrangler dev
// (profile objects, the export Queue, R2 and D1 in their local form), then the files read back with DuckDB (from
// PyPI, as an analyst would) and SQL. The producer sends every export message twice
// (`EDGECDP_TEST_REDELIVER_EXPORT`) and the consumer's first delivery dies after writing its files
// (`EDGECDP_TEST_EXPORT_CUT_OFF`): no row may be in the files twice. Then the person is erased, and after the
// cron's purge no file holds any of their values.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { dirname, join, sep } from 'node:path';
import { tmpdir, homedir } from 'node:os';
import { shopForFile, openShop, decisions, bagIds, viewProduct, eventually } from './shop.mjs';
import { uid, getProfile } from '../support/worker.mjs';
import { startSink } from '../../scripts/webhook-sink.mjs';
import { signedIn } from './console-session.mjs';
import { pull } from '../../scripts/export-pull.mjs';

const require = createRequire(import.meta.url);
const ROOT = new URL('../..', import.meta.url).pathname;
const DUCKDB = join(process.env.DUCKDB_VENV || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'),
  'edgecdp', 'duckdb-2.0.1'), 'bin', 'python');

const SECRET = `whsec_${randomBytes(24).toString('base64')}`;
const sink = await startSink({ secret: SECRET });
after(() => sink.close());

const config = JSON.parse(readFileSync(join(ROOT, 'config', 'demo.json'), 'utf8'));
config.destinations.push({ id: 'thanks-hook', type: 'webhook', url: `${sink.url}/thanks`,
  secretEnv: 'EDGECDP_DEMO_WEBHOOK_SECRET', purpose: 'marketing', channel: 'email', traits: ['email'],
  pressure: false });
config.journeys.push({ id: 'thanks', trigger: { event: 'Order Completed' }, reentry: 'always',
  steps: [{ id: 'go', send: 'thanks-hook', event: 'Thanks' }] });
const file = shopForFile({ config, vars: { EDGECDP_DEMO_WEBHOOK_SECRET: SECRET,
  EDGECDP_TEST_REDELIVER_EXPORT: '1', EDGECDP_TEST_EXPORT_CUT_OFF: '1' } });

const dirs = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** Pulls every export file into a fresh directory; answers it. */
async function pulled() {
  const dir = mkdtempSync(join(tmpdir(), 'edgecdp-export-'));
  dirs.push(dir);
  await pull({ url: file.worker.url, token: file.worker.adminToken, to: dir });
  return dir;
}

/** Runs SQL over the files under `dir` with DuckDB: each table is a view over its files. Answers rows as objects. */
function sql(dir, queries) {
  const script = `
import duckdb, glob, json, os, sys
root = os.path.join(sys.argv[1], 'export')
con = duckdb.connect()
for t in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    # A table whose every file was purged keeps only its manifests: no view (DuckDB refuses an empty glob).
    if glob.glob(f'{root}/{t}/*/*/*.json.gz'):
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_json('{root}/{t}/*/*/*.json.gz', "
                    "format='newline_delimited', hive_partitioning=true, union_by_name=true)")
out = []
for q in json.loads(sys.argv[2]):
    cur = con.execute(q)
    cols = [d[0] for d in cur.description]
    out.append([dict(zip(cols, [v if isinstance(v, (int, float, str, type(None))) else str(v) for v in r]))
                for r in cur.fetchall()])
print(json.dumps(out))
`;
  const r = spawnSync(DUCKDB, ['-c', script, dir, JSON.stringify(queries)], { encoding: 'utf8' });
  assert.equal(r.status, 0, `duckdb failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Every line of every data file under `dir`, decompressed, with its key. */
function lines(dir) {
  const out = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.json.gz')) {
        for (const l of gunzipSync(readFileSync(p)).toString('utf8').split('\n').filter(Boolean)) out.push({ p, l });
      }
    }
  };
  if (existsSync(join(dir, 'export'))) walk(join(dir, 'export'));
  return out;
}

const ALL = { consent: { categoryPreferences: { analytics: true, personalization: true, marketing: true } } };
const sha = (s) => createHash('sha256').update(s).digest('hex');

test('what is stored lands in the export once, as Segment lays it out, and an erased person leaves it', async (t) => {
  const w = file.worker;
  const admin = { authorization: `Bearer ${w.adminToken}` };
  // The snippet: consent given on the demo site, two bags viewed.
  const shop = await openShop(t, file.browser, w);
  await shop.page.click('#consent-accept');
  await decisions(shop, 1);
  for (const bag of await bagIds(shop.page)) await viewProduct(shop.page, bag);
  await decisions(shop, 3);
  const anon = await shop.page.evaluate(() => localStorage.getItem('edgecdp.anonymousId'));
  assert.ok(anon);
  await eventually('the two product views are stored', async () => (await getProfile(w, `anonymous_id:${anon}`)).body,
    (p) => p?.counts?.['Product Viewed'] === 2);

  // Segment's analytics-node: the customer, an order, then a sign-in that ties the browser to them (a merge).
  const user = uid('buyer');
  const email = `${user}@example.com`;
  const { Analytics } = require('@segment/analytics-node');
  const analytics = new Analytics({ writeKey: w.serverKey, host: w.url, flushAt: 1, maxRetries: 0 });
  const errors = [];
  analytics.on('error', (e) => errors.push(e));
  analytics.identify({ userId: user, traits: { email, firstName: 'Ana', plan: 'gold' }, context: ALL });
  await analytics.flush();
  analytics.track({ userId: user, event: 'Order Completed', context: ALL,
    properties: { revenue: 42.5, order_id: 'o-1', shipping: { method: 'express' }, products: [{ sku: 'b1' }] } });
  await analytics.flush();
  // A context field that is a credential: never written to a file.
  const token = `tok-never-exported-${randomBytes(8).toString('hex')}`;
  analytics.track({ userId: user, anonymousId: anon, event: 'Signed In',
    context: { ...ALL, identityToken: token, campaign: { source: 'newsletter' } } });
  await analytics.closeAndFlush({ timeout: 10_000 });
  assert.deepEqual(errors, []);
  // An event whose sender refused analytics (opt-in): stored nowhere, so exported nowhere.
  const refusedId = uid('refused');
  const refused = await fetch(`${w.url}/v1/track`, { method: 'POST', headers: { 'content-type': 'application/json',
    authorization: `Basic ${Buffer.from(`${w.serverKey}:`).toString('base64')}` },
  body: JSON.stringify({ messageId: refusedId, anonymousId: uid('nobody'), event: 'Order Completed',
    properties: { revenue: 1 }, context: { consent: { categoryPreferences: { analytics: false } } } }) });
  assert.equal(refused.status, 200, await refused.text());

  const merged = await eventually('the browser profile is merged into the customer', async () =>
    (await getProfile(w, `user_id:${user}`)).body, (p) => p?.identities?.some((i) => i.value === anon));
  await eventually('the journey sent its Thanks', async () => sink.requests.filter((r) => r.path === '/thanks'),
    (rs) => rs.length >= 1, { timeout: 30_000 });

  // The export, once the consumer caught up: the tables expected, each as the profile counts it.
  const tracked = Object.entries(merged.counts).filter(([k]) => !['page', 'identify', 'screen', 'group', 'alias']
    .includes(k)).reduce((n, [, c]) => n + c, 0);
  const summary = await eventually('every table is exported', async () => {
    await fetch(`${w.url}/__scheduled?cron=*+*+*+*+*`);
    return (await fetch(`${w.url}/v1/export?limit=1000`, { headers: admin })).json();
  }, (s) => {
    const rows = Object.fromEntries((s.tables ?? []).map((x) => [x.table, x.rows]));
    return rows.tracks === tracked && rows.identifies >= 1 && rows.pages >= 1 && rows.order_completed === 1
      && rows.deliveries >= 1 && rows.audience_changes >= 1 && rows.identities >= 1 && rows.users >= 1;
  }, { timeout: 60_000, interval: 1000 });
  t.diagnostic(`tables: ${summary.tables.map((x) => `${x.table}=${x.rows}`).join(' ')}; last lag ${summary.last_file.lag_ms} ms`);

  const dir = await pulled();
  const q = (s) => sql(dir, [s])[0];
  // Each partition's manifest (written by the cron) lists its files with their rows.
  const partition = join(dir, dirname(summary.files.find((f) => f.table === 'order_completed').key));
  const manifest = JSON.parse(readFileSync(join(partition, 'manifest.json'), 'utf8'));
  assert.deepEqual([manifest.table, manifest.rows, manifest.files.length, manifest.compression], ['order_completed', 1, 1, 'gzip']);
  assert.equal(q('SELECT count(*) AS n FROM tracks')[0].n, tracked, 'tracks: every track stored, once');
  assert.equal(q(`SELECT count(*) AS n FROM pages WHERE anonymous_id = '${anon}'`)[0].n, merged.counts.page);
  assert.equal(q(`SELECT count(*) AS n FROM product_viewed`)[0].n, 2);
  const order = q(`SELECT revenue, order_id, shipping_method, products, user_id, dt, context_library_name,
    sent_at IS NOT NULL AS has_sent_at, original_timestamp IS NOT NULL AS has_original FROM order_completed`);
  assert.deepEqual([order[0].context_library_name, order[0].has_sent_at, order[0].has_original],
    ['@segment/analytics-node', true, true], 'the context is columns, with the sender\'s own times');
  assert.equal(q(`SELECT context_campaign_source AS s FROM signed_in`)[0].s, 'newsletter');
  assert.ok(!lines(dir).some(({ l }) => l.includes(token)), 'context.identityToken is in no file');
  assert.equal(order.length, 1);
  assert.deepEqual([order[0].revenue, order[0].order_id, order[0].shipping_method, order[0].user_id],
    [42.5, 'o-1', 'express', user], 'properties are columns, nested ones joined with _');
  assert.equal(JSON.parse(order[0].products)[0].sku, 'b1', 'an array is its JSON text');
  assert.match(order[0].dt, /^\d{4}-\d{2}-\d{2}$/, 'the hive partition is a column');
  assert.ok(w.logs.join('').includes('cut off after writing its files'), 'a delivery was cut off, and retried');
  // No row twice, in any table with a row id (the producer sent each message twice; a delivery was cut off).
  for (const table of ['tracks', 'pages', 'identifies', 'order_completed', 'identities', 'audience_changes',
    'deliveries']) {
    assert.deepEqual(q(`SELECT id, count(*) AS n FROM ${table} GROUP BY id HAVING count(*) > 1`), [], table);
  }
  // users: the merged profile once, as of its last change; the absorbed one points at it.
  const current = q(`SELECT id, user_id, plan, orders, merged_into FROM users
    QUALIFY row_number() OVER (PARTITION BY id ORDER BY received_at DESC) = 1`);
  const live = current.filter((u) => u.merged_into === null);
  assert.deepEqual(live.map((u) => [u.id, u.user_id, u.plan, u.orders]), [[merged.id, user, 'gold', 1]]);
  assert.deepEqual(current.filter((u) => u.merged_into).map((u) => u.merged_into), [merged.id]);
  assert.equal(q(`SELECT count(*) AS n FROM identities WHERE change = 'merged' AND identity_value = '${anon}'`)[0].n, 1);
  assert.equal(q(`SELECT count(*) AS n FROM deliveries WHERE journey = 'thanks' AND outcome = 'sent'`)[0].n, 1);
  assert.ok(q(`SELECT count(*) AS n FROM audience_changes WHERE change = 'entered'`)[0].n >= 1);
  assert.ok(!lines(dir).some(({ l }) => l.includes(refusedId)), 'the refused event is in no file');

  // The console's Export view: the tables with their rows, and a file that downloads as the bucket holds it.
  const { page } = await signedIn(file.browser, w, t);
  await page.click('#nav a[href="#/export"]');
  await page.waitForSelector('#export-summary table');
  const shown = await page.$$eval('#export-summary table:first-of-type tbody tr',
    (trs) => Object.fromEntries(trs.map((tr) => [tr.cells[0].textContent, Number(tr.cells[1].textContent)])));
  assert.equal(shown.order_completed, 1);
  assert.equal(shown.tracks, tracked);
  const href = await page.$eval('#export-files a[download]', (a) => a.getAttribute('href'));
  const got = await page.evaluate(async (h) => {
    const r = await fetch(h);
    return { status: r.status, type: r.headers.get('content-type'), bytes: (await r.arrayBuffer()).byteLength };
  }, href);
  assert.deepEqual([got.status, got.type], [200, 'application/gzip']);
  assert.ok(got.bytes > 20);
  const anonymous = await fetch(`${w.url}${href}`);
  assert.equal(anonymous.status, 401, 'without a credential the file is not served');

  // Erasure: the person leaves every file once the cron's purge ran.
  const erased = await fetch(`${w.url}/v1/profiles/user_id:${encodeURIComponent(user)}`, { method: 'DELETE',
    headers: admin });
  assert.equal(erased.status, 204, await erased.text());
  const values = [user, anon, email, merged.id];
  const after = await eventually('no file holds the erased person', async () => {
    await fetch(`${w.url}/__scheduled?cron=*+*+*+*+*`);
    const d = await pulled();
    const all = lines(d);
    // The purge may finish before the `deletions` rows' own delivery is written (the queue batches for 5 s).
    return { d, hits: all.filter(({ l }) => values.some((v) => l.includes(v))),
      listed: all.some(({ p }) => p.includes(`${sep}deletions${sep}`)) };
  }, ({ hits, listed }) => hits.length === 0 && listed, { timeout: 60_000, interval: 1000 });
  const deletions = sql(after.d, [`SELECT count(*) AS n FROM deletions WHERE person = sha256('user_id:${user}')`])[0];
  assert.equal(deletions[0].n, 1, 'deletions lists the person by digest');
  assert.equal(sha(`user_id:${user}`).length, 64);
  assert.ok(!lines(after.d).some(({ l }) => l.includes(user)), 'and never by value');
});
