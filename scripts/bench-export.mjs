// The export end to end through wrangler dev on loopback: events collected at a steady rate (`POST /v1/batch` from
// a server source, 10 events a request over many people), then each row's way to a file in R2 (the profile's
// object, the export Queue, the consumer, the D1 ledger). Reports the rate collected, the rows exported per second
// while the load ran, each file's lag (from its oldest row's storing to its write, from the ledger), and how long
// after the last event every row was in a file.
//
//   node scripts/bench-export.mjs [--rate 1000] [--seconds 30] [--people 2000] [--export 1|0]
//
// --export 0 runs the same load without the export queue's binding (nothing exported), for the cost of the export
// on collection side by side. It starts its own Worker (tests/support/worker.mjs) with fresh local storage and
// contacts only 127.0.0.1; EDGECDP_STATE_DIR=/dev/shm/... keeps local storage in memory. A build must exist.
import { randomBytes } from 'node:crypto';
import { startWorker } from '../tests/support/worker.mjs';
import { arg } from './args.mjs';
import { removeCopy, wranglerCopy } from './bench-wrangler.mjs';

const RATE = arg('rate', 1000);
const SECONDS = arg('seconds', 30);
const PEOPLE = arg('people', 2000);
const EXPORT = arg('export', 1) === 1;
const PER_REQUEST = 10;
const KEY = `bench-${randomBytes(16).toString('hex')}`;

const config = {
  sources: [{ id: 'backend', type: 'server', key: KEY }],
  consent: { model: 'opt-out' },
  segments: [{ id: 'buyers', when: { event: 'Order Completed', count: { gte: 2 }, within: '30d' } }],
};
// Without the export: the same Worker under a wrangler.toml that lacks the export queue's producer binding.
const wranglerConfig = EXPORT ? undefined : wranglerCopy('bench-no-export', { exportQueue: false });
const w = await startWorker({ config, wranglerConfig });
const auth = { authorization: `Basic ${Buffer.from(`${KEY}:`).toString('base64')}`, 'content-type': 'application/json' };
const admin = { authorization: `Bearer ${w.adminToken}` };
try {
  const requests = Math.round((RATE * SECONDS) / PER_REQUEST);
  const interval = 1000 / (RATE / PER_REQUEST);
  const started = Date.now();
  let sent = 0;
  let failed = 0;
  let tracks = 0;
  const statuses = {};
  const inflight = new Set();
  for (let i = 0; i < requests; i++) {
    // Paced: request i leaves at its own instant (or as soon as the one before allows, when the Worker is slower).
    const due = started + i * interval;
    if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    // One person's batch, as a page's tracker or a server's queue sends it.
    const userId = `u${i % PEOPLE}`;
    let batchTracks = 0;
    const batch = Array.from({ length: PER_REQUEST }, (_, j) => {
      const n = i * PER_REQUEST + j;
      const kind = n % 5;
      if (kind !== 4) batchTracks++;
      return kind === 4
        ? { type: 'page', userId, name: 'Home', messageId: `m${n}`, properties: { path: '/' } }
        : { type: 'track', userId, event: kind === 0 ? 'Order Completed' : 'Product Viewed', messageId: `m${n}`,
          properties: { revenue: 10 + (n % 7), product_id: `p${n % 50}` } };
    });
    const p = fetch(`${w.url}/v1/batch`, { method: 'POST', headers: auth, body: JSON.stringify({ batch }) })
      .then((r) => {
        if (r.status === 200) { sent += PER_REQUEST; tracks += batchTracks; } else { failed++; statuses[r.status] = (statuses[r.status] ?? 0) + 1; }
        return r.arrayBuffer();
      })
      .catch(() => { failed++; })
      .finally(() => inflight.delete(p));
    inflight.add(p);
    if (inflight.size >= 64) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  const loadEnded = Date.now();
  const collected = sent / ((loadEnded - started) / 1000);
  console.log(`collected ${sent} events in ${((loadEnded - started) / 1000).toFixed(1)} s: ${collected.toFixed(0)} events/s `
    + `(target ${RATE}), ${failed} requests failed ${JSON.stringify(statuses)}`);
  if (EXPORT) await exported(started, loadEnded, tracks, sent, collected);
} finally {
  await w.stop();
  removeCopy(wranglerConfig);
}

/** Waits (bounded) until every track collected is in a file, then reports the export's figures. */
async function exported(started, loadEnded, tracks, sent, collected) {
  // Every track in a file: poll the ledger's counts (bounded).
  let summary;
  const deadline = Date.now() + 600_000;
  for (;;) {
    summary = await (await fetch(`${w.url}/v1/export?limit=1000`, { headers: admin })).json();
    const rows = Object.fromEntries((summary.tables ?? []).map((t) => [t.table, t.rows]));
    if ((rows.tracks ?? 0) >= tracks || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const done = Date.now();
  const rows = summary.tables.reduce((n, t) => n + t.rows, 0);
  const files = summary.tables.reduce((n, t) => n + t.files, 0);
  const bytes = summary.tables.reduce((n, t) => n + t.bytes, 0);
  const lags = [];
  for (let offset = 0; ; offset += 1000) {
    const page = (await (await fetch(`${w.url}/v1/export?limit=1000&offset=${offset}`, { headers: admin })).json()).files;
    lags.push(...page.map((f) => f.lag_ms));
    if (page.length < 1000) break;
  }
  lags.sort((a, b) => a - b);
  const q = (p) => lags[Math.min(lags.length - 1, Math.floor(p * lags.length))];
  const exportedTracks = summary.tables.find((t) => t.table === 'tracks')?.rows ?? 0;
  console.log(JSON.stringify({ rate: RATE, seconds: SECONDS, people: PEOPLE, sent, collected: Math.round(collected),
    tracks, exportedTracks, rows, files, gzipBytes: bytes,
    rowsPerSecond: Math.round(rows / ((done - started) / 1000)),
    lagMs: { p50: q(0.5), p95: q(0.95), max: lags.at(-1) },
    allInFilesAfterLastEventMs: done - loadEnded }, null, 1));
}
