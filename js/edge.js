// The Worker's entry (wrangler.toml's `main`): a JavaScript shell in front of the Rust Worker that worker-build
// writes to build/index.js. Measured (BENCHMARKS.md, "Against a Rust floor"): a new isolate's first request through
// workers-rs alone costs 1.4–1.8× what the same request costs a JavaScript Worker, whatever the Rust code does, so
// what can be answered without the core is answered here, and the rest goes to the Rust Worker unchanged.
//
// Today that is `GET /healthz`, which reads nothing: `{"ok": true, "version": ...}`, the version being the
// package's (tests/tidy.rs holds package.json's and Cargo.toml's versions equal). Who may call: anyone, as before.
// Every other request, every Durable Object class, the queue consumers and the cron are the Rust Worker's.
import Rust from '../build/index.js';
import { version } from '../package.json';

export { ConfigObject, ExperimentObject, GuardObject, ProfileObject } from '../build/index.js';

const HEALTH = JSON.stringify({ ok: true, version });

export default class Edge extends Rust {
  fetch(request) {
    if (request.method === 'GET' && new URL(request.url).pathname === '/healthz') {
      return new Response(HEALTH, {
        headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
      });
    }
    return super.fetch(request);
  }
}
