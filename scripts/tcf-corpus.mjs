// A differential-test corpus of TCF v2 TC strings, made and read by the IAB's own library
// (@iabtechlabtcf/core), printed as JSON lines for our Rust decoder (src/core/model/tcf.rs) to compare against.
//
//   node scripts/tcf-corpus.mjs [--count N] [--seed S] [--examples] [--stats]
//
//   --count N    random models to encode (default 1000)
//   --seed S     seed of the PRNG (default 1); the same seed always gives the same lines
//   --examples   print only the published example strings (see EXAMPLES), no random lines
//   --stats      after the lines, print to stderr which vendor encodings the library chose, and so on
//
// Each line: {"kind":"example"|"random","s":TC string,"segments":[segment names in order],"expect":{...}}.
// `expect` is always what TCString.decode(s) reads back (never the model we built): version, created and
// lastUpdated (ms since the epoch; the string holds deciseconds), cmpId, cmpVersion, consentScreen,
// consentLanguage, vendorListVersion, policyVersion, isServiceSpecific, useNonStandardTexts (the library's
// name since Aug 2023, iabtcf-es e8ca1ab; the v2.0 spec called the bit UseNonStandardStacks), purposeOneTreatment,
// publisherCountryCode, the id lists specialFeatureOptins, purposeConsents, purposeLegitimateInterests,
// vendorConsents, vendorLegitimateInterests (sorted), publisherRestrictions ([{purpose,type,vendors}] sorted
// by purpose then type; the library merges entries with the same purpose and type and drops repeated
// vendors), vendorsDisclosed / vendorsAllowed (null when the segment is absent) and publisher (null when
// there is no Publisher TC segment). Segment names are the library's: core, vendorsDisclosed, vendorsAllowed,
// publisherTC.
//
// For random lines the script also checks that the decoded values are the model it built, after the
// normalisations the library applies on encoding (each one found in node_modules/@iabtechlabtcf/core/lib/mjs
// and asserted below; a mismatch throws):
//   - created/lastUpdated: DateEncoder writes Math.round(ms / 100) deciseconds, so times come back rounded
//     half-up to 100 ms. There is no rounding to days (only TCModel's default dates are UTC midnight).
//   - consentLanguage: the model's value is ignored; SemanticPreEncoder writes gvl.language cut to two letters,
//     upper case ('pt-br' -> 'PT').
//   - vendorListVersion / policyVersion: with a GVL attached, TCModel's getters return gvl.vendorListVersion and
//     gvl.tcfPolicyVersion, so both are set on the GVL.
//   - version: always 2 (SemanticPreEncoder uses the latest processor unless options.version says otherwise).
//   - purposeLegitimateInterests: purposes 1, 3, 4, 5 and 6 are always cleared (TCF v2.2 rule). The
//     publisher's own LI bits (Publisher TC segment) are not touched.
//   - vendorConsents / vendorLegitimateInterests: ids not in the GVL are cleared (and ids whose GVL entry
//     has no purposes for that legal basis, which our GVL never has).
//   - publisherRestrictions: PurposeRestrictionVector.add silently drops vendors not in the GVL, and the
//     encoder writes one range over vendors that are adjacent *in the GVL*: for vendors [5, 7] with 6 absent
//     from the GVL it writes 5-7, so 6 decodes as restricted as well. The spec allows this ("contiguous above
//     permits encoding ranges that include deleted Vendors or cover gaps in GVL vendor IDs").
//   - segments: with options.segments the library writes exactly those; without it, SegmentSequence decides
//     (service-specific: core, vendorsDisclosed, publisherTC; global: core, vendorsDisclosed, or for
//     isForVendors core, [vendorsDisclosed and vendorsAllowed if supportOOB], publisherTC).
// Other library facts that shaped the models: cmpId must be >= 2 (TCModel's setter throws, even while
// decoding); fixed-width fields drop ids past their width (12 special features, 24 purposes, n custom
// purposes), so no model has such ids; an empty vendor set is MaxVendorId 0 with a 0-bit bitfield. Vendor
// sections are range encoded only when MaxVendorId > 45 and VendorVectorEncoder's running estimate of the range
// size is below MaxVendorId; that estimate leaves out the last entry and counts single ids 1 bit short, so about
// 1% of sets get the larger of the two encodings (--stats shows how many, as largerPicked).
//
// Encoding needs a GVL that is ready (SemanticPreEncoder throws without one); there is no network here, so the
// GVL is built in memory (vendorList below). TCModel.clone(), which every encode calls, deep-copies the GVL
// twice (about 30 ms each for 4,000 vendors), so CorpusGVL's clone() returns itself: encoding only reads the
// GVL, and every VERIFY_CLONE_EVERY-th model is also encoded with a stock GVL to check the strings agree.
import {
  Base64Url,
  BitLength,
  ConsentLanguages,
  Fields,
  GVL,
  IntEncoder,
  PurposeRestriction,
  RestrictionType,
  Segment,
  SegmentIDs,
  TCModel,
  TCString,
} from '@iabtechlabtcf/core';

