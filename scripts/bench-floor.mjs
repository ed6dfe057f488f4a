// edgecdp against its floor: the JavaScript Worker in benches/floor/ that does the same storage I/O as edgecdp's
// collection and decision paths for a returning visitor and nothing else, both under `wrangler dev` (the same
// wrangler, the same workerd binary, fresh local storage each), measured in interleaved rounds on loopback.
//
//   node scripts/bench-floor.mjs [--rounds 6] [--requests 100] [--visitors 50] [--events 10] [--settle 2500]
//                                [--journeys 0] [--export 0] [--assets 1] [--rust-floor 0] [--against DIR]
//
// `--rust-floor 1` adds a third Worker in the same rounds: the Rust floor (benches/floor-rs/, built by
// scripts/build-floor-rs.sh), the JavaScript floor's same I/O through workers-rs, which tells what Rust and
// workers-rs cost by themselves and what edgecdp's own code costs beyond them. `--against DIR` adds another build
// of edgecdp in the same rounds (as in scripts/bench-cold.mjs), for a change measured side by side.
//
// Both sides do the same work: the floor runs no journeys and exports nothing, so by default edgecdp runs the demo
// configuration without its journeys and without the export's queue producer (the binding removed from a copy of
// wrangler.toml, which is how a deployment turns the export off). `--journeys 1` and `--export 1` put each back,
// to state what it adds. `--assets 0` also removes the `[assets]` section, so that wrangler's local assets router
// (which the floor does not have) no longer stands in front of edgecdp's `/v1/*` routes.
//
// One client at a time (latency, not throughput): each round sends `requests` batches (`events` track events
// for one of `visitors` returning visitors) then `requests` decisions to one Worker, then the same to the other,
// alternating which goes first. Decisions wait `settle` ms after the batches: edgecdp reads a profile younger
// than 2 s from its Durable Object rather than its KV snapshot (a newer write may be due), which the floor,
// reading KV alone, never does; settled, both read the same three KV keys. Figures: the median latency over all
// rounds, and the CPU time per request of the Worker's whole process tree (wrangler and workerd, from /proc), which includes the local KV and Durable
// Object emulation both share, so the difference between the two is edgecdp's own CPU per request.
// Only 127.0.0.1 is contacted. A build must exist (npm run build).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startWorker, GRANT } from '../tests/support/worker.mjs';
import { arg } from './args.mjs';
import { againstCopy, removeCopy, wranglerCopy } from './bench-wrangler.mjs';
import { treeCpuMs } from './cpu.mjs';

const ROUNDS = arg('rounds', 6);
const REQUESTS = arg('requests', 100);
const VISITORS = arg('visitors', 50);
const EVENTS = arg('events', 10);
const SETTLE = arg('settle', 2500);
const JOURNEYS = arg('journeys', 0);
const EXPORT = arg('export', 0);
const ASSETS = arg('assets', 1);
const RUST_FLOOR = arg('rust-floor', 0);
const AGAINST = process.argv.includes('--against') ? process.argv[process.argv.indexOf('--against') + 1] : null;
const ROOT = join(import.meta.dirname, '..');
let sent = 0;
const batchBody = (visitor) => JSON.stringify({
  writeKey: 'demo',
  batch: Array.from({ length: EVENTS }, (_, j) => ({
    type: 'track', event: 'Product Viewed', anonymousId: `floor-${visitor}`, messageId: `floor-${sent++}-${j}`,
    properties: { category: j % 2 ? 'bags' : 'shoes', product_id: `sku-${j}`, price: 49.5 }, context: GRANT,
  })),
});
const decideBody = (visitor) => JSON.stringify({ anonymousId: `floor-${visitor}`, slots: ['hero'],
  context: { page: { path: '/shop/bags' } } });

