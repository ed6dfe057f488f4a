// The JavaScript floor (scripts/bench-floor.mjs): the storage I/O of edgecdp's two hot paths for a returning
// visitor, in the same order, with the least code around it. It checks nothing, decides nothing and stores the
// events as JSON; what edgecdp takes beyond this Worker's time is the cost of its Wasm and of its rules.
//
//   POST /v1/batch  {writeKey, batch: [events of one anonymousId]}: KV get `config:current`, KV get the identity
//                   index entry (KV put a new one for a new visitor), then the profile's Durable Object: one
//                   storage read of the profile and its snapshot time, one storage write, and the KV snapshot
//                   written at once when the last one is a second old, else by the object's alarm.
//   POST /v1/decide {anonymousId, slots}: KV get `config:current`, the index entry and the profile snapshot.
//   GET  /healthz
//   POST /v1/imports  NDJSON of track events with a userId (scripts/bench-import.mjs --floor 1): rows put in one of
//                   64 partitions by user id, each partition stored in R2 as chunks of about 256 KB, a D1 row per
//                   chunk, a queue message per chunk. The consumer reads its chunk, and per person (32 at once):
//                   two KV reads (the index entry, and the erasure marker when there is none), then the person's
//                   object: one storage read, the profile written, the index entry read and written, the KV
//                   snapshot written, their times written; then the chunk's D1 row marked done and the chunk deleted.
//   GET  /v1/imports/{id}  the job's chunks done and rows applied, from D1.
const SNAPSHOT_EVERY_MS = 1000;
const CHUNK_BYTES = 256 * 1024;
const PARTITIONS = 64;
const WRITERS_AT_ONCE = 32;
const KEPT_EVENTS = 200;

export class FloorProfile {
  constructor(state, env) {
    this.state = state;
    this.env = env;
  }

  async fetch(request) {
    if (new URL(request.url).pathname === '/import') return this.import(await request.json());
    const { id, events } = await request.json();
    const storage = this.state.storage;
    const got = await storage.get(['profile', 'snapshot_at']);
    const profile = got.get('profile') || { id, events: [] };
    profile.events.push(...events);
    profile.events.splice(0, Math.max(0, profile.events.length - KEPT_EVENTS));
    const now = Date.now();
    const last = got.get('snapshot_at') || 0;
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
    const got = await storage.get(['profile', 'snapshot_at', 'index_at', 'moved_to', 'erased_at']);
    const profile = got.get('profile') || { id, events: [] };
    profile.events.push(...events);
    profile.events.splice(0, Math.max(0, profile.events.length - KEPT_EVENTS));
    await storage.put('profile', profile);
    if ((await this.env.EDGECDP.get(key)) !== id) {
      await this.env.EDGECDP.put(key, id);
      await storage.put('index_at', Date.now());
    }
    await this.env.EDGECDP.put(`profile:${id}`, JSON.stringify(profile));
    await storage.put('snapshot_at', Date.now());
    return Response.json({ stored: events.length });
  }

  async alarm() {
    const profile = await this.state.storage.get('profile');
    await this.state.storage.put('snapshot_at', Date.now());
    await this.env.EDGECDP.put(`profile:${profile.id}`, JSON.stringify(profile));
  }
}

const SCHEMA = ['CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, state TEXT, chunks INTEGER)',
  'CREATE TABLE IF NOT EXISTS chunks (job TEXT, n INTEGER, state TEXT, applied INTEGER, PRIMARY KEY (job, n))'];

/** FNV-1a of a string's UTF-16 units, 32 bits: the partition of a person. */
function partition(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h % PARTITIONS;
}

async function importFile(request, env) {
  await env.DB.batch(SCHEMA.map((q) => env.DB.prepare(q)));
  const job = crypto.randomUUID();
  const parts = Array.from({ length: PARTITIONS }, () => []);
  const sizes = new Array(PARTITIONS).fill(0);
  let n = 0;
  const store = async (rows) => env.IMPORTS.put(`imports/${job}/${n++}`, rows.join('\n'));
  const reader = request.body.pipeThrough(new TextDecoderStream()).getReader();
  let rest = '';
  const take = async (line) => {
    if (!line.trim()) return;
    const p = partition(JSON.parse(line).userId);
    parts[p].push(line);
    sizes[p] += line.length;
    if (sizes[p] >= CHUNK_BYTES) {
      await store(parts[p]);
      parts[p] = [];
      sizes[p] = 0;
    }
  };
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const lines = (rest + value).split('\n');
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
  return Response.json({ id: job, state: 'running', chunks: { done: 0, total: n } }, { status: 202 });
}

