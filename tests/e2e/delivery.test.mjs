// Edge HTML delivery against the real Worker under workerd: the Worker proxies a real origin (a node:http server on
// loopback, started here) and fills `data-edgecdp-slot` elements while pages stream through. Nothing is mocked.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { startWorker } from '../support/worker.mjs';

const GRANT = { consent: { categoryPreferences: { analytics: true, personalization: true } } };
const uid = (p) => `${p}-${Math.random().toString(36).slice(2, 10)}`;

// Pages the origin serves. Their bytes are compared exactly, so each is a Buffer.
const HERO_PAGE = '<!doctype html><html><head><title>Hero</title></head><body>\n'
  + '<div class="hero" data-edgecdp-slot="hero"><p>origin placeholder</p></div>\n'
  + '<aside data-edgecdp-slot="not-configured">left <b>alone</b></aside>\n<footer>café ✓</footer></body></html>\n';
const PLAIN_PAGE = Buffer.from('<!DOCTYPE html>\r\n<html><body><p>No slots here, just <b>odd</b> markup <i>unclosed\r\n'
  + '<!-- <div data-edgecdp-slot="hero"> in a comment --><script>if (a<b) x = "</div>"</script>  café</body></html>');
const CHARSET_PAGE = '<p>caf\u00e9</p><div data-edgecdp-slot="hero">old</div>';
const CHARSET_PAGES = {
  'iso-8859-1': Buffer.from(CHARSET_PAGE, 'latin1'),
};
const JSON_FILE = Buffer.from(JSON.stringify({ html: '<div data-edgecdp-slot="hero">not a page</div>' }));
const BIG_CHUNKS = (() => {
  // About 1 MB in 257 writes; slot elements fall across write boundaries, inside a tag and inside its name.
  const chunks = ['<!doctype html><html><body>'];
  const filler = `<p>${'lorem ipsum '.repeat(330)}</p>\n`;
  for (let i = 0; i < 254; i++) {
    if (i === 121) chunks.push('ion>');
    chunks.push(filler);
    if (i === 3) chunks.push('<div data-edgecdp-', 'slot="hero">old <b>hero</b></div>');
    if (i === 120) chunks.push('<section data-edgecdp-slot="sidebar"', ' class="s">old sidebar</sect');
  }
  chunks.push('<div data-edgecdp-slot="hero">last</div></body></html>');
  return chunks;
})();
const STREAM_HEAD = '<!doctype html><html><body><div data-edgecdp-slot="hero">old</div><p>first part</p>';
const STREAM_TAIL = '<p>second part</p><div data-edgecdp-slot="sidebar">old</div></body></html>';

let origin; // {url, server, release}
const hung = []; // answers /site/hang.html never sends
const hits = []; // every path the origin was asked for, as it arrived
let w;
let config;

function startOrigin() {
  let releaseStream;
  let streamReleased = new Promise((r) => { releaseStream = r; });
  const server = createServer(async (req, res) => {
    hits.push(req.url);
    const url = new URL(req.url, 'http://origin');
    switch (url.pathname) {
      case '/site/hero.html':
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(HERO_PAGE),
          'cache-control': 'public, max-age=60, s-maxage=600', etag: '"hero-1"', 'last-modified': new Date(0).toUTCString(),
          'x-origin': 'yes', 'set-cookie': ['session=s1; Path=/; HttpOnly', 'theme=dark; Path=/'] });
        res.end(HERO_PAGE);
        return;
      case '/site/promo.html':
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<main data-edgecdp-slot="promo">origin</main>');
        return;
      case '/site/gzipped.html': {
        const gz = gzipSync(HERO_PAGE);
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-encoding': 'gzip',
          'content-length': gz.length });
        res.end(gz);
        return;
      }
      case '/site/charset': {
        // A page in the charset the query names, with a slot: `é` is one byte in ISO-8859-1, two in UTF-16.
        const cs = url.searchParams.get('cs');
        res.writeHead(200, { 'content-type': `text/html; charset=${cs}` });
        res.end(CHARSET_PAGES[cs]);
        return;
      }
      case '/site/plain.html':
        res.writeHead(200, { 'content-type': 'text/html', 'content-length': PLAIN_PAGE.length });
        res.end(PLAIN_PAGE);
        return;
      case '/site/data.json':
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': JSON_FILE.length,
          'cache-control': 'public, max-age=300', etag: '"json-1"' });
        res.end(JSON_FILE);
        return;
      case '/site/big.html':
        // No content-length: chunked transfer, one chunk per write, each flushed before the next.
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        for (const c of BIG_CHUNKS) {
          res.write(c);
          await new Promise((r) => setImmediate(r));
        }
        res.end();
        return;
      case '/site/stream.html':
        // The rest of this page is only sent once the test has received the first part through the Worker, which
        // a Worker that buffered the body could never deliver.
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.write(STREAM_HEAD);
        await streamReleased;
        streamReleased = new Promise((r) => { releaseStream = r; });
        res.end(STREAM_TAIL);
        return;
      case '/site/echo': {
        const body = [];
        for await (const c of req) body.push(c);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers,
          body: Buffer.concat(body).toString() }));
        return;
      }
      case '/site/moved':
        res.writeHead(302, { location: `http://127.0.0.1:${server.address().port}/site/hero.html?from=moved` });
        res.end();
        return;
      case '/site/hang.html':
        // Accepts the request and never answers: the Worker must give up after delivery.timeout.
        hung.push(res);
        return;
      case '/site/broken.html':
        res.writeHead(500, { 'content-type': 'text/html' });
        res.end('<h1>origin error page</h1><div data-edgecdp-slot="hero">x</div>');
        return;
      default:
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('origin 404');
    }
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({
      url: `http://127.0.0.1:${server.address().port}`, server, release: () => releaseStream(),
    }));
  });
}

