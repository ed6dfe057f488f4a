// The marketer's console in Chromium against the running Worker, with real data made by real events: sign-in
// (an HttpOnly session, CSRF, a strict CSP), a person (identities, merges, consent, audiences, journeys, the live
// preview, split, erasure with typed confirmation), audiences and their members, deliveries, experiments, and
// the configuration (server errors at their paths, a diff, a conditional save). A signed-out browser and a page
// of another origin get nothing. Screenshots of each view go to tests/.tmp/console/ (looked at by hand).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './shop.mjs';
import { signedIn as signIn } from './console-session.mjs';
import { startWorker, getProfile, GRANT } from '../support/worker.mjs';

const SHOTS = join(dirname(fileURLToPath(import.meta.url)), '..', '.tmp', 'console');
mkdirSync(SHOTS, { recursive: true });
let w;
let browser;
let foreign;

async function batch(events) {
  const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ writeKey: w.serverKey, batch: events }) });
  assert.equal(r.status, 200, await r.text());
}
const consent = { consent: { categoryPreferences: { analytics: true, personalization: true, marketing: true } } };

before(async () => {
  w = await startWorker();
  browser = await launchChromium();
  // Ana: known, with a phone's anonymous profile merged in, two bag views (an audience), consent for marketing.
  await batch([{ type: 'identify', userId: 'ana', traits: { firstName: '<b>Ana</b>', plan: 'gold', email: 'ana@example.com' },
    context: consent }]);
  await batch([{ type: 'track', event: 'Product Viewed', anonymousId: 'ana-phone', properties: { category: 'bags' }, context: GRANT }]);
  await batch([{ type: 'identify', userId: 'ana', anonymousId: 'ana-phone', context: consent },
    { type: 'track', event: 'Product Viewed', userId: 'ana', properties: { category: 'bags' }, context: consent }]);
  // An experiment on the bags promotion, with real exposures (decisions) and conversions (orders).
  const admin = { authorization: `Bearer ${w.adminToken}`, 'content-type': 'application/json' };
  const config = await (await fetch(`${w.url}/v1/config`, { headers: admin })).json();
  config.slots.hero.blocks.find((b) => b.id === 'bags-promo').experiment =
    { id: 'bags-copy', holdout: 30, goal: { event: 'Order Completed', within: '7d' } };
  const put = await fetch(`${w.url}/v1/config`, { method: 'PUT', headers: admin, body: JSON.stringify(config) });
  assert.equal(put.status, 200, await put.text());
  for (let i = 0; i < 12; i++) {
    const userId = `shopper-${i}`;
    await batch([{ type: 'identify', userId, context: consent },
      { type: 'track', event: 'Product Viewed', userId, properties: { category: 'bags' }, context: consent },
      { type: 'track', event: 'Product Viewed', userId, properties: { category: 'bags' }, context: consent }]);
    const d = await fetch(`${w.url}/v1/decide`, { method: 'POST', headers: { authorization: `Bearer ${w.serverKey}` },
      body: JSON.stringify({ userId, slots: ['hero'] }) });
    assert.equal(d.status, 200, await d.text());
    if (i % 3 === 0) await batch([{ type: 'track', event: 'Order Completed', userId, properties: { revenue: 10 }, context: consent }]);
  }
  // A cart left by one shopper: the demo's cart journey waits a day at its first step.
  await batch([{ type: 'track', event: 'Product Added', userId: 'shopper-1', properties: { cart_id: 'cart-1' }, context: consent }]);
  // A page of another origin (another port), to try the API from.
  foreign = createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end('<!doctype html><title>elsewhere</title>'); });
  await new Promise((r) => foreign.listen(0, '127.0.0.1', r));
}, { timeout: 180_000 });
after(async () => { await browser?.close(); await w?.stop(); foreign?.close(); });

