// edgecdp slots on the device (delivery way 3, for sites that are static files): the I/O shell around the
// browser decide module (src/browser_decide/).
//
// The SDK imports this module only on pages that have `[data-edgecdp-slot]` elements, only when the page asked
// for decisions on the device (`data-decide="device"` on the loader's script tag), and only while
// personalization is allowed; no other visitor downloads it or its Wasm. Once per page load it fetches the
// visitor's summary from the edge (`GET /v1/decide/summary`: the configuration's decision rules and the
// profile cut down to what they read), loads the rules (compiled at the edge) once, and decides with the same core as the edge.
// Answers that caps and experiments count are posted to `POST /v1/impressions`.

import init, { Engine } from './decide.js';

const SUMMARY_URL = '/v1/decide/summary';
const IMPRESSIONS_URL = '/v1/impressions';

/** The summary and its compiled engine, fetched once per page load (per visitor the page asked for). */
let loaded = null;

function load(visitor) {
  const key = visitor.anonymousId || '';
  if (loaded && loaded.key === key) return loaded.promise;
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
      return { summary, skew, engine: new Engine(summary.rules) };
    },
  );
  // A failed fetch may be retried by a later call on the same page.
  promise.catch(() => {
    if (loaded && loaded.promise === promise) loaded = null;
  });
  loaded = { key, promise };
  return promise;
}

/**
 * Decides `request` (the body `POST /v1/decide` would get: ids, `slots`, `context`) on the device and answers
 * what `/v1/decide` would. The decision's impressions go to the edge without delaying the answer.
 */
export async function decide(request) {
  const { summary, skew, engine } = await load(request);
  const context = { ...request.context };
  context.userAgent = navigator.userAgent;
  context.utcOffset = -new Date().getTimezoneOffset();
  const body = { slots: request.slots, context };
  const text = engine.decide(summary.profile, body, summary.country, gpc(), Date.now() + skew);
  const impressions = JSON.parse(engine.impressions());
  if (impressions.length) record(request, impressions);
  return JSON.parse(text);
}

function gpc() {
  return navigator.globalPrivacyControl === true;
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
