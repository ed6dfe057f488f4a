// The configuration's JSON Schema (schema/config.schema.json) as editors use it, through Ajv's draft 2020-12
// validator in strict mode: a schema that is itself malformed fails here, not silently in an editor.
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CONFIG_SCHEMA_FILE = join(ROOT, 'schema', 'config.schema.json');

let validate;

/** The schema's complaints about a configuration document: [] when it accepts it. */
export function schemaErrors(config) {
  if (!validate) {
    const ajv = new Ajv2020({ strict: true, allErrors: true });
    addFormats(ajv);
    validate = ajv.compile(JSON.parse(readFileSync(CONFIG_SCHEMA_FILE, 'utf8')));
  }
  return validate(config) ? [] : validate.errors.map((e) => `${e.instancePath || '/'} ${e.message}`);
}

/** Ajv's instance path (`/segments/0/when/count`) in the compiler's path form (`segments[0].when.count`). */
export function compilerPath(instancePath) {
  return instancePath.split('/').slice(1).map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'))
    .reduce((path, part) => (/^\d+$/.test(part) ? `${path}[${part}]` : path ? `${path}.${part}` : part), '');
}
