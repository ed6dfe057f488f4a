// A visitor's history for the benchmarks that need one (bench-device.mjs, bench-summary.mjs): `count` product views
// in three categories, sent to the Worker `w` in batches of 20 with the demo source, personalization granted.
import { GRANT } from '../tests/support/worker.mjs';

export async function sendViews(w, visitor, count) {
  for (let sent = 0; sent < count; sent += 20) {
    const batch = Array.from({ length: Math.min(20, count - sent) }, (_, j) => ({
      type: 'track', event: 'Product Viewed', anonymousId: visitor, messageId: `${visitor}-${sent + j}`,
      properties: { category: ['bags', 'shoes', 'hats'][(sent + j) % 3], product_id: `sku-${j}` }, context: GRANT,
    }));
    const r = await fetch(`${w.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ writeKey: 'demo', batch }) });
    if (r.status !== 200) throw new Error(`batch answered ${r.status}`);
  }
}
