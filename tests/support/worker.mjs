// Starts the real Worker under workerd (`wrangler dev`) for a test file: a free loopback port, its own local
// KV and Durable Object storage in a fresh directory, an admin token, and the demo configuration loaded through
// the admin API. Nothing is mocked.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHmac, randomBytes } from 'node:crypto';
import { before, after } from 'node:test';
import { schemaErrors } from './schema.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const WRANGLER = join(ROOT, 'node_modules', '.bin', 'wrangler');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitForHealth(url, child, logs, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited with ${child.exitCode}:\n${logs.join('')}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.status === 200) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`wrangler dev did not answer /healthz within ${timeoutMs} ms:\n${logs.join('')}`);
}

/**
 * @param {{adminToken?: string|null, config?: object|null, vars?: Record<string, string>}} [options]
 *   adminToken: null starts the Worker without one (admin endpoints then answer 401).
 *   config: the configuration to load; defaults to config/demo.json; null loads none.
 *   vars: more Worker variables (`EDGECDP_LOG_KV_WRITES`, say).
 */
export async function startWorker(options = {}) {
  // workerd fails to start, now and then, when a port chosen free was taken again before it bound it (the
  // machine runs many servers at once); that, and only that, is tried again with fresh ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startWorkerOnce(options);
    } catch (e) {
      if (attempt >= 3 || !String(e.message).startsWith('wrangler dev exited')) throw e;
      console.error(`wrangler dev did not start (attempt ${attempt}), trying again: ${e.message.split('\n')[0]}`);
    }
  }
}

async function startWorkerOnce(options) {
  const adminToken = options.adminToken === undefined ? randomBytes(16).toString('hex') : options.adminToken;
  // The secret a site's backend shares with edgecdp to sign identity tokens (tests make tokens with it).
  const identitySecret = randomBytes(32).toString('hex');
  const serverKey = `sk_${randomBytes(24).toString('hex')}`;
  const port = await freePort();
  // The Worker's V8 inspector (DevTools protocol), for CPU profiles of the Worker (scripts, by hand).
  const inspectorPort = await freePort();
  mkdirSync(join(ROOT, 'tests', '.tmp'), { recursive: true });
  const state = mkdtempSync(join(ROOT, 'tests', '.tmp', 'state-'));
  const args = ['dev', '--ip', '127.0.0.1', '--port', String(port), '--persist-to', state,
    '--inspector-port', String(inspectorPort), '--log-level', 'warn', '--show-interactive-dev-session=false',
    // Offline, wrangler dev fakes request.cf with country US; tests choose the country with a header instead.
    '--var', 'EDGECDP_COUNTRY_SOURCE:header',
    '--var', `EDGECDP_COOKIE_SECRET:${randomBytes(24).toString('hex')}`,
    '--var', `EDGECDP_IDENTITY_SECRET:${identitySecret}`];
  if (adminToken) args.push('--var', `EDGECDP_ADMIN_TOKEN:${adminToken}`);
  // Another Worker in the same workerd and wrangler (scripts/bench-floor.mjs's JavaScript floor).
  if (options.wranglerConfig) args.push('--config', options.wranglerConfig);
  for (const [name, value] of Object.entries(options.vars || {})) args.push('--var', `${name}:${value}`);
  const child = spawn(WRANGLER, args, { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: '1' } });
  const logs = [];
  const keep = (d) => { logs.push(d.toString()); if (logs.length > 200) logs.shift(); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null) {
      try { process.kill(-child.pid, 'SIGTERM'); } catch { /* already gone */ }
      await new Promise((r) => { const t = setTimeout(r, 3000); child.once('exit', () => { clearTimeout(t); r(); }); });
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
    rmSync(state, { recursive: true, force: true });
  };
  try {
    await waitForHealth(url, child, logs, 60_000);
    const config = options.config === undefined
      ? JSON.parse(readFileSync(join(ROOT, 'config', 'demo.json'), 'utf8'))
      : options.config;
    if (config) {
      if (!adminToken) throw new Error('loading a configuration needs an admin token');
      // Every test Worker also has a backend: a server source whose secret key tests send identity claims with,
      // as a site's server would (the demo configuration itself has only the public browser source).
      if (Array.isArray(config.sources) && !config.sources.some((s) => s.type === 'server')) {
        config.sources = [...config.sources, { id: 'test-backend', type: 'server', key: serverKey }];
      }
      const r = await fetch(`${url}/v1/config`, { method: 'PUT', body: JSON.stringify(config),
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' } });
      if (r.status !== 200) throw new Error(`loading the configuration failed: ${r.status} ${await r.text()}`);
      // The compiler took it, so the JSON Schema editors check with must take it too: every configuration a
      // test loads holds the two in agreement (tests/e2e/schema.test.mjs holds the invalid side).
      const complaints = schemaErrors(config);
      if (complaints.length) {
        throw new Error(`the compiler accepted a configuration that schema/config.schema.json rejects:\n${complaints.join('\n')}`);
      }
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { url, adminToken, identitySecret, serverKey, stop, logs, state, pid: child.pid, inspectorPort };
}

/**
 * An identity token as a site's backend makes one: an HS256 JWT with `sub` and `exp` (seconds), signed with the
 * Worker's identity secret. `options.secret`, `options.exp` and `options.alg` make the bad ones tests need.
 */
export function identityToken(w, userId, options = {}) {
  const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: options.alg || 'HS256', typ: 'JWT' });
  const body = b64({ sub: userId, iat: now, exp: options.exp === undefined ? now + 3600 : options.exp });
  const signature = createHmac('sha256', options.secret || w.identitySecret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${signature}`;
}

/** Reads a profile through the admin API; returns {status, body}. */
export async function getProfile(w, key) {
  const r = await fetch(`${w.url}/v1/profiles/${encodeURIComponent(key).replace('%3A', ':')}`,
    { headers: { authorization: `Bearer ${w.adminToken}` } });
  return { status: r.status, body: r.status === 200 ? await r.json() : await r.text() };
}

/** Consent to everything a test event needs, as Segment's `context.consent` carries it. */
export const GRANT = { consent: { categoryPreferences: { analytics: true, personalization: true } } };

/** A fresh id with a readable prefix, so that tests sharing a Worker never meet. */
export const uid = (prefix) => `${prefix}-${Math.random().toString(36).slice(2, 10)}`;

/**
 * One Worker for the test file that calls it: started before its tests, stopped after them. The object returned
 * is filled in once the Worker is up (`url`, `adminToken`, `serverKey`, ...), with `admin()` for the admin
 * bearer header and `call()` for a request.
 */
export function workerForFile(options = {}) {
  const w = {
    admin: () => ({ authorization: `Bearer ${w.adminToken}` }),
    /** A request to the Worker; a body that is not a string goes as JSON. Answers status, headers, text and JSON. */
    async call(method, path, body, headers = {}) {
      const r = await fetch(`${w.url}${path}`, { method, headers: { 'content-type': 'application/json', ...headers },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
      const text = await r.text();
      let json; try { json = JSON.parse(text); } catch { json = undefined; }
      return { status: r.status, json, text, headers: r.headers };
    },
  };
  before(async () => { Object.assign(w, await startWorker(options)); });
  after(async () => { await w.stop?.(); });
  return w;
}
