// The marketer's console: one page, talking only to the public admin API with the session the sign-in opens
// (an HttpOnly cookie this script cannot read, and a CSRF token it sends with every change). Everything a view
// shows comes from the API and is written into the page as text, never as HTML.

let csrf = null;
const view = document.getElementById('view');

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, body) {
    const e = body && body.error;
    super(e ? `${e.message}${e.path ? ` (at ${e.path})` : ''}` : `the server answered ${status}`);
    this.status = status;
    this.body = body;
  }
}

// A body is JSON unless it is a file (a Blob): that goes as it is, with the type its caller names, so that the
// browser streams it from disk instead of this script reading it into memory.
async function api(method, path, body, headers = {}) {
  const h = { ...headers };
  if (body !== undefined && !h['content-type']) h['content-type'] = 'application/json';
  if (method !== 'GET' && csrf) h['x-edgecdp-csrf'] = csrf;
  const r = await fetch(path, { method, headers: h, credentials: 'same-origin',
    body: body === undefined ? undefined : typeof body === 'string' || body instanceof Blob ? body : JSON.stringify(body) });
  if (r.status === 401 && path !== '/v1/session') { showSignIn(); throw new ApiError(401, null); }
  const text = await r.text();
  let json;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!r.ok) throw new ApiError(r.status, json);
  return { json, headers: r.headers, status: r.status };
}

// ---------------------------------------------------------------- building the page, as text only

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

function table(caption, head, rows, numeric = []) {
  return el('table', {},
    el('caption', {}, caption),
    el('thead', {}, el('tr', {}, head.map((h, i) => el('th', { scope: 'col', class: numeric.includes(i) ? 'num' : null }, h)))),
    el('tbody', {}, rows.length ? rows.map((r) => el('tr', {}, r.map((c, i) => el('td', { class: numeric.includes(i) ? 'num' : null }, c))))
      : el('tr', {}, el('td', { colspan: head.length, class: 'muted' }, 'None.'))));
}

// Why a send was held, in words, for the reasons that are the person's own (the rest show as their code).
const HELD = {
  paused_unanswered: 'paused_unanswered: the last sends of this channel went unanswered (adaptive pressure)',
  adaptive_cap: 'adaptive_cap: this person answers less when sent more, so their cap is lower (adaptive pressure)',
};
const why = (reason) => (reason && HELD[reason]) || show(reason);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '—');
const show = (v) => (v === null || v === undefined ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v));

function render(title, ...children) {
  view.replaceChildren(el('h1', {}, title), ...children);
  document.getElementById('main').focus();
}

function failure(e) {
  return el('p', { class: 'error', role: 'alert' }, e instanceof Error ? e.message : String(e));
}

/** A confirmation dialog; `typed` asks the person to type that text first. Resolves true when confirmed. */
function confirmDialog(title, text, action, typed = null) {
  return new Promise((resolve) => {
    const input = typed ? el('input', { id: 'confirm-text', autocomplete: 'off' }) : null;
    const go = el('button', { type: 'button', class: 'danger', disabled: typed ? true : null }, action);
    const cancel = el('button', { type: 'button' }, 'Cancel');
    const d = el('dialog', { 'aria-labelledby': 'confirm-title' },
      el('h2', { id: 'confirm-title' }, title), el('p', {}, text),
      typed ? el('label', { for: 'confirm-text' }, `Type ${typed} to confirm`) : null, input,
      el('p', { class: 'row' }, cancel, go));
    if (input) input.addEventListener('input', () => { go.disabled = input.value !== typed; });
    const close = (v) => { d.close(); d.remove(); resolve(v); };
    go.addEventListener('click', () => close(true));
    cancel.addEventListener('click', () => close(false));
    d.addEventListener('cancel', () => close(false));
    document.body.append(d);
    d.showModal();
    (input || cancel).focus();
  });
}

// ---------------------------------------------------------------- sign-in

function showSignIn() {
  csrf = null;
  document.getElementById('nav').hidden = true;
  view.replaceChildren();
  document.getElementById('sign-in').hidden = false;
  document.getElementById('token').focus();
}

async function signIn(event) {
  event.preventDefault();
  const token = document.getElementById('token');
  const error = document.getElementById('sign-in-error');
  error.textContent = '';
  try {
    const { json } = await api('POST', '/v1/session', { token: token.value });
    token.value = '';
    csrf = json.csrf;
    started();
  } catch (e) {
    error.textContent = e.status === 401 ? 'That is not this edgecdp\'s admin token.' : e.message;
  }
}

async function signOut() {
  try { await api('DELETE', '/v1/session'); } finally { showSignIn(); }
}

function started() {
  document.getElementById('sign-in').hidden = true;
  document.getElementById('nav').hidden = false;
  route();
}

// ---------------------------------------------------------------- people

async function personView(params) {
  const id = params.get('id') || '';
  const form = el('form', { class: 'card', id: 'find' },
    el('div', { class: 'row' },
      el('div', {}, el('label', { for: 'find-type' }, 'Identity type'),
        el('select', { id: 'find-type' }, ['user_id', 'anonymous_id', 'email', 'phone'].map((t) => el('option', { value: t, selected: id.startsWith(`${t}:`) || null }, t)))),
      el('div', {}, el('label', { for: 'find-value' }, 'Value'), el('input', { id: 'find-value', value: id.includes(':') ? id.slice(id.indexOf(':') + 1) : '', required: true })),
      el('button', { type: 'submit', class: 'primary' }, 'Find')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = `#/person?id=${encodeURIComponent(`${form.querySelector('#find-type').value}:${form.querySelector('#find-value').value}`)}`;
  });
  render('People', form);
  if (!id) {
    view.append(el('p', { class: 'muted' }, 'Find a person by any of their identities: a user id, an anonymous id, or an e-mail or phone number if your configuration indexes them.'));
    return;
  }
  let p;
  try {
    p = (await api('GET', `/v1/profiles/${encodeURIComponent(id).replace('%3A', ':')}/export`)).json;
  } catch (e) {
    view.append(e.status === 404 ? el('p', { role: 'status' }, `Nobody is known as ${id}.`) : failure(e));
    return;
  }
  const key = id;
  const consent = ['analytics', 'personalization', 'advertising', 'marketing'].map((k) =>
    el('span', { class: `pill ${p.consent[k] === true ? 'yes' : p.consent[k] === false ? 'no' : ''}` }, `${k}: ${p.consent[k] === undefined ? 'not asked' : p.consent[k] ? 'granted' : 'refused'}`));
  view.append(
    el('div', { class: 'card' },
      el('h2', {}, 'Who'),
      el('p', {}, `Profile ${p.id}, first seen ${when(p.firstSeen)}, last seen ${when(p.lastSeen)}.`),
      table('Identities', ['Type', 'Value'], p.identities.map((i) => [i.type, i.value])),
      el('h2', {}, 'Consent'), el('p', {}, consent),
      table('Consent trail', ['When', 'Purpose', 'Choice', 'Source'], p.consentHistory.map((c) => [when(c.at), c.purpose, c.granted ? 'granted' : 'refused', c.source]))),
    el('div', { class: 'grid' },
      // A contact point journeys may write to is one someone proved (SECURITY.md); the others are the page's word.
      el('div', { class: 'card' }, table('Traits', ['Trait', 'Value', 'Set', 'Proven contact point'], Object.entries(p.traits).map(([k, v]) => {
        const proof = (p.contactPoints || {})[k];
        return [k, show(v), when(p.traitsSetAt[k]), proof ? `by ${proof.by}, ${when(proof.at)}` : '—'];
      }))),
      el('div', { class: 'card' },
        table('Event counts', ['Event', 'Count'], Object.entries(p.counts).map(([k, v]) => [k, v]), [1]),
        table('Computed', ['Name', 'Value'], [
          ['sessions', p.computed.sessions], ['orders', p.computed.orders], ['lifetime value', p.computed.lifetimeValue],
          ...Object.entries(p.computed.traits || {}), ...Object.entries(p.scores || {}).map(([k, v]) => [`score ${k}`, Math.round(v * 100) / 100])], [1]))),
    el('div', { class: 'grid' },
      el('div', { class: 'card' },
        table('Audiences', ['Audience', 'Member since'], p.audiences.members.map((m) => [m.audience, when(m.since)])),
        el('p', { class: 'muted' }, p.audiences.nextChange ? `Time alone may change a membership at ${when(p.audiences.nextChange)}.` : 'Time alone changes no membership.'),
        table('Segments now (outside any page)', ['Segment'], p.segments.map((s) => [s]))),
      el('div', { class: 'card' },
        table('Journeys running', ['Journey', 'Key', 'Step', 'Since', 'Wakes'], p.journeys.instances.map((i) => [i.journey, i.key || '—', i.step, when(i.since), when(i.wakeAt)])),
        table('Journeys ended', ['Journey', 'Key', 'Step', 'Reason', 'When'], p.journeys.ended.map((e) => [e.journey, e.key || '—', e.step, e.reason, when(e.at)])))),
    predictionsCard(p.predictions),
    el('div', { class: 'card' },
      table('Deliveries', ['When', 'Destination', 'Journey', 'Step', 'Outcome', 'Reason'], p.deliveries.map((d) => [when(d.at), d.destination, show(d.journey), show(d.step), d.outcome, why(d.reason)])),
      table('Experiments', ['Experiment', 'Variant', 'Exposed', 'Converted'], Object.entries(p.experiments || {}).map(([k, a]) => [k, a.variant, when(a.at), when(a.convertedAt)]))),
    mergesCard(p, key),
    previewCard(key),
    el('div', { class: 'card' },
      el('h2', {}, 'Access and erasure'),
      el('p', { class: 'row' },
        el('button', { type: 'button', id: 'export', onclick: () => download(`${p.id}.json`, JSON.stringify(p, null, 2)) }, 'Download everything held (JSON)'),
        el('button', { type: 'button', id: 'erase', class: 'danger', onclick: () => erase(key, p) }, 'Erase this person'))));
}