// ---------------------------------------------------------------------------------------------------------
// Published example strings. Only ones the library decodes without throwing are here. Left out: the spec's
// COw4XqLOw4XqLAAAAAENAXCAAAAAAAAAAAAAAAAAAAAA.IFukWSQg... (cmpId 0, which TCModel refuses), its
// COvFyGBOvFyGBAbAAAENAPCAAOAAAAAAAAAAAEEUACCKAAA.IFoEUQQg....PVAfDObdrA (the library throws "invalid bit
// length"), and v1 strings (B...).
const SPEC = 'InteractiveAdvertisingBureau/GDPR-Transparency-and-Consent-Framework, ' +
  'TCFv2/IAB Tech Lab - Consent string and vendor list formats v2.md';
const ES = 'InteractiveAdvertisingBureau/iabtcf-es';
const EXAMPLES = [
  // TCF v2.3 text (commit 10b489e, Feb 2026), section "How does a URL-based service process the TC string":
  // core + disclosed vendors.
  { source: `${SPEC} @10b489e`, s: 'CQSbk4AQSbk4ANwAAAENAwCgAAAAAAAAAAYgACPAAAAA.IDKQA4AAgAKAGQAygAAA' },
  // Same text, section "TC String Format": core + disclosed vendors + publisher TC.
  { source: `${SPEC} @10b489e`, s: 'CQSbk4AQSbk4ANwAAAENAwCgAAAAAAAAAAYgACPAAAAA.IDKQA4AAgAKAGQAygAAA.YAAAAAAAAAAA' },
  // Spec at commit 0b46481 (Feb 2025), "TC String Format": core only, policy version 5, range-encoded vendors.
  {
    source: `${SPEC} @0b46481`,
    s: 'CQNIGUAQNIGUAA4ACAFRBdFgALAAAAEgAAIgKRwBYAFgAbABgAGQCmgOHgpECkYBEQA4AFAAWAEUARAAAAAA',
  },
  // Spec at commit 0b46481: core with 10 publisher restrictions + publisher TC with 7 custom purposes.
  {
    source: `${SPEC} @0b46481`,
    s: 'CQNIGUAQNIGUAE1ACADEBbFgAP_gAAAAAAYgKBpV9C7dbWFF8X53aPtkOY0X19BzIsQhBhSBAyAFyBOQ8JQA02E6NASgJiACEAAAoxTB' +
      'AAFEHABEAQCAQAAEAADsIAwEgAAIIABEgBEQAAJYAAgKCIggEAAIgAIEEgAAmBiAKdLmXUiAgIACCgCQACABAICAAgMABAAIAAIAAAAA' +
      'wgAAgAJgoAIAAAAAARAIAAAAAAAAAAAAIAAAAAAAAAAAgAAAKHQAYAAgoGMgAwABBQMVABgACCgYiADAAEFAw0AGAAIKBhIAMAAQUDLQ' +
      'AYAAgoGUgAwABBQMlABgACCgZCADAAEFAw.YAAAAAAAA60A',
  },
  // Spec at commit a23391d (Sep 2021, "Adding optional use of Disclosed Vendors"): core + disclosed vendors.
  {
    source: `${SPEC} @a23391d`,
    s: 'COvFyGBOvFyGBAbAAAENAPCAAOAAAAAAAAAAAEEUACCKAAA.IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAgEAACEAAAAAgAQBAA' +
      'AAAAAGBAAgAAAAAAAFAAECAAAgAAQARAEQAAAAAJAAIAAgAAAYQEAAAQmAgBC3ZAYzUw',
  },
  // Spec at commit a23391d: a global-scope string with disclosed and (legacy) allowed vendors segments.
  {
    source: `${SPEC} @a23391d`,
    s: 'CGL23UdMFJzvuA9ACCENAXCEAC0AAGrAAA5YA5ht7-_d_7_vd-f-nrf4_4A4hM4JCKoK4YhmAqABgAEgAA.IFut_a83_Ma_t-_SvB3v4' +
      '-IAeIAACAIgSAAQAIAgEQACEABAAAgAQFAEAIAAAGBAAgAAAAQAIFAAMCQAAgAAQiRAEQAAAAANAAIAAggAIYQFAAARmggBC3ZCYzU2y' +
      'IA.QFulWfTw4obx_Z2zUj6XkNIAeIAACAIgSAAQAIAgEQACEABAAAgAQFAEAIAAAGBAAgAAAAQAIFAAMCQAAgAAQiRAEQAAAAANAAIAA' +
      'ggAIYQFAAARmggBC3ZCYzU2yIA',
  },
  // Spec at commit a23391d: core + publisher TC.
  {
    source: `${SPEC} @a23391d`,
    s: 'CLcVDxRMWfGmWAVAHCENAXCkAKDAADnAABRgA5mdfCKZuYJez-NQm0TBMYA4oCAAGQYIAAAAAAEAIAEgAA.argAC0gAAAAAAAAAAAA',
  },
  // iabtcf-es modules/core/test/ReportedIssues.test.ts, test "201 unable to decode valid TCF2 String": 20
  // publisher restrictions, one vendor listed more than once under the same restriction.
  {
    source: `${ES} modules/core/test/ReportedIssues.test.ts`,
    s: 'CO4VGswO4VGswAfZCBDEAzCsAP_AAH_AAAigGUNf_X9fb2vj-_599_t0eY1f9_63t-wzjheMs-8NyZ-X_J4Wv2MyvB34JqQKGRgkunLB' +
      'AQdtHGncTQgBwIlViTLMY02MjzNKJrJEilsbe2dYGH9vn8XT_ZKZ70-_v__7v3___33_5Ayhr_6_r7e18f3_Pvv9ujzGr_v_W9v2GccL' +
      'xln3huTPy_5PC1-xmV4O_BNSBQyMEl05YICDto407iaEAOBEqsSZZjGmxkeZpRNZIkUtjb2zrAw_t8_i6f7JTPen39___d-___--__IC' +
      'gKAOAAcAA4AFAAjgB6AEYALcGACAW0AtoJAHAAOAAcACgARwA9ACMAFuFABALaAW0GgDgAHAAOABQAI4AegBGAC3DgAgFtALaEQBwADg' +
      'AHAAoAEcAPQAjABbiQAQC2gFtCoA4ABwADgAUACOAHoARgAtxYAIBbQC2hkAcAA4ABwAKABHAD0AIwAW40AEAtoBbQ6AOAAcAA4AFAAj' +
      'gB6AEYALceACAW0AtohAHAAOAAcACgARwA9ACMAFuRABALaAW0SgDgAHAAOABQAI4AegBGAC3JgAgFtALaKQBwADgAHAAoAEcAPQAjAB' +
      'blQAQC2gFtA',
  },
  // iabtcf-es modules/cmpapi/test/ReportedIssues.test.ts: core with no vendors + publisher TC.
  { source: `${ES} modules/cmpapi/test/ReportedIssues.test.ts`, s: 'CO5dPi4O5dPx2B7DvCENA2CgAAAAAAAAAAAAGewAAM8gAAAA.YAAAAAAAAAAA' },
  // iabtcf-es modules/cli/README.md: the CLI's sample string (core only, cmpId 2).
  { source: `${ES} modules/cli/README.md`, s: 'COrVd1pOrVd1pACABCENAHCAAAAAAAAAAAiQAAAAAAAA' },
];

