// Nobody can use edgecdp against people: the reproducers of the outside security test (issue 26) against the real
// Worker under workerd. Bodies are read with a running limit (a gzip bomb and a 150 MB chunked body end in 413 and
// store nothing), a server key is refused from a page even without Origin, guessing the admin token is stopped at
// ten failures a minute per address, and analytics.js is never pointed at a host the request named.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { gzipSync, deflateSync } from 'node:zlib';
import { GRANT, uid, workerForFile, getProfile, workerdMemoryKB } from '../support/worker.mjs';

const w = workerForFile({ vars: { EDGECDP_PUBLIC_ORIGIN: 'https://cdp.shop.example' } });
const page = (a) => ({ type: 'page', anonymousId: a, context: GRANT });

/** A raw HTTP request (Node's fetch cannot send some of these), answering status, headers and body text. */
function raw(method, path, headers, write) {
  return new Promise((resolve, reject) => {
    const u = new URL(w.url);
    const req = request({ host: u.hostname, port: u.port, method, path, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
    });
    req.on('error', reject);
    write(req);
  });
}

describe('bodies are read with a running limit', () => {
  test('a gzip bomb is a 413, and a good compressed batch beside it is stored', async () => {
    // 480 KB of gzip that would inflate to about 480 MB: the Worker stops at 500 KB of output.
    const bomb = gzipSync(Buffer.alloc(480 * 1024 * 1024), { level: 9 });
    assert.ok(bomb.length < 600 * 1024, `${bomb.length} bytes`);
    const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: bomb,
      headers: { 'content-encoding': 'gzip', authorization: `Basic ${Buffer.from('demo:').toString('base64')}` } });
    const body = await r.json();
    assert.deepEqual([r.status, body.error.code], [413, 'payload_too_large']);
    // A deflate bomb alike, and truncated or corrupt bodies are 400s that name the header.
    const zlibBomb = deflateSync(Buffer.alloc(64 * 1024 * 1024));
    const d = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: zlibBomb, headers: { 'content-encoding': 'deflate' } });
    assert.equal(d.status, 413);
    const good = gzipSync(JSON.stringify({ writeKey: 'demo', batch: [page(uid('gz'))] }));
    for (const broken of [good.subarray(0, good.length - 4), Buffer.concat([good, Buffer.from('x')])]) {
      const b = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: broken, headers: { 'content-encoding': 'gzip' } });
      const j = await b.json();
      assert.deepEqual([b.status, j.error.code, j.error.path], [400, 'invalid_body_encoding', 'Content-Encoding']);
    }
    const a = uid('gzip');
    const ok = await fetch(`${w.url}/v1/batch`, { method: 'POST',
      body: gzipSync(JSON.stringify({ writeKey: 'demo', batch: [page(a)] })), headers: { 'content-encoding': 'gzip' } });
    assert.equal(ok.status, 200, await ok.clone().text());
    assert.equal((await getProfile(w, `anonymous_id:${a}`)).body.counts.page, 1);
  });

  /** Sends `mb` 1 MB chunks of one event's property with no Content-Length, stopping once answered. */
  function chunked(a, mb, timeoutMs) {
    const head = Buffer.from(`{"writeKey":"demo","batch":[{"type":"page","anonymousId":"${a}","properties":{"x":"`);
    const filler = Buffer.alloc(1024 * 1024, 0x61);
    let written = 0;
    return new Promise((resolve) => {
      const u = new URL(w.url);
      const req = request({ host: u.hostname, port: u.port, method: 'POST', path: '/v1/batch', agent: false,
        headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => { text += c; });
        res.on('end', () => resolve({ status: res.statusCode, text, written }));
      });
      let answered = false;
      req.on('response', () => { answered = true; });
      req.on('error', (e) => resolve({ error: e.code, written }));
      // Bounded in bytes and in time: the loop stops at `mb` chunks, and the request is given up after `timeoutMs`.
      setTimeout(() => { req.destroy(); resolve({ timeout: true, written }); }, timeoutMs).unref();
      req.write(head);
      const pump = () => {
        while (written < mb && !answered && !req.destroyed) {
          written += 1;
          if (!req.write(filler)) return req.once('drain', pump);
        }
        if (!req.destroyed) req.end('"}}]}');
      };
      pump();
    });
  }

  test('a chunked body with no Content-Length is refused at the limit: 413, nothing stored', async () => {
    const a = uid('chunked');
    const r = await chunked(a, 10, 30_000);
    assert.equal(r.status, 413, JSON.stringify(r));
    assert.equal(JSON.parse(r.text).error.code, 'payload_too_large');
    assert.equal((await getProfile(w, `anonymous_id:${a}`)).status, 404, 'nothing of it was stored');
  });

  test('a 150 MB chunked body costs workerd a few MB, not the body: it is never read whole', async () => {
    // The Worker keeps nothing past the limit, reads and drops at most 16 MB more, then cancels the rest.
    // Locally, `wrangler dev`'s proxy pipes the body to the Worker and, once the Worker cancels it, may answer
    // its own 503 or reset the connection instead of passing the Worker's 413 on (Cloudflare returns the Worker's
    // answer). So what this holds is what the finding was about: workerd's memory, measured.
    const a = uid('chunked-150');
    const before = workerdMemoryKB(w);
    const r = await chunked(a, 150, 20_000);
    const grown = (workerdMemoryKB(w) - before) / 1024;
    assert.ok(grown < 32, `workerd grew ${grown.toFixed(1)} MB for a 150 MB body (before the fix: +347 MB) ${JSON.stringify(r)}`);
    assert.ok(r.status === undefined || r.status === 413 || r.status === 503, JSON.stringify(r));
    assert.equal((await fetch(`${w.url}/healthz`)).status, 200, 'the Worker goes on serving');
    assert.equal((await getProfile(w, `anonymous_id:${a}`)).status, 404, 'nothing of it was stored');
  });
});

