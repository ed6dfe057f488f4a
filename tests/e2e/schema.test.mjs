// The configuration's JSON Schema and the configuration compiler agree: every configuration kept under tests/
// (and the demo's) passes both, and each invalid one under tests/configs/invalid/ is refused by the compiler at
// the path it names, and by the schema too unless it is a check only the compiler can make (a reference to an
// unknown segment, say). The compiler runs as it ships, in the Worker, through `POST /v1/config/validate`.
// Also: the Worker serves the files kept in schema/, byte for byte.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { workerForFile } from '../support/worker.mjs';
import { schemaErrors, compilerPath, CONFIG_SCHEMA_FILE } from '../support/schema.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const w = workerForFile();
const read = (path) => JSON.parse(readFileSync(path, 'utf8'));
const validate = (config) => w.call('POST', '/v1/config/validate', config, w.admin());

/** Every configuration document kept as a file: the demo's, each decision case's, and the fixtures'. */
function validConfigs() {
  const files = [join(ROOT, 'config', 'demo.json')];
  const cases = join(ROOT, 'tests', 'cases');
  for (const name of readdirSync(cases)) {
    if (existsSync(join(cases, name, 'config.json'))) files.push(join(cases, name, 'config.json'));
  }
  for (const name of readdirSync(join(ROOT, 'tests', 'fixtures'))) {
    if (name.endsWith('config.json')) files.push(join(ROOT, 'tests', 'fixtures', name));
  }
  return files;
}

const INVALID = join(ROOT, 'tests', 'configs', 'invalid');
const invalidConfigs = () => readdirSync(INVALID).filter((n) => n.endsWith('.json')).sort();

describe('served documents', () => {
  test('GET /v1/config/schema and GET /v1/openapi.json answer the files in schema/, to anyone', async () => {
    for (const [path, file, type] of [['/v1/config/schema', CONFIG_SCHEMA_FILE, 'application/schema+json'],
      ['/v1/openapi.json', join(ROOT, 'schema', 'openapi.json'), 'application/json']]) {
      const r = await w.call('GET', path);
      assert.equal(r.status, 200, path);
      assert.equal(r.headers.get('content-type'), type, path);
      assert.deepEqual(r.json, read(file), path);
    }
  });

  test('the demo configuration names the schema for editors, and the schema is draft 2020-12', () => {
    assert.equal(read(join(ROOT, 'config', 'demo.json')).$schema, '../schema/config.schema.json');
    assert.equal(read(CONFIG_SCHEMA_FILE).$schema, 'https://json-schema.org/draft/2020-12/schema');
  });
});

describe('schema and compiler agree', () => {
  for (const file of validConfigs()) {
    const name = file.slice(ROOT.length + 1);
    test(`${name}: both accept it`, async () => {
      const config = read(file);
      assert.deepEqual(schemaErrors(config), [], 'the schema refuses it');
      const r = await validate(config);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json, { valid: true });
    });
  }

  for (const name of invalidConfigs()) {
    test(`tests/configs/invalid/${name}: the compiler refuses it at its path, and so does the schema where it can`, async () => {
      const { why, path, schemaCatches, config } = read(join(INVALID, name));
      const r = await validate(config);
      assert.equal(r.status, 400, `${why}: the compiler accepted it`);
      assert.equal(r.json.error.code, 'invalid_config');
      const paths = r.json.problems.map((p) => p.path);
      assert.deepEqual(paths, [path], `${why}: ${JSON.stringify(r.json.problems)}`);
      const complaints = schemaErrors(config);
      if (schemaCatches) {
        assert.notDeepEqual(complaints, [], `${why}: the schema accepted it`);
        // Editors underline the same place: one of the schema's complaints is at the compiler's path or inside
        // the object that holds it (a missing or unknown field is reported on its parent).
        const at = complaints.map((c) => compilerPath(c.split(' ')[0] === '/' ? '' : c.split(' ')[0]));
        assert.ok(at.some((p) => p === path || path.startsWith(p ? `${p}.` : '') || path.startsWith(`${p}[`)),
          `${why}: the schema complains at ${JSON.stringify(at)}, the compiler at ${path}`);
      } else {
        assert.deepEqual(complaints, [], `${why}: a compiler-only check, but the schema refuses it too`);
      }
    });
  }

  test('the invalid set covers every top-level section', () => {
    const sections = new Set(invalidConfigs().map((n) => read(join(INVALID, n)).path.split(/[.[]/)[0]));
    for (const s of ['sources', 'consent', 'identity', 'retention', 'privacy', 'computedTraits', 'scores', 'segments',
      'slots', 'delivery']) {
      assert.ok(sections.has(s), `no invalid configuration for ${s}`);
    }
  });
});

describe('POST /v1/config/validate', () => {
  test('needs the admin token, and stores nothing', async () => {
    const before = await w.call('GET', '/v1/config', undefined, w.admin());
    assert.equal((await w.call('POST', '/v1/config/validate', { segments: [] })).status, 401);
    assert.equal((await w.call('POST', '/v1/config/validate', { segments: [] },
      { authorization: 'Bearer wrong' })).status, 401);
    assert.equal((await validate({ segments: [] })).status, 200);
    const after = await w.call('GET', '/v1/config', undefined, w.admin());
    assert.equal(after.headers.get('etag'), before.headers.get('etag'));
    assert.deepEqual(after.json, before.json);
  });

  test('lists every problem with its path, like PUT', async () => {
    const r = await validate({ colour: 'red', retention: { anonymousDays: 0 } });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json.problems.map((p) => p.path).sort(), ['colour', 'retention.anonymousDays']);
    const bad = await w.call('POST', '/v1/config/validate', '{"segments": [', w.admin());
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'invalid_config');
  });
});
