var __defProp = Object.defineProperty;
var __name = (target, value) => __defProp(target, "name", { value, configurable: true });

// worker.js
var SNAPSHOT_EVERY_MS = 1e3;
var CHUNK_BYTES = 256 * 1024;
var PARTITIONS = 64;
var WRITERS_AT_ONCE = 32;
var KEPT_EVENTS = 200;
var FloorProfile = class {
  static {
    __name(this, "FloorProfile");
  }
  constructor(state, env) {
    this.state = state;
    this.env = env;
  }
  async fetch(request) {
    if (new URL(request.url).pathname === "/import") return this.import(await request.json());
    const { id, events } = await request.json();
    const storage = this.state.storage;
    const got = await storage.get(["profile", "snapshot_at"]);
    const profile = got.get("profile") || { id, events: [] };
    profile.events.push(...events);
    profile.events.splice(0, Math.max(0, profile.events.length - KEPT_EVENTS));
    const now = Date.now();
    const last = got.get("snapshot_at") || 0;
    if (now - last >= SNAPSHOT_EVERY_MS) {
      await storage.put({ profile, snapshot_at: now });
      await this.env.EDGECDP.put(`profile:${id}`, JSON.stringify(profile));
    } else {
      await storage.put({ profile });
      await storage.setAlarm(last + SNAPSHOT_EVERY_MS);
    }
    return Response.json({ accepted: events.length });
  }
  async import({ id, key, events }) {
    const storage = this.state.storage;
    const got = await storage.get(["profile", "snapshot_at", "index_at", "moved_to", "erased_at"]);
    const profile = got.get("profile") || { id, events: [] };
    profile.events.push(...events);
    profile.events.splice(0, Math.max(0, profile.events.length - KEPT_EVENTS));
    await storage.put("profile", profile);
    if (await this.env.EDGECDP.get(key) !== id) {
      await this.env.EDGECDP.put(key, id);
      await storage.put("index_at", Date.now());
    }
    await this.env.EDGECDP.put(`profile:${id}`, JSON.stringify(profile));
    await storage.put("snapshot_at", Date.now());
    return Response.json({ stored: events.length });
  }
  async alarm() {
    const profile = await this.state.storage.get("profile");
    await this.state.storage.put("snapshot_at", Date.now());
    await this.env.EDGECDP.put(`profile:${profile.id}`, JSON.stringify(profile));
  }
};
var SCHEMA = [
  "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, state TEXT, chunks INTEGER)",
  "CREATE TABLE IF NOT EXISTS chunks (job TEXT, n INTEGER, state TEXT, applied INTEGER, PRIMARY KEY (job, n))"
];
function partition(text) {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
  return h % PARTITIONS;
}
__name(partition, "partition");
async function importFile(request, env) {
  await env.DB.batch(SCHEMA.map((q) => env.DB.prepare(q)));
  const job = crypto.randomUUID();
  const parts = Array.from({ length: PARTITIONS }, () => []);
  const sizes = new Array(PARTITIONS).fill(0);
  let n = 0;
  const store = /* @__PURE__ */ __name(async (rows) => env.IMPORTS.put(`imports/${job}/${n++}`, rows.join("\n")), "store");
  const reader = request.body.pipeThrough(new TextDecoderStream()).getReader();
  let rest = "";
  const take = /* @__PURE__ */ __name(async (line) => {
    if (!line.trim()) return;
    const p = partition(JSON.parse(line).userId);
    parts[p].push(line);
    sizes[p] += line.length;
    if (sizes[p] >= CHUNK_BYTES) {
      await store(parts[p]);
      parts[p] = [];
      sizes[p] = 0;
    }
  }, "take");
  for (; ; ) {
    const { done, value } = await reader.read();
    if (done) break;
    const lines = (rest + value).split("\n");
    rest = lines.pop();
    for (const line of lines) await take(line);
  }
  await take(rest);
  let pack = [];
  let packed = 0;
  for (let p = 0; p < PARTITIONS; p++) {
    if (!parts[p].length) continue;
    if (pack.length && packed + sizes[p] > CHUNK_BYTES) {
      await store(pack);
      pack = [];
      packed = 0;
    }
    pack.push(...parts[p]);
    packed += sizes[p];
  }
  if (pack.length) await store(pack);
  const statements = [env.DB.prepare("INSERT INTO jobs VALUES (?1, 'running', ?2)").bind(job, n)];
  for (let i = 0; i < n; i++) statements.push(env.DB.prepare("INSERT INTO chunks VALUES (?1, ?2, 'queued', 0)").bind(job, i));
  for (let i = 0; i < statements.length; i += 50) await env.DB.batch(statements.slice(i, i + 50));
  const messages = Array.from({ length: n }, (_, i) => ({ body: JSON.stringify({ job, n: i }) }));
  for (let i = 0; i < messages.length; i += 100) await env.IMPORT_CHUNKS.sendBatch(messages.slice(i, i + 100));
  return Response.json({ id: job, state: "running", chunks: { done: 0, total: n } }, { status: 202 });
}
__name(importFile, "importFile");
async function jobOf(id, env) {
  const row = await env.DB.prepare("SELECT j.state, j.chunks, sum(c.state = 'done'), sum(c.applied) FROM jobs j     JOIN chunks c ON c.job = j.id WHERE j.id = ?1").bind(id).raw();
  const [state, total, done, applied] = row[0];
  return { id, state: done === total ? "done" : state, chunks: { done, total }, rows: { applied } };
}
__name(jobOf, "jobOf");
async function applyChunk({ job, n }, env) {
  const chunk = await env.DB.prepare("SELECT j.state, c.state FROM jobs j JOIN chunks c ON c.job = j.id     WHERE j.id = ?1 AND c.n = ?2").bind(job, n).raw();
  if (chunk[0]?.[1] === "done") return;
  const object = await env.IMPORTS.get(`imports/${job}/${n}`);
  const rows = (await object.text()).split("\n").map((l) => JSON.parse(l));
  rows.sort((a, b) => a.timestamp.localeCompare(b.timestamp));
  const people = /* @__PURE__ */ new Map();
  for (const row of rows) people.set(row.userId, [...people.get(row.userId) || [], row]);
  const queue = [...people];
  const worker = /* @__PURE__ */ __name(async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const [userId, events] = next;
      const key = `idx:user_id:${userId}`;
      let id = await env.EDGECDP.get(key);
      if (!id) {
        await env.EDGECDP.get(`erased:user_id:${userId}`);
        id = `p_${userId}`;
      }
      const stub = env.PROFILES.get(env.PROFILES.idFromName(id));
      const r = await stub.fetch("https://profile/import", { method: "POST", body: JSON.stringify({ id, key, events }) });
      await r.arrayBuffer();
    }
  }, "worker");
  await Promise.all(Array.from({ length: WRITERS_AT_ONCE }, worker));
  await env.DB.prepare("UPDATE chunks SET state = 'done', applied = ?3 WHERE job = ?1 AND n = ?2").bind(job, n, rows.length).run();
  await env.IMPORTS.delete(`imports/${job}/${n}`);
}
__name(applyChunk, "applyChunk");
var worker_default = {
  async queue(batch, env) {
    for (const message of batch.messages) {
      await applyChunk(JSON.parse(message.body), env);
      message.ack();
    }
  },
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    if (pathname === "/healthz") return new Response("ok");
    if (pathname === "/v1/imports" && request.method === "POST") return importFile(request, env);
    if (pathname.startsWith("/v1/imports/")) return Response.json(await jobOf(pathname.slice(12), env));
    if (request.method !== "POST") return new Response("not found", { status: 404 });
    const body = await request.json();
    if (pathname === "/v1/batch") {
      const anonymousId = body.batch[0].anonymousId;
      await env.EDGECDP.get("config:current");
      let id = await env.EDGECDP.get(`idx:a:${anonymousId}`);
      if (!id) {
        id = crypto.randomUUID();
        await env.EDGECDP.put(`idx:a:${anonymousId}`, id);
      }
      const stub = env.PROFILES.get(env.PROFILES.idFromName(id));
      const answer = await stub.fetch("https://profile/apply", {
        method: "POST",
        body: JSON.stringify({ id, events: body.batch })
      });
      return Response.json({ ok: true, ...await answer.json() });
    }
    if (pathname === "/v1/decide") {
      await env.EDGECDP.get("config:current");
      const id = await env.EDGECDP.get(`idx:a:${body.anonymousId}`);
      const snapshot = id ? await env.EDGECDP.get(`profile:${id}`, "arrayBuffer") : null;
      return Response.json({
        profileId: id,
        segments: [],
        slots: { hero: { block: null, variant: null, html: snapshot ? "<h2>Welcome back</h2>" : "<h2>Welcome</h2>" } }
      });
    }
    return new Response("not found", { status: 404 });
  }
};

