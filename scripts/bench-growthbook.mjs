// The device decide module against GrowthBook's JavaScript SDK on equal rules, in one Node process.
//
//   node scripts/bench-growthbook.mjs [--visitors 1000] [--rounds 7] [--seed 20261130] [--first 15]
//
// The workload is generated from the seed: 20 features ↔ 20 slots, 5 rules ↔ 5 blocks each, one condition per
// rule (100 conditions: eq on a string, in on a list of strings, gte on a number), over 8 attributes ↔ traits.
// A visitor's attributes are GrowthBook's `attributes` and edgecdp's profile traits. edgecdp's side is what a
// device runs: each visitor's device program and answers come from `GET /v1/decide/summary` of a Worker this
// script starts (tests/support/worker.mjs, fresh local storage), after one identify per visitor; the edge
// evaluated there what reads the profile (here, every condition: they are all on traits). Then, with the network
// done, both libraries decide every visitor's 20 answers in this process, each from its per-visitor start:
//   edgecdp:    `ready(summary)` (the visitor's engine) and `decideOn(…, {slots, context}, now)` for the 20 slots,
//               the page's answer object read;
//   GrowthBook: `new GrowthBook({features, attributes})` and 20 × `getFeatureValue`.
// Both must agree on every answer (the script fails otherwise). The rounds alternate the two, and each figure is
// the median round's mean per visitor. `--first N` instead times, in N pairs of fresh Node processes, each
// library from its import to its first answer (scripts/first-answer.mjs; the two must agree). Only 127.0.0.1 is contacted. A build must exist (npm run build).
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startWorker } from '../tests/support/worker.mjs';
import { GrowthBook } from '@growthbook/growthbook';
import { arg } from './args.mjs';

const VISITORS = arg('visitors', 1000);
const ROUNDS = arg('rounds', 7);
const FIRST = arg('first', 0);
let seed = arg('seed', 20261130) >>> 0;
// mulberry32: a small seeded generator, so the workload is the same on every run.
const random = () => {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (list) => list[Math.floor(random() * list.length)];

const STRINGS = {
  plan: ['free', 'basic', 'pro', 'team', 'enterprise'],
  country: ['FR', 'DE', 'US', 'GB', 'ES', 'IT', 'NL', 'SE'],
  device: ['mobile', 'desktop', 'tablet'],
  browser: ['chrome', 'firefox', 'safari', 'edge'],
};
const NUMBERS = { age: 80, visits: 50, orders: 20, cartValue: 500 };

function condition() {
  const kind = pick(['eq', 'in', 'gte']);
  if (kind === 'gte') {
    const attr = pick(Object.keys(NUMBERS));
    const n = Math.floor(random() * NUMBERS[attr]);
    return { gb: { [attr]: { $gte: n } }, cdp: { trait: attr, gte: n } };
  }
  const attr = pick(Object.keys(STRINGS));
  if (kind === 'eq') {
    const v = pick(STRINGS[attr]);
    return { gb: { [attr]: v }, cdp: { trait: attr, eq: v } };
  }
  const vs = [...new Set([pick(STRINGS[attr]), pick(STRINGS[attr])])];
  return { gb: { [attr]: { $in: vs } }, cdp: { trait: attr, in: vs } };
}

const features = {};
const slots = {};
for (let f = 0; f < 20; f++) {
  const rules = [];
  const blocks = [];
  for (let r = 0; r < 5; r++) {
    const c = condition();
    const value = `f${f}-r${r}`;
    rules.push({ condition: c.gb, force: value });
    // Priorities fall with the rule's order: the first matching rule wins on both sides.
    blocks.push({ id: value, priority: 5 - r, audience: c.cdp, html: value });
  }
  features[`f${f}`] = { defaultValue: `f${f}-default`, rules };
  slots[`f${f}`] = { fallback: { html: `f${f}-default` }, blocks };
}
const visitors = Array.from({ length: VISITORS }, (_, i) => {
  const attributes = {};
  for (const [k, vs] of Object.entries(STRINGS)) attributes[k] = pick(vs);
  for (const [k, max] of Object.entries(NUMBERS)) attributes[k] = Math.floor(random() * max);
  return { id: `gb-${i}`, attributes };
});

const config = {
  sources: [{ id: 'bench', writeKey: 'bench', origins: ['http://127.0.0.1'] }],
  consent: { model: 'opt-out' },
  slots,
};

// The summaries a device would fetch, made by the Worker from real identify calls.
const w = await startWorker({ config });
const summaries = [];
try {
  for (let i = 0; i < VISITORS; i += 20) {
    const batch = visitors.slice(i, i + 20).map((v) => ({
      type: 'identify', anonymousId: v.id, messageId: `id-${v.id}`, traits: v.attributes,
    }));
    const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ writeKey: 'bench', batch }) });
    if (r.status !== 200) throw new Error(`batch answered ${r.status}: ${await r.text()}`);
  }
  for (const v of visitors) {
    const r = await fetch(`${w.url}/v1/decide/summary?anonymousId=${v.id}&personalization=true`);
    const s = await r.json();
    if (r.status !== 200 || !s.profileId) throw new Error(`summary of ${v.id}: ${r.status} ${JSON.stringify(s)}`);
    if (typeof s.program !== 'string') throw new Error(`no device program for ${v.id}: ${JSON.stringify(s)}`);
    summaries.push(s);
  }
} finally {
  await w.stop();
}

