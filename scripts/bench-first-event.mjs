// The first event after consent, in Chromium: from the visitor's click on "Accept" to the moment the browser
// starts the first request that carries an event, for edgecdp (the demo shop's page, www/index.html, unchanged:
// its loader queued the page view, and the click calls `edgecdp.consent` then `edgecdp.page()`) and for
// Segment's analytics-next (its UMD bundle from npm already on the page, as edgecdp's loader is; the click calls
// `AnalyticsBrowser.load` and `page()`, which is how a consent-gated site starts it).
//
//   node scripts/bench-first-event.mjs [--rounds 15] [--via static|worker]
//
// Both pages and every file they load come from one static server on loopback, which also forwards `/v1/*` to
// the Worker (`wrangler dev`, started here with fresh storage), so both SDKs talk first-party to the same
// server and neither is favoured by where its files come from. Each round opens each page in a fresh browser
// context (an empty HTTP cache: a first visit), alternating which goes first. The time is the page's own: a
// capturing click listener notes `performance.now()`, and the Resource Timing entry of the first event request
// gives its `startTime`. `--via worker` serves edgecdp's page and files from the Worker's own assets instead
// (wrangler's local assets router, slower than the static server and than Cloudflare's edge), analytics-next's
// still from the static server. Only 127.0.0.1 is contacted. A build must exist (npm run build).
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, extname, basename } from 'node:path';
import { startWorker } from '../tests/support/worker.mjs';
import { launchChromium } from '../tests/browser/shop.mjs';
import { arg } from './args.mjs';

const ROUNDS = arg('rounds', 15);
const VIA = process.argv.includes('worker') ? 'worker' : 'static';
const ROOT = join(import.meta.dirname, '..');
const WWW = join(ROOT, 'www');
const UMD = join(ROOT, 'node_modules/@segment/analytics-next/dist/umd');
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm' };

const segmentPage = `<!doctype html><meta charset="utf-8"><title>analytics-next</title>
<script src="/ajs/index.js"></script>
<button type="button" id="consent-accept">Accept</button>
<script>
  document.getElementById('consent-accept').addEventListener('click', function () {
    var analytics = AnalyticsNext.AnalyticsBrowser.load({ writeKey: 'seg-site', cdnURL: location.origin });
    analytics.page();
  });
</script>`;

const w = await startWorker();
const server = createServer(async (req, res) => {
  const path = decodeURIComponent(req.url.split('?')[0]);
  try {
    if (path.startsWith('/v1/')) {
      // First-party: the Worker behind the site's own origin, for both.
      const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : await new Promise((resolve) => {
        const parts = [];
        req.on('data', (c) => parts.push(c)).on('end', () => resolve(Buffer.concat(parts)));
      });
      const headers = { ...req.headers };
      delete headers.host;
      const r = await fetch(`${w.url}${req.url}`, { method: req.method, headers, body, redirect: 'manual' });
      const out = {};
      r.headers.forEach((v, k) => { if (k !== 'content-encoding' && k !== 'content-length') out[k] = v; });
      res.writeHead(r.status, out).end(Buffer.from(await r.arrayBuffer()));
      return;
    }
    let file;
    if (path === '/segment.html') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(segmentPage);
      return;
    }
    if (path.startsWith('/ajs/') || /\.bundle\.[0-9a-f]+\.js$/.test(path)) file = join(UMD, basename(path));
    else file = join(WWW, path === '/' ? 'index.html' : path.replace(/\.\./g, ''));
    const bytes = await readFile(file);
    res.writeHead(200, { 'content-type': TYPES[extname(file)] || 'application/octet-stream', 'cache-control': 'no-cache' })
      .end(bytes);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const site = `http://127.0.0.1:${server.address().port}`;

// The demo's browser source accepts the site's origin, and Segment's write key gets a source of its own.
const current = await (await fetch(`${w.url}/v1/config`, { headers: { authorization: `Bearer ${w.adminToken}` } })).json();
const config = current.config ?? current;
config.sources = config.sources.map((s) => (s.origins ? { ...s, origins: [...s.origins, site] } : s));
config.sources.push({ id: 'segment-site', writeKey: 'seg-site', origins: [site] });
const put = await fetch(`${w.url}/v1/config`, { method: 'PUT', body: JSON.stringify(config),
  headers: { authorization: `Bearer ${w.adminToken}`, 'content-type': 'application/json' } });
if (put.status !== 200) throw new Error(`configuration: ${put.status} ${await put.text()}`);

const browser = await launchChromium();
const EVENT_REQUEST = { edgecdp: /\/v1\/batch$/, 'analytics-next': /\/v1\/(p|t|i|b)$/ };

async function once(name) {
  const context = await browser.newContext();
  const tab = await context.newPage();
  await tab.addInitScript(() => {
    window.addEventListener('click', () => { window.__clickedAt = performance.now(); }, true);
  });
  if (process.env.DEBUG) { // every request and console line, to see where the time goes
    tab.on('requestfinished', async (r) => console.log(name, r.method(), r.url(), (await r.response())?.status()));
    tab.on('console', (m) => console.log(name, 'console', m.text()));
  }
  const edgecdpPage = VIA === 'worker' ? `${w.url}/` : `${site}/`;
  await tab.goto(name === 'edgecdp' ? edgecdpPage : `${site}/segment.html`);
  await tab.waitForLoadState('networkidle');
  // The first event request, as Chromium's network stack timed it (its start, in ms since the epoch).
  const pattern = EVENT_REQUEST[name];
  const first = new Promise((resolve) => {
    const seen = (r) => { if (pattern.test(new URL(r.url()).pathname)) resolve(r); };
    tab.on('request', seen);
  });
  await tab.click('#consent-accept');
  const request = await Promise.race([first, new Promise((r) => setTimeout(r, 10_000))]);
  let ms = null;
  if (request) {
    await Promise.race([request.response().catch(() => null), new Promise((r) => setTimeout(r, 10_000))]);
    const clickedAt = await tab.evaluate(() => performance.timeOrigin + window.__clickedAt);
    ms = request.timing().startTime - clickedAt;
  }
  await context.close();
  if (ms == null) throw new Error(`${name}: no event request within 10 s of the click`);
  return ms;
}

try {
  const times = { edgecdp: [], 'analytics-next': [] };
  // One round of each first, not counted: Chromium's own first start.
  await once('edgecdp');
  await once('analytics-next');
  for (let r = 0; r < ROUNDS; r++) {
    for (const name of r % 2 ? ['analytics-next', 'edgecdp'] : ['edgecdp', 'analytics-next']) times[name].push(await once(name));
  }
  const sorted = (xs) => [...xs].sort((a, b) => a - b);
  const q = (xs, p) => sorted(xs)[Math.min(xs.length - 1, Math.floor(p * xs.length))];
  console.log(`${ROUNDS} interleaved rounds, a fresh browser context each (an empty cache); edgecdp's files from the ` +
    `${VIA === 'worker' ? "Worker's assets" : 'static server'}`);
  console.log('| SDK | click → first event request, p25 | p50 | p75 |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const [name, xs] of Object.entries(times)) {
    console.log(`| ${name} | ${q(xs, 0.25).toFixed(1)} ms | ${q(xs, 0.5).toFixed(1)} ms | ${q(xs, 0.75).toFixed(1)} ms |`);
  }
  console.log(`ratio of medians (edgecdp ÷ analytics-next): ${(q(times.edgecdp, 0.5) / q(times['analytics-next'], 0.5)).toFixed(2)}`);
} finally {
  await browser.close();
  server.close();
  await w.stop();
}