// ---------------------------------------------------------------------------------------------------------
// Options.
function option(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} needs a non-negative integer`);
  return v;
}
const COUNT = option('count', 1000);
const SEED = option('seed', 1);
const ONLY_EXAMPLES = process.argv.includes('--examples');
const STATS = process.argv.includes('--stats');
const VERIFY_CLONE_EVERY = 1000;

// ---------------------------------------------------------------------------------------------------------
// mulberry32: a 32-bit state advanced by a Weyl step, then mixed; floats in [0, 1).
function prng(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = prng(SEED);
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const chance = (p) => rand() < p;
const pick = (list) => list[Math.floor(rand() * list.length)];
function weighted(table) {
  let r = rand() * table.reduce((sum, [w]) => sum + w, 0);
  for (const [w, v] of table) if ((r -= w) < 0) return v;
  return table[table.length - 1][1];
}
function shuffle(list) {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [list[i], list[j]] = [list[j], list[i]];
  }
  return list;
}
const sorted = (ids) => [...new Set(ids)].sort((a, b) => a - b);
const range = (from, to) => Array.from({ length: Math.max(0, to - from + 1) }, (_, k) => from + k);

// ---------------------------------------------------------------------------------------------------------
// The in-memory GVL: vendors 1..4000 except every 97th id, plus a few high ids up to 65535. Every vendor
// declares purposes 1-11 for consent, for legitimate interest and as flexible, so no consent or LI bit and no
// restriction of any type is dropped for a vendor that is in the list.
const GVL_BLOCK = 4000;
const GVL_HIGH = [4095, 4096, 8191, 8192, 10000, 16383, 16384, 32767, 32768, 40000, 65534, 65535];
const gvlIds = [...range(1, GVL_BLOCK).filter((id) => id % 97 !== 0), ...GVL_HIGH];
const inGvl = new Set(gvlIds);
const PURPOSES = range(1, 11);
const vendorList = {
  gvlSpecificationVersion: 3,
  vendorListVersion: 1,
  tcfPolicyVersion: 5,
  lastUpdated: '2025-06-01T00:00:00Z',
  purposes: Object.fromEntries(PURPOSES.map((id) => [id, { id, name: `Purpose ${id}`, description: '', illustrations: [] }])),
  specialPurposes: { 1: { id: 1, name: 'Special purpose 1', description: '', illustrations: [] } },
  features: {},
  specialFeatures: { 1: { id: 1, name: 'Special feature 1', description: '', illustrations: [] } },
  stacks: {},
  dataCategories: {},
  vendors: Object.fromEntries(gvlIds.map((id) => [id, {
    id,
    name: `Vendor ${id}`,
    purposes: PURPOSES,
    legIntPurposes: PURPOSES,
    flexiblePurposes: PURPOSES,
    specialPurposes: [],
    features: [],
    specialFeatures: [],
  }])),
};

class CorpusGVL extends GVL {
  // Encoding reads the GVL only; see the note at the top.
  clone() {
    return this;
  }
  setFor(spec) {
    this.lang_ = GVL.consentLanguages.parseLanguage(spec.language);
    this.vendorListVersion = spec.vendorListVersion;
    this.tcfPolicyVersion = spec.policyVersion;
  }
}
let corpusGvl; // built on first use: --examples needs none

function stockGvl(spec) {
  const gvl = new GVL({ ...vendorList, vendorListVersion: spec.vendorListVersion, tcfPolicyVersion: spec.policyVersion },
    { language: spec.language });
  GVL.emptyCache(); // the constructor caches a full copy of the list per vendorListVersion
  return gvl;
}

// ---------------------------------------------------------------------------------------------------------
// Random models (plain data; buildModel turns one into a TCModel).
const LANGUAGES = [...ConsentLanguages.langSet];
const DAY = 86_400_000;
const FROM = Date.UTC(2020, 0, 1);
const UNTIL = Date.UTC(2028, 0, 1) - 1;

// A set of vendor ids of one of several shapes, so that the library picks range encoding for some and bitfield
// encoding for others (it picks bitfield whenever MaxVendorId <= 45, else whichever it estimates smaller).
function vendorSet(shape = pickShape()) {
  const top = () => weighted([[5, int(46, 500)], [4, int(500, 1500)], [1, int(1500, GVL_BLOCK)]]);
  switch (shape) {
    case 'empty': return [];
    case 'one': return [1];
    case 'single': return [weighted([[4, int(1, GVL_BLOCK)], [1, int(GVL_BLOCK + 1, 65535)]])];
    case 'max': return [65535];
    case 'high': // a few low ids and some high ones: MaxVendorId far above the rest, range encoded
      return sorted([...Array.from({ length: int(0, 5) }, () => int(1, 1000)), pick(GVL_HIGH),
        ...Array.from({ length: int(0, 3) }, () => int(4001, 65535))]);
    case 'sparse': { // a handful of ids under a large MaxVendorId: range
      const n = top();
      return sorted(Array.from({ length: int(2, 30) }, () => int(1, n)));
    }
    case 'runs': { // a few long runs: range
      const out = [];
      let at = int(1, 200);
      for (let k = int(1, 8); k > 0 && at < GVL_BLOCK; k--) {
        const len = int(5, 300);
        out.push(...range(at, Math.min(at + len, GVL_BLOCK)));
        at += len + int(2, 400);
      }
      return out;
    }
    case 'dense': { // each id with probability p: bitfield
      const n = top();
      const p = 0.3 + rand() * 0.6;
      const out = range(1, n).filter(() => rand() < p);
      if (out[out.length - 1] !== n) out.push(n);
      return out;
    }
    case 'small': // MaxVendorId <= 45: always bitfield
      return sorted(Array.from({ length: int(1, 20) }, () => int(1, 45)));
    case 'full': // 1..n
      return range(1, weighted([[1, int(1, 45)], [3, int(46, 1500)], [1, int(1500, GVL_BLOCK)]]));
    default: throw new Error(`no shape ${shape}`);
  }
}
function pickShape() {
  return weighted([[10, 'empty'], [4, 'one'], [4, 'single'], [1, 'max'], [3, 'high'], [18, 'sparse'], [15, 'runs'],
    [22, 'dense'], [8, 'small'], [8, 'full']]);
}
// Ids 1..width: realistic ones mostly from 1..common, sometimes anything up to width, sometimes none or all.
function flags(width, common) {
  return weighted([
    [2, () => []],
    [1, () => range(1, width)],
    [1, () => range(1, common)],
    [6, () => range(1, common).filter(() => chance(0.5))],
    [2, () => range(1, width).filter(() => chance(0.4))],
  ])();
}
function letters() {
  return String.fromCharCode(65 + weighted([[1, 0], [1, 25], [8, int(0, 25)]]), 65 + weighted([[1, 0], [1, 25], [8, int(0, 25)]]));
}
function moment() {
  const ms = int(FROM, UNTIL);
  return weighted([
    [4, ms - (ms % DAY)], // day-granular, as TCF 2.2 asks
    [4, ms], // any millisecond: comes back rounded to 100 ms
    [1, ms - (ms % 100) + 50], // exactly half a decisecond: rounds up
    [1, ms - (ms % 100)], // whole deciseconds
  ]);
}

function randomSpec() {
  const created = moment();
  const lastUpdated = weighted([[5, created], [5, Math.min(UNTIL, created + int(0, 400) * DAY + (created % DAY ? int(0, DAY) : 0))]]);
  const restrictions = [];
  if (chance(0.5)) {
    const used = new Set();
    for (let k = weighted([[4, 1], [3, int(2, 4)], [2, int(5, 12)]]); k > 0; k--) {
      const purpose = pick(PURPOSES);
      const type = pick([RestrictionType.NOT_ALLOWED, RestrictionType.REQUIRE_CONSENT, RestrictionType.REQUIRE_LI]);
      if (used.has(`${purpose}-${type}`)) continue;
      used.add(`${purpose}-${type}`);
      const vendors = vendorSet(weighted([[1, 'one'], [2, 'single'], [2, 'high'], [5, 'sparse'], [4, 'runs'], [2, 'small'],
        [1, 'full'], [1, 'dense']]));
      if (vendors.length) restrictions.push({ purpose, type, vendors });
    }
  }
  const numCustomPurposes = weighted([[5, 0], [4, int(1, 8)], [1, int(9, 63)], [1, 63]]);
  const spec = {
    language: pick(LANGUAGES),
    vendorListVersion: weighted([[1, 0], [1, 4095], [8, int(1, 400)], [3, int(1, 4095)]]),
    policyVersion: weighted([[3, 2], [4, 4], [6, 5], [1, int(0, 63)]]),
    created,
    lastUpdated,
    cmpId: weighted([[1, 2], [1, 4095], [8, int(2, 4095)]]),
    cmpVersion: weighted([[1, 0], [1, 4095], [8, int(0, 400)]]),
    consentScreen: weighted([[1, 0], [1, 63], [8, int(0, 63)]]),
    isServiceSpecific: chance(0.75),
    useNonStandardTexts: chance(0.3),
    purposeOneTreatment: chance(0.2),
    publisherCountryCode: letters(),
    supportOOB: chance(0.3),
    specialFeatureOptins: flags(12, 2),
    purposeConsents: flags(24, 11),
    purposeLegitimateInterests: flags(24, 11),
    vendorConsents: vendorSet(),
    vendorLegitimateInterests: vendorSet(),
    restrictions,
    vendorsDisclosed: vendorSet(),
    vendorsAllowed: vendorSet(),
    publisherConsents: flags(24, 11),
    publisherLegitimateInterests: flags(24, 11),
    numCustomPurposes,
    publisherCustomConsents: range(1, numCustomPurposes).filter(() => chance(0.5)),
    publisherCustomLegitimateInterests: range(1, numCustomPurposes).filter(() => chance(0.3)),
  };
  // Which segments: usually named outright, sometimes left to the library's SegmentSequence.
  if (chance(0.65)) {
    const optional = [];
    if (chance(0.7)) optional.push(Segment.VENDORS_DISCLOSED);
    if (chance(0.1)) optional.push(Segment.VENDORS_ALLOWED);
    if (chance(0.4)) optional.push(Segment.PUBLISHER_TC);
    if (chance(0.2)) shuffle(optional); // the spec lets non-core segments come in any order
    spec.options = { segments: [Segment.CORE, ...optional] };
  } else {
    spec.options = chance(0.5) ? { isForVendors: chance(0.5) } : undefined;
  }
  return spec;
}

function buildModel(spec, gvl) {
  const m = new TCModel(gvl);
  m.cmpId = spec.cmpId;
  m.cmpVersion = spec.cmpVersion;
  m.consentScreen = spec.consentScreen;
  m.created = new Date(spec.created);
  m.lastUpdated = new Date(spec.lastUpdated);
  m.isServiceSpecific = spec.isServiceSpecific;
  m.useNonStandardTexts = spec.useNonStandardTexts;
  m.purposeOneTreatment = spec.purposeOneTreatment;
  m.publisherCountryCode = spec.publisherCountryCode;
  m.supportOOB = spec.supportOOB;
  m.specialFeatureOptins.set(spec.specialFeatureOptins);
  m.purposeConsents.set(spec.purposeConsents);
  m.purposeLegitimateInterests.set(spec.purposeLegitimateInterests);
  m.vendorConsents.set(spec.vendorConsents);
  m.vendorLegitimateInterests.set(spec.vendorLegitimateInterests);
  for (const r of spec.restrictions) {
    for (const v of r.vendors) m.publisherRestrictions.add(v, new PurposeRestriction(r.purpose, r.type));
  }
  m.vendorsDisclosed.set(spec.vendorsDisclosed);
  m.vendorsAllowed.set(spec.vendorsAllowed);
  m.publisherConsents.set(spec.publisherConsents);
  m.publisherLegitimateInterests.set(spec.publisherLegitimateInterests);
  m.numCustomPurposes = spec.numCustomPurposes;
  m.publisherCustomConsents.set(spec.publisherCustomConsents);
  m.publisherCustomLegitimateInterests.set(spec.publisherCustomLegitimateInterests);
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// Reading a string back with the library.
const ids = (vector) => [...vector.values()].sort((a, b) => a - b);

/** The segment names of `s` in order, read from each segment's first 3 bits as TCString.decode does. */
function segmentsOf(s) {
  return s.split('.').map((part) => {
    const bits = Base64Url.decode(part.charAt(0)).substr(0, BitLength.segmentType);
    return SegmentIDs.ID_TO_KEY[IntEncoder.decode(bits, BitLength.segmentType)];
  });
}

function expectOf(s, segments) {
  const m = TCString.decode(s);
  const pr = m.publisherRestrictions;
  const restrictions = pr.getRestrictions()
    .map((r) => ({ purpose: r.purposeId, type: r.restrictionType, vendors: pr.getVendors(r) }))
    .filter((r) => r.vendors.length > 0)
    .sort((a, b) => a.purpose - b.purpose || a.type - b.type);
  return {
    m,
    expect: {
      version: m.version,
      created: m.created.getTime(),
      lastUpdated: m.lastUpdated.getTime(),
      cmpId: m.cmpId,
      cmpVersion: m.cmpVersion,
      consentScreen: m.consentScreen,
      consentLanguage: m.consentLanguage,
      vendorListVersion: m.vendorListVersion,
      policyVersion: m.policyVersion,
      isServiceSpecific: m.isServiceSpecific,
      useNonStandardTexts: m.useNonStandardTexts,
      purposeOneTreatment: m.purposeOneTreatment,
      publisherCountryCode: m.publisherCountryCode,
      specialFeatureOptins: ids(m.specialFeatureOptins),
      purposeConsents: ids(m.purposeConsents),
      purposeLegitimateInterests: ids(m.purposeLegitimateInterests),
      vendorConsents: ids(m.vendorConsents),
      vendorLegitimateInterests: ids(m.vendorLegitimateInterests),
      publisherRestrictions: restrictions,
      vendorsDisclosed: segments.includes(Segment.VENDORS_DISCLOSED) ? ids(m.vendorsDisclosed) : null,
      vendorsAllowed: segments.includes(Segment.VENDORS_ALLOWED) ? ids(m.vendorsAllowed) : null,
      publisher: segments.includes(Segment.PUBLISHER_TC)
        ? {
          consents: ids(m.publisherConsents),
          legitimateInterests: ids(m.publisherLegitimateInterests),
          numCustomPurposes: Number(m.numCustomPurposes),
          customConsents: ids(m.publisherCustomConsents),
          customLegitimateInterests: ids(m.publisherCustomLegitimateInterests),
        }
        : null,
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// What the decoded string must equal, given the model and the normalisations listed at the top.
const deciseconds = (ms) => Math.round(ms / 100) * 100;

/** The restriction's vendors as the library writes them: GVL vendors only, ranges run across non-GVL ids. */
function restrictedAsWritten(vendors) {
  const kept = sorted(vendors.filter((v) => inGvl.has(v)));
  const out = [];
  for (let i = 0; i < kept.length; i++) {
    out.push(kept[i]);
    const next = kept[i + 1];
    if (next === undefined) break;
    let gvlNext = kept[i] + 1;
    while (!inGvl.has(gvlNext)) gvlNext++;
    if (next === gvlNext) out.push(...range(kept[i] + 1, next - 1)); // same range: the gap decodes as set
  }
  return sorted(out);
}

function segmentsWanted(spec) {
  if (spec.options?.segments) return spec.options.segments;
  if (spec.isServiceSpecific) return [Segment.CORE, Segment.VENDORS_DISCLOSED, Segment.PUBLISHER_TC];
  if (!spec.options?.isForVendors) return [Segment.CORE, Segment.VENDORS_DISCLOSED];
  return [
    Segment.CORE,
    ...(spec.supportOOB ? [Segment.VENDORS_DISCLOSED] : []),
    ...(spec.supportOOB && spec.vendorsAllowed.length > 0 ? [Segment.VENDORS_ALLOWED] : []),
    Segment.PUBLISHER_TC,
  ];
}

function wanted(spec, segments) {
  const restrictions = new Map();
  for (const r of spec.restrictions) {
    const vendors = restrictedAsWritten(r.vendors);
    if (vendors.length) restrictions.set(`${r.purpose}-${r.type}`, { purpose: r.purpose, type: r.type, vendors });
  }
  return {
    version: 2,
    created: deciseconds(spec.created),
    lastUpdated: deciseconds(spec.lastUpdated),
    cmpId: spec.cmpId,
    cmpVersion: spec.cmpVersion,
    consentScreen: spec.consentScreen,
    consentLanguage: GVL.consentLanguages.parseLanguage(spec.language).slice(0, 2),
    vendorListVersion: spec.vendorListVersion,
    policyVersion: spec.policyVersion,
    isServiceSpecific: spec.isServiceSpecific,
    useNonStandardTexts: spec.useNonStandardTexts,
    purposeOneTreatment: spec.purposeOneTreatment,
    publisherCountryCode: spec.publisherCountryCode,
    specialFeatureOptins: sorted(spec.specialFeatureOptins),
    purposeConsents: sorted(spec.purposeConsents),
    purposeLegitimateInterests: sorted(spec.purposeLegitimateInterests).filter((p) => ![1, 3, 4, 5, 6].includes(p)),
    vendorConsents: sorted(spec.vendorConsents).filter((v) => inGvl.has(v)),
    vendorLegitimateInterests: sorted(spec.vendorLegitimateInterests).filter((v) => inGvl.has(v)),
    publisherRestrictions: [...restrictions.values()].sort((a, b) => a.purpose - b.purpose || a.type - b.type),
    vendorsDisclosed: segments.includes(Segment.VENDORS_DISCLOSED) ? sorted(spec.vendorsDisclosed) : null,
    vendorsAllowed: segments.includes(Segment.VENDORS_ALLOWED) ? sorted(spec.vendorsAllowed) : null,
    publisher: segments.includes(Segment.PUBLISHER_TC)
      ? {
        consents: sorted(spec.publisherConsents),
        legitimateInterests: sorted(spec.publisherLegitimateInterests),
        numCustomPurposes: spec.numCustomPurposes,
        customConsents: sorted(spec.publisherCustomConsents),
        customLegitimateInterests: sorted(spec.publisherCustomLegitimateInterests),
      }
      : null,
  };
}

function check(i, s, segments, expect, spec) {
  const fail = (what, want, got) => {
    throw new Error(`tcf-corpus: random model #${i} (--seed ${SEED}): ${what}: the model gives ${JSON.stringify(want)}, ` +
      `the library decoded ${JSON.stringify(got)}\n  string: ${s}`);
  };
  const wantSegments = segmentsWanted(spec);
  if (JSON.stringify(segments) !== JSON.stringify(wantSegments)) fail('segments', wantSegments, segments);
  const want = wanted(spec, segments);
  for (const key of Object.keys(want)) {
    if (JSON.stringify(want[key]) !== JSON.stringify(expect[key])) fail(key, want[key], expect[key]);
  }
  if (Object.keys(expect).length !== Object.keys(want).length) fail('keys', Object.keys(want), Object.keys(expect));
}

