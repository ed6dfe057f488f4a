// The console tests' one way in: a fresh browser context signed in with the admin token, whose script errors and
// CSP violations fail the test that opened it (apart from the statuses the test provokes on purpose).
import assert from 'node:assert/strict';

/**
 * @param {import('playwright-core').Browser} browser
 * @param {{url: string, adminToken: string}} w the Worker
 * @param {import('node:test').TestContext} t the test, which closes the context and checks the errors after it
 * @param {{expected?: RegExp, context?: object}} [options] console messages expected (the statuses the test
 *   provokes), and the browser context's options
 */
export async function signedIn(browser, w, t, options = {}) {
  const expected = options.expected || /401|404|Failed to load resource/;
  const context = await browser.newContext(options.context || {});
  t.after(() => context.close());
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  t.after(() => assert.deepEqual(errors.filter((e) => !expected.test(e)), [], 'no script error, no CSP violation'));
  await page.goto(`${w.url}/console/`);
  await page.fill('#token', w.adminToken);
  await page.click('#sign-in-form button[type=submit]');
  await page.waitForSelector('#nav:not([hidden])');
  return { context, page };
}