/** The person's predictions: each value with what drove it, and the model version that made them. */
function predictionsCard(pr) {
  if (!pr) return null;
  const model = pr.model ? `model version ${pr.model.version}${pr.model.pinned ? ' (pinned in the configuration)' : `, fitted ${when(pr.model.fittedAt)}`}`
    : 'no model fitted yet';
  return el('div', { class: 'card', id: 'predictions' },
    table(`Predictions (${model})`, ['Prediction', 'Value', 'What drove it'],
      pr.values.map((v) => [v.name, v.name.startsWith('value') || v.name.startsWith('purchases') ? v.value.toFixed(2) : `${(v.value * 100).toFixed(1)}%`, v.why]), [1]));
}

function mergesCard(p, key) {
  const rows = p.merges.map((m) => [when(m.at), m.absorbedId, m.identities.map((i) => `${i.type}:${i.value}`).join(', ') || '—',
    m.splittable ? el('button', { type: 'button', class: 'split', onclick: () => split(key, m) }, 'Split off…') : el('span', { class: 'muted' }, 'too old to split')]);
  return el('div', { class: 'card' }, table('Merges (profiles this one absorbed)', ['When', 'Absorbed profile', 'Identities it brought', ''], rows));
}

async function split(key, m) {
  const ids = m.identities.map((i) => `${i.type}:${i.value}`).join(', ') || 'no identity of its own';
  const ok = await confirmDialog('Split this merge?', `Profile ${m.absorbedId} becomes a person of its own again, with ${ids}, and the events, counts and traits it brought. Events since the merge stay here.`, 'Split');
  if (!ok) return;
  try {
    await api('POST', `/v1/profiles/${encodeURIComponent(key).replace('%3A', ':')}/split`, { profileId: m.absorbedId });
    route();
  } catch (e) { view.prepend(failure(e)); }
}

async function erase(key, p) {
  const ok = await confirmDialog('Erase this person?', `Everything held about profile ${p.id} goes: its identities, traits, events, consent trail and audience memberships, at once and for good. The delivery log keeps its counts without naming them.`, 'Erase', 'erase');
  if (!ok) return;
  try {
    await api('DELETE', `/v1/profiles/${encodeURIComponent(key).replace('%3A', ':')}`);
    render('People', el('p', { role: 'status', class: 'ok' }, `${key} was erased.`));
  } catch (e) { view.prepend(failure(e)); }
}

function download(name, text) {
  const a = el('a', { href: URL.createObjectURL(new Blob([text], { type: 'application/json' })), download: name });
  document.body.append(a);
  a.click();
  a.remove();
}

function previewCard(key) {
  const out = el('div', { id: 'preview-result' });
  const form = el('form', { id: 'preview' },
    el('div', { class: 'row' },
      el('div', {}, el('label', { for: 'pv-url' }, 'Page URL'), el('input', { id: 'pv-url', placeholder: 'https://shop.example/bags' })),
      el('div', {}, el('label', { for: 'pv-country' }, 'Country'), el('input', { id: 'pv-country', placeholder: 'DE', maxlength: 2 })),
      el('div', {}, el('label', { for: 'pv-device' }, 'Device'), el('select', { id: 'pv-device' }, ['', 'desktop', 'mobile', 'tablet'].map((d) => el('option', { value: d }, d || 'any')))),
      el('div', {}, el('label', { for: 'pv-at' }, 'Time'), el('input', { id: 'pv-at', type: 'datetime-local' })),
      el('button', { type: 'submit', class: 'primary' }, 'Preview')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = (id) => form.querySelector(id).value.trim();
    const context = {};
    if (v('#pv-url')) context.page = { url: v('#pv-url') };
    if (v('#pv-country')) context.location = { country: v('#pv-country').toUpperCase() };
    const body = { context };
    if (v('#pv-device')) body.device = v('#pv-device');
    if (v('#pv-at')) body.at = new Date(v('#pv-at')).toISOString();
    try {
      const { json } = await api('POST', `/v1/profiles/${encodeURIComponent(key).replace('%3A', ':')}/preview`, body);
      const x = json.explain || {};
      out.replaceChildren(...[
        x.personalized === false ? el('p', { class: 'warn' }, `Everything shows its fallback: ${x.reason || 'no personalization consent'}.`) : null,
        table(`What this person would see at ${when(json.at)}`, ['Slot', 'Block shown', 'Variant', 'Why not the others'],
          Object.entries(json.slots).map(([slot, a]) => [slot, a.block || 'fallback', show(a.variant),
            ((x.slots && x.slots[slot] && x.slots[slot].skipped) || []).map((s) => `${s.block}: ${s.detail}`).join('; ') || '—'])),
      ].filter(Boolean));
    } catch (err) { out.replaceChildren(failure(err)); }
  });
  return el('div', { class: 'card' }, el('h2', {}, 'Live preview'),
    el('p', { class: 'muted' }, 'Every slot\'s decision for this person on a page, from a country, on a device, at a time. Nothing is recorded.'), form, out);
}

// ---------------------------------------------------------------- audiences

async function audiencesView(params) {
  render('Audiences');
  let list;
  try { list = (await api('GET', '/v1/audiences')).json; } catch (e) { view.append(failure(e)); return; }
  const max = Math.max(1, ...list.audiences.flatMap((a) => [a.entered.last7d, a.exited.last7d]));
  const bar = (n, cls) => el('span', {}, el('span', { class: `bar ${cls}`, style: null, 'aria-hidden': 'true', 'data-width': n }), ` ${n}`);
  const t = table('Audiences, from the membership index', ['Audience', 'Size', 'Entered 24 h', 'Exited 24 h', 'Entered 7 days', 'Exited 7 days', ''],
    list.audiences.map((a) => [a.id, a.size, a.entered.last24h, a.exited.last24h, bar(a.entered.last7d, 'enter'), bar(a.exited.last7d, 'exit'),
      el('a', { href: `#/audiences?id=${encodeURIComponent(a.id)}`, 'aria-label': `Members of ${a.id}` }, 'Members')]), [1, 2, 3]);
  // Bar lengths are set as properties (the policy allows no inline style attributes).
  t.querySelectorAll('.bar').forEach((b) => { b.style.width = `${Math.round((Number(b.dataset.width) / max) * 120)}px`; });
  view.append(el('div', { class: 'card' }, t,
    el('p', { class: 'muted' }, `Segments that read the request (page, country, device, ...) are not audiences: ${list.requestSegments.join(', ') || 'none'}.`)));
  const id = params.get('id');
  if (id) {
    await historyCard(id).catch((e) => view.append(failure(e)));
    await membersCard(id, params.get('cursor'));
  }
}

