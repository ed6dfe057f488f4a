/*! edgecdp loader: queues calls in memory and fetches the SDK only once consent allows it. */
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
  // Each call keeps its arguments and the page it was made on, so a late SDK still reports the right page.
  'page track identify alias consent ready decide'.split(' ').forEach(function (m) {
    api[m] = function () {
      var a = arguments, e = [m, a, 0, 0, location.href, d.title];
      if (m == 'consent' && wants(a[0])) load();
      if (m == 'decide') return new Promise(function (r, j) { e[2] = r; e[3] = j; q.push(e); });
      q.push(e);
    };
  });
  w.edgecdp = api;

  // Reading a stored decision is allowed before consent; nothing is written here.
  try { if (wants(JSON.parse(localStorage.getItem('edgecdp.consent')))) load(); } catch (e) {}
})(window, document);
