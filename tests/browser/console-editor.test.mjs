// The console's configuration editor without a browser: what completion offers at each cursor of
// tests/fixtures/console-completion.json (from the schema the Worker serves), and how the server's problem paths
// are found in a document (ids may contain dots). js/console/editor.js is bundled for Node with the same esbuild
// the build uses; the Chromium test (console.test.mjs) drives the same editor in the page.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { build } from 'esbuild';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixture = JSON.parse(readFileSync(join(ROOT, 'tests', 'fixtures', 'console-completion.json'), 'utf8'));
const schema = JSON.parse(readFileSync(join(ROOT, 'schema', 'config.schema.json'), 'utf8'));
let lib;

before(async () => {
  const out = join(ROOT, 'tests', '.tmp', 'console-editor.cjs');
  mkdirSync(dirname(out), { recursive: true });
  await build({
    stdin: {
      contents: `export { completionSchema, pointerFor, pathOf } from './js/console/editor.js';
        export { EditorState } from '@codemirror/state';
        export { json } from '@codemirror/lang-json';
        export { CompletionContext } from '@codemirror/autocomplete';
        export { jsonCompletion, stateExtensions } from 'codemirror-json-schema';`,
      resolveDir: ROOT,
    },
    bundle: true, platform: 'node', format: 'cjs', outfile: out, logLevel: 'error',
  });
  lib = createRequire(import.meta.url)(out);
});

test('completion offers what the schema allows at each cursor', async () => {
  const derived = lib.completionSchema(schema);
  const complete = lib.jsonCompletion();
  for (const c of fixture.cases) {
    const pos = c.at.indexOf('|');
    const doc = c.at.replace('|', '');
    const state = lib.EditorState.create({ doc, selection: { anchor: pos }, extensions: [lib.json(), lib.stateExtensions(derived)] });
    const result = await complete(new lib.CompletionContext(state, pos, true));
    const offered = result ? result.options.map((o) => o.label) : [];
    for (const name of c.offers) assert.ok(offered.includes(name), `${c.at}: ${name} is not offered (offered: ${offered.join(' ')})`);
    for (const name of c.absent || []) assert.ok(!offered.includes(name), `${c.at}: ${name} is offered though present`);
  }
});

test('the schema as given offers nothing below the top level (why the editor derives its own)', async () => {
  const complete = lib.jsonCompletion();
  const c = fixture.cases.find((x) => x.at.includes('"when": {"|"}'));
  const pos = c.at.indexOf('|');
  const state = lib.EditorState.create({ doc: c.at.replace('|', ''), selection: { anchor: pos }, extensions: [lib.json(), lib.stateExtensions(schema)] });
  const result = await complete(new lib.CompletionContext(state, pos, true));
  assert.deepEqual(result ? result.options.map((o) => o.label) : [], []);
});

test('a problem path is found in the document, the longest key first, and spelled back', () => {
  for (const p of fixture.paths) {
    assert.equal(lib.pointerFor(p.data, p.path), p.pointer, p.path);
    // Spelled back to the compiler's form wherever the path was found whole.
    if (p.pointer && lib.pathOf(p.data, p.pointer) !== p.path) assert.ok(p.path.startsWith(lib.pathOf(p.data, p.pointer)), p.path);
  }
});