/** A chart of an audience's size, entries and exits per day (uPlot), with the same numbers as a table. */
async function historyCard(id) {
  const { json } = await api('GET', `/v1/audiences/${encodeURIComponent(id)}/history?days=30`);
  const days = json.days;
  const chart = el('div', { id: 'history-chart', role: 'img', 'aria-label': `${id}: size, entries and exits per day over the last 30 days` });
  const numbers = el('details', {}, el('summary', {}, 'The same as a table'),
    table(`${id}, per day`, ['Day', 'Size', 'Entered', 'Exited'], days.map((d) => [d.day, d.size, d.entered, d.exited]), [1, 2, 3]));
  view.append(el('div', { class: 'card', id: 'history' }, el('h2', {}, `${id} over the last 30 days`), chart, numbers));
  if (typeof uPlot === 'undefined') { chart.append(el('p', { class: 'muted' }, 'The chart library did not load; the table has the numbers.')); return; }
  const x = days.map((d) => Date.parse(`${d.day}T12:00:00Z`) / 1000);
  // eslint-disable-next-line no-new, no-undef
  new uPlot({
    width: Math.min(1100, chart.clientWidth || 900), height: 240,
    series: [{}, { label: 'Size', stroke: '#2457c5', width: 2 }, { label: 'Entered', stroke: '#1b7f3b' }, { label: 'Exited', stroke: '#c7772b' }],
    axes: [{}, { label: 'people' }],
  }, [x, days.map((d) => d.size), days.map((d) => d.entered), days.map((d) => d.exited)], chart);
}

async function membersCard(id, cursor) {
  const q = new URLSearchParams({ limit: '50' });
  if (cursor) q.set('cursor', cursor);
  try {
    const { json } = await api('GET', `/v1/audiences/${encodeURIComponent(id)}/members?${q}`);
    view.append(el('div', { class: 'card', id: 'members' },
      table(`Members of ${id}`, ['Identity', 'Member since', ''], json.members.map((m) => [m.identity ? `${m.identity.type}:${m.identity.value}` : m.profileId, when(m.since),
        m.identity ? el('a', { href: `#/person?id=${encodeURIComponent(`${m.identity.type}:${m.identity.value}`)}` }, 'Open') : '—'])),
      el('p', { class: 'row' },
        json.next ? el('a', { href: `#/audiences?id=${encodeURIComponent(id)}&cursor=${encodeURIComponent(json.next)}` }, 'Next page') : el('span', { class: 'muted' }, 'Last page.'),
        el('a', { href: `/v1/audiences/${encodeURIComponent(id)}/export?format=csv`, download: `${id}.csv` }, 'Export CSV'),
        el('a', { href: `/v1/audiences/${encodeURIComponent(id)}/export?format=ndjson`, download: `${id}.ndjson` }, 'Export NDJSON'))));
  } catch (e) { view.append(failure(e)); }
}

// ---------------------------------------------------------------- journeys and deliveries

async function deliveriesView() {
  render('Journeys & deliveries');
  let stats;
  let config;
  let journeys;
  try {
    stats = (await api('GET', '/v1/destinations')).json;
    config = (await api('GET', '/v1/config')).json;
    journeys = (await api('GET', '/v1/journeys')).json;
  } catch (e) { view.append(failure(e)); return; }
  view.append(el('div', { class: 'card' },
    table('Sends by destination', ['Destination', 'Channel', 'Consent', 'Sent', 'Retried', 'Dead-lettered', 'Deferred', 'Suppressed (why)'],
      stats.destinations.map((d) => [d.id, show(d.channel), show(d.purpose), d.sent, d.retried, d.deadLettered, d.deferred,
        Object.entries(d.suppressed).map(([k, v]) => `${k} ${v}`).join(', ') || '—']), [3, 4, 5, 6])));
  const described = Object.fromEntries((config.journeys || []).map((j) => [j.id, j]));
  for (const j of journeys.journeys) {
    const c = described[j.id];
    const trigger = !c ? 'No longer in the configuration.'
      : c.trigger.event ? `Starts on ${c.trigger.event}${c.trigger.nth ? ` (the ${c.trigger.nth}th)` : ''}.`
        : `Starts when someone ${c.trigger.on === 'exited' ? 'leaves' : 'enters'} ${c.trigger.audience}.`;
    const max = Math.max(1, ...j.steps.map((s) => s.running));
    const steps = table(`People at each step now (${j.running} in all)`, ['Step', 'Kind', 'People'],
      j.steps.map((s) => [s.step, show(s.kind), el('span', {}, el('span', { class: 'bar', 'data-width': s.running, 'aria-hidden': 'true' }), ` ${s.running}`)]));
    steps.querySelectorAll('.bar').forEach((b) => { b.style.width = `${Math.round((Number(b.dataset.width) / max) * 160)}px`; });
    view.append(el('div', { class: 'card journey', 'data-journey': j.id },
      el('h2', {}, j.id), el('p', {}, [c && c.name ? `${c.name}. ` : '', trigger].join('')), steps,
      table('Ended in the last 30 days, by reason', ['Reason', 'Instances'], Object.entries(j.ended).map(([k, v]) => [k, v]), [1])));
  }
  view.append(el('p', { class: 'muted' }, 'Where each person is in a journey shows on their page (People).'));
}

// ---------------------------------------------------------------- experiments

/** The standard normal distribution function (Abramowitz and Stegun 26.2.17, error below 1e-7). */
function phi(z) {
  const t = 1 / (1 + 0.2316419 * Math.abs(z));
  const d = 0.3989423 * Math.exp((-z * z) / 2);
  const p = d * t * (0.3193815 + t * (-0.3565638 + t * (1.781478 + t * (-1.821256 + t * 1.330274))));
  return z > 0 ? 1 - p : p;
}

