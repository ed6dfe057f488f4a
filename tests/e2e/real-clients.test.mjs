// The real server-side clients from npm, unchanged but for their host, against the Worker: Segment's
// `@segment/analytics-node` and RudderStack's `@rudderstack/rudder-sdk-node` (which gzips every batch). Each call
// must be stored once, with the right counts and traits.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { workerForFile, getProfile, GRANT, uid } from '../support/worker.mjs';

const require = createRequire(import.meta.url);
const w = workerForFile();

async function expectProfile(userId, check) {
  const { status, body } = await getProfile(w, `user_id:${userId}`);
  assert.equal(status, 200, `no profile for ${userId}: ${JSON.stringify(body)}`);
  check(body);
}

describe('server SDKs', () => {
  test("Segment's analytics-node: identify, two tracks and a page arrive once each", async () => {
    const { Analytics } = require('@segment/analytics-node');
    const user = uid('seg-node');
    const errors = [];
    const analytics = new Analytics({ writeKey: w.serverKey, host: w.url, flushAt: 10, maxRetries: 0 });
    analytics.on('error', (e) => errors.push(e));
    analytics.identify({ userId: user, traits: { plan: 'pro', name: 'Ada' }, context: GRANT });
    analytics.track({ userId: user, event: 'Order Completed', properties: { revenue: 12.5 }, context: GRANT });
    analytics.track({ userId: user, event: 'Order Completed', properties: { revenue: 7.5 }, context: GRANT });
    analytics.page({ userId: user, name: 'Home', context: GRANT });
    await analytics.closeAndFlush({ timeout: 10_000 });
    assert.deepEqual(errors, []);
    await expectProfile(user, (p) => {
      assert.equal(p.counts['Order Completed'], 2);
      assert.equal(p.counts.page, 1);
      assert.equal(p.traits.plan, 'pro');
      assert.equal(p.traits.name, 'Ada');
    });
  });

  test("Segment's analytics-node: group, screen and an alias of an earlier id reach the same person", async () => {
    const { Analytics } = require('@segment/analytics-node');
    const user = uid('seg-more');
    const earlier = uid('seg-earlier');
    const errors = [];
    const analytics = new Analytics({ writeKey: w.serverKey, host: w.url, flushAt: 10, maxRetries: 0 });
    analytics.on('error', (e) => errors.push(e));
    analytics.track({ anonymousId: earlier, event: 'Browsed', context: GRANT });
    await analytics.closeAndFlush({ timeout: 10_000 });
    const again = new Analytics({ writeKey: w.serverKey, host: w.url, flushAt: 10, maxRetries: 0 });
    again.on('error', (e) => errors.push(e));
    again.alias({ userId: user, previousId: earlier, context: GRANT });
    again.group({ userId: user, groupId: 'acme', traits: { employees: 12 }, context: GRANT });
    again.screen({ userId: user, name: 'Settings', context: GRANT });
    await again.closeAndFlush({ timeout: 10_000 });
    assert.deepEqual(errors, []);
    await expectProfile(user, (p) => {
      assert.equal(p.counts.group, 1);
      assert.equal(p.counts.screen, 1);
      assert.equal(p.counts.Browsed, 1, 'the aliased anonymous history joined the person');
    });
  });

  test("RudderStack's rudder-sdk-node, gzip on (its default): identify and tracks arrive once each", async () => {
    const Analytics = require('@rudderstack/rudder-sdk-node');
    const user = uid('rs-node');
    const errors = [];
    const client = new Analytics(w.serverKey, { dataPlaneUrl: w.url, flushAt: 10, retryCount: 0, logLevel: 'error',
      errorHandler: (e) => errors.push(e) });
    client.identify({ userId: user, traits: { plan: 'team' }, context: GRANT });
    client.track({ userId: user, event: 'Signed Up', context: GRANT });
    client.track({ userId: user, event: 'Signed Up', context: GRANT });
    await new Promise((resolve, reject) => client.flush((err) => (err ? reject(err) : resolve())));
    assert.deepEqual(errors, []);
    await expectProfile(user, (p) => {
      assert.equal(p.counts['Signed Up'], 2);
      assert.equal(p.traits.plan, 'team');
    });
  });

  test("RudderStack's rudder-sdk-node: page, group, screen and an alias of an earlier id reach the same person", async () => {
    const Analytics = require('@rudderstack/rudder-sdk-node');
    const user = uid('rs-more');
    const earlier = uid('rs-earlier');
    const errors = [];
    const flush = (client) => new Promise((resolve, reject) => client.flush((err) => (err ? reject(err) : resolve())));
    const open = () => new Analytics(w.serverKey, { dataPlaneUrl: w.url, flushAt: 10, retryCount: 0, logLevel: 'error',
      errorHandler: (e) => errors.push(e) });
    const first = open();
    first.track({ anonymousId: earlier, event: 'Browsed', context: GRANT });
    await flush(first);
    const again = open();
    again.alias({ userId: user, previousId: earlier, context: GRANT });
    again.page({ userId: user, name: 'Pricing', context: GRANT });
    again.group({ userId: user, groupId: 'acme', traits: { employees: 12 }, context: GRANT });
    again.screen({ userId: user, name: 'Settings', context: GRANT });
    await flush(again);
    assert.deepEqual(errors, []);
    await expectProfile(user, (p) => {
      assert.equal(p.counts.page, 1);
      assert.equal(p.counts.group, 1);
      assert.equal(p.counts.screen, 1);
      assert.equal(p.counts.Browsed, 1, 'the aliased anonymous history joined the person');
    });
  });
});
