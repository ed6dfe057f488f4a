// Copies the export's files (and each partition's manifest.json) from a Worker to a local directory, laid out as
// in the bucket (`export/{table}/dt=…/hour=…/…`), for DuckDB or any tool that reads gzip NDJSON. Locally
// `wrangler dev` has no S3 API for R2, so this goes through the admin routes (`GET /v1/export`, `GET
// /v1/export/file`); in production read the bucket itself through R2's S3 API (docs/export.md).
//
//   EDGECDP_ADMIN_TOKEN=… node scripts/export-pull.mjs [--url http://127.0.0.1:8787] [--to ./warehouse]
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Pulls every file into `to`; answers the keys written. A page of 1000 files at a time, newest first. */
export async function pull({ url, token, to }) {
  const auth = { authorization: `Bearer ${token}` };
  const keys = [];
  for (let offset = 0; ; offset += 1000) {
    const r = await fetch(`${url}/v1/export?limit=1000&offset=${offset}`, { headers: auth });
    if (r.status !== 200) throw new Error(`GET /v1/export answered ${r.status}: ${await r.text()}`);
    const page = (await r.json()).files.map((f) => f.key);
    keys.push(...page);
    if (page.length < 1000) break;
  }
  const manifests = new Set(keys.map((k) => `${dirname(k)}/manifest.json`));
  const written = [];
  for (const key of [...keys, ...manifests]) {
    const r = await fetch(`${url}/v1/export/file?key=${encodeURIComponent(key)}`, { headers: auth });
    if (r.status === 404) continue; // purged meanwhile
    if (r.status !== 200) throw new Error(`GET ${key} answered ${r.status}: ${await r.text()}`);
    const path = join(to, key);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, Buffer.from(await r.arrayBuffer()));
    written.push(key);
  }
  return written;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const token = process.env.EDGECDP_ADMIN_TOKEN;
  if (!token) {
    console.error('set EDGECDP_ADMIN_TOKEN to the Worker\'s admin token');
    process.exit(2);
  }
  const to = arg('--to', 'warehouse');
  const written = await pull({ url: arg('--url', 'http://127.0.0.1:8787'), token, to });
  console.log(`${written.length} files under ${to}/export/`);
}
