// What existing clients send, against the real Worker: compressed bodies (RudderStack's Node SDK gzips every
// batch) with their limits, and the paths Segment's analytics.js posts to (`/v1/t`, `/v1/p`, ..., `/v1/b`).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync, deflateSync, brotliCompressSync } from 'node:zlib';
import { workerForFile, getProfile, GRANT, uid } from '../support/worker.mjs';

const w = workerForFile();

/** Posts raw bytes with the given headers; answers status and JSON. */
async function postRaw(path, bytes, headers) {
  const r = await fetch(`${w.url}${path}`, { method: 'POST', headers, body: bytes });
  const text = await r.text();
  let json; try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, json, text };
}

const track = (a, event, extra = {}) => ({ type: 'track', event, anonymousId: a, context: GRANT, ...extra });
const countOf = async (a, event) => (await getProfile(w, `anonymous_id:${a}`)).body?.counts?.[event];

describe('compressed bodies', () => {
  test('a gzip batch and a deflate single event are read and stored once each', async () => {
    const a = uid('gz');
    const batch = JSON.stringify({ writeKey: 'demo', batch: [track(a, 'Zipped'), track(a, 'Zipped')] });
    const r = await postRaw('/v1/batch', gzipSync(batch), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    assert.equal(r.status, 200, r.text);
    const single = JSON.stringify({ writeKey: 'demo', ...track(a, 'Deflated') });
    const d = await postRaw('/v1/track', deflateSync(single), { 'content-type': 'application/json', 'content-encoding': 'deflate' });
    assert.equal(d.status, 200, d.text);
    assert.equal(await countOf(a, 'Zipped'), 2);
    assert.equal(await countOf(a, 'Deflated'), 1);
  });

  test('a small body that inflates past the limit is a 413, and the Worker keeps serving', async () => {
    // About 5 KB of gzip that would be 8 MB of JSON: a bomb against a 500 KB limit.
    const bomb = gzipSync(`{"writeKey":"demo","batch":[{"type":"track","event":"${'x'.repeat(8 * 1024 * 1024)}"}]}`);
    assert.ok(bomb.length < 20_000, `the bomb is small (${bomb.length} bytes)`);
    const r = await postRaw('/v1/batch', bomb, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    assert.equal(r.status, 413, r.text);
    assert.equal(r.json.error.code, 'payload_too_large');
    const a = uid('after-bomb');
    const ok = await postRaw('/v1/batch', JSON.stringify({ writeKey: 'demo', batch: [track(a, 'Still Here')] }),
      { 'content-type': 'application/json' });
    assert.equal(ok.status, 200);
    assert.equal(await countOf(a, 'Still Here'), 1);
  });

  test('a truncated gzip body is a 400 naming the encoding, and nothing of it is stored', async () => {
    const a = uid('cut');
    const whole = gzipSync(JSON.stringify({ writeKey: 'demo', batch: [track(a, 'Cut Off')] }));
    const r = await postRaw('/v1/batch', whole.subarray(0, whole.length - 12),
      { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.code, 'invalid_body_encoding');
    assert.equal(r.json.error.path, 'Content-Encoding');
    assert.equal((await getProfile(w, `anonymous_id:${a}`)).status, 404);
    const lies = await postRaw('/v1/batch', JSON.stringify({ writeKey: 'demo', batch: [track(a, 'Not Zipped')] }),
      { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    assert.equal(lies.status, 400, 'a plain body that says it is gzip');
    assert.equal(lies.json.error.code, 'invalid_body_encoding');
  });

  test('a coding the Worker does not read is a 415 at Content-Encoding', async () => {
    const body = brotliCompressSync(JSON.stringify({ writeKey: 'demo', batch: [track(uid('br'), 'Brotli')] }));
    const r = await postRaw('/v1/batch', body, { 'content-type': 'application/json', 'content-encoding': 'br' });
    assert.equal(r.status, 415, r.text);
    assert.equal(r.json.error.code, 'unsupported_content_encoding');
    assert.equal(r.json.error.path, 'Content-Encoding');
  });
});

describe("analytics.js's paths", () => {
  test('/v1/t, /v1/p, /v1/i with text/plain bodies carrying the write key, and /v1/b for batches', async () => {
    const a = uid('ajs');
    const plain = { 'content-type': 'text/plain' };
    const sentAt = new Date().toISOString();
    const t = await postRaw('/v1/t', JSON.stringify({ writeKey: 'demo', sentAt, ...track(a, 'Short Path') }), plain);
    assert.equal(t.status, 200, t.text);
    const p = await postRaw('/v1/p', JSON.stringify({ writeKey: 'demo', sentAt, anonymousId: a, context: GRANT }), plain);
    assert.equal(p.status, 200, p.text);
    const i = await postRaw('/v1/i', JSON.stringify({ writeKey: 'demo', sentAt, anonymousId: a, traits: { plan: 'pro' }, context: GRANT }), plain);
    assert.equal(i.status, 200, i.text);
    const b = await postRaw('/v1/b', JSON.stringify({ writeKey: 'demo', sentAt, batch: [track(a, 'Batched'), track(a, 'Batched')] }), plain);
    assert.equal(b.status, 200, b.text);
    const profile = (await getProfile(w, `anonymous_id:${a}`)).body;
    assert.equal(profile.counts['Short Path'], 1);
    assert.equal(profile.counts.Batched, 2);
    assert.equal(profile.counts.page, 1);
    assert.equal(profile.traits.plan, 'pro');
  });
});