// ../../node_modules/wrangler/templates/middleware/middleware-ensure-req-body-drained.ts
var drainBody = /* @__PURE__ */ __name(async (request, env, _ctx, middlewareCtx) => {
  try {
    return await middlewareCtx.next(request, env);
  } finally {
    try {
      if (request.body !== null && !request.bodyUsed) {
        const reader = request.body.getReader();
        while (!(await reader.read()).done) {
        }
      }
    } catch (e) {
      console.error("Failed to drain the unused request body.", e);
    }
  }
}, "drainBody");
var middleware_ensure_req_body_drained_default = drainBody;

// ../../node_modules/wrangler/templates/middleware/middleware-scheduled.ts
var scheduled = /* @__PURE__ */ __name(async (request, env, _ctx, middlewareCtx) => {
  const url = new URL(request.url);
  if (url.pathname === "/__scheduled") {
    const cron = url.searchParams.get("cron") ?? "";
    await middlewareCtx.dispatch("scheduled", { cron });
    return new Response("Ran scheduled event");
  }
  const resp = await middlewareCtx.next(request, env);
  if (request.headers.get("referer")?.endsWith("/__scheduled") && url.pathname === "/favicon.ico" && resp.status === 500) {
    return new Response(null, { status: 404 });
  }
  return resp;
}, "scheduled");
var middleware_scheduled_default = scheduled;