async function send(w, path, body) {
  const t0 = performance.now();
  const r = await fetch(`${w.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  await r.arrayBuffer();
  if (r.status !== 200) throw new Error(`${w.name} ${path} answered ${r.status}`);
  return performance.now() - t0;
}

async function phase(w, path, makeBody, into) {
  const cpu0 = treeCpuMs(w.pid);
  for (let i = 0; i < REQUESTS; i++) into.latencies.push(await send(w, path, makeBody(i % VISITORS)));
  into.cpuMs += treeCpuMs(w.pid) - cpu0;
  into.count += REQUESTS;
}

const demo = JSON.parse(readFileSync(join(ROOT, 'config/demo.json'), 'utf8'));
const wranglerConfig = !EXPORT || !ASSETS
  ? wranglerCopy('bench-floor', { exportQueue: Boolean(EXPORT), assets: Boolean(ASSETS) })
  : undefined;
const edge = await startWorker({ config: JOURNEYS ? demo : { ...demo, journeys: [] }, wranglerConfig });
const floor = await startWorker({ wranglerConfig: 'benches/floor/wrangler.toml', config: null });
const rustFloor = RUST_FLOOR ? await startWorker({ wranglerConfig: 'benches/floor-rs/wrangler.toml', config: null }) : null;
const againstConfig = AGAINST
  ? againstCopy('bench-floor-against', AGAINST, { exportQueue: Boolean(EXPORT), assets: Boolean(ASSETS) })
  : undefined;
const against = AGAINST
  ? await startWorker({ config: JOURNEYS ? demo : { ...demo, journeys: [] }, wranglerConfig: againstConfig })
  : null;
edge.name = 'edgecdp';
floor.name = 'floor';
if (rustFloor) rustFloor.name = 'Rust floor';
if (against) against.name = AGAINST;
const all = [edge, floor, ...[rustFloor, against].filter(Boolean)];
try {
  // Every visitor exists in each before anything is measured.
  for (const w of all) for (let v = 0; v < VISITORS; v++) await send(w, '/v1/batch', batchBody(v));
  const figures = {};
  for (const w of all) {
    figures[w.name] = { batch: { latencies: [], cpuMs: 0, count: 0 }, decide: { latencies: [], cpuMs: 0, count: 0 } };
  }
  for (let r = 0; r < ROUNDS; r++) {
    // Each round's order rotates, so that no Worker always goes first.
    for (const w of [...all.slice(r % all.length), ...all.slice(0, r % all.length)]) {
      await phase(w, '/v1/batch', batchBody, figures[w.name].batch);
      await new Promise((resolve) => setTimeout(resolve, SETTLE));
      await phase(w, '/v1/decide', decideBody, figures[w.name].decide);
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`${ROUNDS} interleaved rounds of ${REQUESTS} requests per path and Worker, one client, ${VISITORS} ` +
    `returning visitors, ${EVENTS} events per batch; edgecdp's journeys ${JOURNEYS ? 'on' : 'off'}, export ` +
    `${EXPORT ? 'on' : 'off'}`);
  console.log('| path | edgecdp p50 | floor p50 | ratio | edgecdp CPU/request | floor CPU/request | overhead |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const path of ['batch', 'decide']) {
    const e = figures.edgecdp[path];
    const f = figures.floor[path];
    const [pe, pf] = [median(e.latencies), median(f.latencies)];
    const [ce, cf] = [e.cpuMs / e.count, f.cpuMs / f.count];
    console.log(`| \`POST /v1/${path}\` | ${pe.toFixed(2)} ms | ${pf.toFixed(2)} ms | ${(pe / pf).toFixed(2)} | ` +
      `${ce.toFixed(2)} ms | ${cf.toFixed(2)} ms | +${(ce - cf).toFixed(2)} ms |`);
  }
  if (against) {
    console.log(`\n| path | ${AGAINST} p50 | its ratio to the floor | its CPU/request | its CPU ratio | edgecdp CPU / its CPU |`);
    console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
    for (const path of ['batch', 'decide']) {
      const [e, f, a] = [figures.edgecdp[path], figures.floor[path], figures[AGAINST][path]];
      const [pa, pf] = [median(a.latencies), median(f.latencies)];
      const [ce, cf, ca] = [e.cpuMs / e.count, f.cpuMs / f.count, a.cpuMs / a.count];
      console.log(`| \`POST /v1/${path}\` | ${pa.toFixed(2)} ms | ${(pa / pf).toFixed(2)} | ${ca.toFixed(2)} ms | ` +
        `${(ca / cf).toFixed(2)} | ${(ce / ca).toFixed(2)} |`);
    }
  }
  if (rustFloor) {
    console.log('\n| path | Rust floor p50 | its ratio to the floor | Rust floor CPU/request | its CPU ratio | edgecdp CPU / Rust floor CPU |');
    console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
    for (const path of ['batch', 'decide']) {
      const [e, f, r] = [figures.edgecdp[path], figures.floor[path], figures['Rust floor'][path]];
      const [pr, pf] = [median(r.latencies), median(f.latencies)];
      const [ce, cf, cr] = [e.cpuMs / e.count, f.cpuMs / f.count, r.cpuMs / r.count];
      console.log(`| \`POST /v1/${path}\` | ${pr.toFixed(2)} ms | ${(pr / pf).toFixed(2)} | ${cr.toFixed(2)} ms | ` +
        `${(cr / cf).toFixed(2)} | ${(ce / cr).toFixed(2)} |`);
    }
  }
} finally {
  await floor.stop();
  await edge.stop();
  if (rustFloor) await rustFloor.stop();
  if (against) await against.stop();
  removeCopy(wranglerConfig);
  removeCopy(againstConfig);
}
