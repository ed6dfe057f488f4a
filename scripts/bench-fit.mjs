// The predictions' fit of 100,000 profiles in the Worker itself (issue 30): the summaries are written straight
// into the local D1 (`wrangler d1 execute --local`, as the index queue's consumer would have kept them), then
// `POST /v1/predictions/fit` runs the fit in workerd and is timed; the workerd process's peak memory (VmHWM) is
// read before and after. The population: people who buy every few weeks until they stop, with an e-mail channel.
//
//   node scripts/bench-fit.mjs [--people 100000]
import { writeFileSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { startWorker, workerdMemoryKB } from '../tests/support/worker.mjs';

const ROOT = new URL('..', import.meta.url).pathname;
const arg = (name, d) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? Number(process.argv[i + 1]) : d; };
const PEOPLE = arg('people', 100_000);
const DAY = 86_400_000;

let seed = 7;
const unit = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };

function summary(i, now) {
  const start = now - Math.floor(30 + unit() * 400) * DAY;
  const gap = 5 + unit() * 60;
  const stop = start + Math.floor(unit() * 500) * DAY;
  const level = 10 + unit() * 150;
  const days = [];
  for (let t = start; t < now && t <= stop; t += Math.floor(gap * (0.5 + unit()) * DAY)) days.push([t, Math.round(level * (0.5 + unit()) * 100) / 100]);
  const sends = Math.floor(unit() * 20);
  let responses = 0;
  for (let k = 0; k < sends; k++) if (unit() < 0.15) responses++;
  return { kind: 'predictions', profileId: `p_bench_${String(i).padStart(7, '0')}`, version: now,
    purchases: { first: days[0], folded: [0, 0], days: days.slice(1, 121) },
    channels: { email: { sends, responses, unsubscribes: 0, byPressure: [[sends, responses], [0, 0], [0, 0], [0, 0]] } } };
}

const w = await startWorker({ config: { sources: [{ id: 'web', writeKey: 'pk_bench_fit' }], consent: { model: 'opt-out' },
  predictions: { channels: { email: { responses: ['Email Opened'] } } } } });
try {
  // The tables exist once the index was opened: the first admin read makes sure of them.
  const first = await fetch(`${w.url}/v1/predictions`, { headers: { authorization: `Bearer ${w.adminToken}` } });
  if (first.status !== 200) throw new Error(`GET /v1/predictions: ${first.status} ${await first.text()}`);
  const now = Date.now();
  const sqlFile = join(w.state, 'summaries.sql');
  const rows = [];
  for (let i = 0; i < PEOPLE; i++) {
    const s = summary(i, now);
    if (!s.purchases.first) s.purchases = null;
    rows.push(`('${s.profileId}', ${now}, '${JSON.stringify(s).replaceAll("'", "''")}')`);
  }
  const statements = [];
  for (let i = 0; i < rows.length; i += 20) {
    statements.push(`INSERT INTO prediction_summaries (profile_id, version, body) VALUES ${rows.slice(i, i + 20).join(',')};`);
  }
  writeFileSync(sqlFile, statements.join('\n'));
  const t0 = Date.now();
  const r = spawnSync(join(ROOT, 'node_modules', '.bin', 'wrangler'), ['d1', 'execute', 'edgecdp', '--local',
    '--persist-to', w.state, '--file', sqlFile, '--yes'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, CI: '1' } });
  if (r.status !== 0) throw new Error(`d1 execute: ${r.stderr}`);
  rmSync(sqlFile);
  console.log(`${PEOPLE} summaries written to D1 in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  // wrangler dev may reload the local database it shares with the command above: ask until it answers.
  let listed;
  for (let tries = 0; !listed; tries++) {
    try {
      listed = await (await fetch(`${w.url}/v1/predictions`, { headers: { authorization: `Bearer ${w.adminToken}` } })).json();
    } catch (e) {
      if (tries >= 30) throw e;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  console.log(`summaries the Worker sees: ${listed.summaries}`);
  const before = workerdMemoryKB(w, 'VmHWM');
  const t1 = performance.now();
  const fit = await fetch(`${w.url}/v1/predictions/fit`, { method: 'POST', headers: { authorization: `Bearer ${w.adminToken}` } });
  const ms = performance.now() - t1;
  const body = await fit.json();
  const after = workerdMemoryKB(w, 'VmHWM');
  console.log(`POST /v1/predictions/fit: ${fit.status} in ${(ms / 1000).toFixed(2)} s; status ${body.status}; customers ${body.quality?.customers}; holdout AUC ${body.quality?.holdout?.auc}`);
  console.log(`workerd peak memory (VmHWM): ${(before / 1024).toFixed(0)} MB before, ${(after / 1024).toFixed(0)} MB after`);
  console.log(JSON.stringify({ bgnbd: body.quality?.bgnbd, gammaGamma: body.quality?.gammaGamma, failures: body.quality?.failures }));
} finally {
  await w.stop();
}