// ../../node_modules/wrangler/templates/middleware/middleware-miniflare3-json-error.ts
function reduceError(e) {
  return {
    name: e?.name,
    message: e?.message ?? String(e),
    stack: e?.stack,
    cause: e?.cause === void 0 ? void 0 : reduceError(e.cause)
  };
}
__name(reduceError, "reduceError");
var jsonError = /* @__PURE__ */ __name(async (request, env, _ctx, middlewareCtx) => {
  try {
    return await middlewareCtx.next(request, env);
  } catch (e) {
    const error = reduceError(e);
    return Response.json(error, {
      status: 500,
      headers: { "MF-Experimental-Error-Stack": "true" }
    });
  }
}, "jsonError");
var middleware_miniflare3_json_error_default = jsonError;

// .wrangler/tmp/bundle-9O7kSg/middleware-insertion-facade.js
var __INTERNAL_WRANGLER_MIDDLEWARE__ = [
  middleware_ensure_req_body_drained_default,
  middleware_scheduled_default,
  middleware_miniflare3_json_error_default
];
var middleware_insertion_facade_default = worker_default;

// ../../node_modules/wrangler/templates/middleware/common.ts
var __facade_middleware__ = [];
function __facade_register__(...args) {
  __facade_middleware__.push(...args.flat());
}
__name(__facade_register__, "__facade_register__");
function __facade_invokeChain__(request, env, ctx, dispatch, middlewareChain) {
  const [head, ...tail] = middlewareChain;
  const middlewareCtx = {
    dispatch,
    next(newRequest, newEnv) {
      return __facade_invokeChain__(newRequest, newEnv, ctx, dispatch, tail);
    }
  };
  return head(request, env, ctx, middlewareCtx);
}
__name(__facade_invokeChain__, "__facade_invokeChain__");
function __facade_invoke__(request, env, ctx, dispatch, finalMiddleware) {
  return __facade_invokeChain__(request, env, ctx, dispatch, [
    ...__facade_middleware__,
    finalMiddleware
  ]);
}
__name(__facade_invoke__, "__facade_invoke__");

