// One library from its import to its first answer, in this fresh Node process (bench-growthbook.mjs --first runs
// it): `node scripts/first-answer.mjs edgecdp|growthbook FILE`, where FILE holds one visitor's summary, the
// GrowthBook features and attributes, and the slots. Prints the milliseconds and the answers.
import { readFileSync } from 'node:fs';

const [which, file] = process.argv.slice(2);
const data = JSON.parse(readFileSync(file, 'utf8'));
// Node loads its fetch (undici, some 25 ms) the first time anything touches `fetch` or `Response`, which both
// libraries do; a browser has them from the start. Touched here, before the clock starts, for both.
void [globalThis.fetch, globalThis.Response];
const t0 = performance.now();
let answers;
if (which === 'edgecdp') {
  const dir = new URL('../www/edgecdp/', import.meta.url);
  const m = await import(new URL('slots.js', dir));
  await m.init({ module_or_path: readFileSync(new URL('decide_bg.wasm', dir)) });
  const got = m.decideOn(m.ready(data.summary), { slots: data.slots, context: {} }, data.summary.now);
  answers = data.slots.map((s) => got.answer.slots[s].html);
} else {
  // The bundle a browser loads (esm.min.js, 15,521 B gzip -9), not the package's many ESM files.
  const { GrowthBook } = await import(new URL('../node_modules/@growthbook/growthbook/dist/bundles/esm.min.js', import.meta.url));
  const gb = new GrowthBook({ features: data.features, attributes: data.attributes });
  answers = data.slots.map((s) => gb.getFeatureValue(s, null));
}
const ms = performance.now() - t0;
console.log(JSON.stringify({ ms, answers }));
