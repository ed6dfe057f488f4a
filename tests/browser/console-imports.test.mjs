// The console's Imports view in Chromium against the running Worker: a CRM export (CSV) chosen from disk is
// previewed in the page as text (a spreadsheet formula included), its columns mapped from their headers, sent
// with consent and a basis, and followed until the job is done: the row counts, the rejected row by its line in
// the file, every reject downloaded, the job in the recent list, and the profiles it made read through the admin
// API with the formula kept as literal text. Cancelling a job that already ended shows the Worker's refusal.
// Screenshots go to tests/.tmp/console/ (looked at by hand).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './shop.mjs';
import { signedIn as signIn } from './console-session.mjs';
import { startWorker, getProfile } from '../support/worker.mjs';

const TMP = join(dirname(fileURLToPath(import.meta.url)), '..', '.tmp');
const SHOTS = join(TMP, 'console');
mkdirSync(SHOTS, { recursive: true });
let w;
let browser;
let dir;
let csvPath;

// Three customers and one row whose timestamp is no time. The header is line 1, so that row is line 5; a cell
// holds a formula a spreadsheet would run, quoted as CSV quotes it.
const FORMULA = '=HYPERLINK("http://evil")';
const AT = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
const HEADER = ['email', 'user_id', 'firstName', 'website', 'timestamp'];
const CSV = `${[
  HEADER.join(','),
  `ana@example.com,u-ana,Ana,"${FORMULA.replaceAll('"', '""')}",${AT}`,
  `bo@example.com,u-bo,Bo,https://bo.example,${AT}`,
  `cy@example.com,u-cy,"Cy, Jr.",,${AT}`,
  'dee@example.com,u-dee,Dee,,not-a-date',
].join('\n')}\n`;

before(async () => {
  w = await startWorker();
  browser = await launchChromium();
  mkdirSync(TMP, { recursive: true });
  dir = mkdtempSync(join(TMP, 'imports-'));
  csvPath = join(dir, 'crm-export.csv');
  writeFileSync(csvPath, CSV);
}, { timeout: 180_000 });
after(async () => { await browser?.close(); await w?.stop(); if (dir) rmSync(dir, { recursive: true, force: true }); });

// 409: the cancel of a finished job is refused on purpose below.
const signedIn = (t) => signIn(browser, w, t, { expected: /401|404|409|Failed to load resource/, context: { acceptDownloads: true } });
const shot = (page, name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
const cellTexts = (page, selector) => page.$$eval(selector, (cells) => cells.map((c) => c.textContent.trim()));
const rowsOf = (page, selector) => page.$$eval(selector, (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));

// The controls of a page that have no accessible name, as Chromium computes names (as in console.test.mjs).
async function unnamedControls(page) {
  const cdp = await page.context().newCDPSession(page);
  const { nodes } = await cdp.send('Accessibility.getFullAXTree');
  await cdp.detach();
  const roles = ['button', 'link', 'textbox', 'searchbox', 'combobox', 'listbox', 'checkbox', 'radio', 'spinbutton', 'slider', 'switch', 'tab', 'menuitem'];
  const controls = nodes.filter((n) => !n.ignored && roles.includes(n.role && n.role.value));
  assert.ok(controls.length >= 2, 'the accessibility tree lists the controls');
  return controls.filter((n) => !(n.name && String(n.name.value).trim())).map((n) => `${n.role.value} (node ${n.backendDOMNodeId})`);
}

let jobId;

test('a CSV is previewed as text, mapped from its headers, imported, and followed until done', { timeout: 120_000 }, async (t) => {
  const { page } = await signedIn(t);
  await page.click('#nav a[href="#/imports"]');
  await page.waitForSelector('#import-form');
  assert.equal(await page.textContent('#view h1'), 'Imports');
  await page.setInputFiles('#import-file', csvPath);
  await page.waitForSelector('#import-preview table');

  // The preview: the header, then the rows by their line in the file, each cell as text.
  assert.deepEqual(await cellTexts(page, '#import-preview thead tr:first-child th'), ['Line', ...HEADER]);
  const rows = await rowsOf(page, '#import-preview tbody tr');
  assert.deepEqual(rows.map((r) => r[0]), ['2', '3', '4', '5']);
  assert.deepEqual(rows[0], ['2', 'ana@example.com', 'u-ana', 'Ana', FORMULA, AT]);
  assert.equal(rows[2][3], 'Cy, Jr.', 'a quoted comma stays in its cell');
  assert.equal(rows[3][5], 'not-a-date');
  const formulaCell = await page.$eval('#import-preview tbody tr:first-child td:nth-child(5)', (td) => ({ text: td.textContent, elements: td.children.length }));
  assert.deepEqual(formulaCell, { text: FORMULA, elements: 0 }, 'the formula is text, nothing built from it');
  assert.equal(await page.locator('#import-preview a').count(), 0, 'no link made of the HYPERLINK cell');

  // The mapping guessed from the headers; the website column becomes the trait "homepage".
  assert.equal(await page.inputValue('#import-format'), 'csv');
  assert.equal(await page.inputValue('#import-kind'), 'profiles', 'a CSV is profiles unless said otherwise');
  const guessed = await page.$$eval('#import-preview select.import-map', (s) => s.map((x) => [x.dataset.column, x.value]));
  assert.deepEqual(guessed, [['email', 'identities.email'], ['user_id', 'userId'], ['firstName', 'traits.*'], ['website', 'traits.*'], ['timestamp', 'timestamp']]);
  assert.equal(await page.inputValue('input.import-map-name[data-column="firstName"]'), 'firstName');
  assert.ok(await page.isHidden('input.import-map-name[data-column="email"]'), 'an e-mail needs no name');
  await page.fill('input.import-map-name[data-column="website"]', 'homepage');
  await page.check('#import-consent input[value="analytics"]');
  await page.check('#import-consent input[value="personalization"]');
  await page.selectOption('#import-basis', 'consent');
  assert.deepEqual(await unnamedControls(page), [], 'every control of the Imports view has a name');
  await shot(page, '7-imports-preview');

  // Started: the file is the body, the declaration is the query.
  const [request] = await Promise.all([
    page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/v1/imports'),
    page.click('#import-start'),
  ]);
  const q = new URL(request.url()).searchParams;
  assert.equal(request.headers()['content-type'], 'text/csv');
  assert.equal(q.get('kind'), 'profiles');
  assert.deepEqual(JSON.parse(q.get('mapping')), { email: 'identities.email', user_id: 'userId', firstName: 'traits.firstName',
    website: 'traits.homepage', timestamp: 'timestamp' });
  assert.equal(q.get('consent'), 'analytics,personalization');
  assert.equal(q.get('basis'), 'consent');
  assert.equal(q.get('asOf'), null, 'no time given: the Worker takes the upload\'s');

  // Followed every second until it ends.
  await page.waitForSelector(['done', 'failed', 'cancelled'].map((s) => `#import-job[data-state="${s}"]`).join(', '), { timeout: 60_000 });
  assert.equal(await page.getAttribute('#import-job', 'data-state'), 'done', await page.textContent('#import-job'));
  jobId = await page.getAttribute('#import-job', 'data-id');
  assert.match(jobId, /^imp_[0-9a-f]{32}$/);
  assert.equal(new URL(page.url()).hash, `#/imports?id=${jobId}`, 'the job has an address of its own');
  const count = (name) => page.textContent(`#import-job [data-count="${name}"]`);
  assert.equal(await count('read'), '4');
  assert.equal(await count('applied'), '3');
  assert.equal(await count('rejected'), '1');
  const progress = await page.$eval('#import-progress', (p) => ({ value: p.value, max: p.max }));
  assert.ok(progress.max >= 1 && progress.value === progress.max, `every chunk done: ${JSON.stringify(progress)}`);
  assert.equal(await page.locator('#import-cancel').count(), 0, 'a finished job cannot be cancelled');

  // The rejected row, by its physical line (the header is line 1).
  const rejects = await rowsOf(page, '#import-rejects tbody tr');
  assert.equal(rejects.length, 1, JSON.stringify(rejects));
  const [line, code, path] = rejects[0];
  assert.equal(line, '5');
  assert.equal(path, 'timestamp');
  assert.match(code, /timestamp/);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#import-rejects-download')]);
  const all = Buffer.concat(await (await download.createReadStream()).toArray()).toString().trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(all.map((r) => [r.line, r.path]), [[5, 'timestamp']], 'every reject downloads, with the session');
  assert.doesNotMatch(await page.textContent('#view'), /\bnull\b|undefined/, 'no missing value written as a word');
  await shot(page, '7-imports-done');

  // The profiles it made: the formula is a trait's literal text; the bad row made no one.
  const ana = await getProfile(w, 'email:ana@example.com');
  assert.equal(ana.status, 200, String(ana.body));
  assert.equal(ana.body.traits.homepage, FORMULA);
  assert.equal(ana.body.traits.firstName, 'Ana');
  assert.ok(ana.body.identities.some((i) => i.type === 'user_id' && i.value === 'u-ana'), JSON.stringify(ana.body.identities));
  assert.equal((await getProfile(w, 'email:cy@example.com')).body.traits.firstName, 'Cy, Jr.');
  assert.equal((await getProfile(w, 'email:dee@example.com')).status, 404, 'the rejected row stored nobody');

  // The recent jobs list it as it ended, linking to it (the list is read again once the job ends).
  await page.waitForFunction((id) => [...document.querySelectorAll('#imports-recent tbody tr')]
    .some((tr) => tr.children[0].textContent === id && tr.children[2].textContent === 'done'), jobId);
  assert.equal(await page.locator(`#imports-recent a[href="#/imports?id=${jobId}"]`).count(), 1);
  const listed = (await rowsOf(page, '#imports-recent tbody tr')).find((r) => r[0] === jobId);
  assert.deepEqual(listed.slice(2, 5).concat(listed.slice(6)), ['done', 'csv', 'profiles', '4', '3', '1']);
});