const signedIn = (t) => signIn(browser, w, t);
const shot = (page, name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
const cellTexts = (page, selector) => page.$$eval(selector, (cells) => cells.map((c) => c.textContent.trim()));

test('a signed-out browser gets the sign-in form and nothing else; a wrong token is refused', async (t) => {
  const r = await fetch(`${w.url}/console/`);
  assert.equal(r.status, 200);
  const csp = r.headers.get('content-security-policy');
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  await page.goto(`${w.url}/console/#/person?id=user_id:ana`);
  await page.waitForSelector('#sign-in:not([hidden])');
  assert.ok(await page.isHidden('#nav'));
  assert.equal(await page.textContent('#view'), '', 'no data before signing in');
  const huge = await fetch(`${w.url}/v1/session`, { method: 'POST', body: JSON.stringify({ token: 'x'.repeat(100_000) }) });
  assert.equal(huge.status, 413, 'a sign-in body is small: a huge one is refused before it is read');
  const bad = await fetch(`${w.url}/v1/session`, { method: 'POST', body: '{"token": 7}' });
  assert.equal(bad.status, 400);
  assert.equal((await bad.json()).error.path, 'token');
  const asked = await page.evaluate(async () => (await fetch('/v1/profiles/user_id:ana')).status);
  assert.equal(asked, 401, 'the API refuses a browser without a session');
  await page.fill('#token', 'not-the-token');
  await page.click('#sign-in-form button[type=submit]');
  await page.waitForSelector('#sign-in-error:not(:empty)');
  assert.match(await page.textContent('#sign-in-error'), /not this edgecdp's admin token/);
  await shot(page, '0-sign-in');
});

test('a person: identities, merge, consent, audiences, traits as text, the live preview', async (t) => {
  const { page, context } = await signedIn(t);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'edgecdp_console');
  assert.ok(session.httpOnly && session.secure && session.sameSite === 'Strict', 'an HttpOnly, Secure, SameSite=Strict session');
  assert.equal(await page.evaluate(() => document.cookie), '', 'no script can read it');
  await page.selectOption('#find-type', 'user_id');
  await page.fill('#find-value', 'ana');
  await page.click('#find button[type=submit]');
  await page.waitForSelector('text=Identities');
  const cells = await cellTexts(page, '#view td');
  assert.ok(cells.includes('ana') && cells.includes('ana-phone'), `both identities: ${cells}`);
  assert.ok(cells.includes('<b>Ana</b>'), 'a trait that looks like HTML shows as text');
  assert.equal(await page.$$eval('#view b', (b) => b.length), 0, 'and is not rendered as HTML');
  assert.match(await page.textContent('#view'), /marketing: granted/);
  // Her e-mail came from the site's backend (a server source): a proven contact point, said beside the trait.
  const proven = (text) => page.locator('#view tr', { hasText: text }).filter({ hasText: /by server/ }).count();
  assert.equal(await proven('ana@example.com'), 1, 'the e-mail trait\'s row says who proved it');
  assert.equal(await proven('gold'), 0, 'a plan is no contact point');
  assert.ok(cells.includes('bag-curious'), 'the audience with its entry time');
  assert.equal(await page.locator('button.split').count(), 1, 'the merge of the phone can be split');
  // The live preview: the hero for this person on a bag page, on a phone.
  await page.fill('#pv-url', `${w.url}/bags`);
  await page.selectOption('#pv-device', 'mobile');
  await page.click('#preview button[type=submit]');
  await page.waitForSelector('#preview-result table');
  const preview = await cellTexts(page, '#preview-result td');
  assert.equal(preview[0], 'hero');
  assert.equal(preview[1], 'bags-promo', `two bag views show the bags promotion: ${preview}`);
  await shot(page, '1-person');
});

test('audiences list sizes and movements, members link to people, exports download', async (t) => {
  const { page } = await signedIn(t);
  // The index follows the profiles through the queue within about a second.
  for (let i = 0; i < 40; i++) {
    await page.goto(`${w.url}/console/#/audiences?id=bag-curious`);
    await page.waitForSelector('#view table');
    const size = (await cellTexts(page, '#view table:first-of-type tbody tr:first-child td'))[1];
    if (size === '13' && (await page.locator('#members').count()) && (await page.textContent('#members')).includes('user_id:ana')) break;
    await page.waitForTimeout(500);
  }
  const first = await cellTexts(page, '#view table:first-of-type tbody tr:first-child td');
  assert.equal(first[0], 'bag-curious');
  assert.equal(first[1], '13', 'Ana and the twelve shoppers');
  assert.match(await page.textContent('#members'), /user_id:ana/);
  // The chart of the last 30 days, and its numbers as a table: today's size is the size now.
  assert.equal(await page.locator('#history-chart canvas').count(), 1, 'uPlot drew the chart, under the CSP');
  const days = await page.$$eval('#history details tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  assert.equal(days.length, 30);
  assert.equal(days[29][1], '13', 'the last day ends at today\'s size');
  assert.equal(days.reduce((n, d) => n + Number(d[2]), 0), 13, 'every entry counted on its day');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('text=Export CSV')]);
  assert.match(await (await download.createReadStream()).toArray().then((b) => Buffer.concat(b).toString()), /ana/);
  await shot(page, '2-audiences');
});