/** The Wilson score interval (95%) of a rate. */
function wilson(c, n) {
  if (!n) return [0, 0];
  const z = 1.96;
  const p = c / n;
  const centre = (p + (z * z) / (2 * n)) / (1 + (z * z) / n);
  const half = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / (1 + (z * z) / n);
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/** The probability that a variant's true rate beats control's: the normal approximation of the difference. */
function beats(v, c) {
  if (!v.exposures || !c.exposures) return null;
  const pv = v.conversions / v.exposures;
  const pc = c.conversions / c.exposures;
  const se = Math.sqrt((pv * (1 - pv)) / v.exposures + (pc * (1 - pc)) / c.exposures);
  if (se === 0) return pv > pc ? 1 : pv < pc ? 0 : 0.5;
  return phi((pv - pc) / se);
}

const pct = (x) => `${(x * 100).toFixed(1)} %`;

async function experimentsView() {
  render('Experiments');
  let config;
  try { config = (await api('GET', '/v1/config')).json; } catch (e) { view.append(failure(e)); return; }
  const ids = [];
  for (const slot of Object.values(config.slots || {})) for (const b of slot.blocks || []) if (b.experiment) ids.push(b.experiment.id);
  if (!ids.length) { view.append(el('p', { class: 'muted' }, 'No block of the configuration runs an experiment.')); return; }
  view.append(el('p', { class: 'muted' }, 'Rates with their 95 % Wilson score interval; the probability to beat control is the normal approximation of the difference of two proportions. Until every variant has 100 people and 10 conversions the numbers are too unsteady to act on.'));
  for (const id of ids) {
    try {
      const { json } = await api('GET', `/v1/experiments/${encodeURIComponent(id)}`);
      const control = json.variants.find((v) => v.variant === 'control') || json.variants[0];
      const small = json.variants.some((v) => v.exposures < 100 || v.conversions < 10);
      // Each interval drawn on one scale (0 to the highest upper bound), the control's shaded apart: intervals
      // that overlap the control's much are not a difference yet. The numbers beside say the same in text.
      const intervals = json.variants.map((v) => (v.exposures ? wilson(v.conversions, v.exposures) : null));
      const top = Math.max(0.1, ...intervals.filter(Boolean).map(([, hi]) => hi));
      const drawn = (v, i) => {
        const ci = intervals[i];
        if (!ci) return '—';
        const track = el('span', { class: `ci${v === control ? ' control' : ''}`, 'aria-hidden': 'true' },
          el('span', { class: 'ci-range' }), el('span', { class: 'ci-rate' }));
        track.firstChild.style.left = `${(ci[0] / top) * 100}%`;
        track.firstChild.style.width = `${Math.max(0.5, ((ci[1] - ci[0]) / top) * 100)}%`;
        track.lastChild.style.left = `${(v.conversions / v.exposures / top) * 100}%`;
        return el('span', { class: 'ci-cell' }, track, ` ${pct(ci[0])} – ${pct(ci[1])}`);
      };
      view.append(el('div', { class: 'card' },
        el('h2', {}, `${id}`), el('p', { class: 'muted' }, `Slot ${json.slot}, block ${json.block}; goal: ${json.goal.event}; holdout ${json.holdout} %.`),
        small ? el('p', { class: 'warn', role: 'note' }, 'Sample too small: wait for at least 100 people and 10 conversions per variant before deciding.') : null,
        table('Results', ['Variant', 'People exposed', 'Conversions', 'Rate', `95 % interval (bar: 0 to ${pct(top)})`, 'Chance to beat control'],
          json.variants.map((v, i) => {
            const b = v === control ? null : beats(v, control);
            return [v === control && v.variant !== 'control' ? `${v.variant} (control)` : v.variant, v.exposures, v.conversions, v.exposures ? pct(v.conversions / v.exposures) : '—', drawn(v, i), b === null ? '—' : pct(b)];
          }), [1, 2, 3])));
    } catch (e) { view.append(failure(e)); }
  }
}

// ---------------------------------------------------------------- configuration

/** A line diff (longest common subsequence), as lines marked ' ', '+' or '-'. */
function lineDiff(a, b) {
  const x = a.split('\n');
  const y = b.split('\n');
  const n = x.length;
  const m = y.length;
  if (n * m > 4_000_000) return [['!', 'too large to compare line by line']];
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) { out.push([' ', x[i]]); i++; j++; }
    else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) { out.push(['+', y[j]]); j++; }
    else { out.push(['-', x[i]]); i++; }
  }
  return out;
}

// The configuration editor: CodeMirror with the schema's completion and inline errors (vendor/editor.js, loaded
// only here), or a plain textarea if that bundle or the schema cannot be loaded, so the view still works.
async function configEditor(doc, problemList, onChange) {
  const holder = el('div', { id: 'config-editor', class: 'editor' });
  try {
    const [{ createEditor }, { json: schema }] = await Promise.all([import('/console/vendor/editor.js'), api('GET', '/v1/config/schema')]);
    // The server's own check, as the editor's linter asks for it after each pause in typing.
    // A refusal of the whole text (too large: 413) is a problem of the whole document; anything else unanswered
    // leaves the schema to speak alone.
    const validate = (text) => api('POST', '/v1/config/validate', text).then(() => ({ ok: true }), (e) => (
      e.status === 400 && e.body && Array.isArray(e.body.problems) ? { problems: e.body.problems }
        : e.status === 413 && e.body && e.body.error ? { problems: [{ path: '', message: e.body.error.message }] } : null));
    // data-checked tells whether the list describes the text as it is (the browser tests wait on it).
    const onDiagnostics = (list, { serverAnswered }) => (problemList.dataset.checked = 'yes', problemList.replaceChildren(...(list.length ? [
      el('p', { class: 'error' }, list.length === 1 ? 'One problem:' : `${list.length} problems:`),
      el('ul', { class: 'error' }, list.map((d) => el('li', {}, `Line ${d.line}: ${d.message} `,
        el('button', { type: 'button', class: 'link', onclick: () => editor.reveal(d.from) }, `Go to line ${d.line}`)))),
    ] : [serverAnswered ? el('p', { class: 'ok' }, 'No problems: the server would accept this text.')
      : el('p', { class: 'muted' }, 'The schema finds no problem, but the server could not be asked; press Check before saving.')])));
    const changed = () => { problemList.dataset.checked = 'no'; onChange(); };
    const editor = createEditor(holder, { doc, schema, label: 'The configuration, in JSON', describedBy: 'config-label', validate, onDiagnostics, onChange: changed });
    return { element: holder, get value() { return editor.value; }, set value(t) { editor.value = t; }, focus: () => editor.focus() };
  } catch (e) {
    const area = el('textarea', { id: 'config-text', spellcheck: 'false', 'aria-labelledby': 'config-label' });
    area.value = doc;
    area.addEventListener('input', onChange);
    holder.append(el('p', { class: 'muted' }, 'The editor with completion could not be loaded; this is plain text, checked by the server when you press Check.'), area);
    return { element: holder, get value() { return area.value; }, set value(t) { area.value = t; }, focus: () => area.focus() };
  }
}

