// Journeys' deliveries through wrangler dev on loopback: sends per second from the profile objects, through the
// local Queue and this Worker's consumer (claim at the object, sign, POST, log in D1), to a webhook sink that
// verifies every signature. Timed from the first event until the sink has taken every message once; then again
// with a sink that fails each first attempt (every send retried once, after a 1 s backoff).
//
//   node scripts/bench-journeys.mjs [--people 300] [--per-request 10]
//
// It starts its own Worker (tests/support/worker.mjs) and sink with fresh local storage and contacts only
// 127.0.0.1. A build must exist (npm run build).
import { randomBytes } from 'node:crypto';
import { startWorker } from '../tests/support/worker.mjs';
import { startSink } from './webhook-sink.mjs';
import { arg } from './args.mjs';

const PEOPLE = arg('people', 300);
const PER_REQUEST = arg('per-request', 10);
const SECRET = `whsec_${randomBytes(24).toString('base64')}`;
const KEY = `bench-${randomBytes(16).toString('hex')}`;

const sink = await startSink({ secret: SECRET });
const config = {
  sources: [{ id: 'backend', type: 'server', key: KEY }],
  consent: { model: 'opt-out' },
  destinations: ['/ok', '/flaky'].map((path) => ({ id: path.slice(1), type: 'webhook', url: `${sink.url}${path}`,
    secretEnv: 'BENCH_SECRET', purpose: 'marketing', channel: 'email', backoff: '1s', attempts: 3 })),
  journeys: ['ok', 'flaky'].map((to) => ({ id: to, trigger: { event: `Go ${to}` }, reentry: 'always',
    steps: [{ id: 'send', send: to, event: 'Hello' }] })),
};
const w = await startWorker({ config, vars: { BENCH_SECRET: SECRET } });

async function run(to) {
  const start = performance.now();
  const before = sink.accepted.size;
  for (let i = 0; i < PEOPLE; i += PER_REQUEST) {
    const batch = [];
    for (let j = i; j < Math.min(PEOPLE, i + PER_REQUEST); j++) {
      batch.push({ type: 'track', event: `Go ${to}`, userId: `${to}-${process.pid}-${j}`, messageId: `${to}-${j}` });
    }
    // One request per person group: each person is its own profile object, so their sends are made in parallel.
    const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ writeKey: KEY, batch }) });
    if (r.status !== 200) throw new Error(`batch answered ${r.status}: ${await r.text()}`);
  }
  const sent = performance.now();
  const deadline = Date.now() + 300_000;
  while (sink.accepted.size - before < PEOPLE && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const done = performance.now();
  const took = sink.accepted.size - before;
  const invalid = sink.requests.filter((q) => !q.valid).length;
  if (took < PEOPLE || invalid) throw new Error(`${took} of ${PEOPLE} arrived, ${invalid} unsigned`);
  return { events: (sent - start) / 1000, total: (done - start) / 1000 };
}

try {
  const ok = await run('ok');
  console.log(`${PEOPLE} sends, sink always answering 200: events in ${ok.events.toFixed(1)} s, all delivered after ${ok.total.toFixed(1)} s: ${(PEOPLE / ok.total).toFixed(0)} sends/s`);
  // Every first attempt on /flaky fails: each message is retried once after 1 s.
  sink.fail('/flaky', PEOPLE, 503);
  const flaky = await run('flaky');
  console.log(`${PEOPLE} sends, every first attempt failing: all delivered after ${flaky.total.toFixed(1)} s: ${(PEOPLE / flaky.total).toFixed(0)} sends/s (${sink.requests.filter((q) => q.path === '/flaky').length} requests)`);
  const dup = sink.requests.filter((q) => q.status === 200).length - sink.accepted.size;
  console.log(`requests answered 200 beyond one per message: ${dup}`);
} finally {
  await w.stop();
  await sink.close();
}
