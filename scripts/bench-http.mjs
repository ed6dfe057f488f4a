// Load benchmark of the edge through wrangler dev on loopback: a bounded number of POST /v1/batch requests
// (each a batch of EVENTS events for one of VISITORS visitors) at a fixed concurrency, then a bounded
// number of POST /v1/decide requests. Prints events per second and latency percentiles.
//
//   node scripts/bench-http.mjs [--requests 2000] [--concurrency 16] [--events 10] [--visitors 200] [--settle 0]
//                               [--journeys 1]
//
// `--journeys 0` loads the demo configuration without its journeys: the same run side by side shows what journeys
// cost a batch (the demo's `fourth-view` journey sends to a marketing destination the benchmark's visitors never
// consented to, so every such send is refused when it is queued).
//
// `--settle MS` waits that long between the batch and the decide phases. Decisions read a profile's KV snapshot,
// or its Durable Object when the snapshot is under 2 s old (a newer write may be due): `--settle 2500` measures
// the settled path alone.
//
// It starts its own Worker (tests/support/worker.mjs) with fresh local storage, and sends nothing anywhere but
// 127.0.0.1. A build must exist (npm run build).
import { readFileSync } from 'node:fs';
import { startWorker, GRANT } from '../tests/support/worker.mjs';
import { arg } from './args.mjs';
import { treeCpuMs } from './cpu.mjs';

const REQUESTS = arg('requests', 2000);
const CONCURRENCY = arg('concurrency', 16);
const EVENTS = arg('events', 10);
const VISITORS = arg('visitors', 200);
const SETTLE = arg('settle', 0);
const JOURNEYS = arg('journeys', 1);

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function run(label, count, makeRequest) {
  const latencies = [];
  let next = 0;
  let failures = 0;
  const started = performance.now();
  async function worker() {
    while (next < count) {
      const i = next++;
      const t0 = performance.now();
      const r = await makeRequest(i);
      await r.arrayBuffer();
      if (r.status !== 200) failures++;
      latencies.push(performance.now() - t0);
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { label, count, seconds, failures, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

const demo = JSON.parse(readFileSync(new URL('../config/demo.json', import.meta.url), 'utf8'));
const w = await startWorker({ config: JOURNEYS ? demo : { ...demo, journeys: [] } });
try {
  const batchBody = (i) => {
    const visitor = `bench-${i % VISITORS}`;
    const batch = Array.from({ length: EVENTS }, (_, j) => ({
      type: 'track', event: 'Product Viewed', anonymousId: visitor, messageId: `bench-${i}-${j}`,
      properties: { category: j % 2 ? 'bags' : 'shoes', product_id: `sku-${j}`, price: 49.5 }, context: GRANT,
    }));
    return JSON.stringify({ writeKey: 'demo', batch });
  };
  // Warm-up: one request per visitor, so every profile and its Durable Object exists.
  await run('warm-up', VISITORS, (i) => fetch(`${w.url}/v1/batch`, { method: 'POST', body: batchBody(i) }));
  const cpu0 = treeCpuMs(w.pid);
  const collect = await run('POST /v1/batch', REQUESTS, (i) =>
    fetch(`${w.url}/v1/batch`, { method: 'POST', body: batchBody(i + VISITORS) }));
  // What the batches set off in the queues' consumers is theirs too: their CPU counts until the queues are quiet.
  await new Promise((r) => setTimeout(r, 3000));
  const batchCpuMs = (treeCpuMs(w.pid) - cpu0) / REQUESTS;
  await new Promise((r) => setTimeout(r, SETTLE));
  const decide = await run('POST /v1/decide', REQUESTS, (i) =>
    fetch(`${w.url}/v1/decide`, { method: 'POST',
      body: JSON.stringify({ anonymousId: `bench-${i % VISITORS}`, slots: ['hero'] }) }));
  const fmt = (r) => `${r.label}: ${r.count} requests in ${r.seconds.toFixed(1)} s, ` +
    `${(r.count / r.seconds).toFixed(0)} req/s, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, ${r.failures} non-200`;
  console.log(fmt(collect));
  console.log(`  = ${((collect.count * EVENTS) / collect.seconds).toFixed(0)} events/s (${EVENTS} events per request, ` +
    `${VISITORS} visitors, concurrency ${CONCURRENCY}, journeys ${JOURNEYS ? 'on' : 'off'}); ` +
    `Worker CPU ${batchCpuMs.toFixed(2)} ms per request, its queues' consumers included`);
  console.log(fmt(decide));
  if (collect.failures || decide.failures) process.exitCode = 1;
} finally {
  await w.stop();
}
