// Proven identity in a real browser: signing in on the demo shop gets a token from the demo's sign-in route, the
// snippet passes it with identify, and the hero greets the signed-in user; a second browser that claims the same
// user without a token sees nothing of theirs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getProfile } from '../support/worker.mjs';
import { accept, decisions, eventually, hero, openShop, shopForFile } from './shop.mjs';

const file = shopForFile();

test('signing in with a token greets the user; another browser claiming them without one sees nothing', async (t) => {
  const user = `ada-${Math.random().toString(36).slice(2, 8)}@example.com`;
  const shop = await openShop(t, file.browser, file.worker);
  const anonymousId = await accept(shop);
  await shop.page.fill('#sign-in-name', 'Ada');
  await shop.page.fill('#sign-in-email', user);
  await shop.page.click('#sign-in button[type="submit"]');
  await decisions(shop, 2);
  await eventually('the hero greets the signed-in user', () => hero(shop.page),
    (h) => h.text === 'Welcome back, Ada' && h.block === 'welcome-back');

  // The token went with the identify, and the browser's anonymous profile became the user's.
  const identify = shop.requests.filter((r) => new URL(r.url()).pathname === '/v1/batch' && r.postData())
    .flatMap((r) => JSON.parse(r.postData()).batch).find((e) => e.type === 'identify');
  assert.equal(identify.userId, user);
  assert.match(identify.context.identityToken, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  const known = await getProfile(file.worker, `user_id:${user}`);
  assert.equal(known.status, 200);
  assert.equal(known.body.traits.firstName, 'Ada');
  // The demo's sign-in proves the address typed (its token's verified e-mail claim), so journeys may write to it.
  assert.equal(known.body.traits.email, user);
  assert.equal(known.body.contactPoints.email.by, 'token');
  assert.equal((await getProfile(file.worker, `anonymous_id:${anonymousId}`)).body.id, known.body.id);
  // The decision a browser asks for names no user id: the edge finds the user through the browser's own link.
  const decides = shop.requests.filter((r) => new URL(r.url()).pathname === '/v1/decide');
  assert.ok(decides.every((r) => JSON.parse(r.postData()).userId === undefined));

  // A second browser claims the same user, without a token.
  const other = await openShop(t, file.browser, file.worker);
  const otherId = await accept(other);
  const claimed = await other.page.evaluate(async (u) => {
    await new Promise((r) => edgecdp.ready(r));
    edgecdp.identify(u, { firstName: 'Mallory' });
    return edgecdp.decide(['hero']);
  }, user);
  assert.equal(claimed.slots.hero.block, null);
  assert.ok(!JSON.stringify(claimed).includes('Ada'), JSON.stringify(claimed));
  assert.deepEqual(await hero(other.page), { text: 'Welcome', block: 'fallback' });
  const stranger = await getProfile(file.worker, `anonymous_id:${otherId}`);
  assert.notEqual(stranger.body.id, known.body.id);
  assert.equal(stranger.body.traits.firstName, 'Mallory');
  const after = await getProfile(file.worker, `user_id:${user}`);
  assert.equal(after.body.traits.firstName, 'Ada');
  assert.deepEqual(after.body.counts, known.body.counts);
});
