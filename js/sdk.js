//! edgecdp browser SDK: the I/O shell around the Wasm tracker (storage, batching, sending, decisions).
//!
//! The loader imports this module only after consent allows analytics or personalization, and hands it
//! its stub (`start(stub)`). The Wasm core validates events, applies consent and builds request bodies;
//! everything that touches the network, storage, timers or the DOM happens here.

import init, { Tracker } from './edgecdp.js';

const CONSENT_KEY = 'edgecdp.consent';
const ANON_KEY = 'edgecdp.anonymousId';
const OUTBOX_KEY = 'edgecdp.outbox';
/** Calls the loader kept while analytics was allowed and the SDK had not loaded yet (js/loader.js). */
const EARLY_KEY = 'edgecdp.early';
const EARLY_CALLS = ['page', 'track', 'identify', 'alias', 'consent'];
const BATCH_URL = '/v1/batch';
const DECIDE_URL = '/v1/decide';
const FLUSH_COUNT = 20;
const FLUSH_DELAY_MS = 1000;
// Browsers allow 64 KiB of keepalive bodies in flight per document, and a beacon body shares that limit,
// so one batch body never exceeds it.
const MAX_BODY = 64 * 1024;
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 60 * 1000;
// Bodies kept for retry while the server is unreachable, in memory and in storage; the oldest are dropped
// beyond either limit, so an offline visitor cannot fill the site's storage quota.
const MAX_OUTBOX = 100;
const MAX_OUTBOX_BYTES = 256 * 1024;
const PURPOSES = ['analytics', 'personalization', 'advertising', 'marketing'];
// The device's decide module (js/slots.js), beside this file; a URL rather than a path so that the bundler
// leaves it a separate download.
const SLOTS_URL = new URL('slots.js', import.meta.url).href;

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

/**
 * The persisted outbox: request bodies not yet acknowledged, oldest first, as a JSON array of strings.
 * Other tabs of the site share it, so writes merge with what they stored (see `persist` in `start`). The
 * in-memory outbox stays the source of truth for this page; storage is what outlives it.
 */
const storedOutbox = {
  read() {
    try {
      const v = JSON.parse(localStorage.getItem(OUTBOX_KEY));
      return Array.isArray(v) ? v.filter((b) => typeof b === 'string' && b) : [];
    } catch {
      return [];
    }
  },
  /** Writes the newest bodies that fit: a full quota halves what is kept rather than keeping nothing. */
  write(bodies) {
    let keep = bodies.length;
    for (;;) {
      try {
        if (keep) localStorage.setItem(OUTBOX_KEY, JSON.stringify(bodies.slice(bodies.length - keep)));
        else localStorage.removeItem(OUTBOX_KEY);
        return;
      } catch {
        // Storage unavailable, or full: the in-memory outbox still holds every body for this page.
        if (!keep) return;
        keep >>= 1;
      }
    }
  },
  remove() {
    try {
      localStorage.removeItem(OUTBOX_KEY);
    } catch {
      // Nothing was stored if storage is unavailable.
    }
  },
};

/** The calls the loader kept, as `[method, args, href, title, messageId, at]`; malformed entries are skipped. */
function readEarly() {
  try {
    const v = JSON.parse(localStorage.getItem(EARLY_KEY));
    // Only the calls the loader keeps: anything else in storage is not replayed.
    return Array.isArray(v) ? v.filter((o) => Array.isArray(o) && EARLY_CALLS.includes(o[0]) && Array.isArray(o[1])) : [];
  } catch {
    return [];
  }
}

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
/** The identity token of `identify`'s third argument (`{token}`), when it is a string. */
function tokenOf(options) {
  return options && typeof options.token === 'string' && options.token ? options.token : undefined;
}

function pageProperties(href, title) {
  const u = new URL(href);
  return { path: u.pathname, url: href, title, referrer: document.referrer };
}

const utf8 = new TextEncoder();
const byteLength = (s) => utf8.encode(s).length;
const canKeepalive = typeof Request === 'function' && 'keepalive' in Request.prototype;

/**
 * A body stamped with the time it is sent. The edge corrects event times for the device's clock skew with
 * `sentAt`, so a body retried an hour later must not claim it was sent when it was built. The Tracker writes
 * `sentAt` right after `writeKey`, whose JSON string cannot contain an unescaped quote, so the first match is
 * the envelope's.
 */
