// The decision cases of tests/cases/, played through the real Worker under workerd. The native runner
// (tests/cases.rs) plays the same files through the core, and tests/browser/cases.test.mjs through the browser
// build; all must give exactly expected.json. Times are shifted to the Worker's clock (tests/support/cases.mjs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker, getProfile } from '../support/worker.mjs';
import { caseNames, credentialFor, loadCase, playCase } from '../support/cases.mjs';

let w;
before(async () => { w = await startWorker({ config: null }); });
after(async () => { await w?.stop(); });

const names = caseNames();
assert.ok(names.length >= 3);

for (const name of names) {
  test(`case ${name}`, async () => {
    const c = loadCase(name);
    await playCase(w, c);
    for (const [i, step] of c.steps.entries()) {
      const r = await fetch(`${w.url}/v1/decide`,
        { method: 'POST', body: JSON.stringify(step.request), headers: credentialFor(c, step.request) });
      assert.equal(r.status, 200);
      assert.deepEqual(await r.json(), step.response, `${name}, decide[${i}]`);
    }
    // Audiences as the events left them (the steps that wake the profile later are the native runner's; a real
    // alarm is tests/e2e/audiences.test.mjs's). An event's transitions happen when the Worker applied it, so
    // only those by time alone, and the next change, are compared at their instants (shifted like the case).
    const shift = (iso) => iso && new Date(Date.parse(iso) + c.delta).toISOString();
    for (const [i, step] of (c.audiences || []).entries()) {
      if (step.at) continue;
      const key = step.of.userId ? `user_id:${step.of.userId}` : `anonymous_id:${step.of.anonymousId}`;
      const { body } = await getProfile(w, key);
      const strip = (t) => (t.cause === 'time' ? { ...t, at: shift(t.at) } : { ...t, at: undefined });
      assert.deepEqual(body.audiences.members.map((m) => m.audience), step.expect.members.map((m) => m.audience), `${name}, audiences[${i}]`);
      assert.deepEqual(body.audiences.transitions.map(strip), step.expect.transitions.map(strip), `${name}, audiences[${i}]`);
      assert.equal(body.audiences.nextChange, shift(step.expect.nextChange), `${name}, audiences[${i}].nextChange`);
    }
  });
}
