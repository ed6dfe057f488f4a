// How a TypeScript site uses the snippet's API; `npm test` type-checks this file against js/edgecdp.d.ts, and
// each `@ts-expect-error` line must be an error, so that the declarations stay as strict as the SDK.
import type { DecideAnswer } from '../../js/edgecdp';

const cdp = window.edgecdp;
cdp.consent({ analytics: true, personalization: true });
cdp.page();
cdp.page('Home', { section: 'shop' });
cdp.page({ section: 'shop' });
cdp.track('Product Viewed', { product_id: 'p1', price: 12.5 });
cdp.identify('user-1', { plan: 'pro' }, { token: 'eyJ...' });
cdp.alias('user-1');
cdp.ready((sdk) => sdk.track('Ready'));

async function hero(): Promise<string | null> {
  const answer: DecideAnswer | null = await cdp.decide(['hero']);
  if (!answer) return null;
  const slot = answer.slots.hero;
  return slot.block === null ? slot.html : `${slot.block}/${slot.variant}: ${slot.html}`;
}
void hero();

// @ts-expect-error: an event needs a name.
cdp.track();
// @ts-expect-error: consent purposes are booleans.
cdp.consent({ analytics: 'yes' });
// @ts-expect-error: the token is an option, not a positional argument.
cdp.identify('user-1', {}, 'eyJ...');
// @ts-expect-error: slots are named by strings.
void cdp.decide([1]);
