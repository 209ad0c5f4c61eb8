/* Shared page behaviour: CSRF-carrying form posts, ticking clocks, live streams. No build step. */
"use strict";
(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  let skew = 0; // server time - browser time, seconds

  function noteServerNow(value) {
    const t = parseFloat(value);
    if (!isNaN(t)) skew = t - Date.now() / 1000;
  }
  function serverNow() { return Date.now() / 1000 + skew; }

  function fmt(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(r).padStart(2, "0");
  }
  function tick(root) {
    const now = serverNow();
    (root || document).querySelectorAll("time.tick[data-since]").forEach((el) => {
      el.textContent = fmt(now - parseFloat(el.dataset.since));
    });
    document.dispatchEvent(new CustomEvent("cc112:tick", { detail: { now } }));
  }

  function toast(text, bad) {
    const box = document.getElementById("toast");
    if (!box) return;
    const msg = document.createElement("div");
    msg.className = "msg" + (bad ? " bad" : "");
    msg.textContent = text;
    box.appendChild(msg);
    setTimeout(() => msg.remove(), bad ? 8000 : 3000);
  }

  async function post(form) {
    const body = new URLSearchParams(new FormData(form));
    const response = await fetch(form.action, {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf() },
    });
    let data = {};
    try { data = await response.json(); } catch (e) { data = {}; }
    if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
    return data;
  }

  // Forms marked data-ajax post without leaving the page; the live stream redraws.
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-ajax")) return;
    event.preventDefault();
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      await post(form);
      toast("Tersimpan · Done");
      form.dispatchEvent(new CustomEvent("cc112:posted", { bubbles: true }));
    } catch (err) {
      toast("Gagal · Failed: " + err.message, true);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });

  // Replace a container's content with a server-rendered fragment.
  function swap(container, html) {
    if (!container) return;
    container.innerHTML = html;
    const frag = container.querySelector(".fragment[data-now]");
    if (frag) noteServerNow(frag.dataset.now);
    tick(container);
  }

  // One EventSource per page; handlers by event name. Reconnects on its own.
  function live(url, handlers) {
    const source = new EventSource(url);
    Object.entries(handlers).forEach(([name, fn]) => {
      source.addEventListener(name, (event) => fn(event.data));
    });
    source.addEventListener("signed_out", () => { source.close(); window.location.assign("/login"); });
    source.addEventListener("open", () => document.body.classList.remove("offline"));
    source.addEventListener("error", () => document.body.classList.add("offline"));
    return source;
  }

  document.addEventListener("DOMContentLoaded", () => {
    noteServerNow(document.body.dataset.serverNow);
    tick();
    setInterval(tick, 1000);
  });

  window.cc112 = { csrf, post, toast, swap, live, serverNow, noteServerNow, fmt, tick };
})();
