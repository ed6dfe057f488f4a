// Bundles the console's configuration editor (js/console/editor.js: CodeMirror 6 and codemirror-json-schema) into
// one minified module, www/console/vendor/editor.js, served by the Worker like the rest of the console (no CDN).
// codemirror-json-schema's Markdown renderer and YAML/JSON5 parsers are swapped for the shims in js/console/shims:
// the console needs neither, and they would triple the download. Prints the sizes it wrote.
import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const shims = {
  name: 'console-shims',
  setup(b) {
    b.onResolve({ filter: /\/utils\/markdown$/ }, () => ({ path: `${root}js/console/shims/markdown.js` }));
    b.onResolve({ filter: /\/(yaml|json5)-parser$/ }, () => ({ path: `${root}js/console/shims/other-parsers.js` }));
  },
};
const out = `${root}www/console/vendor/editor.js`;
await build({
  entryPoints: [`${root}js/console/editor.js`], bundle: true, format: 'esm', minify: true, target: 'es2020',
  outfile: out, plugins: [shims], logLevel: 'warning', legalComments: 'eof',
});
const bytes = readFileSync(out);
console.log(`www/console/vendor/editor.js: ${(bytes.length / 1024).toFixed(1)} KB, ${(gzipSync(bytes).length / 1024).toFixed(1)} KB gzipped`);
