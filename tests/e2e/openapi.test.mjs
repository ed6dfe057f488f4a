// schema/openapi.json is the whole HTTP contract: schemathesis (PyPI) generates requests from it, valid and
// invalid, against the real Worker, and checks every answer: no server error, each status code, content type,
// header and body as documented, invalid input refused, valid input accepted, and auth not ignored. Bounded:
// a fixed number of examples per operation and a fixed seed, so a failure reproduces with the command printed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { homedir } from 'node:os';
import { workerForFile } from '../support/worker.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
// scripts/env.sh's SCHEMATHESIS_VENV; bootstrap.sh --schemathesis installs it.
const VERSION = readFileSync(join(ROOT, 'scripts', 'env.sh'), 'utf8').match(/SCHEMATHESIS_VERSION="([^"]+)"/)[1];
const ST = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'edgecdp', `schemathesis-${VERSION}`, 'bin', 'st');
const EXAMPLES = Number(process.env.EDGECDP_SCHEMATHESIS_EXAMPLES || 20);
const SEED = Number(process.env.EDGECDP_SCHEMATHESIS_SEED || 20261129);

// schemathesis tries every admin route with wrong credentials, far past the guard's 10 failures a minute: its own
// Worker allows more, so that the 429 (documented, and tested in abuse.test.mjs) does not hide the routes' logic.
const w = workerForFile({ vars: { EDGECDP_ADMIN_FAILURES_PER_MINUTE: '100000' } });

function run(args, env) {
  return new Promise((resolve) => {
    // tests/schemathesis_hooks.py: the serializer of NDJSON import files.
    const child = spawn(ST, args, { cwd: ROOT, env: { ...process.env, ...env, NO_COLOR: '1',
      SCHEMATHESIS_HOOKS: join(ROOT, 'tests', 'schemathesis_hooks.py') } });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('close', (code) => resolve({ code, out }));
  });
}

/** Runs schemathesis over the operations `filter` selects; answers the operations it tested (`GET /v1/config`). */
async function schemathesis(name, filter) {
  assert.ok(existsSync(ST), `schemathesis is not installed at ${ST}: run scripts/bootstrap.sh --schemathesis`);
  const reports = join(ROOT, 'tests', '.tmp', 'schemathesis', name);
  rmSync(reports, { recursive: true, force: true });
  mkdirSync(reports, { recursive: true });
  const args = ['--config-file', join(ROOT, 'tests', 'schemathesis.toml'), 'run', `${w.url}/v1/openapi.json`,
    '--url', w.url, '--checks', 'all', '--max-examples', String(EXAMPLES), '--seed', String(SEED),
    '--workers', '1', '--phases', 'examples,coverage,fuzzing', '--report', 'junit',
    '--report-junit-path', join(reports, 'junit.xml'), '--output-truncate', 'false', ...filter];
  const { code, out } = await run(args, { EDGECDP_ADMIN_TOKEN: w.adminToken, EDGECDP_WRITE_KEY: 'demo' });
  writeFileSync(join(reports, 'output.txt'), out);
  const summary = out.split('\n').filter((l) => /generated|Failures|passed|failed|Seed/i.test(l));
  console.log(`schemathesis (${name}):\n${summary.join('\n')}`);
  assert.equal(code, 0, `schemathesis failed; its whole report: tests/.tmp/schemathesis/${name}/output.txt (st ${args.join(' ')})`);
  return [...readFileSync(join(reports, 'junit.xml'), 'utf8').matchAll(/<testcase [^>]*name="([^"]+)"/g)].map((m) => m[1]);
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head'];
const operations = () => Object.entries(JSON.parse(readFileSync(join(ROOT, 'schema', 'openapi.json'), 'utf8')).paths)
  .flatMap(([path, item]) => Object.keys(item).filter((k) => METHODS.includes(k)).map((m) => `${m.toUpperCase()} ${path}`));

// Two runs: replacing the configuration (PUT /v1/config with whatever the document allows, `{}` included) would
// take the demo source away from the operations tested after it, so it goes last, on its own.
test('schemathesis finds no server error and no answer that breaks schema/openapi.json', { timeout: 900_000 }, async () => {
  const rest = await schemathesis('all-but-config-writes', ['--exclude-operation-id', 'putConfig']);
  const writes = await schemathesis('config-writes', ['--include-operation-id', 'putConfig']);
  assert.deepEqual(writes, ['PUT /v1/config']);
  // It really ran: every operation in the document was tested, except the document's own address, which
  // schemathesis reads the document from (tests/e2e/schema.test.mjs checks what it serves).
  const untested = operations().filter((op) => ![...rest, ...writes].includes(op));
  assert.deepEqual(untested, ['GET /v1/openapi.json']);
});
