// TC strings for tests, encoded by the IAB's own library (`@iabtechlabtcf/core`), which needs a Global Vendor List
// to encode: `gvl(ids)` builds a small one in memory (there is no network here) in which every vendor declares every
// purpose for consent and the LI-able ones (2, 7, 8, 9, 10) as flexible, so the encoder keeps the bits a test sets.
import { GVL, TCModel, TCString } from '@iabtechlabtcf/core';

const PURPOSES = Array.from({ length: 11 }, (_, i) => i + 1);
const LI_PURPOSES = [2, 7, 8, 9, 10];

export function gvl(vendorIds = [755], version = 150) {
  const named = (ids) => Object.fromEntries(ids.map((id) => [id, { id, name: `n${id}`, description: '', illustrations: [] }]));
  const vendors = Object.fromEntries(vendorIds.map((id) => [id, {
    id, name: `vendor ${id}`, purposes: PURPOSES, legIntPurposes: [], flexiblePurposes: LI_PURPOSES,
    specialPurposes: [1], features: [], specialFeatures: [1, 2], usesCookies: true, cookieRefresh: false,
    usesNonCookieAccess: false, dataRetention: {}, urls: [], dataDeclaration: [],
  }]));
  return new GVL({
    gvlSpecificationVersion: 3, vendorListVersion: version, tcfPolicyVersion: 5, lastUpdated: '2026-11-01T00:00:00Z',
    purposes: named(PURPOSES), specialPurposes: named([1, 2, 3]), features: named([1, 2, 3]),
    specialFeatures: named([1, 2]), stacks: {}, dataCategories: {}, vendors,
  });
}

/**
 * A TC string: `purposes` consented, `li` under legitimate interest, `vendors` consented (all disclosed unless
 * `disclosed` says which), `updated` (a Date) for created and lastUpdated, `cmpId`.
 */
export function tcString({ purposes = [], li = [], vendors = [], disclosed, updated = new Date(), cmpId = 28 } = {}) {
  const ids = [...new Set([...vendors, ...(disclosed ?? []), 755])];
  const m = new TCModel(gvl(ids));
  m.cmpId = cmpId;
  m.cmpVersion = 1;
  m.consentLanguage = 'EN';
  m.publisherCountryCode = 'FR';
  m.purposeConsents.set(purposes);
  m.purposeLegitimateInterests.set(li);
  m.vendorConsents.set(vendors);
  m.vendorsDisclosed.set(disclosed ?? vendors);
  const s = TCString.encode(m, { segments: ['core', 'vendorsDisclosed'] });
  // The encoder stamps the time it runs; a test that needs another time sets it after (the fields are read back).
  if (+updated === +m.lastUpdated) return s;
  m.created = updated;
  m.lastUpdated = updated;
  return TCString.encode(m, { segments: ['core', 'vendorsDisclosed'] });
}
