/* The caller's position on a Leaflet map: the best fix with its uncertainty circle,
 * every other valid fix as a small dot, the city drawn from shipped vector data (so
 * the map is useful with no tile server), and on the console a pin the operator
 * places (click) or moves (drag). No build step; needs /static/vendor/leaflet/leaflet.js.
 *
 * A map is any element with data-cc112-map and data-incident; data-editable="1"
 * lets the operator place the pin. Maps inside fragments swapped in later (the
 * console's incident card) are found by a MutationObserver. Each map polls its
 * incident's location every 0.4 s while it is on the page (a fix shows within 1 s).
 */
"use strict";
(function () {
  const AMBON = [-3.6954, 128.1814];
  const POLL_MS = 400; // DESIGN §7: a fix is on the map within 1 s (poll + fetch + draw)
  let settings = null;

  function loadSettings() {
    if (!settings) {
      settings = fetch("/api/v1/map", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((r) => (r.ok ? r.json() : { tile_url: null, attribution: "", areas: null }))
        .catch(() => ({ tile_url: null, attribution: "", areas: null }));
    }
    return settings;
  }

  function drawCity(map, areas) {
    if (!areas) return;
    L.geoJSON(areas, {
      pointToLayer: (feature, latlng) => {
        const kec = feature.properties.kind === "kecamatan";
        const marker = L.circleMarker(latlng, {
          radius: kec ? 4 : 2.5, weight: 1, color: kec ? "#334" : "#778",
          fillOpacity: kec ? 0.9 : 0.6, interactive: false, className: "cc112-area",
        });
        if (kec) marker.bindTooltip(feature.properties.name, { permanent: true, direction: "right", className: "cc112-kec-label" });
        return marker;
      },
      style: () => ({ color: "#556", weight: 1, fillOpacity: 0.04, interactive: false }),
    }).addTo(map);
  }

  function caption(el, text) {
    const box = el.parentElement && el.parentElement.querySelector("[data-testid=map-caption]");
    if (box) box.textContent = text;
  }

  function applySuggestion(el, suggestion) {
    const button = el.parentElement && el.parentElement.querySelector("[data-testid=map-use-suggestion]");
    if (!button) return;
    button.hidden = !suggestion;
    button.onclick = () => {
      const card = el.closest("[data-testid=incident-card]");
      const kec = card && card.querySelector("#kecamatan");
      const kel = card && card.querySelector("#kelurahan");
      if (kec && suggestion.kecamatan) { kec.value = suggestion.kecamatan; kec.dispatchEvent(new Event("change", { bubbles: true })); }
      if (kel && suggestion.kelurahan) { kel.value = suggestion.kelurahan; kel.dispatchEvent(new Event("change", { bubbles: true })); }
    };
  }

  function setup(el) {
    if (el.dataset.ready) return;
    el.dataset.ready = "yes";
    const incident = el.dataset.incident;
    const editable = el.dataset.editable === "1";
    const url = "/api/v1/incidents/" + encodeURIComponent(incident) + "/location";
    const map = L.map(el, { center: AMBON, zoom: 12, attributionControl: true });
    let pin = null, circle = null, others = L.layerGroup().addTo(map), last = "", first = true;

    loadSettings().then((s) => {
      drawCity(map, s.areas);
      if (s.tile_url) {
        const tiles = L.tileLayer(s.tile_url, { attribution: s.attribution, maxZoom: 19 });
        let loaded = false;
        tiles.on("tileload", () => { loaded = true; el.dataset.tiles = "yes"; });
        tiles.on("tileerror", () => { if (!loaded) el.dataset.tiles = "unreachable"; });
        tiles.addTo(map);
      } else {
        el.dataset.tiles = "none";
      }
    });

    function render(data) {
      const loc = data.location;
      others.clearLayers();
      (loc.fixes || []).forEach((f) => {
        if (f.valid && !(f.lat === loc.lat && f.lon === loc.lon)) {
          L.circleMarker([f.lat, f.lon], { radius: 3, color: "#888", className: "cc112-old-fix" }).addTo(others);
        }
      });
      if (!loc.valid) {
        el.dataset.hasPosition = "no";
        const broken = (loc.fixes || []).filter((f) => !f.valid).length;
        caption(el, broken ? "Lokasi tidak valid · Location invalid: " + loc.fixes[loc.fixes.length - 1].reason : "Belum ada lokasi · No location yet");
        return;
      }
      const at = [loc.lat, loc.lon];
      if (!pin) {
        pin = L.marker(at, { draggable: editable, title: "Lokasi penelepon · Caller location" }).addTo(map);
        pin.getElement().dataset.testid = "map-pin";
        if (editable) pin.on("dragend", () => { const p = pin.getLatLng(); place(p.lat, p.lng); });
      } else {
        pin.setLatLng(at);
      }
      if (circle) { circle.remove(); circle = null; }
      if (loc.radius_m) {
        circle = L.circle(at, { radius: loc.radius_m, weight: 2, color: "#c0392b", fillOpacity: 0.12, className: "cc112-uncertainty" }).addTo(map);
        circle.getElement().dataset.testid = "map-circle";
      }
      if (first) { map.setView(at, loc.radius_m && loc.radius_m > 800 ? 14 : 16, { animate: false }); first = false; }
      el.dataset.hasPosition = "yes";
      el.dataset.lat = loc.lat; el.dataset.lon = loc.lon;
      el.dataset.radius = loc.radius_m == null ? "" : loc.radius_m;
      el.dataset.source = loc.source;
      const s = data.suggestion;
      caption(el, loc.source + " · " + loc.lat.toFixed(5) + ", " + loc.lon.toFixed(5) +
        (loc.radius_m ? " ± " + Math.round(loc.radius_m) + " m" : "") +
        (s ? " · " + [s.kelurahan, s.kecamatan].filter(Boolean).join(", ") : ""));
      applySuggestion(el, s);
    }

    async function refresh() {
      try {
        const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (!r.ok) return;
        const text = await r.text();
        if (text !== last) { last = text; render(JSON.parse(text)); }
      } catch (e) { /* the next poll tries again */ }
    }

    async function place(lat, lon) {
      try {
        const r = await fetch(url, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": window.cc112 ? window.cc112.csrf() : "" },
          body: JSON.stringify({ lat: lat, lon: lon }),
        });
        const data = await r.json();
        if (!r.ok) throw new Error(data.error || "HTTP " + r.status);
        last = JSON.stringify(data); render(data);
        if (window.cc112) window.cc112.toast("Pin disimpan · Pin saved");
      } catch (err) {
        if (window.cc112) window.cc112.toast("Pin gagal · Pin failed: " + err.message, true);
      }
    }
    if (editable) map.on("click", (ev) => place(ev.latlng.lat, ev.latlng.lng));

    refresh();
    const timer = setInterval(() => {
      if (!document.body.contains(el)) { clearInterval(timer); map.remove(); return; }
      refresh();
    }, POLL_MS);
  }

  function scan(root) {
    if (typeof L === "undefined") return;
    (root.querySelectorAll ? root : document).querySelectorAll("[data-cc112-map]").forEach(setup);
  }

  document.addEventListener("DOMContentLoaded", () => {
    scan(document);
    new MutationObserver(() => scan(document)).observe(document.body, { childList: true, subtree: true });
  });
})();