async function configView() {
  render('Configuration');
  let current;
  let version;
  try {
    const r = await api('GET', '/v1/config');
    current = JSON.stringify(r.json, null, 2);
    version = r.headers.get('x-edgecdp-config-version');
  } catch (e) { view.append(failure(e)); return; }
  const status = el('div', { id: 'config-status', role: 'status' });
  const diff = el('pre', { class: 'diff', id: 'config-diff', hidden: true });
  // The problems the editor shows inline, listed too (a screen reader cannot see squiggles), each with a button
  // that moves the cursor there.
  const problemList = el('div', { id: 'config-problems', 'aria-live': 'polite' });
  const edited = () => status.replaceChildren(el('p', { class: 'muted' }, 'Edited since the last check.'));
  const editor = await configEditor(current, problemList, edited);
  const problems = (e) => {
    const list = (e.body && e.body.problems) || [];
    return list.length ? el('ul', { class: 'error' }, list.map((p) => el('li', {}, `${p.path || '(the whole document)'}: ${p.message}`))) : failure(e);
  };
  const check = async () => {
    try {
      JSON.parse(editor.value);
    } catch (e) {
      status.replaceChildren(el('p', { class: 'error' }, `Not JSON: ${e.message}`));
      return false;
    }
    try {
      await api('POST', '/v1/config/validate', editor.value);
      status.replaceChildren(el('p', { class: 'ok' }, 'Valid: the server would accept it.'));
      return true;
    } catch (e) {
      status.replaceChildren(problems(e));
      return false;
    }
  };
  const showDiff = () => {
    const lines = lineDiff(current, editor.value).filter(([k]) => k !== ' ');
    diff.hidden = false;
    diff.replaceChildren(...(lines.length ? lines.map(([k, t]) => el('span', { class: k === '+' ? 'add' : k === '-' ? 'del' : null }, `${k} ${t}`)) : ['No change from the version in force.']));
  };
  const save = async () => {
    if (!(await check())) return;
    try {
      const { json } = await api('PUT', '/v1/config', editor.value, { 'if-match': `"${version}"` });
      version = String(json.version);
      current = editor.value;
      status.replaceChildren(el('p', { class: 'ok' }, `Saved as version ${version}; it is in force now.`));
      versionLabel.textContent = `Version ${version} is in force.`;
      diff.hidden = true;
      refreshHistory();
    } catch (e) {
      status.replaceChildren(e.status === 412 ? el('p', { class: 'error' }, 'Someone saved another version since you opened this one. Reload to see it, then apply your change again.') : problems(e));
    }
  };
  const versionLabel = el('p', { id: 'config-version' }, `Version ${version} is in force.`);
  // The history: any version can be loaded into the editor, compared, and saved again as the newest (a rollback
  // that is itself a version, so it can be rolled back too).
  const history = el('div', { class: 'card', id: 'config-history' });
  const loadVersion = async (n) => {
    try {
      const { json } = await api('GET', `/v1/config/versions/${n}`);
      editor.value = JSON.stringify(json, null, 2);
      status.replaceChildren(el('p', { class: 'muted' }, `Version ${n} is in the editor. Compare it, then Save to put it back in force as a new version.`));
      showDiff();
      editor.focus();
    } catch (e) { status.replaceChildren(failure(e)); }
  };
  const refreshHistory = () => api('GET', '/v1/config/versions').then(({ json }) => {
    history.replaceChildren(table('Versions', ['Version', 'Saved', ''], json.versions.slice(0, 50).map((v) => [
      v.version === json.current ? `${v.version} (in force)` : String(v.version), when(v.savedAt),
      v.version === json.current ? '—' : el('button', { type: 'button', class: 'load-version', 'data-version': v.version, onclick: () => loadVersion(v.version) }, `Load version ${v.version}`)])));
  }).catch((e) => history.replaceChildren(failure(e)));
  refreshHistory();
  view.append(el('div', { class: 'card' }, versionLabel,
    el('p', { id: 'config-label' }, 'The configuration, in JSON. Ctrl-Space suggests what may come next from its schema (/v1/config/schema); problems are underlined as you type, as the server would report them, and listed below.'),
    editor.element, problemList, status,
    el('p', { class: 'row' },
      el('button', { type: 'button', id: 'config-check', onclick: check }, 'Check'),
      el('button', { type: 'button', id: 'config-diff-button', onclick: showDiff }, 'Compare with the version in force'),
      el('button', { type: 'button', id: 'config-save', class: 'primary', onclick: save }, 'Save')),
    diff), history);
}

// ---------------------------------------------------------------- imports

// A CSV file's first records, read in the browser only to show them and to propose a mapping: the Worker reads the
// whole file again itself. Cells are kept as the strings they are (a cell `=HYPERLINK(...)` stays text).
const PREVIEW_BYTES = 64 * 1024;
const PREVIEW_ROWS = 5;
const FINISHED = ['done', 'failed', 'cancelled'];
const PURPOSES = ['analytics', 'personalization', 'advertising', 'marketing'];

/**
 * Parses CSV text (RFC 4180: quoted fields, `""` inside quotes, CRLF or LF) into at most `max` records, each
 * `{ line, cells }` where `line` is the physical line it starts on (the header is line 1), as the Worker numbers
 * rejected rows. `complete` says the text ends the file: otherwise a record the cut may have shortened is dropped.
 */
function parseCsv(text, max, complete) {
  const records = [];
  let cells = [];
  let cell = '';
  let quoted = false;
  let line = 1;
  let start = 1;
  let i = 0;
  // A blank line is no record (the Worker skips it too), but it still counts as a line.
  const end = () => {
    cells.push(cell);
    if (cells.length > 1 || cell !== '') records.push({ line: start, cells });
    cells = [];
    cell = '';
  };
  while (i < text.length && records.length < max) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i += 2; continue; }
      if (c === '"') quoted = false;
      else { if (c === '\n') line++; cell += c; }
      i++;
      continue;
    }
    if (c === '"' && cell === '') quoted = true;
    else if (c === ',') { cells.push(cell); cell = ''; }
    else if (c === '\n' || c === '\r') {
      end();
      if (c === '\r' && text[i + 1] === '\n') i++;
      line++;
      start = line;
    } else cell += c;
    i++;
  }
  // The last record has no line end when it ends the file; when the text was cut, it may be cut short.
  if (records.length < max && (cell !== '' || cells.length) && complete && !quoted) end();
  return records;
}

/** The first bytes of a file as text, inflated first when it is gzip (DecompressionStream, stopped early). */
async function headOf(file, gzip) {
  if (!gzip) return { text: await file.slice(0, PREVIEW_BYTES).text(), complete: file.size <= PREVIEW_BYTES };
  const reader = file.stream().pipeThrough(new DecompressionStream('gzip')).pipeThrough(new TextDecoderStream()).getReader();
  let text = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return { text, complete: true };
    text += value;
    if (text.length >= PREVIEW_BYTES) { reader.cancel(); return { text: text.slice(0, PREVIEW_BYTES), complete: false }; }
  }
}

// The targets a column may be mapped to. A value ending in `*` needs a name typed beside it (a trait, a property,
// an identity type the configuration defines).
const TARGETS = [
  ['Identity', [['userId', 'User id (userId)'], ['anonymousId', 'Anonymous id'], ['identities.email', 'E-mail'], ['identities.phone', 'Phone'], ['identities.*', 'Other identity type…']]],
  ['Profile', [['traits.*', 'Trait…']]],
  ['Event', [['timestamp', 'Timestamp'], ['event', 'Event name'], ['messageId', 'Message id'], ['properties.*', 'Event property…']]],
  ['Consent', PURPOSES.map((p) => [`consent.${p}`, `Consent: ${p}`])],
  ['Other', [['ignore', 'Ignore this column']]],
];

/** The target a header suggests: `[value, name]` for the column's select and its name field. */
function guessTarget(header, kind) {
  const h = header.trim().toLowerCase().replace(/[^a-z0-9]/g, '');
  if (!h) return ['ignore', ''];
  if (['email', 'emailaddress', 'mail'].includes(h)) return ['identities.email', ''];
  if (['userid', 'user', 'customerid'].includes(h)) return ['userId', ''];
  if (h === 'anonymousid') return ['anonymousId', ''];
  if (['phone', 'phonenumber', 'mobile', 'tel'].includes(h)) return ['identities.phone', ''];
  if (['timestamp', 'date', 'datetime', 'time'].includes(h)) return ['timestamp', ''];
  if (h === 'messageid') return ['messageId', ''];
  if (kind === 'events' && ['event', 'eventname'].includes(h)) return ['event', ''];
  return kind === 'events' ? ['properties.*', header.trim()] : ['traits.*', header.trim()];
}

/** A file's format and compression from its name: `customers.csv.gz` is CSV, gzip. */
function formatOf(name) {
  const gzip = /\.gz$/i.test(name);
  const base = name.replace(/\.gz$/i, '');
  return { gzip, format: /\.(ndjson|jsonl|json)$/i.test(base) ? 'ndjson' : /\.(csv|txt)$/i.test(base) ? 'csv' : null };
}

async function importsView(params) {
  importNotices.clear();
  render('Imports');
  const job = el('div', { id: 'import-job', class: 'card', hidden: true });
  const recent = el('div', { class: 'card', id: 'imports-recent' });
  view.append(importForm(job, recent), job, recent);
  refreshImports(recent);
  const id = params.get('id');
  if (id) watchImport(id, job, recent);
}

