// The largest stored profile an attacker can force: fills one profile past every budget the way the
// hostile-input probe did (long event names, big identify calls, many long history entries), then reads the
// size of the profile value in the Durable Object's local SQLite storage. `node scripts/largest-profile.mjs`
// after `npm run build`; prints one line per stage.
import { execFileSync } from 'node:child_process';
import { startWorker } from '../tests/support/worker.mjs';

const GRANT = { consent: { categoryPreferences: { analytics: true, personalization: true } } };
const w = await startWorker();
const post = async (batch, writeKey = 'demo') => {
  const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ writeKey, batch }) });
  const body = await r.json();
  if (r.status !== 200) throw new Error(`${r.status} ${JSON.stringify(body)}`);
  return (body.rejected || []).length;
};

/** The largest value any Durable Object holds under the key `profile`, in bytes. */
function largestProfileValue() {
  const script = `
import os, sqlite3, sys
best = 0
for d, _, fs in os.walk(sys.argv[1]):
    for f in fs:
        if f.endswith('.sqlite') and 'ProfileObject' in d:
            db = sqlite3.connect('file:' + os.path.join(d, f) + '?mode=ro', uri=True)
            try:
                for (v,) in db.execute("select value from _cf_KV where key = 'profile'"):
                    best = max(best, len(v))
            except sqlite3.Error:
                pass
            db.close()
print(best)`;
  return Number(execFileSync('python3', ['-c', script, w.state]).toString().trim());
}

try {
  const a = `attacker-${Date.now()}`;
  let refused = 0;
  for (let round = 0; round < 10; round++) {
    refused += await post(Array.from({ length: 200 }, (_, i) => ({ type: 'track', anonymousId: a, context: GRANT,
      event: `${round}-${i}-${'n'.repeat(900)}`, properties: { p: 'x'.repeat(200) } })));
  }
  console.log(`2,000 long event names: ${refused} refused, stored profile ${largestProfileValue()} bytes`);
  refused = 0;
  for (let round = 0; round < 5; round++) {
    refused += await post(Array.from({ length: 18 }, (_, i) => ({ type: 'identify', anonymousId: a, context: GRANT,
      traits: Object.fromEntries(Array.from({ length: 24 }, (_, k) => [`r${round}i${i}k${k}`, 'v'.repeat(1000)])) })));
  }
  console.log(`90 identify calls of 24 KB of traits: ${refused} refused, stored profile ${largestProfileValue()} bytes`);
  refused = 0;
  for (let round = 0; round < 10; round++) {
    refused += await post(Array.from({ length: 100 }, (_, i) => ({ type: 'track', anonymousId: a, context: GRANT,
      event: `0-${i}-${'n'.repeat(900)}`, properties: Object.fromEntries(Array.from({ length: 20 }, (_, k) => [`k${k}`, `v${round}-${i}`])) })));
  }
  console.log(`1,000 more events with 20 properties: ${refused} refused, stored profile ${largestProfileValue()} bytes (bound: ${112 * 1024})`);
} finally {
  await w.stop();
}
