// Cold start: edgecdp against its floor (benches/floor/, the JavaScript Worker doing the same storage I/O), both
// under `wrangler dev` with fresh local storage, each started again and again (the runtime killed and launched on
// the same data), interleaved.
//
//   node scripts/bench-cold.mjs [--starts 12] [--settle 2500] [--startup 3] [--against DIR] [--rust-floor 1]
//                               [--assets 1]
//
// `--assets 0` removes `[assets]` from edgecdp's copy of wrangler.toml, as in bench-floor.mjs: with it, wrangler's
// local assets router (a Worker of its own, which the floors do not have) runs first, and starts cold too.
// `--against DIR` adds a Worker, interleaved with the others: another build of edgecdp (DIR holds its
// `index.js` and `index_bg.wasm`, such as the build/ of a worktree at an earlier commit, and its `edge.js` when
// its shell differs), for a change measured side by side. `--rust-floor 1` adds the Rust floor (benches/floor-rs/, built by scripts/build-floor-rs.sh): the
// JavaScript floor's same I/O through workers-rs, which tells what Rust and workers-rs cost by themselves.
//
// Per start, the client waits until wrangler says the Worker is loaded ("Ready on", before any request reaches
// it), then times the first request, in turn: `GET /healthz` (which reads nothing), a 10-event batch for a
// returning visitor, a decision for one (after `settle` ms, so that both read the visitor's KV snapshot). That
// first request pays what a new isolate pays on top of a warm one: V8 compiling the module and the functions it
// runs for the first time, the configuration read and compiled, the Durable Object started. Then `wrangler check startup` (run
// `--startup` times per Worker) gives the startup phase's CPU profile: its span and the time V8 was busy in it.
// edgecdp runs the demo configuration without its journeys and without the export's producer, as
// scripts/bench-floor.mjs does. Only 127.0.0.1 is contacted. A build must exist (npm run build).
import { readFileSync, rmSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { execFileSync } from 'node:child_process';
import { startWorker, GRANT } from '../tests/support/worker.mjs';
import { arg } from './args.mjs';
import { againstCopy, removeCopy, wranglerCopy } from './bench-wrangler.mjs';

const STARTS = arg('starts', 12);
const SETTLE = arg('settle', 2500);
const STARTUP = arg('startup', 3);
const AGAINST = process.argv.includes('--against') ? process.argv[process.argv.indexOf('--against') + 1] : null;
const RUST_FLOOR = arg('rust-floor', 0);
const ASSETS = arg('assets', 1);
const ROOT = join(import.meta.dirname, '..');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let sent = 0;
const batchBody = () => JSON.stringify({
  writeKey: 'demo',
  batch: Array.from({ length: 10 }, (_, j) => ({
    type: 'track', event: 'Product Viewed', anonymousId: 'cold-visitor', messageId: `cold-${Date.now()}-${sent++}-${j}`,
    properties: { category: j % 2 ? 'bags' : 'shoes', product_id: `sku-${j}`, price: 49.5 }, context: GRANT,
  })),
});
const decideBody = () => JSON.stringify({ anonymousId: 'cold-visitor', slots: ['hero'],
  context: { page: { path: '/shop/bags' } } });

async function timed(w, path, body) {
  const t0 = performance.now();
  const r = await fetch(`${w.url}${path}`, body === undefined ? {}
    : { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  await r.arrayBuffer();
  if (r.status !== 200) throw new Error(`${w.name} ${path} answered ${r.status}`);
  return performance.now() - t0;
}

/** `wrangler check startup`'s profile: its span, and the time it sampled JavaScript or Wasm running (neither
 * `(idle)` nor V8's own `(program)`), in ms. */
function startupProfile(config) {
  const dir = mkdtempSync(join(tmpdir(), 'edgecdp-startup-'));
  const out = join(dir, 'startup.cpuprofile');
  try {
    execFileSync(join(ROOT, 'node_modules/.bin/wrangler'), ['check', 'startup', '--config', config, '--outfile', out],
      { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: '1' } });
    const p = JSON.parse(readFileSync(out, 'utf8'));
    const idle = new Set(p.nodes.filter((n) => ['(idle)', '(program)'].includes(n.callFrame.functionName)).map((n) => n.id));
    let busy = 0;
    p.samples.forEach((id, i) => { if (!idle.has(id)) busy += p.timeDeltas[i] || 0; });
    return { span: (p.endTime - p.startTime) / 1000, busy: busy / 1000 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const demo = JSON.parse(readFileSync(join(ROOT, 'config/demo.json'), 'utf8'));
const wranglerConfig = wranglerCopy('bench-cold', { exportQueue: false, assets: Boolean(ASSETS) });
const againstConfig = AGAINST
  ? againstCopy('bench-cold-against', AGAINST, { exportQueue: false, assets: Boolean(ASSETS) })
  : null;
const edge = await startWorker({ config: { ...demo, journeys: [] }, wranglerConfig, logLevel: 'info' });
const floor = await startWorker({ wranglerConfig: 'benches/floor/wrangler.toml', config: null, logLevel: 'info' });
const against = AGAINST
  ? await startWorker({ config: { ...demo, journeys: [] }, wranglerConfig: againstConfig, logLevel: 'info' })
  : null;
const rustFloor = RUST_FLOOR
  ? await startWorker({ wranglerConfig: 'benches/floor-rs/wrangler.toml', config: null, logLevel: 'info' })
  : null;
edge.name = 'edgecdp';
floor.name = 'floor';
if (against) against.name = AGAINST;
if (rustFloor) rustFloor.name = 'Rust floor';
const extra = [against, rustFloor].filter(Boolean);
const workers = [edge, floor, ...extra];
try {
  for (const w of workers) await timed(w, '/v1/batch', batchBody());
  await sleep(SETTLE);
  const kinds = { healthz: ['/healthz'], batch: ['/v1/batch', batchBody], decide: ['/v1/decide', decideBody] };
  const first = {};
  for (const w of workers) first[w.name] = { healthz: [], batch: [], decide: [] };
  for (let s = 0; s < STARTS; s++) {
    const path = Object.keys(kinds)[s % 3];
    // Each start's order rotates, so that no Worker always goes first.
    const k = Math.floor(s / 3) % workers.length;
    for (const w of [...workers.slice(k), ...workers.slice(0, k)]) {
      await w.restartUnprobed();
      // wrangler says "Ready on" once its proxy and the runtime are up; a moment more for the Worker's load to end.
      await sleep(500);
      first[w.name][path].push(await timed(w, kinds[path][0], kinds[path][1]?.()));
      // The batch's snapshot reaches KV before the next start's decision reads it.
      if (path === 'batch') await sleep(SETTLE);
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`${STARTS} starts per Worker, interleaved; each start's first request timed (median, and range)`);
  const cell = (xs) => `${median(xs).toFixed(1)} ms (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`;
  console.log(`| first request after a start | edgecdp | floor | ratio |${extra.map((w) => ` ${w.name} | its ratio |`).join('')}`);
  console.log(`| --- | ---: | ---: | ---: |${extra.map(() => ' ---: | ---: |').join('')}`);
  for (const path of Object.keys(kinds)) {
    const [e, f] = [first.edgecdp[path], first.floor[path]];
    const others = extra.map((w) => ` ${cell(first[w.name][path])} | ${(median(first[w.name][path]) / median(f)).toFixed(2)} |`);
    console.log(`| \`${kinds[path][1] ? 'POST' : 'GET'} ${kinds[path][0]}\` | ${cell(e)} | ${cell(f)} | ` +
      `${(median(e) / median(f)).toFixed(2)} |${others.join('')}`);
  }
} finally {
  for (const w of workers) await w.stop();
  removeCopy(againstConfig);
}
try {
  console.log(`\n\`wrangler check startup\`, ${STARTUP} runs per Worker (span of the startup profile / JavaScript and Wasm running in it)`);
  const configs = [['edgecdp', wranglerConfig], ['floor', 'benches/floor/wrangler.toml']];
  if (rustFloor) configs.push(['Rust floor', 'benches/floor-rs/wrangler.toml']);
  for (const [name, config] of configs) {
    const runs = Array.from({ length: STARTUP }, () => startupProfile(config));
    console.log(`${name}: ${runs.map((r) => `${r.span.toFixed(1)} / ${r.busy.toFixed(1)} ms`).join(', ')}`);
  }
} finally {
  removeCopy(wranglerConfig);
}