// BENCH_DECIDE_DIR: another build of the module (say, one with its function names, for a CPU profile).
const dir = process.env.BENCH_DECIDE_DIR ? `file://${process.env.BENCH_DECIDE_DIR}/` : new URL('../www/edgecdp/', import.meta.url);
const slotsModule = await import(new URL('slots.js', dir));
const wasm = readFileSync(fileURLToPath(new URL('decide_bg.wasm', dir)));
await slotsModule.init({ module_or_path: wasm });
const request = { slots: Object.keys(slots), context: {} };

function edgecdp(check) {
  for (let i = 0; i < visitors.length; i++) {
    const s = summaries[i];
    const on = slotsModule.ready(s);
    const got = slotsModule.decideOn(on, request, s.now);
    // Each visitor's engine lives in their own page; here the next visitor's page replaces it, so it is freed
    // (as GrowthBook's instance is garbage), not left for the finalizer while 999 others pile up in one heap.
    on.engine.free();
    if (typeof got !== 'object') throw new Error(`visitor ${i}: ${got}`);
    if (check) check(i, (slot) => got.answer.slots[slot].html);
  }
}
function growthbook(check) {
  for (let i = 0; i < visitors.length; i++) {
    const gb = new GrowthBook({ features, attributes: visitors[i].attributes });
    const answers = {};
    for (let f = 0; f < 20; f++) answers[`f${f}`] = gb.getFeatureValue(`f${f}`, null);
    if (check) check(i, (slot) => answers[slot]);
  }
}

if (FIRST) {
  // Each library from its import to its first answer, in fresh processes, alternating.
  const file = join(tmpdir(), `edgecdp-first-${process.pid}.json`);
  writeFileSync(file, JSON.stringify({ summary: summaries[0], features, attributes: visitors[0].attributes,
    slots: Object.keys(slots) }));
  const script = fileURLToPath(new URL('first-answer.mjs', import.meta.url));
  const ms = { edgecdp: [], growthbook: [] };
  for (let r = 0; r < FIRST; r++) {
    const got = {};
    for (const name of ['edgecdp', 'growthbook']) {
      got[name] = JSON.parse(execFileSync(process.execPath, [script, name, file], { encoding: 'utf8' }));
      ms[name].push(got[name].ms);
    }
    if (JSON.stringify(got.edgecdp.answers) !== JSON.stringify(got.growthbook.answers)) {
      throw new Error(`first answers differ: ${JSON.stringify(got)}`);
    }
  }
  rmSync(file);
  const mid = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const [e, g] = [mid(ms.edgecdp), mid(ms.growthbook)];
  console.log(`import to first answer (fresh Node process, median of ${FIRST}): edgecdp ${e.toFixed(2)} ms, ` +
    `GrowthBook ${g.toFixed(2)} ms, ratio ${(e / g).toFixed(2)}`);
  process.exit(0);
}

// Agreement first: every visitor, every slot.
const got = { edgecdp: [], growthbook: [] };
edgecdp((i, answer) => (got.edgecdp[i] = Object.keys(slots).map(answer)));
growthbook((i, answer) => (got.growthbook[i] = Object.keys(slots).map(answer)));
let matched = 0;
for (let i = 0; i < VISITORS; i++) {
  for (let f = 0; f < 20; f++) {
    const [a, b] = [got.edgecdp[i][f], got.growthbook[i][f]];
    if (a !== b) throw new Error(`visitor ${i} f${f}: edgecdp ${a}, GrowthBook ${b} (${JSON.stringify(visitors[i])})`);
    if (!a.endsWith('default')) matched++;
  }
}

const times = { edgecdp: [], growthbook: [] };
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, run] of [['edgecdp', edgecdp], ['growthbook', growthbook]]) {
    const t = process.hrtime.bigint();
    run();
    times[name].push(Number(process.hrtime.bigint() - t) / 1000 / VISITORS);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const e = median(times.edgecdp);
const g = median(times.growthbook);
console.log(`agreed on ${VISITORS * 20} answers (${matched} from a rule, the rest defaults)`);
console.log(`edgecdp ready + decideOn (20 slots, the page's answer): ${e.toFixed(1)} µs per visitor`);
console.log(`GrowthBook ${JSON.parse(readFileSync(new URL('../node_modules/@growthbook/growthbook/package.json', import.meta.url))).version} ` +
  `(new GrowthBook + 20 getFeatureValue): ${g.toFixed(1)} µs per visitor`);
console.log(`ratio: edgecdp is ${(g / e).toFixed(2)}× GrowthBook's speed (rounds: ${ROUNDS}, median)`);
