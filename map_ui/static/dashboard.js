// Dispatcher console: alert list + Leaflet layers fed by /api snapshots and server-sent events.
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("emon-config").textContent);
  var map = window[cfg.layers.map];
  var layers = { alerts: window[cfg.layers.alerts], units: window[cfg.layers.units], links: window[cfg.layers.links] };
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var SEV_RANK = { critical: 0, urgent: 1, advisory: 2, technical: 3 };
  var ACTIVE = { assigned: 1, acknowledged: 1, en_route: 1, on_scene: 1 };
  var alerts = {};      // alert_id -> {alert, dispatcher, assignment, has_strip}
  var units = {};       // unit_id -> {unit_id, status, lat, lon, ...}
  var alertMarkers = {}, unitMarkers = {}, links = {};
  var selected = null;

  function esc(s) { return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]; }); }
  function ago(ms) {
    var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return s + " s ago"; if (s < 3600) return Math.floor(s / 60) + " min ago";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
  }
  function hhmm(ms) { return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }); }
  function isDone(v) { return v.dispatcher.status === "resolved" || v.alert.status === "resolved"; }

  // ---------- alerts ----------
  function sortedAlerts() {
    return Object.keys(alerts).map(function (k) { return alerts[k]; }).filter(function (v) { return !isDone(v); })
      .sort(function (a, b) {
        return (SEV_RANK[a.alert.severity] - SEV_RANK[b.alert.severity]) || (a.alert.opened_at_ms - b.alert.opened_at_ms)
          || (a.alert.alert_id < b.alert.alert_id ? -1 : 1);
      });
  }
  function itemHtml(v) {
    var a = v.alert, s = v.assignment, unit = "";
    if (s && ACTIVE[s.status]) {
      unit = '<div class="ai-unit"><i class="fa-solid fa-truck-medical"></i><b>' + esc(s.unit_id) + '</b>' +
        '<span class="status-chip st-' + esc(s.status) + '">' + esc(s.status.replace("_", " ")) + '</span>' +
        '<span class="muted">ETA ' + (s.eta_s / 60).toFixed(1) + ' min · ' + (s.distance_m / 1000).toFixed(1) + ' km</span></div>';
    } else if (a.needs_unit) {
      unit = '<div class="ai-unit muted"><i class="fa-solid fa-hourglass-half"></i> waiting for a free unit</div>';
    }
    return '<div class="ai-top"><span class="ai-title">' + esc(a.title) + '</span><span class="sev-badge ' + esc(a.severity) + '">' + esc(a.severity) + '</span></div>' +
      '<div class="ai-meta"><span><code>' + esc(a.patient_id) + '</code>' + (a.rate_bpm != null ? ' · ' + Math.round(a.rate_bpm) + ' bpm' : '') + '</span>' +
      '<span><span class="status-chip st-' + esc(v.dispatcher.status) + '">' + esc(v.dispatcher.status) + '</span> <span class="ago" data-ms="' + a.opened_at_ms + '">' + ago(a.opened_at_ms) + '</span></span></div>' + unit;
  }
  function renderList(freshId) {
    var list = document.getElementById("alert-list");
    var rows = sortedAlerts();
    list.innerHTML = rows.map(function (v) {
      var a = v.alert;
      return '<li class="alert-item ' + esc(a.severity) + (a.alert_id === selected ? " selected" : "") + (a.alert_id === freshId ? " fresh" : "") +
        '" data-alert-id="' + esc(a.alert_id) + '" id="alert-' + esc(a.alert_id).replace(/[^A-Za-z0-9_-]/g, "_") + '">' + itemHtml(v) + "</li>";
    }).join("");
    document.getElementById("alert-count").textContent = rows.length;
    document.getElementById("alert-empty").hidden = rows.length > 0;
    document.getElementById("stat-critical").textContent = rows.filter(function (v) { return v.alert.severity === "critical"; }).length;
    document.getElementById("stat-urgent").textContent = rows.filter(function (v) { return v.alert.severity === "urgent"; }).length;
  }
  function alertIcon(v) {
    var cls = v.alert.severity + (isDone(v) || v.dispatcher.status !== "open" ? " done" : "");
    return L.divIcon({ className: "", iconSize: [38, 38], iconAnchor: [19, 19],
      html: '<div class="alert-icon ' + esc(cls) + '"><div class="ring"></div><div class="core"><i class="fa-solid fa-heart-pulse"></i></div></div>' });
  }
  function drawAlert(v) {
    var a = v.alert, m = alertMarkers[a.alert_id];
    if (!a.location || isDone(v)) { if (m) { layers.alerts.removeLayer(m); delete alertMarkers[a.alert_id]; } drawLink(a.alert_id); return; }
    var ll = [a.location.lat, a.location.lon];
    if (!m) {
      m = L.marker(ll, { icon: alertIcon(v), zIndexOffset: 1000 - 100 * SEV_RANK[a.severity], riseOnHover: true });
      m.on("click", function () { openDetail(a.alert_id); });
      m.addTo(layers.alerts);
      alertMarkers[a.alert_id] = m;
    } else { m.setLatLng(ll); m.setIcon(alertIcon(v)); }
    m.bindTooltip('<b>' + esc(a.title) + '</b><br>' + esc(a.severity) + ' · ' + esc(a.patient_id));
    drawLink(a.alert_id);
  }
  function upsertAlert(raw, assignment, dispatcher) {
    var prev = alerts[raw.alert_id];
    if (prev && prev.alert.version > raw.version) return;
    alerts[raw.alert_id] = { alert: raw, has_strip: raw.has_strip, assignment: assignment || (prev && prev.assignment) || null,
      dispatcher: dispatcher || (prev && prev.dispatcher) || { status: "open" } };
    drawAlert(alerts[raw.alert_id]);
    return !prev;
  }

  // ---------- units ----------
  function unitIcon(status) {
    return L.divIcon({ className: "", iconSize: [24, 24], iconAnchor: [12, 12],
      html: '<div class="unit-icon ' + esc(status) + '"><i class="fa-solid fa-truck-medical"></i></div>' });
  }
  function drawUnit(u) {
    if (u.lat == null || u.lon == null) return;
    var m = unitMarkers[u.unit_id];
    if (!m) {
      m = L.marker([u.lat, u.lon], { icon: unitIcon(u.status) }).addTo(layers.units);
      m._status = u.status; unitMarkers[u.unit_id] = m;
    } else {
      m.setLatLng([u.lat, u.lon]);
      if (m._status !== u.status) { m.setIcon(unitIcon(u.status)); m._status = u.status; }
    }
    m.bindTooltip("<b>" + esc(u.unit_id) + "</b> · " + esc(String(u.status).replace("_", " ")));
  }
  function unitStats() {
    var ids = Object.keys(units);
    document.getElementById("stat-units").textContent = ids.length;
    document.getElementById("stat-available").textContent = ids.filter(function (k) { return units[k].status === "available"; }).length;
  }
  function drawLink(alertId) {
    var v = alerts[alertId], line = links[alertId];
    var s = v && v.assignment;
    if (!v || !s || !ACTIVE[s.status] || isDone(v) || !v.alert.location) {
      if (line) { layers.links.removeLayer(line); delete links[alertId]; } return;
    }
    var u = units[s.unit_id];
    var from = u && u.lat != null ? [u.lat, u.lon] : (s.unit_location ? [s.unit_location.lat, s.unit_location.lon] : null);
    if (!from) return;
    var pts = [from, [v.alert.location.lat, v.alert.location.lon]];
    var color = { assigned: "#f9a825", acknowledged: "#fb8c00", en_route: "#1e88e5", on_scene: "#8e24aa" }[s.status] || "#1e88e5";
    if (!line) { links[alertId] = L.polyline(pts, { color: color, weight: 3, opacity: .85, dashArray: "8 6" }).addTo(layers.links); }
    else { line.setLatLngs(pts); line.setStyle({ color: color }); }
  }
  function applyAssignment(s) {
    var v = alerts[s.alert_id];
    if (v) {
      var old = v.assignment;
      if (!old || s.attempt > old.attempt || (s.attempt === old.attempt && s.updated_at_ms >= old.updated_at_ms)) v.assignment = s;
    }
    var u = units[s.unit_id] || { unit_id: s.unit_id, lat: s.unit_location && s.unit_location.lat, lon: s.unit_location && s.unit_location.lon };
    u.status = ACTIVE[s.status] ? s.status : "available";
    units[s.unit_id] = u; drawUnit(u); unitStats();
    drawLink(s.alert_id);
  }

  // ---------- detail ----------
  function openDetail(alertId) {
    selected = alertId;
    renderList();
    var v = alerts[alertId];
    if (v && v.alert.location) {  // centre the alert in the part of the map the drawer leaves visible
      var pt = map.latLngToContainerPoint([v.alert.location.lat, v.alert.location.lon]);
      var size = map.getSize(), drawer = Math.min(600, size.x);
      map.panBy([pt.x - (size.x - drawer) / 2, pt.y - size.y / 2]);
    }
    fetch("/alerts/" + encodeURIComponent(alertId) + "/panel", { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { if (r.status === 401) { location.href = "/login?expired=1"; } return r.text(); })
      .then(function (html) {
        var pane = document.getElementById("detail");
        document.getElementById("detail-body").innerHTML = html;
        pane.hidden = false;
        pane.querySelectorAll("form.action-form").forEach(function (f) {
          f.addEventListener("submit", function (ev) { ev.preventDefault(); act(alertId, f.dataset.action, f); });
        });
      });
  }
  function act(alertId, action, form) {
    var btn = form.querySelector("button"); btn.disabled = true;
    fetch("/api/alerts/" + encodeURIComponent(alertId) + "/" + action, { method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" } })
      .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); })
      .then(function (res) {
        if (!res.ok) { btn.disabled = false; alert(res.body.detail || "action failed"); return; }
        openDetail(alertId);
      });
  }
  document.getElementById("detail-close").addEventListener("click", function () {
    document.getElementById("detail").hidden = true; selected = null; renderList();
  });
  document.getElementById("alert-list").addEventListener("click", function (ev) {
    var li = ev.target.closest(".alert-item"); if (li) openDetail(li.dataset.alertId);
  });

  // ---------- initial load + live ----------
  function loadSnapshot() {
    return Promise.all([
      fetch("/api/alerts", { credentials: "same-origin" }).then(function (r) { return r.json(); }),
      fetch("/api/units", { credentials: "same-origin" }).then(function (r) { return r.json(); })
    ]).then(function (res) {
      res[1].forEach(function (u) { units[u.unit_id] = u; drawUnit(u); });
      res[0].forEach(function (v) { v.alert.has_strip = v.has_strip; upsertAlert(v.alert, v.assignment, v.dispatcher); });
      Object.keys(links).forEach(drawLink);
      renderList(); unitStats();
    });
  }
  function setLive(on) {
    document.getElementById("live-dot").className = "live-dot " + (on ? "on" : "off");
    document.getElementById("live-text").textContent = on ? "Live" : "Reconnecting…";
  }
  function connect() {
    var es = new EventSource("/api/stream");
    es.addEventListener("hello", function () { setLive(true); });
    es.addEventListener("alert", function (e) {
      var a = JSON.parse(e.data); var isNew = upsertAlert(a); renderList(isNew ? a.alert_id : null);
      if (selected === a.alert_id) openDetail(a.alert_id);
    });
    es.addEventListener("assignment", function (e) {
      var s = JSON.parse(e.data); applyAssignment(s); renderList();
      if (selected === s.alert_id) openDetail(s.alert_id);
    });
    es.addEventListener("positions", function (e) {
      JSON.parse(e.data).forEach(function (p) {
        var u = units[p.unit_id] || { unit_id: p.unit_id };
        u.lat = p.lat; u.lon = p.lon; u.status = p.status; units[p.unit_id] = u; drawUnit(u);
      });
      Object.keys(links).forEach(drawLink); unitStats();
    });
    es.addEventListener("dispatch", function (e) {
      var d = JSON.parse(e.data), v = alerts[d.alert_id];
      if (v) { v.dispatcher = d.dispatcher; drawAlert(v); renderList(); }
    });
    es.onerror = function () {
      setLive(false);
      fetch("/api/me", { credentials: "same-origin" }).then(function (r) { if (r.status === 401) location.href = "/login?expired=1"; });
    };
  }
  setInterval(function () {
    document.querySelectorAll(".ago").forEach(function (el) { el.textContent = ago(+el.dataset.ms); });
    var eta = document.getElementById("eta");  // countdown from the router's estimate
    if (eta && eta.dataset.etaS) {
      var left = Math.max(0, +eta.dataset.etaS - (Date.now() - +eta.dataset.assignedMs) / 1000);
      eta.textContent = left > 0 ? (left / 60).toFixed(1) + " min" : "due";
    }
    document.getElementById("clock").textContent = hhmm(Date.now());
  }, 1000);
  document.getElementById("clock").textContent = hhmm(Date.now());
  connect();
  loadSnapshot();
})();