// ---------------------------------------------------------------------------------------------------------
// Statistics (--stats), and the coverage a long run must reach.
const CORE_VENDOR_AT = [Fields.version, Fields.created, Fields.lastUpdated, Fields.cmpId, Fields.cmpVersion,
  Fields.consentScreen, Fields.consentLanguage, Fields.vendorListVersion, Fields.policyVersion,
  Fields.isServiceSpecific, Fields.useNonStandardTexts, Fields.specialFeatureOptins, Fields.purposeConsents,
  Fields.purposeLegitimateInterests, Fields.purposeOneTreatment, Fields.publisherCountryCode]
  .reduce((sum, f) => sum + BitLength[f], 0); // 213
const stats = { encoding: {}, largerPicked: {}, restrictionTypes: {}, segments: {}, policyVersions: {}, serviceSpecific: {},
  customPurposes: {}, maxVendorId65535: 0, lines: 0, bytes: 0 };
const bump = (o, k) => (o[k] = (o[k] ?? 0) + 1);

/** Notes which encoding the library chose for one vendor section starting at `at` in `bits`. */
function noteEncoding(field, bits, at, vendors) {
  const max = vendors.length ? vendors[vendors.length - 1] : 0;
  if (max === 0) return bump(stats.encoding, `${field}:empty`);
  const isRange = bits[at + BitLength.maxId] === '1';
  bump(stats.encoding, `${field}:${isRange ? 'range' : 'bitfield'}`);
  let rangeBits = BitLength.numEntries;
  for (let i = 0; i < vendors.length; i++) {
    const start = i;
    while (vendors[i + 1] === vendors[i] + 1) i++;
    rangeBits += 1 + BitLength.vendorId + (i > start ? BitLength.vendorId : 0);
  }
  if (isRange ? rangeBits > max : rangeBits < max) bump(stats.largerPicked, field);
  if (max === 65535) stats.maxVendorId65535++;
}

