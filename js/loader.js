/*! edgecdp loader: queues calls (in storage too, once analytics is allowed) and fetches the SDK only once consent allows it. */
(function (w, d) {
  if (w.edgecdp) return;
  var s = d.currentScript, q = [], loading = 0, api = { _q: q };
  api._k = s && s.getAttribute('data-write-key');
  api._d = s && s.getAttribute('data-decide'); // "device": slots are decided in the browser (static sites)
  // The SDK sits beside this file, so the page decides where both are served from.
  var sdk = new URL('sdk.js', s ? s.src : location.href).href;

  // Purposes that need the SDK; advertising alone does not.
  function wants(c) { return !!c && (c.analytics === true || c.personalization === true); }
  function load() {
    if (loading) return;
    loading = 1;
    // The tracker's Wasm (beside the SDK) is fetched and compiled while the SDK loads, not after it: the SDK
    // takes the compiled module (`_w`), or fetches the Wasm itself when this could not.
    var C = w.WebAssembly, wasm = new URL('edgecdp_bg.wasm', sdk);
    if (C && C.compileStreaming) api._w = C.compileStreaming(fetch(wasm)).catch(function () {});
    import(sdk).then(function (m) { return m.start(api); })
      .catch(function (e) { loading = 0; console.error('edgecdp:', e); });
  }
  // Calls made while analytics is allowed are also kept in storage (EARLY) until the SDK has them, so that a
  // navigation before it loads loses nothing: the next page's SDK sends them. Each call gets its message id and
  // time when it is made, so one sent twice still counts once.
  var EARLY = 'edgecdp.early', analytics = 0, n = 0;
  function keep() {
    try {
      var kept = q.filter(function (e) { return e[8]; }).map(function (e) {
        return [e[0], [].slice.call(e[1]).filter(function (x) { return typeof x != 'function'; }), e[4], e[5], e[6], e[7]];
      });
      var old = JSON.parse(localStorage.getItem(EARLY) || '[]').filter(function (o) {
        return !kept.some(function (k) { return k[4] == o[4]; });
      });
      localStorage.setItem(EARLY, JSON.stringify(old.concat(kept).slice(-100)));
    } catch (x) {}
  }
  // Each call keeps its arguments and the page it was made on, so a late SDK still reports the right page.
  'page track identify alias consent ready decide'.split(' ').forEach(function (m) {
    api[m] = function () {
      var a = arguments, id = (w.crypto && crypto.randomUUID) ? crypto.randomUUID() : Date.now() + '-' + n++ + '-' + Math.random();
      var e = [m, a, 0, 0, location.href, d.title, id, Date.now(), 0];
      if (m == 'consent') {
        analytics = !!(a[0] && a[0].analytics === true);
        if (!analytics) try { localStorage.removeItem(EARLY); } catch (x) {}
        if (wants(a[0])) load();
      }
      if (m == 'decide') return new Promise(function (r, j) { e[2] = r; e[3] = j; q.push(e); });
      e[8] = analytics && /^(page|track|identify|alias|consent)$/.test(m);
      q.push(e);
      if (e[8]) keep();
    };
  });
  w.edgecdp = api;

  // Reading a stored decision is allowed before consent; nothing is written here.
  try {
    var c = JSON.parse(localStorage.getItem('edgecdp.consent'));
    analytics = !!(c && c.analytics === true);
    if (wants(c) || localStorage.getItem(EARLY)) load();
  } catch (x) {}

  // The consent the site's CMP records (IAB TCF v2, else Google Consent Mode v2) becomes `consent` calls, so a
  // site needs no glue code. The edge checks the TC string and the signals again; this only decides what the
  // browser sends. The loader never creates a `__tcfapi` or a `dataLayer` of its own.
  var last;
  // Each purpose of `T` with a known signal (`has`) is granted when every signal it maps to allows it (`ok`). A
  // choice is given only when it changed (a withdrawal included), and only once something is known.
  function give(T, has, ok) {
    var p = {}, k, j, e;
    for (k in T) if (has(T[k])) p[k] = T[k].every(ok);
    j = JSON.stringify(p);
    if (j == last || j == '{}') return;
    last = j;
    api.consent(p);
    // Until the SDK runs, the CMP's latest answer goes ahead of the queued calls, replacing its earlier one: they
    // were made on this page while it had not answered (its page view, say), and its answer is for the page.
    if (api._q) {
      e = q.pop();
      if (q[0] && q[0].c) q.shift();
      e.c = 1;
      q.unshift(e);
    }
  }
  function cmp() {
    var t = w.__tcfapi, g = w.dataLayer, o, k, m, Q = {}, D = {}, U = {}, G,
      P = { analytics: [1, 8, 9], personalization: [1, 5, 6], advertising: [1, 2, 3, 4, 7], marketing: [] };
    if (typeof t == 'function') {
      // `data-tcf` holds the JSON of the configuration's `consent.tcf`: `false` has TCF not read here either, and
      // purposes it does not name keep their defaults.
      try {
        o = JSON.parse(s && s.getAttribute('data-tcf') || 'null');
        if (o === false) t = 0;
        o = o || {};
        m = o.purposes || {};
        for (k in P) if (!/^\[([1-9]|1[01])?(,([1-9]|1[01]))*\]$/.test(JSON.stringify(Q[k] = k in m ? m[k] : P[k]))) throw 0;
        if (!/^(purposes|publisher)$/.test(o.basis || 'purposes') || o.vendorId != null && !(o.vendorId > 0)) throw 0;
        P = Q;
      } catch (x) {
        console.warn('edgecdp: data-tcf is not valid; the defaults apply');
        o = {};
      }
    } else {
      t = 0;
    }
    if (t) {
      t('addEventListener', 2, function (d, done) {
        // Where GDPR does not apply, the site's other consent path does; while the CMP's UI shows, nothing is chosen.
        if (done && d.gdprApplies !== false && /^(tcloaded|useractioncomplete)$/.test(d.eventStatus)) try {
          give(P, function (L) { return L.length; }, function (n) {
            // Purpose n is allowed by consent, or by legitimate interest where TCF permits it (2, 7, 8, 9, 10). With a
            // vendor, the vendor must be disclosed, have its bit of the same legal basis, and the publisher's
            // restriction for it applies (0: not allowed, 1: consent only, 2: legitimate interest only).
            var b = o.basis == 'publisher' ? d.publisher : d.purpose, v = o.vendorId,
              r = v && ((d.publisher.restrictions || {})[n] || {})[v],
              c = r !== 2 && b.consents[n] && (!v || d.vendor.consents[v]),
              l = r !== 1 && o.legitimateInterests === true && /^([2789]|10)$/.test(n) && b.legitimateInterests[n] &&
                (!v || d.vendor.legitimateInterests[v]);
            return r !== 0 && (!v || (d.vendor.disclosedVendors || {})[v]) && !!(c || l);
          });
        } catch (x) {}
      });
      return 1;
    }
    // gtag's `consent` commands in the dataLayer (its `arguments` objects), in order; an update wins over a default.
    // A default with a `region` is for the visitor's country, which the page does not know: it is left out.
    function see(a) {
      if (a && a[0] == 'consent' && a[2] && (a[1] == 'update' || a[1] == 'default' && !a[2].region)) {
        Object.assign(a[1] == 'update' ? U : D, a[2]);
      }
    }
    function map() {
      G = Object.assign({}, D, U);
      give({ analytics: ['analytics_storage'], personalization: ['personalization_storage'],
        advertising: ['ad_storage', 'ad_user_data', 'ad_personalization'] },
      function (K) { return K.some(function (x) { return x in G; }); },
      function (x) { return G[x] == 'granted'; });
    }
    if (g && g.push) {
      [].forEach.call(g, see);
      map();
      // Later `gtag('consent', 'update', ...)` calls. Push is wrapped, not replaced: gtag.js keeps working.
      m = g.push;
      g.push = function () {
        var r = m.apply(g, arguments);
        [].forEach.call(arguments, see);
        map();
        return r;
      };
      return 1;
    }
  }
  // A CMP whose script comes after this one is looked for once more when the document is parsed.
  if (!cmp() && d.readyState == 'loading') d.addEventListener('DOMContentLoaded', cmp);
})(window, document);
