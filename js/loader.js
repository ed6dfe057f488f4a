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
})(window, document);