function closedPort() {
  return new Promise((resolve, reject) => {
    const srv = createTcpServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

before(async () => {
  origin = await startOrigin();
  config = JSON.parse(readFileSync(new URL('../../config/demo.json', import.meta.url), 'utf8'));
  config.slots = {
    hero: {
      fallback: { html: '<h2>Welcome</h2>' },
      blocks: [{ id: 'bags-promo', audience: { segment: 'bag-curious' },
        html: '<h2>Hi {{traits.firstName|there}}: bags -10%</h2>' }],
    },
    sidebar: { fallback: { html: '<p>Sidebar</p>' } },
    // Shown once a day to anyone with a profile: serving it is recorded, so a cap shows what was recorded.
    promo: { fallback: { html: '<p>No promo</p>' },
      blocks: [{ id: 'once-a-day', html: '<p>Today only</p>', cap: { max: 1, per: '1d' } }] },
  };
  config.delivery = { origin: origin.url, paths: ['/site/*'] };
  w = await startWorker({ config });
});
after(async () => {
  await w?.stop();
  origin?.server.closeAllConnections();
  await new Promise((r) => (origin ? origin.server.close(r) : r()));
});

const bytes = async (r) => Buffer.from(await r.arrayBuffer());
// `wrangler dev` gzips every answer for a client that accepts it (as Cloudflare's edge does), which drops
// Content-Length and holds streamed bytes back in the compressor. Asking for `identity` shows the Worker's answer
// as the Worker made it.
const get = (path, init = {}) =>
  fetch(`${w.url}${path}`, { ...init, headers: { 'accept-encoding': 'identity', ...init.headers } });
const fillHero = (html, page) => page.replace(
  /(<div class="hero" data-edgecdp-slot="hero">)<p>origin placeholder<\/p>(<\/div>)/, `$1${html}$2`);

/** A browser visitor in the bag-curious segment, with the given traits; answers its cookie. */
async function bagCuriousVisitor(traits) {
  const a = uid('shopper');
  const viewed = { type: 'track', event: 'Product Viewed', anonymousId: a, properties: { category: 'bags' },
    context: GRANT };
  const r = await fetch(`${w.url}/v1/batch`, { method: 'POST',
    headers: { 'content-type': 'application/json', origin: w.url },
    body: JSON.stringify({ writeKey: 'demo', batch: [
      { type: 'identify', anonymousId: a, traits, context: GRANT }, viewed, viewed] }) });
  assert.equal(r.status, 200, await r.clone().text());
  const setCookie = r.headers.get('set-cookie');
  assert.ok(setCookie, 'the Worker set the id cookie');
  return setCookie.split(';')[0];
}

describe('edge HTML delivery', () => {
  test('the demo site is still served as static assets', async () => {
    const r = await get('/');
    assert.equal(r.status, 200);
    assert.deepEqual(await bytes(r), readFileSync(new URL('../../www/index.html', import.meta.url)));
  });

  test('a new visitor gets the fallback in the slot; unknown slots and everything else are left alone', async () => {
    const r = await get('/site/hero.html');
    assert.equal(r.status, 200);
    assert.equal(await r.text(), fillHero('<h2>Welcome</h2>', HERO_PAGE));
    assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(r.headers.get('x-origin'), 'yes');
    assert.deepEqual(r.headers.getSetCookie(), ['session=s1; Path=/; HttpOnly', 'theme=dark; Path=/']);
    assert.equal(r.headers.get('content-length'), null);
    assert.equal(r.headers.get('etag'), null);
    assert.equal(r.headers.get('last-modified'), null);
    assert.equal(r.headers.get('cache-control'), 'private, max-age=60');
    assert.match(r.headers.get('vary'), /Cookie/);
  });

  test('a visitor in the segment gets the personalized block, traits escaped, as /v1/decide answers it', async () => {
    const cookie = await bagCuriousVisitor({ firstName: '<script>alert(1)</script>' });
    const r = await get('/site/hero.html', { headers: { cookie } });
    assert.equal(r.status, 200);
    const html = '<h2>Hi &lt;script&gt;alert(1)&lt;/script&gt;: bags -10%</h2>';
    assert.equal(await r.text(), fillHero(html, HERO_PAGE));
    const d = await (await fetch(`${w.url}/v1/decide?slots=hero`, { headers: { cookie } })).json();
    assert.equal(d.slots.hero.block, 'bags-promo');
    assert.equal(d.slots.hero.html, html);
  });

  test('a gzipped page is filled too (the runtime decodes the origin\'s body for the Worker)', async () => {
    const r = await get('/site/gzipped.html');
    assert.equal(r.status, 200);
    assert.equal(await r.text(), fillHero('<h2>Welcome</h2>', HERO_PAGE));
  });

  test('only slots the page showed count as served: a capped block is used up by its own page, not others', async () => {
    const cookie = await bagCuriousVisitor({ firstName: 'Grace' });
    const page = async (path) => (await get(path, { headers: { cookie } })).text();
    // The hero page decides every slot but has no promo slot: nothing of the promo is recorded.
    for (let i = 0; i < 3; i++) await page('/site/hero.html');
    assert.equal(await page('/site/promo.html'), '<main data-edgecdp-slot="promo"><p>Today only</p></main>');
    assert.equal(await page('/site/promo.html'), '<main data-edgecdp-slot="promo"><p>No promo</p></main>');
  });

  test('a page without slots is byte-identical to the origin\'s', async () => {
    const r = await get('/site/plain.html');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'text/html');
    assert.deepEqual(await bytes(r), PLAIN_PAGE);
  });

  test('a page in another ASCII-compatible charset is filled and stays in its charset', async () => {
    const latin1 = await get('/site/charset?cs=iso-8859-1');
    assert.equal(latin1.status, 200);
    assert.deepEqual(await bytes(latin1),
      Buffer.from('<p>caf\u00e9</p><div data-edgecdp-slot="hero"><h2>Welcome</h2></div>', 'latin1'));
    // Pages in UTF-16 or in a charset no one knows go out unfilled (core::engine::delivery::ascii_compatible, a
    // unit test). Not checked here: under `wrangler dev`, such an HTML answer hangs even when the Worker passes
    // it through untouched, as it passes JSON (this test saw the request time out either way).
  });

  test('non-HTML passes through untouched, headers included', async () => {
    const r = await get('/site/data.json');
    assert.equal(r.status, 200);
    assert.deepEqual(await bytes(r), JSON_FILE);
    assert.equal(r.headers.get('content-length'), String(JSON_FILE.length));
    assert.equal(r.headers.get('etag'), '"json-1"');
    assert.equal(r.headers.get('cache-control'), 'public, max-age=300');
    assert.equal(r.headers.get('vary'), null);
  });

  test('a large chunked page is filled across chunk boundaries', async () => {
    const r = await get('/site/big.html');
    assert.equal(r.status, 200);
    const expected = BIG_CHUNKS.join('')
      .replace('<div data-edgecdp-slot="hero">old <b>hero</b></div>', '<div data-edgecdp-slot="hero"><h2>Welcome</h2></div>')
      .replace('<section data-edgecdp-slot="sidebar" class="s">old sidebar</section>',
        '<section data-edgecdp-slot="sidebar" class="s"><p>Sidebar</p></section>')
      .replace('<div data-edgecdp-slot="hero">last</div>', '<div data-edgecdp-slot="hero"><h2>Welcome</h2></div>');
    const got = await r.text();
    assert.ok(got.length > 1_000_000, `${got.length} characters`);
    assert.equal(got, expected);
  });

  test('the page streams: the first part arrives, filled, before the origin has sent the rest', async () => {
    const r = await get('/site/stream.html');
    assert.equal(r.status, 200);
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const firstPart = '<div data-edgecdp-slot="hero"><h2>Welcome</h2></div><p>first part</p>';
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`only ${JSON.stringify(text)} arrived: the body was buffered`)), 15_000);
    });
    try {
      while (!text.includes(firstPart)) {
        const { value, done } = await Promise.race([reader.read(), timeout]);
        assert.ok(!done, 'the page ended before the origin sent its second part');
        text += decoder.decode(value, { stream: true });
      }
    } finally {
      clearTimeout(timer);
      origin.release();
    }
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    assert.equal(text, (STREAM_HEAD + STREAM_TAIL)
      .replace('<div data-edgecdp-slot="hero">old</div>', '<div data-edgecdp-slot="hero"><h2>Welcome</h2></div>')
      .replace('<div data-edgecdp-slot="sidebar">old</div>', '<div data-edgecdp-slot="sidebar"><p>Sidebar</p></div>'));
  });

  test('the origin gets method, path, query, body and the browser\'s headers, but no admin token or id cookie', async () => {
    const cookie = await bagCuriousVisitor({ firstName: 'Ada' });
    const r = await get('/site/echo?x=1&y=two%20words', { method: 'POST', body: 'a=1&b=2',
      headers: { authorization: `Bearer ${w.adminToken}`, cookie: `theme=dark; ${cookie}; lang=fr`,
        'content-type': 'application/x-www-form-urlencoded', 'x-custom': 'kept', 'accept-language': 'fr' } });
    assert.equal(r.status, 200);
    const seen = await r.json();
    assert.equal(seen.method, 'POST');
    assert.equal(seen.url, '/site/echo?x=1&y=two%20words');
    assert.equal(seen.body, 'a=1&b=2');
    assert.equal(seen.headers.authorization, undefined);
    assert.equal(seen.headers.cookie, 'theme=dark; lang=fr');
    assert.equal(seen.headers['x-custom'], 'kept');
    assert.equal(seen.headers['accept-language'], 'fr');
    assert.equal(seen.headers['content-type'], 'application/x-www-form-urlencoded');
    assert.equal(seen.headers['x-forwarded-host'], new URL(w.url).host);
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    // Other credentials are the site's business and travel on.
    const basic = await (await get('/site/echo', { headers: { authorization: 'Basic dTpw' } })).json();
    assert.equal(basic.headers.authorization, 'Basic dTpw');
    // The admin token in any spelling of the Bearer scheme stays at the edge.
    for (const spelling of [`bearer ${w.adminToken}`, `BEARER   ${w.adminToken}`]) {
      const echoed = await (await get('/site/echo', { headers: { authorization: spelling } })).json();
      assert.equal(echoed.headers.authorization, undefined, spelling);
    }
  });

  test('nothing of edgecdp\'s own reaches the origin: the console session, a source key, the CSRF header', async () => {
    // A real console session, opened with the admin token from the Worker's own origin.
    const signIn = await fetch(`${w.url}/v1/session`, { method: 'POST', headers: { origin: w.url, 'content-type': 'application/json' },
      body: JSON.stringify({ token: w.adminToken }) });
    assert.equal(signIn.status, 200, await signIn.clone().text());
    const session = signIn.headers.get('set-cookie').split(';')[0];
    assert.match(session, /^edgecdp_console=./);
    const visitor = await bagCuriousVisitor({ firstName: 'Ada' });
    const own = [session, visitor, 'edgecdp_future=1'];
    const sent = { cookie: `theme=dark; ${own.join('; ')}; lang=fr`, 'x-edgecdp-csrf': 'csrf-token' };
    for (const authorization of [`Bearer ${w.serverKey}`, `Basic ${Buffer.from(`${w.serverKey}:`).toString('base64')}`,
      `Bearer ${w.adminToken}`, undefined]) {
      const headers = authorization ? { ...sent, authorization } : sent;
      const seen = await (await get('/site/echo', { headers })).json();
      assert.equal(seen.headers.cookie, 'theme=dark; lang=fr', 'only the site\'s own cookies');
      assert.equal(seen.headers.authorization, undefined, authorization);
      assert.equal(seen.headers['x-edgecdp-csrf'], undefined);
      const everything = JSON.stringify(seen);
      for (const secret of [w.adminToken, w.serverKey, session.split('=')[1], visitor.split('=')[1]]) {
        assert.ok(!everything.includes(secret), 'no credential of edgecdp\'s in what the origin received');
      }
    }
  });

  test('a path that climbs out of the proxied directory once decoded is refused, and the origin never sees it', async () => {
    const before = hits.length;
    for (const path of ['/site/..%2f..%2fprivate', '/site/..%2F..%2Fprivate', '/site/%2e%2e%2fprivate',
      '/site/%252e%252e%252fprivate', '/site/..;/private', '/site/..%5cprivate']) {
      const r = await get(path);
      const body = await r.json();
      assert.deepEqual([r.status, body.error.code], [400, 'invalid_path'], path);
    }
    assert.deepEqual(hits.slice(before), [], 'the origin was asked for nothing');
    assert.equal((await get('/site/hero.html')).status, 200, 'an ordinary path is still proxied');
  });

  test('redirects go back to the browser, pointing at the site rather than the origin', async () => {
    const r = await get('/site/moved', { redirect: 'manual' });
    assert.equal(r.status, 302);
    // A path on the site the visitor asked: never a host read from the request's (forgeable) Host header.
    assert.equal(r.headers.get('location'), '/site/hero.html?from=moved');
  });

  test('the origin\'s own error pages and 404s pass through with their status', async () => {
    let r = await get('/site/broken.html');
    assert.equal(r.status, 500);
    assert.equal(await r.text(), '<h1>origin error page</h1><div data-edgecdp-slot="hero"><h2>Welcome</h2></div>');
    r = await get('/site/nothing-here');
    assert.equal(r.status, 404);
    assert.equal(await r.text(), 'origin 404');
  });

  test('paths outside delivery.paths are not proxied', async () => {
    const r = await get('/elsewhere/page.html');
    assert.equal(r.status, 404);
    assert.equal((await r.json()).error.code, 'not_found');
  });

  test('an origin that leads back to the Worker is refused, in any spelling, after one hop at most', async () => {
    const put = (c) => fetch(`${w.url}/v1/config`, { method: 'PUT', body: JSON.stringify(c),
      headers: { authorization: `Bearer ${w.adminToken}`, 'content-type': 'application/json' } });
    const port = new URL(w.url).port;
    try {
      // A leading zero is the same port: the Worker's own address, refused before any request.
      assert.equal((await put({ ...config, delivery: { origin: `http://127.0.0.1:0${port}`, paths: ['/site/*'] } })).status, 200);
      let r = await get('/site/hero.html');
      assert.equal(r.status, 502);
      // Another name for the same Worker: the proxied request carries the hop marker, and is not proxied again.
      assert.equal((await put({ ...config, delivery: { origin: `http://localhost:${port}`, paths: ['/site/*'] } })).status, 200);
      r = await get('/site/hero.html');
      assert.equal(r.status, 508);
      assert.equal((await r.json()).error.code, 'proxy_loop');
      // A visitor cannot send the marker through to the origin, nor trigger it on the Worker's own paths.
      assert.equal((await fetch(`${w.url}/healthz`, { headers: { 'x-edgecdp-hop': '1' } })).status, 200);
    } finally {
      assert.equal((await put(config)).status, 200);
    }
  });

  test('an unreachable origin answers 502 with the JSON error body', async () => {
    const put = (c) => fetch(`${w.url}/v1/config`, { method: 'PUT', body: JSON.stringify(c),
      headers: { authorization: `Bearer ${w.adminToken}`, 'content-type': 'application/json' } });
    const down = { ...config, delivery: { origin: `http://127.0.0.1:${await closedPort()}`, paths: ['/site/*'] } };
    assert.equal((await put(down)).status, 200);
    try {
      const r = await get('/site/hero.html');
      assert.equal(r.status, 502);
      assert.match(r.headers.get('content-type'), /^application\/json/);
      const body = await r.json();
      assert.equal(body.error.code, 'origin_unreachable');
      assert.equal(typeof body.error.message, 'string');
      assert.equal(body.error.path, '');
    } finally {
      assert.equal((await put(config)).status, 200);
    }
  });

  test('an origin that does not begin answering within delivery.timeout gets the visitor a 504, not a hang', async () => {
    const put = (c) => fetch(`${w.url}/v1/config`, { method: 'PUT', body: JSON.stringify(c),
      headers: { authorization: `Bearer ${w.adminToken}`, 'content-type': 'application/json' } });
    assert.equal((await put({ ...config, delivery: { ...config.delivery, timeout: '1s' } })).status, 200);
    try {
      const started = Date.now();
      const r = await get('/site/hang.html');
      const waited = Date.now() - started;
      assert.equal(r.status, 504);
      const body = await r.json();
      assert.equal(body.error.code, 'origin_timeout');
      assert.equal(body.error.path, '');
      assert.equal(hung.length, 1, 'the origin got the request');
      // Bounds, not a benchmark: it gave the origin its second, and did not wait for the default ten.
      assert.ok(waited >= 900 && waited < 8000, `answered after ${waited} ms`);
      // Pages that do answer are unaffected by the timeout.
      assert.equal((await get('/site/plain.html')).status, 200);
    } finally {
      for (const res of hung.splice(0)) res.destroy();
      assert.equal((await put(config)).status, 200);
    }
  });
});
