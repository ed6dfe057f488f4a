// Types of the snippet's `edgecdp` API (js/loader.js, then js/sdk.js) and of a decision, for sites written in
// TypeScript: `/// <reference path="edgecdp.d.ts" />`, or copy the file. `npm test` checks it with tsc against
// tests/types/usage.ts.

/** The consent purposes edgecdp knows. A purpose that is not `true` is refused. */
export interface ConsentPreferences {
  analytics?: boolean;
  personalization?: boolean;
  advertising?: boolean;
  /** E-mail and messaging: what journeys' destinations with `"purpose": "marketing"` need. */
  marketing?: boolean;
}

/** Properties of an event, or traits of a person: JSON values. */
export type Properties = { [name: string]: unknown };

export interface IdentifyOptions {
  /** The identity token the site's backend made for this user id (an HS256 JWT, see SECURITY.md). */
  token?: string;
}

/** What one slot shows: the block and variant chosen (`null`: the fallback), and the HTML to put in it. */
export interface SlotAnswer {
  block: string | null;
  variant: string | null;
  html: string;
  /** The experiment the answer counts for, if any. */
  experiment?: string;
}

/** A requested slot the configuration does not define. */
export interface RejectedSlot {
  index: number;
  code: 'unknown_slot';
  message: string;
  path: string;
}

/** The answer of `POST /v1/decide`, and of `edgecdp.decide()`. */
export interface DecideAnswer {
  /** The profile decided for; `null` without one (or without personalization consent). */
  profileId: string | null;
  segments: string[];
  slots: { [slot: string]: SlotAnswer };
  rejected?: RejectedSlot[];
}

export interface EdgeCdp {
  page(name?: string, properties?: Properties): void;
  page(properties: Properties): void;
  track(event: string, properties?: Properties): void;
  identify(userId: string | number, traits?: Properties, options?: IdentifyOptions): void;
  alias(userId: string, previousId?: string): void;
  /** Records the visitor's choice; nothing is sent before analytics is allowed. */
  consent(preferences: ConsentPreferences): void;
  /** Runs `callback` once the SDK has loaded (after consent). */
  ready(callback: (edgecdp: EdgeCdp) => void): void;
  /**
   * Decides the page's slots (or the ones named) and fills `[data-edgecdp-slot]` elements; resolves to the answer,
   * or `null` without personalization consent.
   */
  decide(slots?: string[]): Promise<DecideAnswer | null>;
}

declare global {
  interface Window {
    edgecdp: EdgeCdp;
  }
}
