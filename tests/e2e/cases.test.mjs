// The decision cases of tests/cases/, played through the real Worker under workerd. The native runner
// (tests/cases.rs) plays the same files through the core, and tests/browser/cases.test.mjs through the browser
// build; all must give exactly expected.json. Times are shifted to the Worker's clock (tests/support/cases.mjs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWorker } from '../support/worker.mjs';
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
  });
}