function noteRandom(s, segments, expect, m) {
  const parts = s.split('.');
  const core = Base64Url.decode(parts[0]);
  noteEncoding('vendorConsents', core, CORE_VENDOR_AT, expect.vendorConsents);
  noteEncoding('vendorLegitimateInterests', core, CORE_VENDOR_AT + m.vendorConsents.bitLength, expect.vendorLegitimateInterests);
  segments.forEach((seg, k) => {
    if (seg === Segment.VENDORS_DISCLOSED) noteEncoding('vendorsDisclosed', Base64Url.decode(parts[k]), BitLength.segmentType, expect.vendorsDisclosed);
    if (seg === Segment.VENDORS_ALLOWED) noteEncoding('vendorsAllowed', Base64Url.decode(parts[k]), BitLength.segmentType, expect.vendorsAllowed);
  });
  for (const r of expect.publisherRestrictions) bump(stats.restrictionTypes, r.type);
  bump(stats.segments, segments.join(','));
  bump(stats.policyVersions, expect.policyVersion);
  bump(stats.serviceSpecific, expect.isServiceSpecific);
  if (expect.publisher) bump(stats.customPurposes, expect.publisher.numCustomPurposes === 0 ? '0' : '>0');
}

function checkCoverage() {
  const missing = [];
  for (const f of ['vendorConsents', 'vendorLegitimateInterests', 'vendorsDisclosed']) {
    for (const e of ['range', 'bitfield', 'empty']) if (!stats.encoding[`${f}:${e}`]) missing.push(`${f} ${e}`);
  }
  for (const t of [0, 1, 2]) if (!stats.restrictionTypes[t]) missing.push(`restriction type ${t}`);
  for (const p of [2, 4, 5]) if (!stats.policyVersions[p]) missing.push(`policy version ${p}`);
  for (const b of [true, false]) if (!stats.serviceSpecific[b]) missing.push(`isServiceSpecific ${b}`);
  if (!stats.customPurposes['>0']) missing.push('custom purposes');
  if (!stats.maxVendorId65535) missing.push('MaxVendorId 65535');
  if (missing.length) throw new Error(`tcf-corpus: ${COUNT} random models did not cover: ${missing.join(', ')}`);
}