test('a job opened by its address shows what it did; cancelling one that ended shows the refusal', async (t) => {
  assert.ok(jobId, 'the import test ran first');
  const { page } = await signedIn(t);
  await page.goto(`${w.url}/console/#/imports?id=${jobId}`);
  await page.waitForSelector('#import-job[data-state="done"]');
  assert.equal(await page.textContent('#import-job [data-count="applied"]'), '3');
  // The page is shown the job as still running (the Worker's job ended long ago), so that the button appears; the
  // cancel itself goes to the Worker, which refuses it.
  const real = await (await fetch(`${w.url}/v1/imports/${jobId}`, { headers: { authorization: `Bearer ${w.adminToken}` } })).json();
  await page.route(`**/v1/imports/${jobId}`, (r) => r.fulfill({ status: 200, contentType: 'application/json',
    body: JSON.stringify({ ...real, state: 'running', finishedAt: null }) }));
  await page.reload();
  await page.waitForSelector('#import-cancel');
  await page.click('#import-cancel');
  assert.match(await page.textContent('dialog'), /rows not yet applied are not imported/);
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === `/v1/imports/${jobId}/cancel`),
    page.click('dialog button.danger'),
  ]);
  assert.equal(answer.status(), 409);
  assert.equal((await answer.json()).error.code, 'import_finished');
  await page.waitForSelector('#import-job .error[role="alert"]');
  await page.unroute(`**/v1/imports/${jobId}`);
});