const stamped = (body) => body.replace(/"sentAt":"[^"]*"/, `"sentAt":"${new Date().toISOString()}"`);

/** Drops the oldest idle entries beyond the count and byte limits; returns how many it dropped. */
function trim(entries) {
  let bytes = entries.reduce((n, e) => n + e.size, 0);
  let dropped = 0;
  while (entries.length > MAX_OUTBOX || bytes > MAX_OUTBOX_BYTES) {
    const i = entries.findIndex((e) => !e.busy);
    if (i < 0) break;
    bytes -= entries[i].size;
    entries.splice(i, 1);
    dropped++;
  }
  return dropped;
}

const entry = (body) => ({ body, size: byteLength(body), busy: false, beaconed: false });

/**
 * Starts the SDK on the loader's stub: loads the Wasm, replays queued calls in order, then swaps the
 * stub's methods for the real ones on the same object so references held by the page stay valid.
 */
export async function start(stub) {
  // The loader fetched and compiled the Wasm while this module loaded (`_w`); without it, `init` fetches it.
  const compiled = stub._w && (await stub._w);
  delete stub._w;
  await init(compiled ? { module_or_path: compiled } : undefined);
  const writeKey = stub._k || '';
  const onDevice = stub._d === 'device';
  let deviceFill = null; // the one automatic decision of a page that decides on the device

  let tracker = newTracker(writeKey, storedConsent());
  let timer = 0;
  let retryTimer = 0;
  let retryAt = 0;
  let failures = 0;
  let inflightBytes = 0;
  let chain = Promise.resolve();
  const outbox = []; // {body, size, busy, beaconed}, oldest first
  // Stored bodies this page answers for: those it loaded or wrote. Any other stored body belongs to another
  // tab and is kept as it is when this page writes.
  let claimed = new Set();

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

  /**
   * Writes the unacknowledged bodies to storage, synchronously, so they outlive the page. Only while consent
   * allows analytics: before consent nothing is written, and after a withdrawal nothing may be kept.
   */
  function persist() {
    if (!tracker.allows('analytics')) {
      forgetOutbox();
      return;
    }
    const mine = outbox.map((e) => e.body);
    const others = storedOutbox.read().filter((b) => !claimed.has(b));
    const all = others.map(entry).concat(outbox.map((e) => ({ ...e, busy: false })));
    trim(all);
    storedOutbox.write(all.map((e) => e.body));
    // Bodies this page delivered or dropped leave the claim with this write.
    claimed = new Set(mine);
  }

  function forgetOutbox() {
    outbox.length = 0;
    claimed = new Set();
    storedOutbox.remove();
  }

  /** Moves what the tracker has queued into the outbox; returns whether the outbox changed. */
  function takeAll() {
    let changed = false;
    while (tracker.pending > 0) {
      const before = tracker.pending;
      const body = tracker.takeBatch(MAX_BODY);
      if (body == null) break;
      outbox.push(entry(body));
      changed = true;
      // Guard against a body that took nothing off the queue, which would otherwise loop forever.
      if (tracker.pending >= before) break;
    }
    const dropped = trim(outbox);
    if (dropped) console.warn(`edgecdp: outbox full, dropped the ${dropped} oldest unsent batch(es)`);
    return changed || dropped > 0;
  }

  /**
   * Sends one body with `fetch`. Resolves to true when the body is done with (accepted, or refused for good),
   * false when it must be retried.
   */
  async function send(e) {
    e.busy = true;
    const owner = tracker;
    try {
      const keepalive = canKeepalive && inflightBytes + e.size <= MAX_BODY;
      if (keepalive) inflightBytes += e.size;
      try {
        return await settled(await post(stamped(e.body), keepalive), owner);
      } finally {
        if (keepalive) inflightBytes -= e.size;
      }
    } catch {
      return false; // Network failure: keep the body for a retry.
    } finally {
      e.busy = false;
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

  async function settled(res, owner) {
    if (res.ok) {
      adopt(await res.json().catch(() => null), owner);
      return true;
    }
    if (res.status >= 500 || res.status === 408 || res.status === 429) return false;
    // Other 4xx answers will not change on retry (bad key, bad body): drop the body, say why once.
    console.warn(`edgecdp: batch refused with ${res.status}`);
    return true;
  }

  /**
   * Adopts the anonymous id the edge answered with. The edge reads it from its signed, HttpOnly first-party
   * cookie, which outlives script-written storage (Safari clears that after seven days), so taking it keeps one
   * profile per visitor. An answer to a tracker that has since been replaced (everything refused) is ignored.
   */
  function adopt(answer, owner) {
    const id = answer && answer.anonymousId;
    if (typeof id !== 'string' || !id || owner !== tracker || id === tracker.anonymousId) return;
    if (!tracker.allows('analytics') && !tracker.allows('personalization')) return;
    try {
      tracker.anonymousId = id;
    } catch (e) {
      console.warn('edgecdp: the edge answered an unusable anonymous id', e);
      return;
    }
    store.set(ANON_KEY, id);
  }

  /** Removes a delivered body from the outbox and from storage. */
  function done(e) {
    const at = outbox.indexOf(e);
    if (at < 0) return;
    outbox.splice(at, 1);
    persist();
  }

  /** One pass over the outbox, oldest first; stops at the first failure and schedules a retry. */
  async function sendAll(force) {
    if (!force && Date.now() < retryAt) return;
    if (navigator.onLine === false) {
      // Nothing can go out; the `online` event retries at once, the timer in case it never comes.
      if (outbox.length) scheduleRetry();
      return;
    }
    for (let i = 0; i < outbox.length; ) {
      const e = outbox[i];
      if (e.busy) {
        i++;
        continue;
      }
      if (await send(e)) {
        done(e);
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
    if (takeAll()) persist();
    return drain(force);
  }

  function scheduleFlush() {
    const pending = tracker.pending;
    if (pending >= FLUSH_COUNT) flush(false);
    else if (pending > 0 && !timer) timer = setTimeout(() => flush(false), FLUSH_DELAY_MS);
  }

  /**
   * The page is being hidden and may never run again. First everything unacknowledged goes to storage,
   * synchronously, so the next page of the site sends whatever this one could not; only then does sending
   * start. No awaiting here: keepalive fetches outlive the page, and one that completes while the page is
   * still alive (or after it comes back from the back/forward cache) removes its body as usual.
   */
  function onHide() {
    clearTimeout(timer);
    timer = 0;
    takeAll();
    persist();
    if (navigator.onLine === false) return;
    for (const e of outbox.slice()) {
      if (e.busy) continue;
      if (canKeepalive && inflightBytes + e.size <= MAX_BODY) {
        send(e).then((ok) => ok && done(e));
      } else if (!e.beaconed && navigator.sendBeacon) {
        // A beacon is never acknowledged, so its body stays in the outbox and in storage: if the page lives
        // on, or the visitor comes back, it goes again, and the edge counts the repeated messageIds once.
        // Losing it instead would be wrong; a duplicate is harmless.
        e.beaconed = navigator.sendBeacon(BATCH_URL, new Blob([stamped(e.body)], { type: 'application/json' }));
      }
    }
  }

  function onShow() {
    if (outbox.length) drain(true);
  }

  // No `unload` listener: it would keep the page out of the back/forward cache.
  addEventListener('pagehide', onHide);
  addEventListener('pageshow', (e) => e.persisted && onShow());
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'hidden') onHide();
    else onShow();
  });
  addEventListener('online', () => {
    // The connection is back: retry now rather than at the end of the current backoff.
    failures = 0;
    retryAt = 0;
    clearTimeout(retryTimer);
    if (outbox.length) drain(true);
  });

  // What an earlier page could not deliver goes first. Without consent for analytics it may not be sent,
  // so it is dropped.
  if (tracker.allows('analytics')) {
    const stored = storedOutbox.read();
    for (const body of stored) outbox.push(entry(body));
    trim(outbox);
    claimed = new Set(stored);
  } else {
    storedOutbox.remove();
  }

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

  /**
   * Tells the edge that analytics was withdrawn, with one event whose consent refuses it (the shape of
   * Segment's consent-change event). The edge stores nothing from it but records the withdrawal on the
   * profile, and clears its HttpOnly id cookie, which script cannot reach: otherwise a later grant would be
   * linked back to the visitor who withdrew. The Tracker queues nothing without analytics consent, so this
   * one body is built here. Best effort: offline, the cookie stays until the next request that withdraws.
   */
  function announceWithdrawal(anonymousId, userId, prefs) {
    const now = new Date().toISOString();
    const event = {
      type: 'track',
      event: 'Segment Consent Preference Updated',
      anonymousId,
      timestamp: now,
      context: { consent: { categoryPreferences: prefs } },
    };
    if (userId != null) event.userId = userId;
    post(JSON.stringify({ writeKey, sentAt: now, batch: [event] }), canKeepalive).catch(() => {});
  }

  function consent(prefs) {
    const p = normalizeConsent(prefs);
    const wasCollecting = tracker.allows('analytics');
    if (wasCollecting && !p.analytics) announceWithdrawal(tracker.anonymousId, tracker.userId, p);
    if (PURPOSES.some((k) => p[k])) {
      const wasPersonalizing = tracker.allows('personalization');
      tracker.consent(p);
      if (!wasPersonalizing) fillOnDevice();
      store.set(CONSENT_KEY, JSON.stringify(p));
      if (p.analytics || p.personalization) store.set(ANON_KEY, tracker.anonymousId);
      else store.remove(ANON_KEY);
      // The tracker dropped its queue when analytics was withdrawn; what waits for delivery goes too.
      if (!tracker.allows('analytics')) forgetOutbox();
      return;
    }
    // Everything refused: forget the visitor and stop sending. A fresh tracker drops the in-memory ids,
    // so a later grant on this page starts as a new, unlinked visitor.
    clearTimeout(timer);
    clearTimeout(retryTimer);
    timer = 0;
    retryAt = 0;
    failures = 0;
    forgetOutbox();
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

  async function decideAtEdge(req) {
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
    return answer;
  }

  /**
   * Static sites (`data-decide="device"` on the loader's tag) decide on the device (js/slots.js): their slots
   * are filled once per page load, when the SDK starts or when personalization is granted. Only pages with
   * slots load it.
   */
  function fillOnDevice() {
    if (onDevice && !deviceFill && tracker.allows('personalization') && document.querySelector('[data-edgecdp-slot]')) {
      // After the calls made together with this one (the page view that comes with a consent), which the
      // decision must count.
      deviceFill = new Promise((r) => setTimeout(r)).then(() => decide()).catch((e) => console.error(e));
    }
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
    // No userId: a browser decides for its own visitor (the cookie, or its anonymous id), which reaches the
    // known profile once a token proved the link; naming a user id needs a server credential.
    let answer = onDevice ? await (await import(SLOTS_URL)).decide(req) : null;
    // The device module answers `'edge'` for what only the edge can decide (js/slots.js): asked here, as any page.
    if (!onDevice || answer === 'edge') answer = await decideAtEdge(req);
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
    // `options.token`: the identity token the site's backend made for this user id (see SECURITY.md).
    identify: (userId, traits, options) => enqueue(tracker.identify(userId, traits, tokenOf(options))),
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
  // Calls an earlier page's loader kept because the page went before its SDK loaded (see js/loader.js) come
  // first, unless this page's queue holds them too; each keeps its message id and time.
  const early = readEarly().filter((o) => !queue.some((e) => e[6] === o[4]));
  queue.unshift(...early.map((o) => [o[0], o[1], 0, 0, o[2], o[3], o[4], o[5]]));
  const readyCallbacks = [];
  while (queue.length) {
    const [method, args, resolve, reject, href, title, messageId, at] = queue.shift();
    try {
      if (messageId) tracker.stampNext(String(messageId), Number(at));
      if (method === 'ready') readyCallbacks.push(args[0]);
      else if (method === 'page') page(args[0], args[1], href, title);
      else if (method === 'decide') real.decide(...args).then(resolve, reject);
      else real[method](...args);
    } catch (e) {
      if (reject) reject(e);
      else console.error(`edgecdp: queued ${method} failed`, e);
    } finally {
      // A call that queued no event (refused, or not an event) leaves no stamp for the next one.
      tracker.stampNext('', 0);
    }
  }
  Object.assign(stub, real);
  delete stub._q;
  // What the loader kept is in the persisted outbox now; only then does its copy go.
  if (takeAll()) persist();
  store.remove(EARLY_KEY);
  for (const cb of readyCallbacks) real.ready(cb);
  // Bodies loaded from storage go out now, not with the next event.
  if (outbox.length) drain(true);
  fillOnDevice();
}

// The Wasm tracker and its initializer, for advanced integrations and for tests that drive it directly.
export { init, Tracker };