describe('credentials', () => {
  test('a server key from a page is refused by its Fetch Metadata, even a same-origin GET with no Origin', async () => {
    const u = uid('u');
    const ask = (headers) => fetch(`${w.url}/v1/decide?slots=hero&userId=${u}`,
      { headers: { authorization: `Bearer ${w.serverKey}`, ...headers } });
    for (const marks of [{ 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty' },
      { 'sec-fetch-site': 'none', 'sec-fetch-mode': 'navigate' }, { 'sec-fetch-dest': 'image' }]) {
      const r = await ask(marks);
      const body = await r.json();
      assert.deepEqual([r.status, body.error.code], [403, 'server_key_from_browser'], JSON.stringify(marks));
    }
    // A server's own client (Node's fetch sends Sec-Fetch-Mode: cors on every request) is still served.
    assert.equal((await ask({})).status, 200);
    const events = await fetch(`${w.url}/v1/batch`, { method: 'POST', headers: { 'sec-fetch-site': 'same-origin',
      authorization: `Basic ${Buffer.from(`${w.serverKey}:`).toString('base64')}` },
    body: JSON.stringify({ batch: [page(uid('a'))] }) });
    assert.equal(events.status, 403);
  });

  test('guessing the admin token: 10 failures a minute per address, then 429 with Retry-After, the right token included', async () => {
    // Each case is its own client address (Cloudflare sets CF-Connecting-IP; locally the test does).
    const from = `198.51.100.${10 + Math.floor(Math.random() * 200)}`;
    const signIn = (token, ip = from) => fetch(`${w.url}/v1/session`, { method: 'POST',
      headers: { origin: w.url, 'content-type': 'application/json', 'cf-connecting-ip': ip }, body: JSON.stringify({ token }) });
    const statuses = [];
    for (let i = 0; i < 10; i += 1) statuses.push((await signIn(`wrong-${i}`)).status);
    assert.deepEqual(statuses, Array(10).fill(401));
    const blocked = await signIn(w.adminToken);
    assert.equal(blocked.status, 429, 'the right token is refused too while the address is blocked');
    const wait = Number(blocked.headers.get('retry-after'));
    assert.ok(wait >= 1 && wait <= 60, `Retry-After ${wait}`);
    assert.equal((await blocked.json()).error.code, 'too_many_attempts');
    // Bearer guesses from the same address are blocked as well; another address is not slowed at all.
    const bearer = await fetch(`${w.url}/v1/audiences`, { headers: { authorization: 'Bearer guess', 'cf-connecting-ip': from } });
    assert.equal(bearer.status, 429);
    assert.equal((await signIn(w.adminToken, '203.0.113.99')).status, 200);
    // Successful calls do not count: twenty of them in a row from a fresh address all pass.
    const calm = `192.0.2.${10 + Math.floor(Math.random() * 200)}`;
    for (let i = 0; i < 20; i += 1) {
      const r = await fetch(`${w.url}/v1/audiences`, { headers: { authorization: `Bearer ${w.adminToken}`, 'cf-connecting-ip': calm } });
      assert.equal(r.status, 200);
    }
  });

  test('analytics.js is pointed at the configured public origin, whatever Host the request names', async () => {
    const r = await raw('GET', '/v1/projects/demo/settings', { host: 'evil.example' }, (req) => req.end());
    assert.equal(r.status, 200, r.text);
    const settings = JSON.parse(r.text);
    assert.equal(settings.integrations['Segment.io'].apiHost, 'cdp.shop.example/v1');
    assert.equal(settings.integrations['Segment.io'].protocol, 'https');
    assert.ok(!r.text.includes('evil.example'));
  });
});
