// Import jobs end to end through wrangler dev on loopback: rows per second from the upload's first byte until the
// job is done (the file streamed into local R2 and split, its chunks through the local Queue to this Worker's
// consumer, applied through the profiles' Durable Objects), and every KV write the Worker logs checked against
// KV's one write a second per key.
//
//   node scripts/bench-import.mjs [--rows 100000] [--people 10000] [--grouped 0|1] [--segments 1|0] [--log-kv 1|0]
//                                 [--floor 0|1] [--edgecdp 1|0]
//
// --floor 1 then imports the same file into the JavaScript floor (benches/floor/worker.js: the same R2, Queue,
// D1, KV and Durable Object I/O per chunk and per person, and nothing else) under the same wrangler, and prints
// the ratio. EDGECDP_STATE_DIR=/dev/shm/... keeps the local storage in memory (see BENCHMARKS.md: on this
// machine's disk, each new Durable Object's SQLite file and its syncs cost more than everything else).
//
// The file is NDJSON of Segment events over the past year, by default in time order (each person's rows spread
// through the file, as an event export is); --grouped 1 writes each person's rows together (a per-customer
// export). It starts its own Worker (tests/support/worker.mjs) with fresh local storage and contacts only
// 127.0.0.1. A build must exist (npm run build).
import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { startWorker } from '../tests/support/worker.mjs';
import { arg } from './args.mjs';

const ROWS = arg('rows', 100_000);
const PEOPLE = arg('people', 10_000);
const GROUPED = arg('grouped', 0) === 1;
const KEY = `bench-${randomBytes(16).toString('hex')}`;
const DAY = 86_400_000;

// Every KV write the Worker logs (`kv-write <ms> <key>`), by key: the last time, and how often one came within a
// second of the one before.
const last = new Map();
let writes = 0;
let doubled = 0;
let pending = '';
const onLog = (text) => {
  if (process.env.BENCH_LOG) appendFileSync(process.env.BENCH_LOG, text);
  pending += text;
  const lines = pending.split('\n');
  pending = lines.pop();
  for (const line of lines) {
    // eslint-disable-next-line no-control-regex
    const m = line.replace(/\x1b\[[0-9;]*m/g, '').match(/kv-write (\d+) (\S+)/);
    if (!m) continue;
    const [at, key] = [Number(m[1]), m[2]];
    writes++;
    if (last.has(key) && at - last.get(key) < 1000) doubled++;
    last.set(key, at);
  }
};
const config = {
  sources: [{ id: 'backend', type: 'server', key: KEY }],
  consent: { model: 'opt-out' },
  // One audience (`--segments 0`: none), so that each profile written also feeds the membership index in D1.
  segments: arg('segments', 1) ? [{ id: 'buyers', when: { event: 'Order Completed', count: { gte: 2 }, within: '365d' } }] : [],
};
const LOG = arg('log-kv', 1) === 1;
const now = Date.now();
const lines = [];
for (let i = 0; i < ROWS; i++) {
  const person = GROUPED ? Math.floor(i / Math.ceil(ROWS / PEOPLE)) : i % PEOPLE;
  const event = i % 3 === 0 ? 'Order Completed' : 'Product Viewed';
  lines.push(JSON.stringify({ type: 'track', event, userId: `bench-${person}`, messageId: `m-${i}`,
    timestamp: new Date(now - 365 * DAY + Math.floor((i / ROWS) * 360 * DAY)).toISOString(),
    properties: event === 'Order Completed' ? { revenue: 10 + (i % 50) } : { sku: `sku-${i % 200}` } }));
}
if (GROUPED) lines.sort((a, b) => a.localeCompare(b));
const body = `${lines.join('\n')}\n`;

/** The file through one Worker's import, timed from the upload's first byte until its job is done. */
async function importInto(w, headers) {
  const started = performance.now();
  const r = await fetch(`${w.url}/v1/imports`, { method: 'POST', body, headers: { 'content-type': 'application/x-ndjson', ...headers } });
  const created = await r.json();
  if (r.status !== 202) throw new Error(`upload: ${r.status} ${JSON.stringify(created)}`);
  const uploaded = performance.now();
  let job = created;
  const until = Date.now() + arg('minutes', 30) * 60_000;
  while (!['done', 'failed', 'cancelled'].includes(job.state) && Date.now() < until) {
    await new Promise((res) => setTimeout(res, 200));
    const asked = performance.now();
    job = await (await fetch(`${w.url}/v1/imports/${created.id}`, { headers })).json();
    if (process.env.BENCH_VERBOSE) console.error(`${Math.round(performance.now() - started)} ms: ${JSON.stringify(job.chunks)} ${JSON.stringify(job.rows)} (asked in ${Math.round(performance.now() - asked)} ms)`);
  }
  const done = performance.now();
  if (job.state !== 'done') {
    // eslint-disable-next-line no-control-regex
    console.error(w.logs.join('').replace(/\x1b\[[0-9;]*m/g, '').split('\n').filter((l) => /error|import chunk/i.test(l)).slice(-20).join('\n'));
  }
  const seconds = (done - started) / 1000;
  return { job, uploadSeconds: Number(((uploaded - started) / 1000).toFixed(2)), totalSeconds: Number(seconds.toFixed(2)),
    rowsPerSecond: Math.round(ROWS / seconds) };
}

let edgecdp;
const w = arg('edgecdp', 1) === 1 && await startWorker({ config, vars: LOG ? { EDGECDP_LOG_KV_WRITES: '1' } : {}, onLog });
if (w) try {
  edgecdp = await importInto(w, { authorization: `Basic ${Buffer.from(`${KEY}:`).toString('base64')}` });
  // The snapshots a profile defers (written again within a second) go from its alarm: wait for them.
  if (LOG) await new Promise((res) => setTimeout(res, 3000));
  const { job } = edgecdp;
  console.log(JSON.stringify({
    rows: ROWS, people: PEOPLE, order: GROUPED ? 'grouped by person' : 'time order', bytes: body.length,
    segments: config.segments.length, storage: process.env.EDGECDP_STATE_DIR ? `${process.env.EDGECDP_STATE_DIR} (memory)` : 'tests/.tmp (disk)',
    chunks: job.chunks, state: job.state, counts: job.rows,
    uploadSeconds: edgecdp.uploadSeconds, totalSeconds: edgecdp.totalSeconds, rowsPerSecond: edgecdp.rowsPerSecond,
    kvWrites: LOG ? writes : 'not logged (--log-kv 0)', kvKeysWrittenTwiceWithinASecond: LOG ? doubled : 'not logged',
  }, null, 2));
} finally {
  await w.stop();
}
if (arg('floor', 0) === 1 || !w) {
  const f = await startWorker({ wranglerConfig: 'benches/floor/wrangler.toml', config: null });
  try {
    const floor = await importInto(f, {});
    if (floor.job.rows.applied !== ROWS) throw new Error(`the floor applied ${JSON.stringify(floor.job.rows)}`);
    console.log(JSON.stringify({ floor: { chunks: floor.job.chunks, uploadSeconds: floor.uploadSeconds,
      totalSeconds: floor.totalSeconds, rowsPerSecond: floor.rowsPerSecond },
    edgecdpOverFloorTime: edgecdp && Number((edgecdp.totalSeconds / floor.totalSeconds).toFixed(2)) }, null, 2));
  } finally {
    await f.stop();
  }
}

