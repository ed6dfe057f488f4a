// The device's shell (js/slots.js, as built into www/edgecdp/) and its module, in Node, on the programs the real
// Worker answers: a request the shell reads is decided as `POST /v1/decide` decides it; anything else it leaves
// to the edge (EDGE), never answers differently; a program outside its span is STALE; a program that cannot be read
// is an error with its code and path; rules that read what only the edge knows send no program.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { workerForFile, GRANT } from '../support/worker.mjs';

const SHELL = new URL('../../www/edgecdp/', import.meta.url);
const config = {
  sources: [{ id: 'web', writeKey: 'shell', origins: ['http://127.0.0.1'] }],
  consent: { model: 'opt-out' },
  segments: [
    { id: 'shoppers', when: { event: 'Product Viewed', count: { gte: 1 } } },
    { id: 'quiet', when: { inactiveFor: '2d' } },
    { id: 'on-shop', when: { page: ['/shop/*'] } },
    { id: 'germans', when: { country: ['DE'] } },
  ],
  slots: {
    hero: {
      fallback: { html: '<h2>Welcome</h2>' },
      blocks: [
        { id: 'shop-hero', audience: { all: [{ segment: 'shoppers' }, { segment: 'on-shop' }] }, priority: 3, html: 'Shop' },
        { id: 'de-hero', audience: { segment: 'germans' }, priority: 2, html: 'Hallo' },
        { id: 'back', audience: { segment: 'quiet' }, priority: 1, html: 'Back' },
      ],
    },
    side: { fallback: { html: '' }, blocks: [{ id: 'capped', audience: { segment: 'shoppers' }, cap: { max: 1, per: '1d' }, html: 'Once' }] },
  },
};
const w = workerForFile({ config });

let shell;
async function load() {
  if (!shell) {
    shell = await import(new URL('slots.js', SHELL));
    await shell.init({ module_or_path: readFileSync(new URL('decide_bg.wasm', SHELL)) });
  }
  return shell;
}

async function visitor(id) {
  const r = await w.call('POST', '/v1/track', { writeKey: 'shell', anonymousId: id, event: 'Product Viewed', context: GRANT });
  assert.equal(r.status, 200, r.text);
  const s = await w.call('GET', `/v1/decide/summary?anonymousId=${id}&personalization=true`);
  assert.equal(s.status, 200, s.text);
  return s.json;
}

const page = (path, extra = {}) => ({ page: { path, url: `http://127.0.0.1${path}` }, ...extra });

test('what the shell reads it decides as the edge does; the rest it leaves to the edge', async () => {
  const m = await load();
  const id = 'shell-a';
  const summary = await visitor(id);
  assert.equal(typeof summary.program, 'string');
  assert.ok(summary.validUntil > summary.now, 'the inactivity segment ends the span');
  const rows = [
    // [name, request, EDGE or null (decided)]
    ['the shop page', { slots: ['hero'], context: page('/shop/bags') }, null],
    ['another page', { slots: ['hero'], context: page('/about') }, null],
    ['a country in lower case', { slots: ['hero'], context: { ...page('/about'), location: { country: 'de' } } }, null],
    ['a User-Agent and an offset', { slots: ['hero'], context: { ...page('/x'), userAgent: 'Mozilla/5.0 (iPhone)', utcOffset: 60 } }, null],
    ['no context', { slots: ['hero'] }, null],
    ['consent in the context', { slots: ['hero'], context: { ...page('/shop/a'), ...GRANT } }, m.EDGE],
    ['an unknown slot', { slots: ['hero', 'nope'], context: page('/') }, m.EDGE],
    ['a slot that is not a string', { slots: [3] }, m.EDGE],
    ['an empty slot name', { slots: [''] }, m.EDGE],
    ['a page that is not an object', { slots: ['hero'], context: { page: 'x' } }, m.EDGE],
    ['a path that is not a string', { slots: ['hero'], context: { page: { path: 5 } } }, m.EDGE],
    ['a User-Agent over 1,024 bytes', { slots: ['hero'], context: { userAgent: 'é'.repeat(600) } }, m.EDGE],
    ['a country that is not two letters', { slots: ['hero'], context: { location: { country: 'DEU' } } }, m.EDGE],
    ['an offset in half minutes', { slots: ['hero'], context: { utcOffset: 30.5 } }, m.EDGE],
    ['an offset out of range', { slots: ['hero'], context: { utcOffset: 900 } }, m.EDGE],
    ['a zero byte in the path', { slots: ['hero'], context: page('/shop/\0') }, m.EDGE],
    ['an unknown context member', { slots: ['hero'], context: { campaign: { name: 'x' } } }, m.EDGE],
    ['a context that is an array', { slots: ['hero'], context: [] }, m.EDGE],
  ];
  for (const [name, request, want] of rows) {
    const got = m.decideOn(m.ready(summary), { anonymousId: id, ...request }, summary.now);
    if (want === m.EDGE) {
      assert.equal(got, m.EDGE, name);
      continue;
    }
    assert.equal(typeof got, 'object', `${name}: ${got}`);
    // The edge's own decision for the same request (the hero's blocks have no cap, so what the edge records
    // changes no later row).
    const edge = await w.call('POST', '/v1/decide', { anonymousId: id, ...request });
    assert.equal(edge.status, 200, `${name}: ${edge.text}`);
    assert.deepEqual(got.answer, edge.json, name);
  }
});