// .wrangler/tmp/bundle-9O7kSg/middleware-loader.entry.ts
var __Facade_ScheduledController__ = class ___Facade_ScheduledController__ {
  constructor(scheduledTime, cron, noRetry) {
    this.scheduledTime = scheduledTime;
    this.cron = cron;
    this.#noRetry = noRetry;
  }
  static {
    __name(this, "__Facade_ScheduledController__");
  }
  #noRetry;
  noRetry() {
    if (!(this instanceof ___Facade_ScheduledController__)) {
      throw new TypeError("Illegal invocation");
    }
    this.#noRetry();
  }
};
function wrapExportedHandler(worker) {
  if (__INTERNAL_WRANGLER_MIDDLEWARE__ === void 0 || __INTERNAL_WRANGLER_MIDDLEWARE__.length === 0) {
    return worker;
  }
  for (const middleware of __INTERNAL_WRANGLER_MIDDLEWARE__) {
    __facade_register__(middleware);
  }
  const fetchDispatcher = /* @__PURE__ */ __name(function(request, env, ctx) {
    if (worker.fetch === void 0) {
      throw new Error("Handler does not export a fetch() function.");
    }
    return worker.fetch(request, env, ctx);
  }, "fetchDispatcher");
  return {
    ...worker,
    fetch(request, env, ctx) {
      const dispatcher = /* @__PURE__ */ __name(function(type, init) {
        if (type === "scheduled" && worker.scheduled !== void 0) {
          const controller = new __Facade_ScheduledController__(
            Date.now(),
            init.cron ?? "",
            () => {
            }
          );
          return worker.scheduled(controller, env, ctx);
        }
      }, "dispatcher");
      return __facade_invoke__(request, env, ctx, dispatcher, fetchDispatcher);
    }
  };
}
__name(wrapExportedHandler, "wrapExportedHandler");
function wrapWorkerEntrypoint(klass) {
  if (__INTERNAL_WRANGLER_MIDDLEWARE__ === void 0 || __INTERNAL_WRANGLER_MIDDLEWARE__.length === 0) {
    return klass;
  }
  for (const middleware of __INTERNAL_WRANGLER_MIDDLEWARE__) {
    __facade_register__(middleware);
  }
  return class extends klass {
    #fetchDispatcher = /* @__PURE__ */ __name((request, env, ctx) => {
      this.env = env;
      this.ctx = ctx;
      if (super.fetch === void 0) {
        throw new Error("Entrypoint class does not define a fetch() function.");
      }
      return super.fetch(request);
    }, "#fetchDispatcher");
    #dispatcher = /* @__PURE__ */ __name((type, init) => {
      if (type === "scheduled" && super.scheduled !== void 0) {
        const controller = new __Facade_ScheduledController__(
          Date.now(),
          init.cron ?? "",
          () => {
          }
        );
        return super.scheduled(controller);
      }
    }, "#dispatcher");
    fetch(request) {
      return __facade_invoke__(
        request,
        this.env,
        this.ctx,
        this.#dispatcher,
        this.#fetchDispatcher
      );
    }
  };
}
__name(wrapWorkerEntrypoint, "wrapWorkerEntrypoint");
var WRAPPED_ENTRY;
if (typeof middleware_insertion_facade_default === "object") {
  WRAPPED_ENTRY = wrapExportedHandler(middleware_insertion_facade_default);
} else if (typeof middleware_insertion_facade_default === "function") {
  WRAPPED_ENTRY = wrapWorkerEntrypoint(middleware_insertion_facade_default);
}
var middleware_loader_entry_default = WRAPPED_ENTRY;
export {
  FloorProfile,
  __INTERNAL_WRANGLER_MIDDLEWARE__,
  middleware_loader_entry_default as default
};
//# sourceMappingURL=worker.js.map