function importForm(jobCard, recent) {
  const file = el('input', { id: 'import-file', type: 'file', accept: '.csv,.ndjson,.jsonl,.gz,text/csv,application/x-ndjson,application/gzip' });
  const object = el('input', { id: 'import-object', placeholder: 'imports/2024-05-crm.csv', autocomplete: 'off' });
  const format = el('select', { id: 'import-format' }, el('option', { value: 'csv' }, 'CSV'), el('option', { value: 'ndjson' }, 'NDJSON (Segment events)'));
  const kind = el('select', { id: 'import-kind' }, el('option', { value: 'profiles' }, 'Profiles (identities and traits)'), el('option', { value: 'events' }, 'Events (with their historical time)'));
  const basis = el('select', { id: 'import-basis' }, el('option', { value: '' }, 'None: each row carries its consent'),
    el('option', { value: 'consent' }, 'Consent'), el('option', { value: 'contract' }, 'Contract'), el('option', { value: 'legitimate_interest' }, 'Legitimate interest'));
  const asOf = el('input', { id: 'import-asof', type: 'datetime-local', step: 1 });
  const consent = el('fieldset', { id: 'import-consent', class: 'checks' }, el('legend', {}, 'Purposes the file\'s people granted'),
    PURPOSES.map((p) => el('label', {}, el('input', { type: 'checkbox', value: p }), ` ${p}`)));
  // A file in the bucket is not read by the console: its header line, typed or pasted, is enough to map it.
  const header = el('input', { id: 'import-header', placeholder: 'email,user_id,firstName', autocomplete: 'off' });
  const headerRow = el('div', { hidden: true },
    el('label', { for: 'import-header' }, 'The bucket file\'s header line, to map its columns'), header);
  const preview = el('div', { id: 'import-preview', class: 'scroll' });
  const status = el('div', { id: 'import-status', role: 'status' });
  const start = el('button', { type: 'submit', id: 'import-start', class: 'primary' }, 'Start the import');
  // The columns as read from the file's header, each with its select and name field; null until a CSV is read.
  let columns = null;
  let kindChosen = false;
  let gzip = false;

  /** One select and name field per header, prefilled from the header's name. */
  const mapColumns = (headers) => headers.map((h) => {
    const [value, name] = guessTarget(h, kind.value);
    const label = `column ${h || '(no name)'}`;
    const select = el('select', { class: 'import-map', 'data-column': h, 'aria-label': `Target of ${label}` },
      TARGETS.map(([group, options]) => el('optgroup', { label: group }, options.map(([v, text]) => el('option', { value: v, selected: v === value || null }, text)))));
    const field = el('input', { class: 'import-map-name', 'data-column': h, 'aria-label': `Name for ${label}`, value: name, autocomplete: 'off' });
    const column = { header: h, select, field, touched: false };
    column.sync = () => {
      // The Worker takes traits only from profile rows, and an event's fields only from event rows.
      for (const o of select.options) o.disabled = kind.value === 'profiles' ? ['event', 'properties.*'].includes(o.value) : o.value === 'traits.*';
      field.hidden = !select.value.endsWith('*');
      field.placeholder = select.value === 'identities.*' ? 'identity type, e.g. crm_id' : 'name';
    };
    select.addEventListener('change', () => { column.touched = true; column.sync(); });
    field.addEventListener('input', () => { column.touched = true; });
    column.sync();
    return column;
  });

  /** The header, a row of targets under it (each read beside its column's name), then the rows read. */
  const mappingTable = (caption, headers, records) => {
    columns = mapColumns(headers);
    const duplicates = headers.filter((h, i) => headers.indexOf(h) !== i);
    const t = table(caption, ['Line', ...headers], records.map((r) => [r.line, ...headers.map((_, i) => (r.cells[i] === undefined ? '' : r.cells[i]))]));
    t.tHead.append(el('tr', { class: 'mapping' }, el('th', { scope: 'row' }, 'Goes to'), columns.map((c) => el('th', {}, c.select, c.field))));
    return [duplicates.length ? el('p', { class: 'warn', role: 'note' }, `Columns are mapped by their header, and these appear more than once: ${[...new Set(duplicates)].join(', ')}. Rename them in the file first.`) : null, t]
      .filter(Boolean);
  };

  const showPreview = async () => {
    columns = null;
    preview.replaceChildren();
    headerRow.hidden = !(object.value.trim() && format.value === 'csv');
    const f = file.files[0];
    if (!f) {
      const typed = parseCsv(header.value, 1, true);
      if (!headerRow.hidden && typed.length) preview.replaceChildren(...mappingTable(`Where each column of ${object.value.trim()} goes`, typed[0].cells, []));
      return;
    }
    try {
      const head = await headOf(f, gzip);
      if (format.value === 'ndjson') {
        const lines = head.text.split('\n').slice(0, PREVIEW_ROWS).map((l, i) => [i + 1, el('code', {}, l)]).filter(([, c]) => c.textContent.trim());
        preview.replaceChildren(table(`The first lines of ${f.name}`, ['Line', 'Event'], lines));
        return;
      }
      const records = parseCsv(head.text, PREVIEW_ROWS + 1, head.complete);
      if (!records.length) { preview.replaceChildren(el('p', { class: 'error' }, 'This file has no header line.')); return; }
      preview.replaceChildren(...mappingTable(`The first rows of ${f.name}, and where each column goes`, records[0].cells, records.slice(1)),
        ...(records.length === 1 ? [el('p', { class: 'muted' }, 'The file has a header and no row yet.')] : []));
    } catch (e) {
      preview.replaceChildren(el('p', { class: 'error' }, `This file could not be read here: ${e.message}`));
    }
  };

  file.addEventListener('change', () => {
    const f = file.files[0];
    if (f) {
      object.value = '';
      const guessed = formatOf(f.name);
      gzip = guessed.gzip;
      if (guessed.format) format.value = guessed.format;
      if (!kindChosen) kind.value = format.value === 'csv' ? 'profiles' : 'events';
    }
    showPreview();
  });
  format.addEventListener('change', () => {
    if (!kindChosen) kind.value = format.value === 'csv' ? 'profiles' : 'events';
    showPreview();
  });
  kind.addEventListener('change', () => {
    kindChosen = true;
    // Columns left as guessed follow the kind (a profile's traits, an event's properties); chosen ones stay, unless
    // the new kind cannot take their target.
    for (const c of columns || []) {
      c.sync();
      if (c.touched && !c.select.selectedOptions[0].disabled) continue;
      const [value, name] = guessTarget(c.header, kind.value);
      c.select.value = value;
      c.field.value = name;
      c.touched = false;
      c.sync();
    }
  });
  // Typing a key drops a chosen file; the preview is redrawn only when what it shows changes, so that a mapping
  // already chosen survives the typing of the rest of the key.
  object.addEventListener('input', () => {
    let changed = false;
    if (object.value && file.value) { file.value = ''; gzip = false; changed = true; }
    const guessed = formatOf(object.value.trim());
    if (guessed.format && guessed.format !== format.value) {
      format.value = guessed.format;
      if (!kindChosen) kind.value = format.value === 'csv' ? 'profiles' : 'events';
      changed = true;
    }
    if (changed || headerRow.hidden === Boolean(object.value.trim() && format.value === 'csv')) showPreview();
  });
  header.addEventListener('input', showPreview);

  /** The mapping as the API takes it, or a message saying which column needs a name. */
  const mapping = () => {
    const out = {};
    for (const c of columns || []) {
      let target = c.select.value;
      if (target.endsWith('*')) {
        const name = c.field.value.trim();
        if (!name) throw new Error(`Name the ${target === 'identities.*' ? 'identity type' : 'field'} for column ${c.header || '(no name)'}.`);
        if (target === 'identities.*' && !/^[a-z0-9_]+$/.test(name)) throw new Error(`An identity type is lower-case letters, digits and _ (column ${c.header}).`);
        target = target.replace('*', name);
      }
      out[c.header] = target;
    }
    return out;
  };

  const form = el('form', { id: 'import-form', class: 'card' },
    el('h2', {}, 'New import'),
    el('p', { class: 'muted' }, 'A CSV export of your CRM (one person per row) or an NDJSON file of Segment events, optionally gzipped, from this computer or already in the bucket. Rows are numbered by their line in the file, the header being line 1.'),
    el('div', { class: 'row' },
      el('div', {}, el('label', { for: 'import-file' }, 'File from this computer'), file),
      el('div', {}, el('label', { for: 'import-object' }, 'Or a file already in the bucket (object key)'), object)),
    headerRow,
    el('div', { class: 'row' },
      el('div', {}, el('label', { for: 'import-format' }, 'Format'), format),
      el('div', {}, el('label', { for: 'import-kind' }, 'What the rows are'), kind),
      el('div', {}, el('label', { for: 'import-asof' }, 'True as of (empty: now)'), asOf)),
    el('div', { class: 'row' },
      consent,
      el('div', {}, el('label', { for: 'import-basis' }, 'Legal basis'), basis)),
    el('p', { class: 'muted' }, 'Without a basis and purposes, a person whose row carries no consent is not stored (the opt-in model).'),
    preview, status, el('p', { class: 'row' }, start));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = file.files[0];
    const key = object.value.trim();
    if (!f && !key) { status.replaceChildren(el('p', { class: 'error' }, 'Choose a file, or type the key of one in the bucket.')); return; }
    const granted = [...consent.querySelectorAll('input:checked')].map((c) => c.value);
    let map;
    try { map = format.value === 'csv' && columns ? mapping() : null; } catch (err) { status.replaceChildren(failure(err)); return; }
    if (format.value === 'csv' && !columns) {
      status.replaceChildren(el('p', { class: 'error' }, f ? 'The file\'s header could not be read, so its columns cannot be mapped.' : 'Type the file\'s header line, so that its columns can be mapped.'));
      return;
    }
    const at = asOf.value ? new Date(asOf.value).toISOString() : null;
    start.disabled = true;
    status.replaceChildren(el('p', { class: 'muted' }, f ? `Uploading ${f.name} (${Math.ceil(f.size / 1024)} KB)…` : `Starting from ${key}…`));
    try {
      let answer;
      if (f) {
        const q = new URLSearchParams({ kind: kind.value });
        if (map) q.set('mapping', JSON.stringify(map));
        if (granted.length) q.set('consent', granted.join(','));
        if (basis.value) q.set('basis', basis.value);
        if (at) q.set('asOf', at);
        const headers = { 'content-type': format.value === 'csv' ? 'text/csv' : 'application/x-ndjson' };
        if (gzip) headers['content-encoding'] = 'gzip';
        answer = await api('POST', `/v1/imports?${q}`, f, headers);
      } else {
        const body = { object: key, format: format.value, kind: kind.value };
        if (map) body.mapping = map;
        if (granted.length) body.consent = granted;
        if (basis.value) body.basis = basis.value;
        if (at) body.asOf = at;
        answer = await api('POST', '/v1/imports', body);
      }
      status.replaceChildren(el('p', { class: 'ok' }, `Import ${answer.json.id} started.`));
      // The job's own address, so a reload (or a colleague given the link) follows the same job.
      history.replaceState(null, '', `#/imports?id=${encodeURIComponent(answer.json.id)}`);
      showImport(answer.json, jobCard, recent);
      watchImport(answer.json.id, jobCard, recent);
      refreshImports(recent);
    } catch (err) {
      status.replaceChildren(failure(err));
    } finally {
      start.disabled = false;
    }
  });
  return form;
}

