//! edgecdp browser SDK: the I/O shell around the Wasm tracker (storage, batching, sending, decisions).
//!
//! The loader imports this module only after consent allows analytics or personalization, and hands it
//! its stub (`start(stub)`). The Wasm core validates events, applies consent and builds request bodies;
//! everything that touches the network, storage, timers or the DOM happens here.

import init, { Tracker } from './edgecdp.js';

const CONSENT_KEY = 'edgecdp.consent';
const ANON_KEY = 'edgecdp.anonymousId';
const BATCH_URL = '/v1/batch';
const DECIDE_URL = '/v1/decide';
const FLUSH_COUNT = 20;
const FLUSH_DELAY_MS = 1000;
// Browsers allow 64 KiB of keepalive bodies in flight per document, and a beacon body shares that limit,
// so one batch body never exceeds it.
const MAX_BODY = 64 * 1024;
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 60 * 1000;
// Bodies kept for retry while the server is unreachable; the oldest are dropped beyond this.
const MAX_OUTBOX = 50;
const PURPOSES = ['analytics', 'personalization', 'advertising'];

/** Storage that never throws: when localStorage is unavailable or full, values live in memory. */
const memory = new Map();
const store = {
  get(key) {
    if (memory.has(key)) return memory.get(key);
    try {
      return localStorage.getItem(key);
    } catch {
      return null;
    }
  },
  set(key, value) {
    memory.set(key, value);
    try {
      localStorage.setItem(key, value);
    } catch {
      // Private modes and full quotas throw; the in-memory copy keeps this page working.
    }
  },
  remove(key) {
    memory.delete(key);
    try {
      localStorage.removeItem(key);
    } catch {
      // Nothing was stored if storage is unavailable.
    }
  },
};

function normalizeConsent(prefs) {
  const p = {};
  for (const k of PURPOSES) p[k] = !!(prefs && prefs[k] === true);
  return p;
}

function storedConsent() {
  try {
    const c = JSON.parse(store.get(CONSENT_KEY));
    return c && typeof c === 'object' ? normalizeConsent(c) : null;
  } catch {
    return null;
  }
}

/** Page properties the Wasm core cannot read itself, taken from the page the call was made on. */
function pageProperties(href, title) {
  const u = new URL(href);
  return { path: u.pathname, url: href, title, referrer: document.referrer };
}

const utf8 = new TextEncoder();
const byteLength = (s) => utf8.encode(s).length;
const canKeepalive = typeof Request === 'function' && 'keepalive' in Request.prototype;

/**
 * Starts the SDK on the loader's stub: loads the Wasm, replays queued calls in order, then swaps the
 * stub's methods for the real ones on the same object so references held by the page stay valid.
 */