async function jobOf(id, env) {
  const row = await env.DB.prepare("SELECT j.state, j.chunks, sum(c.state = 'done'), sum(c.applied) FROM jobs j \
    JOIN chunks c ON c.job = j.id WHERE j.id = ?1").bind(id).raw();
  const [state, total, done, applied] = row[0];
  return { id, state: done === total ? 'done' : state, chunks: { done, total }, rows: { applied } };
}

async function applyChunk({ job, n }, env) {
  const chunk = await env.DB.prepare('SELECT j.state, c.state FROM jobs j JOIN chunks c ON c.job = j.id \
    WHERE j.id = ?1 AND c.n = ?2').bind(job, n).raw();
  if (chunk[0]?.[1] === 'done') return;
  const object = await env.IMPORTS.get(`imports/${job}/${n}`);
  const rows = (await object.text()).split('\n').map((l) => JSON.parse(l));
  rows.sort((a, b) => a.timestamp.localeCompare(b.timestamp));
  const people = new Map();
  for (const row of rows) people.set(row.userId, [...(people.get(row.userId) || []), row]);
  const queue = [...people];
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const [userId, events] = next;
      const key = `idx:user_id:${userId}`;
      let id = await env.EDGECDP.get(key);
      if (!id) {
        await env.EDGECDP.get(`erased:user_id:${userId}`);
        id = `p_${userId}`;
      }
      const stub = env.PROFILES.get(env.PROFILES.idFromName(id));
      const r = await stub.fetch('https://profile/import', { method: 'POST', body: JSON.stringify({ id, key, events }) });
      await r.arrayBuffer();
    }
  };
  await Promise.all(Array.from({ length: WRITERS_AT_ONCE }, worker));
  await env.DB.prepare("UPDATE chunks SET state = 'done', applied = ?3 WHERE job = ?1 AND n = ?2").bind(job, n, rows.length).run();
  await env.IMPORTS.delete(`imports/${job}/${n}`);
}

export default {
  async queue(batch, env) {
    for (const message of batch.messages) {
      await applyChunk(JSON.parse(message.body), env);
      message.ack();
    }
  },

  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    if (pathname === '/healthz') return new Response('ok');
    if (pathname === '/v1/imports' && request.method === 'POST') return importFile(request, env);
    if (pathname.startsWith('/v1/imports/')) return Response.json(await jobOf(pathname.slice(12), env));
    if (request.method !== 'POST') return new Response('not found', { status: 404 });
    const body = await request.json();
    if (pathname === '/v1/batch') {
      const anonymousId = body.batch[0].anonymousId;
      await env.EDGECDP.get('config:current');
      let id = await env.EDGECDP.get(`idx:a:${anonymousId}`);
      if (!id) {
        id = crypto.randomUUID();
        await env.EDGECDP.put(`idx:a:${anonymousId}`, id);
      }
      const stub = env.PROFILES.get(env.PROFILES.idFromName(id));
      const answer = await stub.fetch('https://profile/apply', {
        method: 'POST',
        body: JSON.stringify({ id, events: body.batch }),
      });
      return Response.json({ ok: true, ...(await answer.json()) });
    }
    if (pathname === '/v1/decide') {
      await env.EDGECDP.get('config:current');
      const id = await env.EDGECDP.get(`idx:a:${body.anonymousId}`);
      const snapshot = id ? await env.EDGECDP.get(`profile:${id}`, 'arrayBuffer') : null;
      return Response.json({
        profileId: id,
        segments: [],
        slots: { hero: { block: null, variant: null, html: snapshot ? '<h2>Welcome back</h2>' : '<h2>Welcome</h2>' } },
      });
    }
    return new Response('not found', { status: 404 });
  },
};
