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
const SNAPSHOT_EVERY_MS = 1000;
const KEPT_EVENTS = 200;

export class FloorProfile {
  constructor(state, env) {
    this.state = state;
    this.env = env;
  }

  async fetch(request) {
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

  async alarm() {
    const profile = await this.state.storage.get('profile');
    await this.state.storage.put('snapshot_at', Date.now());
    await this.env.EDGECDP.put(`profile:${profile.id}`, JSON.stringify(profile));
  }
}

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    if (pathname === '/healthz') return new Response('ok');
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
