// The decision cases of tests/cases/, played through the real Worker under workerd. The native runner
// (tests/cases.rs) plays the same files through the core; both must give exactly expected.json.
//
// The Worker reads the real clock, while a case is written for a fixed `now`. Every time in the case
// (event timestamps, block schedules) is shifted by (real now - case now), so every window and schedule
// relates to the Worker's clock exactly as it relates to the case's `now`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startWorker } from '../support/worker.mjs';

const CASES = join(dirname(fileURLToPath(import.meta.url)), '..', 'cases');
const shift = (iso, delta) => new Date(Date.parse(iso) + delta).toISOString();

function shiftConfig(config, delta) {
  const copy = structuredClone(config);
  for (const slot of Object.values(copy.slots || {})) {
    for (const block of slot.blocks || []) {
      for (const k of ['start', 'end']) if (block[k]) block[k] = shift(block[k], delta);
    }
  }
  return copy;
}

let w;
before(async () => { w = await startWorker({ config: null }); });
after(async () => { await w?.stop(); });

const names = readdirSync(CASES, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
assert.ok(names.length >= 3);

for (const name of names) {
  test(`case ${name}`, async () => {
    const dir = join(CASES, name);
    const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8'));
    const delta = Date.now() - Date.parse(expected.now);
    const config = shiftConfig(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')), delta);
    const put = await fetch(`${w.url}/v1/config`, { method: 'PUT', body: JSON.stringify(config),
      headers: { authorization: `Bearer ${w.adminToken}` } });
    assert.equal(put.status, 200, await put.text());
    const writeKey = config.sources[0].writeKey;
    const events = readFileSync(join(dir, 'events.jsonl'), 'utf8').split('\n').filter((l) => l.trim());
    // One request per event, in order, as the native runner applies them.
    for (const line of events) {
      const event = JSON.parse(line);
      if (event.timestamp) event.timestamp = shift(event.timestamp, delta);
      const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ writeKey, batch: [event] }) });
      const body = await r.json();
      assert.equal(r.status, 200);
      assert.equal(body.rejected, undefined, JSON.stringify(body));
    }
    for (const [i, step] of expected.decide.entries()) {
      const r = await fetch(`${w.url}/v1/decide`, { method: 'POST', body: JSON.stringify(step.request) });
      assert.equal(r.status, 200);
      assert.deepEqual(await r.json(), step.response, `${name}, decide[${i}]`);
    }
  });
}
