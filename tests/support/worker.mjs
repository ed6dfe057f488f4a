// Starts the real Worker under workerd (`wrangler dev`) for a test file: a free loopback port, its own local
// KV and Durable Object storage in a fresh directory, an admin token, and the demo configuration loaded through
// the admin API. Nothing is mocked.
//
// The Worker's secrets reach wrangler in a file only this user can read (`--env-file`), never as `--var` on its
// command line, which every user of the machine can read (`ps`, /proc/<pid>/cmdline). Each Worker has its own
// file beside its state, because tests run several Workers at once, with different secrets; one shared `.dev.vars`
// would give them all the same. tests/e2e/secrets.test.mjs holds that.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
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
      // Bounded, because a Worker that failed to load may take the connection and never answer.
      const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5000) });
      if (r.status === 200) return;
    } catch {
      // Not listening yet, or not answering.
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`wrangler dev did not answer /healthz within ${timeoutMs} ms:\n${logs.join('')}`);
}

/**
 * One `NAME=value` line of a file wrangler reads with `--env-file`, which it parses with dotenv and then expands
 * with dotenv-expand (`$NAME` and `${NAME}` stand for other values there, `\$` for a dollar sign). The value goes
 * inside a quote it does not contain, so that spaces, `#` and new lines are kept, and every `$` is escaped, so
 * that none is expanded; a value the format cannot carry is refused rather than handed to the Worker changed.
 */
export function envFileLine(name, value) {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`${name} is not a variable name`);
  const quote = ["'", '`'].find((q) => !value.includes(q));
  // dotenv turns every carriage return into a new line, and a backslash before the closing quote would let the
  // quoted value run on into the next line.
  if (!quote || value.includes('\r') || value.endsWith('\\')) {
    throw new Error(`${name} cannot be written to an env file: it holds both ' and \`, a carriage return, or ends with \\`);
  }
  return `${name}=${quote}${value.replaceAll('$', '\\$')}${quote}\n`;
}