test('a capped block counts what this page served; the program is stale outside its span', async () => {
  const m = await load();
  const summary = await visitor('shell-b');
  const on = m.ready(summary);
  const first = m.decideOn(on, { slots: ['side'] }, summary.now);
  assert.equal(first.answer.slots.side.block, 'capped');
  assert.deepEqual(first.impressions, [{ block: 'capped', variant: 'default' }]);
  const again = m.decideOn(on, { slots: ['side'] }, summary.now + 1);
  assert.equal(again.answer.slots.side.block, null, 'the cap of 1 a day counts the first answer');
  // A fresh engine on the same summary has served nothing.
  assert.equal(m.decideOn(m.ready(summary), { slots: ['side'] }, summary.now + 1).answer.slots.side.block, 'capped');
  assert.equal(m.decideOn(m.ready(summary), { slots: ['hero'] }, summary.now - 1), m.STALE);
  assert.equal(m.decideOn(m.ready(summary), { slots: ['hero'] }, summary.validUntil), m.STALE);
  assert.equal(typeof m.decideOn(m.ready(summary), { slots: ['hero'] }, summary.validUntil - 1), 'object');
});

test('a program that cannot be read is an error with its code and path, not an answer', async () => {
  const m = await load();
  const summary = await visitor('shell-c');
  for (const program of ['', 'AQ==', summary.program.slice(0, -8), '!!!!', `${summary.program}AAAA`]) {
    assert.throws(() => m.decideOn(m.ready({ ...summary, program }), { slots: ['hero'] }, summary.now),
      (e) => e.code === 'invalid_rules' && e.path === 'program', JSON.stringify(program));
  }
});

test('without a profile every slot answers its fallback; rules only the edge can run send no program', async () => {
  const m = await load();
  const none = await w.call('GET', '/v1/decide/summary?anonymousId=shell-nobody&personalization=true');
  assert.equal(none.json.profileId, null);
  assert.deepEqual(none.json.segments, []);
  const got = m.decideOn(m.ready(none.json), { slots: ['hero', 'side'], context: page('/shop/x') }, none.json.now);
  assert.deepEqual(got.answer, { profileId: null, segments: [],
    slots: { hero: { block: null, html: '<h2>Welcome</h2>', variant: null }, side: { block: null, html: '', variant: null } } });

  const pressure = { ...config, pressure: { caps: [{ max: 1, per: '1d' }], slots: ['hero'] } };
  const put = await w.call('PUT', '/v1/config', pressure, w.admin());
  assert.equal(put.status, 200, put.text);
  const s = await visitor('shell-d');
  assert.equal(s.program, null);
  assert.equal(s.edgeOnly, 'pressure');
  assert.equal(m.decideOn(m.ready(s), { slots: ['hero'] }, s.now), m.EDGE);
  assert.equal(JSON.stringify(s).includes('Product Viewed'), false, 'nothing of the profile');
});
