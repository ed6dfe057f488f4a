// The Worker's entry (wrangler.toml's `main`): a JavaScript shell in front of the Rust Worker that worker-build
// writes to build/index.js. Measured (BENCHMARKS.md, "Against a Rust floor"): a new isolate's first request through
// workers-rs alone costs 1.4–1.8× what the same request costs a JavaScript Worker, and a warm request's reads cost
// a future, a closure and several crossings each; so the shell answers what it can, doing the I/O itself around
// synchronous calls into the same Wasm, and hands the rest to the Rust Worker unchanged.
//
// - `GET /healthz` reads nothing: `{"ok": true, "version": ...}`, the version being the package's (tests/tidy.rs
//   holds package.json's and Cargo.toml's versions equal). Who may call: anyone, as before.
// - A visitor's requests and batches of events: `POST` and `GET /v1/decide`, `GET /v1/decide/summary`, `POST
//   /v1/impressions`, `POST /v1/batch`, the single-event endpoints and RudderStack's beacon (`ShellStep.serves`
//   says which, from the Rust Worker's own routes). Every rule is the core's (`ShellStep`, src/edge/shell.rs, the
//   same steps the Rust Worker drives). The shell reads the configuration's keys, a `POST`'s body (a declared
//   length within the limit, read whole as the Rust Worker reads it: the runtime frames the body by that length),
//   and the KV keys and profile objects each step asks for. It hands the request over instead when
//   `config:latest` is not the version in force yet, when the body is compressed or declares no length or too
//   large a one, and for `?explain`. Who may call: as before (a page for its own visitor, a `userId` needing a
//   server credential; a source with its write key from its origins): the step checks it.
// Every other request, every Durable Object class, the queue consumers and the cron are the Rust Worker's.
import Rust, { ShellStep } from '../build/index.js';
import { version } from '../package.json';

export { ConfigObject, ExperimentObject, GuardObject, ProfileObject } from '../build/index.js';

const HEALTH = JSON.stringify({ ok: true, version });
const DIGITS = /^\d+$/;
const AT_ONCE = ShellStep.at_once();

/** `read` of each of `items`, at most `AT_ONCE` at a time, in order. */
async function atOnce(items, read) {
  const out = [];
  for (let i = 0; i < items.length; i += AT_ONCE) out.push(...await Promise.all(items.slice(i, i + AT_ONCE).map(read)));
  return out;
}

/** The profile object of `id`. */
const object = (env, id) => env.PROFILES.get(env.PROFILES.idFromName(id));

/** The step's answer (kind 0) as a `Response`: its headers come one per line, a tab after the name. */
function answer(step) {
  const head = step.head();
  if (head === undefined) return step.response();
  const headers = new Headers();
  for (const line of head.split('\n')) {
    const tab = line.indexOf('\t');
    headers.append(line.slice(0, tab), line.slice(tab + 1));
  }
  return new Response(step.payload(), { headers });
}

export default class Edge extends Rust {
  fetch(request) {
    const url = new URL(request.url);
    if (request.method === 'GET' && url.pathname === '/healthz') {
      return new Response(HEALTH, {
        headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
      });
    }
    const limit = ShellStep.serves(request.method, url.pathname);
    if (limit === 0 && !url.searchParams.has('explain')) return this.serve(request, false);
    if (limit > 0 && !url.searchParams.has('explain')) {
      const length = request.headers.get('content-length')?.trim();
      if (length && DIGITS.test(length) && Number(length) <= limit && !request.headers.has('content-encoding')) {
        return this.serve(request, true);
      }
    }
    return super.fetch(request);
  }

  async serve(request, post) {
    const env = this.env;
    const kv = env.EDGECDP;
    // A new isolate reads the three keys the configuration needs at once, as the Rust Worker does; a warm one
    // reads the version in force, and the other two only when it changed or the fitted model is a minute old.
    const cold = ShellStep.cold();
    const current = cold ? undefined : await kv.get('config:current');
    let step = cold ? undefined : ShellStep.ready(current);
    if (!step) {
      const [now, latest, model] = await Promise.all([
        cold ? kv.get('config:current') : current, kv.get('config:latest'), kv.get('predictions:model'),
      ]);
      step = ShellStep.load(now, latest, model);
      if (!step) return super.fetch(request);
      // What the load has to say goes to the log once the answer is out: under `wrangler dev` a new isolate's
      // first line costs about 9 ms, which the visitor need not wait for.
      const warnings = step.warnings();
      if (warnings) this.ctx.waitUntil(new Promise((said) => setTimeout(() => said(console.warn(warnings)), 0)));
    }
    try {
      step.start(request, env, post ? new Uint8Array(await request.arrayBuffer()) : new Uint8Array());
      for (;;) {
        try {
          switch (step.kind()) {
            case 0: return answer(step);
            case 1: step.text(await env.EDGECDP.get(step.key())); break;
            case 2: {
              const got = await env.EDGECDP.get(step.key(), 'arrayBuffer');
              step.bytes(got && new Uint8Array(got));
              break;
            }
            case 3: {
              const seen = step.version();
              const r = await object(env, step.key()).fetch('https://object/', {
                method: 'POST', body: step.body(), headers: seen ? { 'x-edgecdp-config-version': seen } : {},
              });
              step.answer(r.status, new Uint8Array(await r.arrayBuffer()));
              break;
            }
            case 4: step.texts(await atOnce(step.keys(), (key) => env.EDGECDP.get(key))); break;
            default: {
              const body = step.body();
              const got = await atOnce(step.keys(), async (id) => {
                const r = await object(env, id).fetch('https://object/', { method: 'POST', body });
                return [r.status, new Uint8Array(await r.arrayBuffer())];
              });
              step.replies(Uint16Array.from(got, ([status]) => status), got.map(([, bytes]) => bytes));
            }
          }
        } catch (e) {
          step.fail(String(e?.message ?? e));
        }
      }
    } finally {
      step.free();
    }
  }
}