// The job being followed; a newer one (or another view) ends the older loop.
let following = 0;
// A refusal to show with a job until the page changes (the card is redrawn every second, the message must stay).
const importNotices = new Map();

async function watchImport(id, card, recent) {
  const mine = ++following;
  for (;;) {
    let job;
    try {
      job = (await api('GET', `/v1/imports/${encodeURIComponent(id)}`)).json;
    } catch (e) {
      if (mine !== following || !card.isConnected) return;
      card.hidden = false;
      card.replaceChildren(e.status === 404 ? el('p', { role: 'status' }, `There is no import ${id}.`) : failure(e));
      return;
    }
    if (mine !== following || !card.isConnected) return;
    showImport(job, card, recent);
    if (FINISHED.includes(job.state)) { refreshImports(recent); return; }
    await new Promise((r) => setTimeout(r, 1000));
    if (mine !== following || !card.isConnected) return;
  }
}

/** One job: its state, progress, counts, rejects, and what can be done with it. */
function showImport(job, card, recent) {
  const rows = job.rows || {};
  const chunks = job.chunks || { total: 0, done: 0 };
  // Without a known total (still uploading) the bar moves without a value, as the platform draws "busy".
  const bar = el('progress', { id: 'import-progress', max: Math.max(1, chunks.total), 'aria-label': 'Chunks applied' });
  if (chunks.total) bar.value = chunks.done;
  const count = (name) => el('span', { 'data-count': name }, String(rows[name] === undefined ? 0 : rows[name]));
  const running = !FINISHED.includes(job.state);
  card.hidden = false;
  card.dataset.state = job.state;
  card.dataset.id = job.id;
  // replaceChildren, unlike el(), would write a null as the text "null": the parts left out are filtered first.
  card.replaceChildren(...[
    el('h2', {}, `Import ${job.id}`),
    importNotices.get(job.id) || null,
    el('p', {}, `${job.format === 'ndjson' ? 'NDJSON' : 'CSV'} of ${job.kind}, from source ${job.source}, ${show(job.bytes)} bytes. `,
      el('strong', { id: 'import-state' }, job.state),
      `. Created ${when(job.createdAt)}; started ${when(job.startedAt)}; finished ${when(job.finishedAt)}.`),
    el('p', {}, bar, ` ${chunks.total ? `${chunks.done} of ${chunks.total} chunks` : 'waiting for the file'}`,
      job.rowsPerSecond ? `, ${Math.round(job.rowsPerSecond)} rows per second` : ''),
    table('Rows', ['Read', 'Applied', 'Duplicates', 'Refused (no consent)', 'Rejected'],
      [['read', 'applied', 'duplicates', 'refused', 'rejected'].map(count)], [0, 1, 2, 3, 4]),
    job.error ? el('p', { class: 'error', role: 'alert' }, `${job.error.message}${job.error.path ? ` (at ${job.error.path})` : ''} [${job.error.code}]`) : null,
    job.unknownColumns && job.unknownColumns.length ? el('p', { class: 'warn' }, `Columns not in the mapping, not imported: ${job.unknownColumns.join(', ')}.`) : null,
    el('div', { id: 'import-rejects' },
      table(rows.rejected > (job.rejects || []).length ? `The first ${(job.rejects || []).length} rejected rows of ${rows.rejected}` : 'Rejected rows',
        ['Line', 'Code', 'Field', 'Why'], (job.rejects || []).map((r) => [r.line, r.code, r.path || '—', r.message]), [0])),
    el('p', { class: 'row' },
      rows.rejected ? el('a', { id: 'import-rejects-download', href: `/v1/imports/${encodeURIComponent(job.id)}/rejects`, download: `${job.id}-rejects.ndjson` }, 'Download every rejected row (NDJSON)') : null,
      running ? el('button', { type: 'button', id: 'import-cancel', class: 'danger', onclick: () => cancelImport(job, card, recent) }, 'Cancel this import…') : null),
  ].filter(Boolean));
}

async function cancelImport(job, card, recent) {
  const ok = await confirmDialog('Stop this import?', `Import ${job.id} stops: rows not yet applied are not imported. Rows already applied stay.`, 'Stop the import');
  if (!ok) return;
  importNotices.delete(job.id);
  try {
    showImport((await api('POST', `/v1/imports/${encodeURIComponent(job.id)}/cancel`)).json, card, recent);
    refreshImports(recent);
  } catch (e) {
    // It ended meanwhile (409 import_finished): the message stays, and the loop shows how it ended.
    importNotices.set(job.id, failure(e));
    showImport(job, card, recent);
  }
}

function refreshImports(recent) {
  return api('GET', '/v1/imports').then(({ json }) => {
    recent.replaceChildren(table('Recent imports (newest first)', ['Import', 'Source', 'State', 'Format', 'Kind', 'Created', 'Read', 'Applied', 'Rejected'],
      json.imports.map((j) => [el('a', { href: `#/imports?id=${encodeURIComponent(j.id)}` }, j.id), j.source, j.state, j.format, j.kind, when(j.createdAt),
        j.rows.read, j.rows.applied, j.rows.rejected]), [6, 7, 8]));
  }).catch((e) => recent.replaceChildren(failure(e)));
}

