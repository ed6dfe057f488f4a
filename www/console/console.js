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

async function api(method, path, body, headers = {}) {
  const h = { ...headers };
  if (body !== undefined) h['content-type'] = 'application/json';
  if (method !== 'GET' && csrf) h['x-edgecdp-csrf'] = csrf;
  const r = await fetch(path, { method, headers: h, credentials: 'same-origin',
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
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
    el('div', { class: 'card' },
      table('Deliveries', ['When', 'Destination', 'Journey', 'Step', 'Outcome', 'Reason'], p.deliveries.map((d) => [when(d.at), d.destination, show(d.journey), show(d.step), d.outcome, show(d.reason)])),
      table('Experiments', ['Experiment', 'Variant', 'Exposed', 'Converted'], Object.entries(p.experiments || {}).map(([k, a]) => [k, a.variant, when(a.at), when(a.convertedAt)]))),
    mergesCard(p, key),
    previewCard(key),
    el('div', { class: 'card' },
      el('h2', {}, 'Access and erasure'),
      el('p', { class: 'row' },
        el('button', { type: 'button', id: 'export', onclick: () => download(`${p.id}.json`, JSON.stringify(p, null, 2)) }, 'Download everything held (JSON)'),
        el('button', { type: 'button', id: 'erase', class: 'danger', onclick: () => erase(key, p) }, 'Erase this person'))));
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

// ---------------------------------------------------------------- routing

const VIEWS = { person: personView, audiences: audiencesView, deliveries: deliveriesView, experiments: experimentsView, config: configView };

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
