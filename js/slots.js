// edgecdp slots on the device (delivery way 3, for sites that are static files): the I/O shell around the
// browser decide module (src/browser_decide/).
//
// The SDK imports this module only on pages that have `[data-edgecdp-slot]` elements, only when the page asked
// for decisions on the device (`data-decide="device"` on the loader's script tag), and only while
// personalization is allowed; no other visitor downloads it or its Wasm. Once per page load it fetches the
// visitor's summary from the edge (`GET /v1/decide/summary`): their device program (what their rules leave to the
// page once their profile is evaluated) and the answers it picks from. The module decides; this shell turns its
// picks into `/v1/decide`'s answer and posts what caps and experiments count to `POST /v1/impressions`.
//
// What the program cannot answer `decide` leaves to the edge (it answers `EDGE`, and the SDK posts the request to
// `POST /v1/decide`, which answers it as it would any page):
// a request this shell does not read exactly as the edge does (consent in the context, an unknown slot, a value
// of the wrong type, which the edge then names), and rules that read what only the edge knows (`summary.program`
// null). A program past its span is fetched again.

import init, { Engine } from './decide.js';

const SUMMARY_URL = '/v1/decide/summary';
const IMPRESSIONS_URL = '/v1/impressions';
const encoder = new TextEncoder();
/** `decideOn`'s answers other than a decision. */
export const EDGE = 'edge';
export const STALE = 'stale';

/** The summary and its engine, fetched once per page load (per visitor the page asked for). */
let loaded = null;

function load(visitor, again) {
  const key = visitor.anonymousId || '';
  if (!again && loaded && loaded.key === key) return loaded.promise;
  const q = new URLSearchParams({ personalization: 'true' });
  if (visitor.anonymousId) q.set('anonymousId', visitor.anonymousId);
  const asked = Date.now();
  const promise = Promise.all([init(), fetch(`${SUMMARY_URL}?${q}`, { credentials: 'same-origin' })]).then(
    async ([, res]) => {
      const answered = Date.now();
      const summary = await res.json().catch(() => null);
      if (!res.ok || !summary) {
        const err = (summary && summary.error) || {};
        throw Object.assign(new Error(`edgecdp: summary failed with ${res.status}`), err);
      }
      // How far the edge's clock is ahead of this device's, taking the edge's `now` as the middle of the
      // round trip: decisions use the edge's time, so caps and schedules count as they do at the edge even on
      // a device whose clock is wrong.
      const skew = typeof summary.now === 'number' ? summary.now - (asked + answered) / 2 : 0;
      return ready(summary, skew);
    },
  );
  // A failed fetch may be retried by a later call on the same page.
  promise.catch(() => {
    if (loaded && loaded.promise === promise) loaded = null;
  });
  loaded = { key, promise };
  return promise;
}

/** A summary ready to decide on: its engine, and its slots' numbers by name. */
export function ready(summary, skew = 0) {
  const engine = typeof summary.program === 'string' ? new Engine(base64(summary.program)) : null;
  return { summary, skew, engine, index: new Map((summary.slots || []).map((s, i) => [s, i])) };
}

// Standard base64 to bytes. (`atob` makes a string first, and in Node is several times slower.) Any other
// character makes a program the module cannot read, which it says.
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
function base64(text) {
  const body = text.replace(/=?=$/, '');
  const out = new Uint8Array((body.length * 3) >> 2);
  let bits = 0;
  let n = 0;
  let k = 0;
  for (let i = 0; i < body.length; i++) {
    const v = ALPHABET.indexOf(body[i]);
    if (v < 0) return new Uint8Array(0);
    bits = (bits << 6) | v;
    n += 6;
    if (n >= 8) {
      n -= 8;
      out[k++] = bits >> n;
    }
  }
  return out;
}

/**
 * Decides `request` (the body `POST /v1/decide` would get: ids, `slots`, `context`) on the device and answers
 * what `/v1/decide` would, or `EDGE` when only the edge can (the caller then asks it). The decision's impressions
 * go to the edge without delaying the answer.
 */
export async function decide(request) {
  // The device's own User-Agent and offset from UTC, as the edge would read them from the request.
  const context = { ...request.context, userAgent: navigator.userAgent, utcOffset: -new Date().getTimezoneOffset() };
  request = { ...request, context };
  let on = await load(request);
  const now = () => Date.now() + on.skew;
  let got = decideOn(on, request, now());
  if (got === STALE) {
    on = await load(request, true);
    got = decideOn(on, request, now());
  }
  // The SDK asks the edge itself (`decideAtEdge`), as it does for pages that decide there.
  if (got === STALE || got === EDGE) return EDGE;
  if (got.impressions.length) record(request, got.impressions);
  return got.answer;
}