// ---------------------------------------------------------------- export

const kb = (n) => (n < 1024 ? `${n} B` : `${(n / 1024).toFixed(1)} KB`);

/** The export in R2: tables with their rows per day, the last file and its lag, the latest files to download. */
async function exportView(params) {
  render('Export');
  const table_ = params.get('table');
  let s;
  try {
    s = (await api('GET', `/v1/export?limit=50${table_ ? `&table=${encodeURIComponent(table_)}` : ''}`)).json;
  } catch (e) { view.append(failure(e)); return; }
  const last = s.last_file;
  view.append(el('div', { class: 'card', id: 'export-summary' },
    el('p', {}, last ? `Last file written ${when(last.written_at)}, ${last.lag_ms} ms after its oldest row was stored.`
      : 'Nothing exported yet.'),
    table('Tables', ['Table', 'Rows', 'Files', 'Size (gzip)', 'Last written'],
      s.tables.map((t) => [el('a', { href: `#/export?table=${encodeURIComponent(t.table)}` }, t.table), t.rows, t.files, kb(t.bytes),
        when(t.last_written_at)]), [1, 2, 3]),
    table('Rows per day', ['Table', 'Day', 'Rows', 'Files'],
      s.tables.flatMap((t) => t.days.map((d) => [t.table, d.dt, d.rows, d.files])), [2, 3])));
  view.append(el('div', { class: 'card', id: 'export-files' },
    table(`Latest files${table_ ? ` of ${table_}` : ''} (newest first)`, ['File', 'Table', 'Rows', 'Size', 'Written', 'Lag'],
      s.files.map((f) => [el('a', { href: `/v1/export/file?key=${encodeURIComponent(f.key)}`, download: '' }, f.key.split('/').slice(2).join('/')),
        f.table, f.rows, kb(f.bytes), when(f.written_at), `${f.lag_ms} ms`]), [2, 3, 5]),
    el('p', { class: 'muted' }, 'Gzip NDJSON in Segment\'s warehouse layout. Analysts read the bucket itself through R2\'s S3 API; see docs/export.md.')));
}

// ---------------------------------------------------------------- predictions

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

/** Calibration on the held-out window: per tenth of predicted probability, the mean prediction beside the share
 * that did buy (bars of the same height mean the probabilities can be taken at their word). */
function calibrationChart(bins) {
  const w = 420, h = 180, pad = 24, step = (w - pad) / 10;
  const bar = (b, value, dx, cls) => svg('rect', { x: pad + b.bin * step + dx, y: h - pad - value * (h - 2 * pad),
    width: step / 2 - 2, height: Math.max(1, value * (h - 2 * pad)), class: cls });
  return svg('svg', { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: 'img', id: 'calibration',
    'aria-label': 'Calibration: predicted probability against the share that bought, per tenth' },
  svg('title', {}, 'Predicted (dark) and actual (light) share buying in the holdout, per tenth of prediction'),
  svg('line', { x1: pad, y1: h - pad, x2: w, y2: h - pad, class: 'axis' }),
  ...bins.flatMap((b) => [bar(b, b.predicted, 1, 'predicted'), bar(b, b.actual, step / 2, 'actual'),
    svg('text', { x: pad + b.bin * step + 2, y: h - 8, class: 'tick' }, `${b.bin * 10}%`)]));
}

/** The model versions: status, quality on the held-out window with its calibration chart, parameters, why a part
 * did not fit; and the button that fits a version now. */
async function predictionsView() {
  render('Predictions');
  let s;
  try { s = (await api('GET', '/v1/predictions')).json; } catch (e) { view.append(failure(e)); return; }
  const status = el('p', { role: 'status', id: 'fit-status' });
  const fit = el('button', { type: 'button', id: 'fit-now', onclick: async () => {
    fit.disabled = true;
    status.textContent = 'Fitting…';
    try {
      const v = (await api('POST', '/v1/predictions/fit')).json;
      status.textContent = `Version ${v.version}: ${v.status}.`;
      predictionsView();
    } catch (e) { status.replaceChildren(failure(e)); fit.disabled = false; }
  } }, 'Fit a version now');
  view.append(el('div', { class: 'card' },
    el('p', {}, s.inForce ? `Version ${s.inForce.version} is in force${s.inForce.pinned ? ' (pinned in the configuration)' : ''}.` : 'No model is in force yet.',
      ` ${s.summaries} profiles have published a summary for the next fit. Predictions: ${s.names.join(', ')}.`),
    el('p', { class: 'row' }, fit), status,
    Object.assign(table('Versions (newest first)', ['Version', 'Fitted', 'Status', 'Customers', 'Holdout AUC', 'Predicted purchases', 'Actual purchases'],
      s.versions.map((v) => [v.version, when(v.fittedAt), v.status, show(v.quality.customers),
        v.quality.holdout && typeof v.quality.holdout.auc === 'number' ? v.quality.holdout.auc.toFixed(3) : '—',
        v.quality.holdout && typeof v.quality.holdout.predictedPurchases === 'number' ? v.quality.holdout.predictedPurchases.toFixed(1) : '—',
        show(v.quality.holdout && v.quality.holdout.actualPurchases)]), [0, 3, 4, 5, 6]), { id: 'versions' })));
  const latest = s.versions[0];
  if (!latest) return;
  const q = latest.quality;
  const params = [];
  if (q.bgnbd) params.push(...['r', 'alpha', 'a', 'b'].map((k) => [`BG/NBD ${k}`, q.bgnbd[k].toPrecision(4)]));
  if (q.gammaGamma) params.push(...['p', 'q', 'v'].map((k) => [`Gamma-Gamma ${k}`, q.gammaGamma[k].toPrecision(4)]));
  for (const [c, pr] of Object.entries(q.channels || {})) {
    params.push([`${c} response rate prior`, `${(pr.response.mean * 100).toFixed(1)}% (${pr.response.how})`],
      [`${c} unsubscribe rate prior`, `${(pr.unsubscribe.mean * 100).toFixed(2)}% (${pr.unsubscribe.how})`]);
  }
  view.append(el('div', { class: 'grid' },
    el('div', { class: 'card', id: 'calibration-card' }, el('h2', {}, `Version ${latest.version}: calibration on the holdout`),
      q.holdout && q.holdout.calibration ? calibrationChart(q.holdout.calibration) : el('p', { class: 'muted' }, show(q.holdout && q.holdout.error)),
      q.holdout && q.holdout.calibration ? table('Per tenth', ['Predicted', 'Bought', 'People'],
        q.holdout.calibration.map((b) => [`${(b.predicted * 100).toFixed(1)}%`, `${(b.actual * 100).toFixed(1)}%`, b.people]), [0, 1, 2]) : null),
    el('div', { class: 'card' }, table('Parameters', ['Parameter', 'Value'], params, [1]),
      table('What could not be fitted', ['Part', 'Why'], Object.entries(q.failures || {})))));
}

// ---------------------------------------------------------------- routing

const VIEWS = { person: personView, audiences: audiencesView, deliveries: deliveriesView, experiments: experimentsView, config: configView,
  imports: importsView, export: exportView, predictions: predictionsView };

function route() {
  if (!csrf) return;
  const [name, query] = (location.hash.replace(/^#\//, '') || 'person').split('?');
  const open = VIEWS[name] || personView;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === `#/${name}`) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  open(new URLSearchParams(query || '')).catch((e) => view.append(failure(e)));
}

document.getElementById('sign-in-form').addEventListener('submit', signIn);
document.getElementById('sign-out').addEventListener('click', signOut);
window.addEventListener('hashchange', route);
// A session may be open already (a reload): its CSRF token comes from the server, never from storage.
api('GET', '/v1/session').then(({ json }) => { csrf = json.csrf; started(); }).catch(showSignIn);
