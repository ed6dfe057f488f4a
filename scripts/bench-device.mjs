// Benchmark of decisions on the device (delivery way 3) in Chromium: what a static page pays to fill its slots
// with the browser decide module, on the demo configuration, for a visitor with a full history.
//
//   node scripts/bench-device.mjs [--events 200] [--rounds 5] [--calls 1000]
//
// It starts its own Worker (tests/support/worker.mjs) with fresh local storage and the demo configuration, sends
// the visitor's events to it, then in Chromium (Debian's, through playwright-core) imports the module as the
// snippet does and times: loading and instantiating the Wasm, the summary request (the visitor's device program),
// loading the program (`ready`), the first decision (`decideOn`, the page's answer object), and further ones
// (`calls` per round; the median round's mean, since timers in a page are coarse).
// Only 127.0.0.1 is contacted. A build must exist (npm run build).
import { startWorker } from '../tests/support/worker.mjs';
import { sendViews } from './history.mjs';
import { launchChromium } from '../tests/browser/shop.mjs';
import { arg } from './args.mjs';

const EVENTS = arg('events', 200);
const ROUNDS = arg('rounds', 5);
const CALLS = arg('calls', 1000);

const w = await startWorker();
const browser = await launchChromium();
try {
  const visitor = 'bench-device';
  await sendViews(w, visitor, EVENTS);
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${w.url}/about`);
  const got = await page.evaluate(async ({ visitor, rounds, calls }) => {
    const t0 = performance.now();
    const m = await import('/edgecdp/slots.js');
    await m.init();
    const t1 = performance.now();
    const res = await fetch(`/v1/decide/summary?anonymousId=${visitor}&personalization=true`);
    const summary = await res.json();
    const t2 = performance.now();
    const on = m.ready(summary);
    const t3 = performance.now();
    const request = { slots: ['hero'], context: { page: { path: '/shop/bags' }, utcOffset: 60 } };
    const t4 = performance.now();
    const { answer } = m.decideOn(on, request, summary.now);
    const first = performance.now() - t4;
    const means = [];
    for (let r = 0; r < rounds; r++) {
      const s = performance.now();
      for (let i = 0; i < calls; i++) m.decideOn(on, request, summary.now);
      means.push(((performance.now() - s) * 1000) / calls);
    }
    means.sort((a, b) => a - b);
    return { load: t1 - t0, summary: t2 - t1, rules: t3 - t2, first, decide: means[Math.floor(means.length / 2)],
      summaryBytes: JSON.stringify(summary).length, answer };
  }, { visitor, rounds: ROUNDS, calls: CALLS });
  if (!got.answer.profileId) throw new Error(`the visitor was not personalized: ${JSON.stringify(got.answer)}`);
  console.log(`decide module load + instantiate: ${got.load.toFixed(1)} ms (from the local Worker, cold)`);
  console.log(`GET /v1/decide/summary: ${got.summary.toFixed(1)} ms, ${got.summaryBytes} bytes of JSON ` +
    `(${EVENTS} events in the visitor's history)`);
  console.log(`loading the program (ready, the module's first call): ${got.rules.toFixed(2)} ms`);
  console.log(`first decideOn: ${got.first.toFixed(2)} ms`);
  console.log(`decideOn again, the demo's hero slot: ${got.decide.toFixed(1)} µs per decision (median of ${ROUNDS} ` +
    `rounds of ${CALLS})`);
  console.log(`answer: ${JSON.stringify(got.answer.slots)}`);
} finally {
  await browser.close();
  await w.stop();
}