export async function start(stub) {
  await init();
  const writeKey = stub._k || '';

  let tracker = newTracker(writeKey, storedConsent());
  let timer = 0;
  let retryTimer = 0;
  let retryAt = 0;
  let failures = 0;
  let inflightBytes = 0;
  let hiding = false;
  let chain = Promise.resolve();
  const outbox = []; // {body, busy}

  function newTracker(key, consent) {
    const anon = consent ? store.get(ANON_KEY) || undefined : undefined;
    let t;
    try {
      t = new Tracker(key, anon);
    } catch (e) {
      // A corrupted stored id must not stop tracking: start over with a fresh one.
      console.warn('edgecdp: stored anonymous id rejected', e);
      t = new Tracker(key, undefined);
    }
    if (consent) {
      t.consent(consent);
      if (consent.analytics || consent.personalization) store.set(ANON_KEY, t.anonymousId);
    }
    return t;
  }

  function takeAll() {
    while (tracker.pending > 0) {
      const before = tracker.pending;
      const body = tracker.takeBatch(MAX_BODY);
      if (body == null) break;
      outbox.push({ body, busy: false });
      // Guard against a body that took nothing off the queue, which would otherwise loop forever.
      if (tracker.pending >= before) break;
    }
    while (outbox.length > MAX_OUTBOX) {
      const i = outbox.findIndex((e) => !e.busy);
      if (i < 0) break;
      outbox.splice(i, 1);
    }
  }

  /** Sends one body. Resolves to true when the body is done with (sent, or refused for good). */
  async function send(entry) {
    entry.busy = true;
    const size = byteLength(entry.body);
    try {
      if (canKeepalive && inflightBytes + size <= MAX_BODY) {
        inflightBytes += size;
        try {
          return settled(await post(entry.body, true));
        } finally {
          inflightBytes -= size;
        }
      }
      if (hiding && navigator.sendBeacon) {
        // A queued beacon is as far as a hiding page can follow a body.
        return navigator.sendBeacon(BATCH_URL, new Blob([entry.body], { type: 'application/json' }));
      }
      return settled(await post(entry.body, false));
    } catch {
      return false; // Network failure: keep the body for a retry.
    } finally {
      entry.busy = false;
    }
  }

  function post(body, keepalive) {
    return fetch(BATCH_URL, {
      method: 'POST',
      keepalive,
      headers: { 'content-type': 'application/json' },
      body,
    });
  }

  function settled(res) {
    if (res.ok) return true;
    if (res.status >= 500 || res.status === 408 || res.status === 429) return false;
    // Other 4xx answers will not change on retry (bad key, bad body): drop the body, say why once.
    console.warn(`edgecdp: batch refused with ${res.status}`);
    return true;
  }

  /** One pass over the outbox, oldest first; stops at the first failure and schedules a retry. */
  async function sendAll(force) {
    if (!force && Date.now() < retryAt) return;
    for (let i = 0; i < outbox.length; ) {
      const entry = outbox[i];
      if (entry.busy) {
        i++;
        continue;
      }
      if (await send(entry)) {
        const at = outbox.indexOf(entry);
        if (at >= 0) outbox.splice(at, 1);
        failures = 0;
        retryAt = 0;
      } else {
        scheduleRetry();
        return;
      }
    }
  }

  function scheduleRetry() {
    failures++;
    const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (failures - 1));
    // Jitter spreads the retries of many visitors after an outage.
    const wait = Math.round(delay / 2 + Math.random() * (delay / 2));
    retryAt = Date.now() + wait;
    clearTimeout(retryTimer);
    // The retry itself must not be held back by the window it ends (timers may fire a little early).
    retryTimer = setTimeout(() => drain(true), wait);
  }

  /** Passes run one after another, so bodies go out in order and none is sent twice. */
  function drain(force) {
    chain = chain.then(() => sendAll(force)).catch((e) => console.error('edgecdp:', e));
    return chain;
  }

  function flush(force) {
    clearTimeout(timer);
    timer = 0;
    takeAll();
    return drain(force);
  }

  function scheduleFlush() {
    const pending = tracker.pending;
    if (pending >= FLUSH_COUNT) flush(false);
    else if (pending > 0 && !timer) timer = setTimeout(() => flush(false), FLUSH_DELAY_MS);
  }

  function onHide() {
    hiding = true;
    clearTimeout(timer);
    timer = 0;
    takeAll();
    // No awaiting here: the page may be gone before any promise settles. Keepalive fetches and beacons
    // outlive it; a body that neither accepts stays in the outbox for when the page is shown again.
    for (const entry of outbox.slice()) {
      if (entry.busy) continue;
      send(entry).then((done) => {
        if (!done) return;
        const at = outbox.indexOf(entry);
        if (at >= 0) outbox.splice(at, 1);
      });
    }
  }

  addEventListener('pagehide', onHide);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'hidden') onHide();
    else {
      hiding = false;
      if (outbox.length) drain(false);
    }
  });

  function enqueue(accepted) {
    if (accepted) scheduleFlush();
    return accepted;
  }

  function page(name, properties, href = location.href, title = document.title) {
    if (name && typeof name === 'object') {
      properties = name;
      name = undefined;
    }
    const props = { ...pageProperties(href, title), ...(properties || {}) };
    return enqueue(tracker.page(name == null ? undefined : String(name), props));
  }

  function consent(prefs) {
    const p = normalizeConsent(prefs);
    if (PURPOSES.some((k) => p[k])) {
      tracker.consent(p);
      store.set(CONSENT_KEY, JSON.stringify(p));
      if (p.analytics || p.personalization) store.set(ANON_KEY, tracker.anonymousId);
      else store.remove(ANON_KEY);
      return;
    }
    // Everything refused: forget the visitor and stop sending. A fresh tracker drops the in-memory ids,
    // so a later grant on this page starts as a new, unlinked visitor.
    clearTimeout(timer);
    clearTimeout(retryTimer);
    timer = 0;
    retryAt = 0;
    failures = 0;
    outbox.length = 0;
    store.remove(CONSENT_KEY);
    store.remove(ANON_KEY);
    tracker = newTracker(writeKey, null);
    tracker.consent(p);
  }

  function slotNames(slots) {
    if (slots && slots.length) return [...slots].map(String);
    const names = [...document.querySelectorAll('[data-edgecdp-slot]')].map((el) => el.dataset.edgecdpSlot);
    return [...new Set(names)];
  }

  async function decide(slots) {
    const names = slotNames(slots);
    // Without personalization consent the server could only answer fallbacks; the static content already
    // is the fallback, so the visitor's id is not sent at all.
    if (!tracker.allows('personalization')) return null;
    // Events just tracked (a product view, say) must count in the decision they lead to.
    await flush(true);
    const req = {
      anonymousId: tracker.anonymousId,
      slots: names,
      context: { page: { url: location.href, path: location.pathname, referrer: document.referrer } },
    };
    const userId = tracker.userId;
    if (userId !== undefined && userId !== null) req.userId = userId;
    const res = await fetch(DECIDE_URL, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(req),
    });
    const answer = await res.json().catch(() => null);
    if (!res.ok) {
      const err = (answer && answer.error) || {};
      const e = new Error(`edgecdp: decide failed with ${res.status}${err.message ? `: ${err.message}` : ''}`);
      Object.assign(e, { status: res.status, code: err.code, path: err.path });
      throw e;
    }
    const filled = (answer && answer.slots) || {};
    for (const name of names) {
      const slot = filled[name];
      if (!slot || typeof slot.html !== 'string') continue;
      for (const el of document.querySelectorAll(`[data-edgecdp-slot="${CSS.escape(name)}"]`)) {
        // The server escapes profile data in its templates; the rest is the site's own configuration.
        el.innerHTML = slot.html;
        el.dataset.edgecdpBlock = slot.block == null ? 'fallback' : String(slot.block);
      }
    }
    document.dispatchEvent(new CustomEvent('edgecdp:decide', { detail: answer }));
    return answer;
  }

  const real = {
    page: (name, properties) => page(name, properties),
    track: (event, properties) => enqueue(tracker.track(event, properties)),
    identify: (userId, traits) => enqueue(tracker.identify(userId, traits)),
    alias: (userId, previousId) => enqueue(tracker.alias(userId, previousId)),
    consent,
    decide,
    ready(cb) {
      try {
        cb(stub);
      } catch (e) {
        console.error('edgecdp: ready callback failed', e);
      }
    },
  };

  // Replay in call order. The stub keeps queueing while this runs, so calls made during the replay
  // land behind the ones already waiting. Ready callbacks wait until the real methods are in place.
  const queue = stub._q || [];
  const readyCallbacks = [];
  while (queue.length) {
    const [method, args, resolve, reject, href, title] = queue.shift();
    try {
      if (method === 'ready') readyCallbacks.push(args[0]);
      else if (method === 'page') page(args[0], args[1], href, title);
      else if (method === 'decide') real.decide(...args).then(resolve, reject);
      else real[method](...args);
    } catch (e) {
      if (reject) reject(e);
      else console.error(`edgecdp: queued ${method} failed`, e);
    }
  }
  Object.assign(stub, real);
  delete stub._q;
  for (const cb of readyCallbacks) real.ready(cb);
}
