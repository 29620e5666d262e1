// Automatic logoff: after the idle timeout the server refuses the session; send the user to /login.
(function () {
  "use strict";
  var cfgEl = document.getElementById("emon-config");
  var idle = cfgEl ? (JSON.parse(cfgEl.textContent).idle_s || 900) : 900;
  var last = Date.now();
  ["mousemove", "keydown", "click", "wheel", "touchstart"].forEach(function (ev) {
    document.addEventListener(ev, function () { last = Date.now(); }, { passive: true });
  });
  var lastPing = Date.now();
  setInterval(function () {  // activity keeps the server session alive (sliding cookie)
    if (last > lastPing && !document.body.classList.contains("login-page")) {
      lastPing = Date.now();
      fetch("/api/me", { credentials: "same-origin" }).then(function (r) {
        if (r.status === 401) window.location.href = "/login?expired=1";
      }).catch(function () {});
    }
  }, 60000);
  setInterval(function () {
    if (document.body.classList.contains("login-page")) return;
    if (Date.now() - last > idle * 1000) {
      window.location.href = "/login?expired=1&next=" + encodeURIComponent(location.pathname);
    }
  }, 5000);
})();
