// Secrets never reach a command line: every user of the machine can read every process's command line (`ps`,
// /proc/<pid>/cmdline), so tests/support/worker.mjs hands wrangler the Worker's secrets in a file only its owner
// can read (`--env-file`), as scripts/start.sh does for `npm start`. This starts a Worker the way every test file
// does, looks for its secrets in the command line of every process on the machine, and checks that the Worker
// still got each of them, byte for byte, so that losing a secret on the way fails here too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { createHmac, randomBytes } from 'node:crypto';
import { GRANT, uid, startWorker, identityToken } from '../support/worker.mjs';

// An admin token with every character the env file's syntax gives a meaning to (a quote, `#`, `$NAME`, `${NAME}`,
// an escaped dollar, spaces): an answer of 200 with it shows that the file carried it unchanged. The random part
// is what is looked for in command lines, so that even a mangled copy of the token would be found.
const TOKEN_MARK = randomBytes(16).toString('hex');
const ADMIN_TOKEN = `${TOKEN_MARK} it's $HOME \${PATH} #not-a-comment "quoted" a\\$b`;
// A variable a test file passes (`options.vars`, such as a destination's signing key) goes the same way.
const VAR_SECRET = randomBytes(16).toString('hex');

let w;
before(async () => { w = await startWorker({ adminToken: ADMIN_TOKEN, vars: { EDGECDP_TEST_UNUSED_SECRET: VAR_SECRET } }); });
after(async () => { await w?.stop(); });

const call = async (method, path, body, headers = {}) => {
  const r = await fetch(`${w.url}${path}`, { method, headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json; try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, json, text, headers: r.headers };
};

/** Every process's id, parent id and command line (arguments joined by spaces), read from /proc. */
function processes() {
  const all = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`).toString('utf8').split('\0').join(' ');
      // The parent id follows the command name, which may itself hold spaces and parentheses.
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      all.push({ pid: Number(name), ppid, cmdline });
    } catch {
      // The process ended between the listing and the read.
    }
  }
  return all;
}

/** The processes below `pid` (its children, theirs, and so on). */
function descendants(all, pid) {
  const found = [];
  let parents = new Set([pid]);
  while (parents.size) {
    const children = all.filter((p) => parents.has(p.ppid));
    found.push(...children);
    parents = new Set(children.map((p) => p.pid));
  }
  return found;
}

test('no process on the machine has a secret of the Worker on its command line', () => {
  const all = processes();
  // The check means something only if it saw the processes that were given the secrets: wrangler (its launcher
  // and its CLI, both node) and the workerd it started.
  const below = descendants(all, w.pid);
  const shown = below.map((p) => p.cmdline).join('\n');
  assert.ok(below.some((p) => p.cmdline.includes('wrangler-dist/cli.js')), `wrangler's CLI is below the Worker's pid:\n${shown}`);
  assert.ok(below.some((p) => /(^|\/)workerd /.test(p.cmdline)), `workerd is below the Worker's pid:\n${shown}`);
  assert.ok(below.some((p) => p.cmdline.includes('--env-file')), `wrangler was given its secrets file:\n${shown}`);
  const secrets = { 'the admin token': TOKEN_MARK, 'the cookie secret': w.cookieSecret,
    'the identity secret': w.identitySecret, 'a variable passed as options.vars': VAR_SECRET };
  for (const [what, value] of Object.entries(secrets)) {
    assert.ok(value && value.length >= 32, `${what} is known to the test`);
    const holders = all.filter((p) => p.cmdline.includes(value));
    assert.deepEqual(holders.map((p) => `${p.pid}: ${p.cmdline}`), [], `${what} is on a command line`);
  }
});

test('the secrets file is readable by its owner only, and holds the secrets', () => {
  const file = statSync(w.secretsFile);
  assert.equal(file.mode & 0o077, 0, `mode ${(file.mode & 0o777).toString(8)}`);
  assert.equal(statSync(dirname(w.secretsFile)).mode & 0o077, 0, 'its directory is the owner\'s only');
  const text = readFileSync(w.secretsFile, 'utf8');
  for (const value of [TOKEN_MARK, w.cookieSecret, w.identitySecret, VAR_SECRET]) assert.ok(text.includes(value));
});

test('the Worker got the admin token unchanged: it answers 200 with it and 401 with anything else', async () => {
  assert.equal((await call('GET', '/v1/config', undefined, { authorization: `Bearer ${ADMIN_TOKEN}` })).status, 200);
  for (const wrong of [TOKEN_MARK, `${TOKEN_MARK} it's`, ADMIN_TOKEN.replace('$HOME', ''), `${ADMIN_TOKEN}x`]) {
    const r = await call('GET', '/v1/config', undefined, { authorization: `Bearer ${wrong}` });
    assert.equal(r.status, 401, `${wrong}: ${r.text}`);
    assert.equal(r.json.error.code, 'invalid_admin_token');
  }
});

test('the Worker got the cookie secret: its cookie is signed with it', async () => {
  const a = uid('cookie');
  const r = await call('POST', '/v1/batch', { writeKey: 'demo', batch: [{ type: 'page', anonymousId: a, context: GRANT }] },
    { origin: w.url });
  assert.equal(r.status, 200, r.text);
  const cookie = (r.headers.get('set-cookie') || '').split(';')[0];
  const signature = createHmac('sha256', w.cookieSecret).update(a).digest('hex');
  assert.equal(cookie, `edgecdp_aid=${a}.${signature}`);
});

test('the Worker got the identity secret: a token signed with it is taken, one signed with another is not', async () => {
  const identify = async (secret) => {
    const user = uid('user');
    const token = identityToken(w, user, secret ? { secret } : {});
    return call('POST', '/v1/batch', { writeKey: 'demo', batch: [{ type: 'identify', userId: user, anonymousId: uid('anon'),
      context: { ...GRANT, identityToken: token } }] });
  };
  const good = await identify();
  assert.equal(good.status, 200, good.text);
  assert.equal(good.json.unverified, undefined, good.text);
  const forged = await identify(randomBytes(32).toString('hex'));
  assert.equal(forged.status, 200, forged.text);
  assert.deepEqual(forged.json.unverified?.map((u) => u.code), ['invalid_token_signature'], forged.text);
});

test('stopping the Worker removes its secrets file', async () => {
  assert.ok(existsSync(w.secretsFile));
  await w.stop();
  assert.equal(existsSync(w.secretsFile), false);
  assert.equal(existsSync(dirname(w.secretsFile)), false);
});