/**
 * @param {{adminToken?: string|null, config?: object|null, vars?: Record<string, string>, onLog?: (text: string) => void}} [options]
 *   adminToken: null starts the Worker without one (admin endpoints then answer 401).
 *   config: the configuration to load; defaults to config/demo.json; null loads none.
 *   vars: more Worker variables (`EDGECDP_LOG_KV_WRITES`, say); they go through the secrets file too, since
 *   some of them are secrets (a destination's signing key).
 *   onLog: called with every piece of the Worker's output as it comes (a benchmark counting its KV writes).
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
  const cookieSecret = randomBytes(24).toString('hex');
  const serverKey = `sk_${randomBytes(24).toString('hex')}`;
  const port = await freePort();
  // The Worker's V8 inspector (DevTools protocol), for CPU profiles of the Worker (scripts, by hand).
  const inspectorPort = await freePort();
  mkdirSync(join(ROOT, 'tests', '.tmp'), { recursive: true });
  // The local storage's directory: under tests/.tmp, or under EDGECDP_STATE_DIR (a benchmark's tmpfs).
  const stateRoot = process.env.EDGECDP_STATE_DIR || join(ROOT, 'tests', '.tmp');
  mkdirSync(stateRoot, { recursive: true });
  const state = mkdtempSync(join(stateRoot, 'state-'));
  // mkdtemp makes the directory 0700 and the file is created 0600 (never wider, whatever the umask), so no other
  // user can read the secrets at any moment. It stays until the Worker stops: wrangler reads it again whenever it
  // reloads the Worker. With --env-file, wrangler reads no .dev.vars, so a developer's own file changes nothing.
  const secretsDir = mkdtempSync(join(ROOT, 'tests', '.tmp', 'secrets-'));
  const secretsFile = join(secretsDir, 'worker.env');
  const secrets = { EDGECDP_COOKIE_SECRET: cookieSecret, EDGECDP_IDENTITY_SECRET: identitySecret,
    // One fixed key for new profile ids in every test Worker (tests/common/mod.rs's TEST_PROFILE_ID_SECRET), so
    // that a case's profile ids are the same natively, under workerd and in Chromium.
    EDGECDP_PROFILE_ID_SECRET: 'edgecdp test profile ids, never a real secret',
    ...(adminToken ? { EDGECDP_ADMIN_TOKEN: adminToken } : {}), ...options.vars };
  try {
    writeFileSync(secretsFile, Object.entries(secrets).map(([name, value]) => envFileLine(name, String(value))).join(''),
      { mode: 0o600, flag: 'wx' });
  } catch (e) {
    rmSync(secretsDir, { recursive: true, force: true });
    rmSync(state, { recursive: true, force: true });
    throw e;
  }
  // `logLevel: 'info'` (scripts/bench-cold.mjs) makes wrangler say when the Worker is loaded ("Ready on").
  const args = ['dev', '--ip', '127.0.0.1', '--port', String(port), '--persist-to', state,
    '--inspector-port', String(inspectorPort), '--log-level', options.logLevel || 'warn',
    '--show-interactive-dev-session=false',
    // Offline, wrangler dev fakes request.cf with country US; tests choose the country with a header instead.
    '--var', 'EDGECDP_COUNTRY_SOURCE:header',
    // The cron (import chunks whose message was lost) runs when a test asks /__scheduled.
    '--test-scheduled',
    '--env-file', secretsFile];
  // Another Worker in the same workerd and wrangler (scripts/bench-floor.mjs's JavaScript floor).
  if (options.wranglerConfig) args.push('--config', options.wranglerConfig);
  // The two CLOUDFLARE_* settings are wrangler's defaults, pinned so that a developer's shell cannot make wrangler
  // skip the secrets file or hand the whole environment to the Worker, where it would override the file's values.
  const launch = () => {
    const c = spawn(WRANGLER, args, { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: '1', CLOUDFLARE_LOAD_DEV_VARS_FROM_DOT_ENV: 'true',
        CLOUDFLARE_INCLUDE_PROCESS_ENV: 'false' } });
    c.stdout.on('data', keep);
    c.stderr.on('data', keep);
    return c;
  };
  const logs = [];
  let readyLines = 0;
  const keep = (d) => {
    const line = d.toString();
    logs.push(line);
    if (line.includes('Ready on')) readyLines++;
    if (logs.length > 200) logs.shift();
    options.onLog?.(line);
  };
  let child = launch();
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null) {
      try { process.kill(-child.pid, 'SIGTERM'); } catch { /* already gone */ }
      await new Promise((r) => { const t = setTimeout(r, 3000); child.once('exit', () => { clearTimeout(t); r(); }); });
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
    rmSync(state, { recursive: true, force: true });
    rmSync(secretsDir, { recursive: true, force: true });
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
  // A crash and a restart: the runtime is killed at once (whatever it was doing, and its queues' messages in
  // memory, are lost) and started again on the same port with the same local data.
  const kill = async () => {
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
    await new Promise((r) => { if (child.exitCode !== null) r(); else child.once('exit', r); });
  };
  const restart = async () => {
    await kill();
    child = launch();
    await waitForHealth(url, child, logs, 60_000);
  };
  // The same, but returning as soon as wrangler says the Worker is loaded, before any request reaches it
  // (`logLevel: 'info'` only): what the first request after a start costs is then the caller's to measure.
  const restartUnprobed = async () => {
    if (options.logLevel !== 'info') throw new Error('restartUnprobed needs logLevel: info');
    await kill();
    const seen = readyLines;
    child = launch();
    const deadline = Date.now() + 60_000;
    while (readyLines === seen) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`wrangler dev did not restart:\n${logs.join('')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return child.pid;
  };
  return { url, adminToken, identitySecret, cookieSecret, serverKey, stop, restart, restartUnprobed, logs, state, secretsFile,
    pid: child.pid, inspectorPort };
}

/**
 * An identity token as a site's backend makes one: an HS256 JWT with `sub` and `exp` (seconds), signed with the
 * Worker's identity secret. `options.secret`, `options.exp` and `options.alg` make the bad ones tests need;
 * `options.claims` adds claims (`email` with `email_verified`, which proves a contact point).
 */
export function identityToken(w, userId, options = {}) {
  const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: options.alg || 'HS256', typ: 'JWT' });
  const body = b64({ sub: userId, iat: now, exp: options.exp === undefined ? now + 3600 : options.exp,
    ...options.claims });
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

/**
 * The resident memory of the workerd process serving `w` (VmRSS, or `field` such as VmHWM, in KB), read from
 * /proc: what a hostile body costs the runtime is measured there, not guessed from the answer.
 */
export function workerdMemoryKB(w, field = 'VmRSS') {
  const port = new URL(w.url).port;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmd;
    try { cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { continue; }
    if (cmd.includes('workerd') && cmd.includes(`127.0.0.1:${port}`)) {
      return Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`${field}:\\s+(\\d+)`))[1]);
    }
  }
  throw new Error(`no workerd serves port ${port}`);
}
