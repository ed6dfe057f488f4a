// A webhook receiver for journeys' destinations: it verifies each request's Standard Webhooks signature
// (`webhook-id`, `webhook-timestamp`, `webhook-signature`: HMAC-SHA256 over `id.timestamp.body`, base64, `v1,`
// prefixed, keyed by the base64 after `whsec_`), takes each message once by its `webhook-id` (its idempotency
// key), and can be told to fail or stall a path, as real receivers do. Tests start one per file
// (tests/e2e/journeys.test.mjs), the benchmark one per run, and `npm start` one for the demo on port 8789.
//
//   EDGECDP_DEMO_WEBHOOK_SECRET=whsec_... node scripts/webhook-sink.mjs [port]   (prints each message the demo's
//   journeys send). The secret may also be the second argument, but every user of the machine sees arguments (`ps`).
import { createServer } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';

/** Whether `headers` carry a valid Standard Webhooks signature of `body` for `secret` (within 5 minutes). */
export function verify(secret, headers, body, nowSeconds = Math.floor(Date.now() / 1000)) {
  const id = headers['webhook-id'];
  const ts = headers['webhook-timestamp'];
  const sigs = headers['webhook-signature'];
  if (!id || !ts || !sigs || Math.abs(nowSeconds - Number(ts)) > 300) return false;
  const key = secret.startsWith('whsec_') ? Buffer.from(secret.slice(6), 'base64') : Buffer.from(secret);
  const expected = createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest();
  // The header may carry several space-separated signatures (a key rotation); one valid v1 signature suffices.
  return sigs.split(' ').some((s) => {
    const [version, b64] = s.split(',');
    const got = Buffer.from(b64 || '', 'base64');
    return version === 'v1' && got.length === expected.length && timingSafeEqual(got, expected);
  });
}

/**
 * Starts a sink on a loopback port. `secret` checks signatures (requests without a valid one get 401).
 * Returns { url, requests, accepted, fail(path, n), failAlways(path, status), stall(path, ms), close() }:
 * `requests` is every request as it came (path, headers, body, valid, status answered); `accepted` maps each
 * `webhook-id` (or a Tracking API's messageId) to the first request answered 2xx with it.
 */
export async function startSink({ port = 0, secret = null, log = false } = {}) {
  const requests = [];
  const accepted = new Map();
  const failures = new Map();
  const stalls = new Map();
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const path = req.url;
      const isWebhook = req.headers['webhook-id'] !== undefined;
      const valid = !isWebhook || !secret || verify(secret, req.headers, body);
      let key = req.headers['webhook-id'];
      if (!key) { try { key = JSON.parse(body).messageId; } catch { key = undefined; } }
      let status = 200;
      const f = failures.get(path);
      if (!valid) status = 401;
      else if (f && (f.always || f.left > 0)) { status = f.status; f.left -= 1; }
      const stall = stalls.get(path) || 0;
      if (stall) await new Promise((r) => setTimeout(r, stall));
      const entry = { path, headers: req.headers, body, valid, status, at: Date.now(), key };
      requests.push(entry);
      // Idempotency: a message already taken is answered 200 again and not taken twice.
      if (status < 300 && key !== undefined && !accepted.has(key)) accepted.set(key, entry);
      if (log) console.log(`${new Date().toISOString()} ${path} ${status} ${valid ? 'signed' : 'UNSIGNED'} ${body}`);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: status < 300 }));
    });
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    accepted,
    fail(path, n, status = 503) { failures.set(path, { left: n, status, always: false }); },
    failAlways(path, status = 500) { failures.set(path, { left: 0, status, always: true }); },
    stall(path, ms) { stalls.set(path, ms); },
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.argv[2] || 8789);
  const secret = process.argv[3] || process.env.EDGECDP_DEMO_WEBHOOK_SECRET || null;
  const sink = await startSink({ port, secret, log: true });
  console.log(`webhook sink on ${sink.url}${secret ? ' (verifying signatures)' : ''}`);
}
