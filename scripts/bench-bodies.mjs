// What a hostile caller costs the Worker under workerd (`node scripts/bench-bodies.mjs`): a maximal gzip bomb (as
// large a body as the batch limit lets through, inflating a thousandfold) and a 150 MB chunked body with no
// Content-Length, each sent 5 times. Prints the time to the 413 (median and worst) and workerd's resident memory
// (VmRSS) above what it held idle, after each kind, and its peak (VmHWM) over the run. Then what the guard against
// guessing the admin token adds to an admin request: 200 sign-ins with a wrong token (judged, so reported to the
// guard object) against 200 without one (refused before the guard), alternated, each from its own address.
// Loopback only, bounded.
import { request } from 'node:http';
import { gzipSync } from 'node:zlib';
import { startWorker, workerdMemoryKB } from '../tests/support/worker.mjs';

const w = await startWorker({ config: null });
const port = new URL(w.url).port;
const kb = (field) => workerdMemoryKB(w, field);
const load = (n) => Promise.all(Array.from({ length: n }, () => fetch(`${w.url}/healthz`)));

function send(headers, write) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const ms = () => Number(process.hrtime.bigint() - started) / 1e6;
    // A fresh connection each, given up after 20 s: wrangler dev's proxy may drop a body the Worker cancelled.
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/batch', headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode, ms: ms() }));
    });
    req.on('error', (e) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? resolve({ status: e.code, ms: ms() }) : reject(e)));
    setTimeout(() => { req.destroy(); resolve({ status: 'no answer in 20 s', ms: ms() }); }, 20_000).unref();
    write(req);
  });
}

const bomb = gzipSync(Buffer.alloc(480 * 1024 * 1024), { level: 9 });
const chunk = Buffer.alloc(1024 * 1024, 0x61);
const kinds = {
  [`gzip bomb (${(bomb.length / 1024).toFixed(0)} KB inflating to 480 MB)`]: (req) => req.end(bomb),
  '150 MB chunked body, no Content-Length': (req) => {
    let sent = 0;
    let answered = false;
    req.on('response', () => { answered = true; });
    const pump = () => {
      while (sent < 150 && !answered && !req.destroyed) {
        sent += 1;
        if (!req.write(chunk)) return req.once('drain', pump);
      }
      req.end();
    };
    pump();
  },
};
const headers = {
  [Object.keys(kinds)[0]]: { 'content-encoding': 'gzip', 'content-type': 'application/json' },
  [Object.keys(kinds)[1]]: { 'transfer-encoding': 'chunked', 'content-type': 'application/json' },
};
await load(20);
await new Promise((r) => setTimeout(r, 500));
const idle = kb('VmRSS');
console.log(`workerd idle: ${(idle / 1024).toFixed(1)} MB resident`);
for (const [name, write] of Object.entries(kinds)) {
  const times = [];
  const answers = {};
  for (let i = 0; i < 5; i += 1) {
    const r = await send(headers[name], write);
    answers[r.status] = (answers[r.status] || 0) + 1;
    times.push(r.ms);
  }
  times.sort((a, b) => a - b);
  const after = kb('VmRSS');
  console.log(`${name}: answers ${JSON.stringify(answers)} in ${times[2].toFixed(1)} ms median, ${times[4].toFixed(1)} ms worst; ` +
    `resident ${((after - idle) / 1024).toFixed(2)} MB above idle after 5`);
}
console.log(`workerd peak resident over the run: ${((kb('VmHWM') - idle) / 1024).toFixed(2)} MB above idle`);

const signIn = async (body, i) => {
  const started = process.hrtime.bigint();
  const r = await fetch(`${w.url}/v1/session`, { method: 'POST', body: JSON.stringify(body),
    headers: { origin: w.url, 'content-type': 'application/json', 'cf-connecting-ip': `198.18.${i >> 8 & 255}.${i & 255}` } });
  await r.arrayBuffer();
  return { status: r.status, ms: Number(process.hrtime.bigint() - started) / 1e6 };
};
const guarded = [];
const unguarded = [];
for (let i = 0; i < 200; i += 1) {
  const a = await signIn({ token: `wrong-${i}` }, i);
  const b = await signIn({}, i);
  if (a.status !== 401 || b.status !== 400) throw new Error(`unexpected ${a.status} / ${b.status}`);
  guarded.push(a.ms);
  unguarded.push(b.ms);
}
const median = (xs) => xs.sort((x, y) => x - y)[xs.length >> 1];
console.log(`admin sign-in judged (through the guard object): ${median(guarded).toFixed(2)} ms median; ` +
  `refused before it: ${median(unguarded).toFixed(2)} ms median; the guard adds ${(median(guarded) - median(unguarded)).toFixed(2)} ms`);
await w.stop();