// ---------------------------------------------------------------------------------------------------------
let buffer = '';
function emit(line) {
  buffer += `${JSON.stringify(line)}\n`;
  stats.lines++;
  if (buffer.length > 1 << 20) flush();
}
function flush() {
  stats.bytes += buffer.length;
  process.stdout.write(buffer);
  buffer = '';
}
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0); // the reader stopped early
  throw err;
});

const started = performance.now();
for (const { s } of EXAMPLES) {
  const segments = segmentsOf(s);
  emit({ kind: 'example', s, segments, expect: expectOf(s, segments).expect });
}
if (!ONLY_EXAMPLES) {
  for (let i = 0; i < COUNT; i++) {
    const spec = randomSpec();
    corpusGvl ??= new CorpusGVL(vendorList);
    corpusGvl.setFor(spec);
    const s = TCString.encode(buildModel(spec, corpusGvl), spec.options);
    if (i % VERIFY_CLONE_EVERY === 0) {
      const stock = TCString.encode(buildModel(spec, stockGvl(spec)), spec.options);
      if (stock !== s) throw new Error(`tcf-corpus: model #${i}: CorpusGVL gave ${s} but a stock GVL gave ${stock}`);
    }
    const segments = segmentsOf(s);
    const { m, expect } = expectOf(s, segments);
    check(i, s, segments, expect, spec);
    noteRandom(s, segments, expect, m);
    emit({ kind: 'random', s, segments, expect });
  }
  if (COUNT >= 2000) checkCoverage();
}
flush();
if (STATS) {
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  process.stderr.write(`${JSON.stringify({ ...stats, seconds }, null, 1)}\n`);
}
