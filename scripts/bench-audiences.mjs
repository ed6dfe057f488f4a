// Audiences through wrangler dev on loopback, three figures:
//   1. the write path (POST /v1/batch, one client, p50) with transition tracking against 100 segments, against
//      the same 100 segments with none of them an audience (each also reads the request, so nothing is
//      tracked): two Workers side by side, interleaved rounds, fresh visitors each request;
//   2. the membership index's write throughput: transitions per second from the profile objects through the
//      local Queue into local D1, timed from the first batch until the index holds them all;
//   3. the re-evaluation pass after new audience definitions: profiles per second until every profile that
//      nobody touches is in the new audience.
//
//   node scripts/bench-audiences.mjs [--rounds 5] [--requests 60] [--events 10] [--profiles 300]
//
// It starts its own Workers (tests/support/worker.mjs) with fresh local storage and contacts only 127.0.0.1.
// A build must exist (npm run build).
import { startWorker, GRANT } from '../tests/support/worker.mjs';
import { arg } from './args.mjs';

const ROUNDS = arg('rounds', 5);
const REQUESTS = arg('requests', 60);
const EVENTS = arg('events', 10);
const PROFILES = arg('profiles', 300);

// 100 segments of the kinds a site has: windowed counts with a filter, traits, scores, inactivity, references.
function segments(tracked) {
  return Array.from({ length: 100 }, (_, i) => {
    const kinds = [
      { event: 'Product Viewed', where: { category: `cat-${i % 40}` }, count: { gte: 2 }, within: '7d' },
      { trait: `trait_${i % 30}`, eq: 'gold' },
      { score: `intent${i % 3}`, gte: i },
      { inactiveFor: `${1 + (i % 30)}d` },
      { all: [{ segment: `s${i - 1}` }, { not: { identified: true } }] },
    ];
    const when = kinds[i % 5];
    // Untracked: the same condition, also reading the request, so the segment is not an audience.
    return { id: `s${i}`, when: tracked ? when : { all: [when, { not: { page: ['/never/*'] } }] } };
  });
}
const scores = Array.from({ length: 3 }, (_, i) => ({
  id: `intent${i}`, halfLife: '7d',
  rules: [{ event: 'Product Viewed', where: { category: `cat-${i}` }, points: 10 }, { event: 'Order Completed', points: 50 }],
}));
const configOf = (tracked) => ({
  sources: [{ id: 'web', writeKey: 'bench', origins: ['http://127.0.0.1'] }],
  consent: { model: 'opt-out' },
  scores,
  segments: segments(tracked),
});

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
let seq = 0;
function batchBody(key) {
  const a = `bench-${process.pid}-${seq++}`;
  const batch = Array.from({ length: EVENTS }, (_, i) => ({
    type: 'track', event: 'Product Viewed', anonymousId: a, messageId: `${a}-${i}`,
    properties: { category: `cat-${i % 4}`, price: 10 + i }, context: GRANT,
  }));
  return JSON.stringify({ writeKey: key, batch });
}
async function post(w, body) {
  const t = performance.now();
  const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', body });
  await r.arrayBuffer();
  if (r.status !== 200) throw new Error(`batch answered ${r.status}`);
  return performance.now() - t;
}
const admin = (w) => ({ authorization: `Bearer ${w.adminToken}` });
async function sizes(w) {
  const r = await fetch(`${w.url}/v1/audiences`, { headers: admin(w) });
  return Object.fromEntries((await r.json()).audiences.map((a) => [a.id, a.size]));
}
async function until(check, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

const tracked = await startWorker({ config: configOf(true) });
const untracked = await startWorker({ config: configOf(false) });
try {
  // 1. The write path, interleaved.
  const p50 = { tracked: [], untracked: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, w] of [['tracked', tracked], ['untracked', untracked]]) {
      const times = [];
      for (let i = 0; i < REQUESTS; i++) times.push(await post(w, batchBody('bench')));
      p50[name].push(median(times));
    }
  }
  const a = median(p50.tracked);
  const b = median(p50.untracked);
  console.log(`write path, POST /v1/batch (${EVENTS} events, new visitor), one client, p50 (median of ${ROUNDS} rounds):`);
  console.log(`  with transition tracking (80 of 100 segments are audiences): ${a.toFixed(2)} ms`);
  console.log(`  without (the same 100 segments, none an audience):           ${b.toFixed(2)} ms`);
  console.log(`  ratio: ${(a / b).toFixed(3)}`);
} finally {
  await untracked.stop();
  await tracked.stop();
}

// 2 and 3 on a Worker of their own, with a small configuration whose every transition is easy to count.
const small = {
  sources: [{ id: 'web', writeKey: 'bench', origins: ['http://127.0.0.1'] }],
  consent: { model: 'opt-out' },
  segments: Array.from({ length: 5 }, (_, i) => ({ id: `viewed-${i}`, when: { event: 'Product Viewed', count: { gte: 1 } } })),
};
const w = await startWorker({ config: small });
try {
  const started = performance.now();
  const queue = [];
  for (let i = 0; i < PROFILES; i++) queue.push(batchBody('bench'));
  // Eight clients, so that the queue gets transitions faster than one would send them.
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (queue.length) await post(w, queue.pop());
  }));
  const sent = performance.now();
  const all = await until(async () => Object.values(await sizes(w)).every((n) => n === PROFILES), 120_000);
  const done = performance.now();
  if (!all) throw new Error(`the index did not reach ${PROFILES} members per audience: ${JSON.stringify(await sizes(w))}`);
  const transitions = PROFILES * 5;
  console.log(`membership index: ${transitions} transitions (${PROFILES} profiles × 5 audiences) through the local Queue into D1`);
  console.log(`  batches sent in ${((sent - started) / 1000).toFixed(1)} s; index complete ${((done - sent) / 1000).toFixed(1)} s later`);
  console.log(`  ${(transitions / ((done - started) / 1000)).toFixed(0)} transitions/s end to end`);

  // 3. New definitions: every profile enters a new audience by the pass alone.
  const next = { ...small, segments: [...small.segments, { id: 'new-audience', when: { event: 'Product Viewed', count: { gte: 1 } } }] };
  const t0 = performance.now();
  const put = await fetch(`${w.url}/v1/config`, { method: 'PUT', headers: admin(w), body: JSON.stringify(next) });
  if (put.status !== 200) throw new Error(`config answered ${put.status}: ${await put.text()}`);
  const reached = await until(async () => (await sizes(w))['new-audience'] === PROFILES, 300_000);
  const t1 = performance.now();
  if (!reached) throw new Error(`the pass did not reach every profile: ${JSON.stringify(await sizes(w))}`);
  const rate = PROFILES / ((t1 - t0) / 1000);
  console.log(`re-evaluation pass: ${PROFILES} untouched profiles in the new audience ${((t1 - t0) / 1000).toFixed(1)} s after the write`);
  console.log(`  ${rate.toFixed(0)} profiles/s here, where wrangler dev runs one consumer batch at a time (at Cloudflare the chunks run in parallel: ARCHITECTURE.md)`);
} finally {
  await w.stop();
}