/**
 * Decides `request` on a ready summary at `now` (the edge's time): `{answer, impressions}`; `EDGE` when only
 * the edge can answer it; `STALE` when the program no longer holds. Throws an `Error` with `code` and `path` when
 * the program cannot be read.
 */
export function decideOn(on, request, now) {
  const { summary, engine, index } = on;
  const cx = engine && page(request);
  if (!cx) return EDGE;
  const asked = new Set();
  for (const name of request.slots) {
    if (!index.has(name)) return EDGE;
    asked.add(index.get(name));
  }
  // The page's text for the module: which parts are given, then each, separated by a zero byte (a part that
  // holds one goes to the edge).
  const parts = [cx.page.url, cx.page.path, cx.page.referrer, cx.location.country || summary.country, cx.userAgent];
  if (parts.some((p) => typeof p === 'string' && p.includes('\0'))) return EDGE;
  const text = [parts.map((p) => (typeof p === 'string' ? 1 : 0)).join(''), ...parts.map((p) => p || '')].join('\0');
  const out = engine.decide(encoder.encode(text), cx.utcOffset, now, Uint32Array.from(asked));
  if (out[0] === 0) return STALE;
  if (out[0] !== 1) {
    throw Object.assign(new Error('edgecdp: the device program cannot be read'), { code: 'invalid_rules', path: 'program' });
  }
  const segments = summary.segments.filter((_, i) => out[1 + i] === 1);
  const base = 1 + summary.segments.length;
  const slots = {};
  const impressions = [];
  // In the slots' order, as the edge's answer has them.
  summary.slots.forEach((name, k) => {
    if (!asked.has(k)) return;
    const { block, experiment, html, variant, record } = summary.answers[out[base + k]];
    slots[name] = experiment === undefined ? { block, html, variant } : { block, experiment, html, variant };
    if (record) impressions.push(experiment === undefined ? { block, variant } : { block, variant, experiment });
  });
  return { answer: { profileId: summary.profileId, segments, slots }, impressions };
}

// The request as the edge reads it (core::wire::decide), or null for anything this shell does not read exactly
// as the edge does: the edge answers those. What is read here is a subset of what the edge accepts.
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const absent = (v) => v === undefined || v === null;
// A string within the edge's limits (1,024 bytes of UTF-8 for the longest it checks).
const short = (v) => typeof v === 'string' && (v.length <= 341 || encoder.encode(v).length <= 1024);
const id = (v) => absent(v) || (typeof v === 'string' && v.length <= 256);

function page(request) {
  if (!isObject(request) || !id(request.anonymousId) || !id(request.userId) || !Array.isArray(request.slots)) return null;
  if (!request.slots.every((s) => typeof s === 'string' && s !== '')) return null;
  const c = absent(request.context) ? {} : request.context;
  if (!isObject(c)) return null;
  const out = { page: {}, location: {}, userAgent: undefined, utcOffset: undefined };
  for (const [k, v] of Object.entries(c)) {
    if (absent(v)) continue;
    if (k === 'page' || k === 'location') {
      if (!isObject(v)) return null;
      for (const [f, s] of Object.entries(v)) {
        if (absent(s)) continue;
        if (!short(s)) return null;
        if (k === 'page' && (f === 'url' || f === 'path' || f === 'referrer')) out.page[f] = s;
        if (k === 'location' && f === 'country') {
          if (!/^[A-Za-z]{2}$/.test(s)) return null;
          out.location.country = s.toUpperCase();
        }
      }
    } else if (k === 'userAgent' || k === 'timezone') {
      if (!short(v)) return null;
      if (k === 'userAgent') out.userAgent = v;
    } else if (k === 'utcOffset') {
      if (!Number.isInteger(v) || v < -840 || v > 840) return null;
      out.utcOffset = v;
    } else if (!(k === 'locale' || k === 'library') || !short(v)) {
      // Consent, a TCF string, anything nested or unknown: the edge reads it.
      return null;
    }
  }
  return out;
}

function record(visitor, impressions) {
  const body = { impressions };
  if (visitor.anonymousId) body.anonymousId = visitor.anonymousId;
  fetch(IMPRESSIONS_URL, {
    method: 'POST',
    keepalive: true,
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  }).catch((e) => console.warn('edgecdp: impressions not recorded', e));
}

// The engine and its initializer, for tests and integrations that decide on a summary themselves.
export { init, Engine };
