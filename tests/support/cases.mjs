// The decision cases of tests/cases/ as the Worker-backed runners play them: tests/e2e/cases.test.mjs (the
// Worker's own decisions) and tests/browser/cases.test.mjs (the browser build's, on the Worker's summaries).
//
// The Worker reads the real clock, while a case is written for a fixed `now`. Every time in the case (event
// timestamps, block schedules) is shifted by `delta` (real now - case now, in whole minutes), so every window
// and schedule relates to the Worker's clock exactly as it relates to the case's `now`. A request's
// `context.utcOffset` is shifted back by the same amount (modulo a day), so the visitor's local hour is the
// one the case means too.
import { readdirSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const CASES = join(dirname(fileURLToPath(import.meta.url)), '..', 'cases');
const MINUTE = 60_000;
const shift = (iso, delta) => new Date(Date.parse(iso) + delta).toISOString();

export function caseNames() {
  return readdirSync(CASES, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
}

/** A case's files, and the shift that puts its `now` at the real clock's. */
export function loadCase(name) {
  const dir = join(CASES, name);
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8'));
  const delta = Math.round((Date.now() - Date.parse(expected.now)) / MINUTE) * MINUTE;
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  for (const slot of Object.values(config.slots || {})) {
    for (const block of slot.blocks || []) {
      for (const k of ['start', 'end']) if (block[k]) block[k] = shift(block[k], delta);
    }
  }
  const events = readFileSync(join(dir, 'events.jsonl'), 'utf8').split('\n').filter((l) => l.trim())
    .map((line) => {
      const event = JSON.parse(line);
      if (event.timestamp) event.timestamp = shift(event.timestamp, delta);
      return event;
    });
  const steps = expected.decide.map((step) => ({ ...step, request: shiftRequest(step.request, delta) }));
  return { config, events, steps, audiences: expected.audiences, delta, now: Date.parse(expected.now) + delta };
}

function shiftRequest(request, delta) {
  const offset = request.context && request.context.utcOffset;
  if (typeof offset !== 'number') return request;
  // The same local time at `now + delta`, written within -720..719 minutes.
  const shifted = ((((offset - delta / MINUTE) % 1440) + 1440 + 720) % 1440) - 720;
  return { ...request, context: { ...request.context, utcOffset: shifted } };
}

/** Loads a case's configuration into the Worker and sends its events, one request each, in order. */
export async function playCase(w, c) {
  const put = await fetch(`${w.url}/v1/config`, { method: 'PUT', body: JSON.stringify(c.config),
    headers: { authorization: `Bearer ${w.adminToken}` } });
  assert.equal(put.status, 200, await put.text());
  // Identity claims count when a server sends them: a case that has a backend sends its events with its key.
  const writeKey = serverKeyOf(c.config) || c.config.sources[0].writeKey;
  // One request per event, in order, as the native runner applies them.
  for (const event of c.events) {
    const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ writeKey, batch: [event] }) });
    const body = await r.json();
    assert.equal(r.status, 200);
    assert.equal(body.rejected, undefined, JSON.stringify(body));
  }
}

/** The secret key of a case's server source (`type: "server"`), if it has one. */
export function serverKeyOf(config) {
  const server = (config.sources || []).find((s) => s.type === 'server');
  return server && server.key;
}

/** The headers a decision request needs: deciding for a userId takes the case's server credential. */
export function credentialFor(c, request) {
  return request.userId ? { authorization: `Bearer ${serverKeyOf(c.config)}` } : {};
}