test('deliveries and experiments show what the API counts', async (t) => {
  const { page } = await signedIn(t);
  // The journey index follows the profiles through the queue: the shopper's cart waits at its first step.
  let waiting;
  for (let i = 0; i < 40; i++) {
    await page.goto(`${w.url}/console/#/deliveries`);
    await page.waitForSelector('text=Sends by destination');
    waiting = await page.$$eval('#view .journey[data-journey="cart-abandoned"] table:first-of-type tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent.trim())));
    if (waiting.some((r) => r[0] === 'wait-a-day' && r[2] === '1')) break;
    await page.waitForTimeout(500);
  }
  assert.match(await page.textContent('#view .journey[data-journey="cart-abandoned"]'), /People at each step now \(1 in all\)/);
  assert.deepEqual(waiting.find((r) => r[0] === 'wait-a-day'), ['wait-a-day', 'wait', '1']);
  const cells = await cellTexts(page, '#view td');
  assert.ok(cells.includes('email') && (await page.locator('#view .journey').count()) === 5, 'the demo destinations and journeys');
  await shot(page, '3-deliveries');
  await page.goto(`${w.url}/console/#/experiments`);
  await page.waitForSelector('#view .card table');
  const rows = await page.$$eval('#view .card tbody tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent.trim())));
  const people = rows.reduce((n, r) => n + Number(r[1]), 0);
  const converted = rows.reduce((n, r) => n + Number(r[2]), 0);
  assert.equal(people, 12, `every shopper counted once, in one variant: ${JSON.stringify(rows)}`);
  assert.equal(converted, 4, 'every third shopper bought');
  assert.ok(rows.some((r) => r[0] === 'control'), 'the holdout is the control');
  assert.ok(rows.filter((r) => r[0] !== 'control').every((r) => /%$/.test(r[5]) || r[5] === '—'), 'a chance to beat control');
  assert.match(await page.textContent('#view'), /Sample too small/);
  // Each interval is drawn to scale, with its rate inside it: 1 of 2 is 50 %, within 9.5 % to 90.5 %.
  const drawn = await page.$$eval('#view .ci', (cis) => cis.map((c) => ({
    control: c.classList.contains('control'),
    from: parseFloat(c.children[0].style.left), width: parseFloat(c.children[0].style.width), rate: parseFloat(c.children[1].style.left) })));
  assert.equal(drawn.length, rows.length);
  assert.equal(drawn.filter((d) => d.control).length, 1, 'the control is shaded apart');
  for (const d of drawn) assert.ok(d.from <= d.rate && d.rate <= d.from + d.width + 0.01 && d.from + d.width <= 100.01, JSON.stringify(d));
  await shot(page, '4-experiments');
});

// The controls of a page that have no accessible name, as Chromium computes names (its accessibility tree, so
// labels, aria-labelledby and shadow roots count exactly as a screen reader would hear them).
async function unnamedControls(page) {
  const cdp = await page.context().newCDPSession(page);
  const { nodes } = await cdp.send('Accessibility.getFullAXTree');
  await cdp.detach();
  const roles = ['button', 'link', 'textbox', 'searchbox', 'combobox', 'listbox', 'checkbox', 'radio', 'spinbutton', 'slider', 'switch', 'tab', 'menuitem'];
  const controls = nodes.filter((n) => !n.ignored && roles.includes(n.role && n.role.value));
  assert.ok(controls.length >= 2, 'the accessibility tree lists the controls');
  return controls.filter((n) => !(n.name && String(n.name.value).trim())).map((n) => `${n.role.value} (node ${n.backendDOMNodeId})`);
}

test('every control of every view has a name, and the console works from the keyboard alone', async (t) => {
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  // Tab (or Shift-Tab) moves the focus until it reaches what `matches` accepts (at most 80 steps); answers whether
  // it did.
  const tabTo = async (matches, arg, key = 'Tab') => {
    for (let i = 0; i < 80; i++) {
      await page.keyboard.press(key);
      if (await page.evaluate(matches, arg)) return true;
    }
    return false;
  };
  await page.goto(`${w.url}/console/`);
  // The form shows once the page has learnt there is no session.
  await page.waitForSelector('#token', { state: 'visible' });
  assert.deepEqual(await unnamedControls(page), [], 'the sign-in form');
  assert.ok(await tabTo(() => document.activeElement && document.activeElement.id === 'token'), 'Tab reaches the token field');
  await page.keyboard.type(w.adminToken);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#nav:not([hidden])');
  // The person view: the identity form by keyboard, then every control of a person's page.
  assert.ok(await tabTo(() => document.activeElement && document.activeElement.id === 'find-value'), 'Tab reaches the identity field');
  await page.keyboard.type('ana');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#view >> text=Identities');
  assert.equal(new URL(page.url()).hash, '#/person?id=user_id%3Aana');
  assert.deepEqual(await unnamedControls(page), [], 'a person');
  // The navigation by keyboard: back (Shift-Tab) from the view to a view's link, Enter opens it.
  const views = [['Audiences', '#view table'], ['Journeys & deliveries', '#view .journey'], ['Experiments', '#view .card table'],
    ['Configuration', '#config-problems[data-checked="yes"]']];
  for (const [name, ready] of views) {
    assert.ok(await tabTo((n) => document.activeElement && document.activeElement.closest('#nav') && document.activeElement.textContent.trim() === n, name, 'Shift+Tab'), `Shift-Tab reaches ${name}`);
    await page.keyboard.press('Enter');
    // The view's own heading first: the view before it may hold an element `ready` also matches (a person's page
    // has tables, like the audiences' list).
    await page.waitForFunction((n) => document.querySelector('#view h1')?.textContent === n, name);
    await page.waitForSelector(ready);
    assert.equal(await page.textContent('#view h1'), name);
    assert.deepEqual(await unnamedControls(page), [], name);
  }
  // The editor is reached and left with Tab (it does not trap the focus), and its content is named.
  assert.ok(await tabTo(() => { const h = document.querySelector('#config-editor'); return document.activeElement === h && h.shadowRoot.activeElement && h.shadowRoot.activeElement.classList.contains('cm-content'); }), 'Tab reaches the editor');
  assert.ok(await tabTo(() => document.activeElement && document.activeElement.id === 'config-check'), 'and leaves it for the Check button');
});

// Replaces the editor's whole text as a person pastes a configuration: select everything, paste.
async function pasteConfig(page, text) {
  const content = page.locator('#config-editor .cm-content');
  await content.click();
  await page.keyboard.press('Control+A');
  await content.evaluate((node, t) => {
    const data = new DataTransfer();
    data.setData('text/plain', t);
    node.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
  }, text);
}
// The problems the editor lists once it has checked the text as it is now.
async function checkedProblems(page) {
  await page.waitForSelector('#config-problems[data-checked="yes"]');
  return cellTexts(page, '#config-problems li');
}
const lineOf = (text, needle) => text.split('\n').findIndex((l) => l.includes(needle)) + 1;

test('the configuration editor: completion and inline errors from the schema and from the server', async (t) => {
  const { page } = await signedIn(t);
  await page.goto(`${w.url}/console/#/config`);
  await page.waitForSelector('#config-editor .cm-content');
  assert.deepEqual(await checkedProblems(page), [], 'the configuration in force has no problem');
  assert.match(await page.textContent('#config-problems'), /No problems: the server would accept this text/);
  const doc = await (await fetch(`${w.url}/v1/config`, { headers: { authorization: `Bearer ${w.adminToken}` } })).json();
  const n = doc.segments.length;
  doc.segments.push({ id: 'broken', when: { event: 'X', count: { gte: 'two' } } });
  const text = JSON.stringify(doc, null, 2);
  await pasteConfig(page, text);
  // The server's problem, once (the slots and journeys that use other segments say nothing more), at its line.
  const line = lineOf(text, '"gte": "two"');
  assert.deepEqual(await checkedProblems(page), [`Line ${line}: segments[${n}].when.count.gte: expected a number Go to line ${line}`]);
  await page.click(`#config-problems button >> text=Go to line ${line}`);
  assert.equal(await page.locator('#config-editor .cm-lintRange-error').first().textContent(), '"two"', 'the value is underlined');
  assert.equal(await page.locator('#config-editor .cm-activeLine').textContent(), text.split('\n')[line - 1], 'the cursor is on it');
  await shot(page, '5-config-inline-error');
  // A field the compiler does not know is underlined at its name (the schema's same complaint is not repeated).
  const typo = structuredClone(doc);
  typo.segments.pop();
  typo.consent.colour = 'blue';
  const typoText = JSON.stringify(typo, null, 2);
  const typoLine = lineOf(typoText, '"colour"');
  const listed = await checkedProblems(page).then(() => pasteConfig(page, typoText)).then(() => checkedProblems(page));
  assert.equal(listed.length, 1, listed.join('\n'));
  assert.match(listed[0], new RegExp(`^Line ${typoLine}: consent\\.colour: unknown field`));
  await page.click(`#config-problems button >> text=Go to line ${typoLine}`);
  assert.equal(await page.locator('#config-editor .cm-lintRange-error').first().textContent(), '"colour"');
  // Without the server (unreachable), the schema still underlines the same value, and says so.
  await page.route('**/v1/config/validate', (r) => r.abort());
  await pasteConfig(page, `${text}\n`);
  assert.deepEqual(await checkedProblems(page),
    [`Line ${line}: segments[${n}].when.count.gte: Expected "two" (string) to be of type "number" (schema) Go to line ${line}`]);
  await page.unroute('**/v1/config/validate');
  // Completion from the schema: a new field in that event condition offers the event condition's fields, with help.
  await page.click(`#config-problems button >> text=Go to line ${line}`);
  await page.locator('#config-editor .cm-line', { hasText: '"event": "X",' }).click();
  await page.keyboard.press('End');
  await page.keyboard.press('Enter');
  await page.keyboard.type('"wi');
  await page.waitForSelector('#config-editor .cm-tooltip-autocomplete');
  const offered = await cellTexts(page, '#config-editor .cm-tooltip-autocomplete li');
  assert.ok(offered.some((o) => o.startsWith('within')), `within is offered: ${offered}`);
  await shot(page, '5-config-completion');
  await page.keyboard.press('Enter');
  assert.match(await page.locator('#config-editor .cm-activeLine').textContent(), /^\s*"within"/, 'the completion wrote the field');
  // A text larger than the server reads (500 KB) is a problem of the whole document, not "the server is away".
  await pasteConfig(page, JSON.stringify({ ...doc, padding: 'x'.repeat(600_000) }, null, 2));
  assert.ok((await checkedProblems(page)).some((p) => /^Line 1: \(the whole configuration\): request body is larger than/.test(p)));
});

test('without the editor bundle, the configuration is plain text that Check still checks', async (t) => {
  const { page } = await signedIn(t);
  await page.route('**/console/vendor/editor.js', (r) => r.fulfill({ status: 404, body: '' }));
  await page.goto(`${w.url}/console/#/config`);
  await page.waitForSelector('#config-text');
  assert.match(await page.textContent('#config-editor'), /could not be loaded; this is plain text/);
  const doc = JSON.parse(await page.inputValue('#config-text'));
  doc.segments.push({ id: 'broken', when: { event: 'X', count: { gte: 'two' } } });
  await page.fill('#config-text', JSON.stringify(doc, null, 2));
  await page.click('#config-check');
  await page.waitForSelector('#config-status .error');
  assert.match(await page.textContent('#config-status'), /segments\[\d+\]\.when\.count\.gte: expected a number/);
});

test('the configuration: the Check button, a diff, a conditional save, the history', async (t) => {
  const { page } = await signedIn(t);
  await page.goto(`${w.url}/console/#/config`);
  await page.waitForSelector('#config-editor .cm-content');
  await checkedProblems(page);
  const before = Number((await page.textContent('#config-version')).match(/\d+/)[0]);
  const doc = await (await fetch(`${w.url}/v1/config`, { headers: { authorization: `Bearer ${w.adminToken}` } })).json();
  doc.segments.push({ id: 'broken', when: { event: 'X', count: { gte: 'two' } } });
  await pasteConfig(page, JSON.stringify(doc, null, 2));
  await page.click('#config-check');
  await page.waitForSelector('#config-status .error');
  assert.match(await page.textContent('#config-status'), /segments\[\d+\]\.when\.count\.gte: expected a number/);
  doc.segments[doc.segments.length - 1] = { id: 'console-made', when: { trait: 'plan', eq: 'gold' } };
  await pasteConfig(page, JSON.stringify(doc, null, 2));
  assert.deepEqual(await checkedProblems(page), []);
  await page.click('#config-diff-button');
  assert.match(await page.textContent('#config-diff'), /\+ .*console-made/);
  await shot(page, '5-config');
  await page.click('#config-save');
  await page.waitForSelector('#config-status .ok >> text=Saved');
  assert.equal(Number((await page.textContent('#config-version')).match(/\d+/)[0]), before + 1);
  const r = await fetch(`${w.url}/v1/config`, { headers: { authorization: `Bearer ${w.adminToken}` } });
  assert.ok((await r.json()).segments.some((s) => s.id === 'console-made'), 'saved through the API');
  // Someone else saves meanwhile: this page's next save is refused, not lost silently.
  await fetch(`${w.url}/v1/config`, { method: 'PUT', body: JSON.stringify(doc), headers: { authorization: `Bearer ${w.adminToken}` } });
  await page.click('#config-save');
  await page.waitForSelector('#config-status .error');
  assert.match(await page.textContent('#config-status'), /Someone saved another version/);
  // Rolling back: the version before the console's edit, loaded from the history and saved as the newest.
  await page.reload();
  await page.waitForSelector(`#config-history button[data-version="${before}"]`);
  await shot(page, '5-config-history');
  await page.click(`#config-history button[data-version="${before}"]`);
  await page.waitForSelector('#config-diff:not([hidden])');
  assert.match(await page.textContent('#config-diff'), /- .*console-made/, 'the diff shows what the rollback removes');
  await page.click('#config-save');
  await page.waitForSelector('#config-status .ok >> text=Saved');
  const now = await (await fetch(`${w.url}/v1/config`, { headers: { authorization: `Bearer ${w.adminToken}` } })).json();
  assert.ok(!now.segments.some((s) => s.id === 'console-made'), 'the old version is in force again');
  assert.match(await page.textContent('#config-history'), new RegExp(`${before + 3} \\(in force\\)`));
});

test('a page of another origin gets nothing with the session, and cannot change anything', async (t) => {
  const { context } = await signedIn(t);
  const page = await context.newPage();
  await page.goto(`http://127.0.0.1:${foreign.address().port}/`);
  const got = await page.evaluate(async (api) => {
    const out = {};
    try { out.read = (await (await fetch(`${api}/v1/profiles/user_id:ana`, { credentials: 'include' })).text()); } catch (e) { out.read = `blocked: ${e.name}`; }
    try { out.erase = (await fetch(`${api}/v1/profiles/user_id:ana`, { method: 'DELETE', credentials: 'include', mode: 'no-cors' })).type; } catch (e) { out.erase = `blocked: ${e.name}`; }
    return out;
  }, w.url);
  assert.match(got.read, /^blocked/, 'no CORS for another origin: nothing to read');
  assert.equal((await getProfile(w, 'user_id:ana')).status, 200, 'and the erasure without the CSRF token did nothing');
});

test('split and erase from the console, each after a confirmation that says what happens', async (t) => {
  const { page } = await signedIn(t);
  await page.goto(`${w.url}/console/#/person?id=user_id:ana`);
  await page.click('button.split');
  assert.match(await page.textContent('dialog'), /becomes a person of its own again/);
  await page.click('dialog button.danger');
  await page.waitForFunction(() => !document.querySelector('button.split') && document.querySelector('#view table'));
  assert.equal((await getProfile(w, 'anonymous_id:ana-phone')).status, 200, 'the phone is its own profile again');
  await page.click('#erase');
  const go = page.locator('dialog button.danger');
  assert.ok(await go.isDisabled(), 'erasing waits for the typed confirmation');
  await page.fill('#confirm-text', 'erase');
  await go.click();
  await page.waitForSelector('text=was erased');
  assert.equal((await getProfile(w, 'user_id:ana')).status, 404);
  await shot(page, '6-erased');
});

test('signing out ends the session: the cookie no longer opens anything', async (t) => {
  const { page, context } = await signedIn(t);
  const cookie = (await context.cookies()).find((c) => c.name === 'edgecdp_console');
  await page.click('#sign-out');
  await page.waitForSelector('#sign-in:not([hidden])');
  const replay = await fetch(`${w.url}/v1/session`, { headers: { cookie: `edgecdp_console=${cookie.value}` } });
  assert.equal(replay.status, 401, 'the old cookie is dead on the server too');
  const r = await fetch(`${w.url}/v1/audiences`, { headers: { cookie: `edgecdp_console=${cookie.value}` } });
  assert.equal(r.status, 401);
});
