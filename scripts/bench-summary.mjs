// What `GET /v1/decide/summary` costs the edge: a visitor with a full history on the demo configuration, asked for
// their summary again and again (one client), timed at the client and in the Worker's CPU.
//
//   node scripts/bench-summary.mjs [--events 200] [--requests 300] [--warmup 30]
//
// It starts its own Worker (tests/support/worker.mjs, fresh local storage). The CPU is the process tree's
// (wrangler and workerd), from /proc, per request. Only 127.0.0.1 is contacted. A build must exist
import { startWorker } from '../tests/support/worker.mjs';
import { sendViews } from './history.mjs';
import { treeCpuMs } from './cpu.mjs';
import { arg } from './args.mjs';

const EVENTS = arg('events', 200);
const REQUESTS = arg('requests', 300);
const WARMUP = arg('warmup', 30);

const w = await startWorker();
try {
  const visitor = 'bench-summary';
  await sendViews(w, visitor, EVENTS);
  // Past the object's 2 s window, so that the summary reads the KV snapshot as a page's would.
  await new Promise((r) => setTimeout(r, 2500));
  const url = `${w.url}/v1/decide/summary?anonymousId=${visitor}&personalization=true`;
  let bytes = 0;
  for (let i = 0; i < WARMUP; i++) bytes = (await (await fetch(url)).text()).length;
  const times = [];
  const cpu0 = treeCpuMs(w.pid);
  for (let i = 0; i < REQUESTS; i++) {
    const t = performance.now();
    const r = await fetch(url);
    await r.text();
    times.push(performance.now() - t);
    if (r.status !== 200) throw new Error(`summary answered ${r.status}`);
  }
  const cpu = (treeCpuMs(w.pid) - cpu0) / REQUESTS;
  times.sort((a, b) => a - b);
  console.log(`GET /v1/decide/summary, ${EVENTS} events in the history: p50 ${times[times.length >> 1].toFixed(2)} ms, ` +
    `p90 ${times[Math.floor(times.length * 0.9)].toFixed(2)} ms, Worker CPU ${cpu.toFixed(2)} ms a request, ${bytes} bytes`);
} finally {
  await w.stop();
}
