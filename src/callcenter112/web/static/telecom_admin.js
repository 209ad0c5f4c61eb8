/* Telecom configuration and people pages: forms that apply live, probes and test calls. */
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // A change that applies live: post, reload on success so versions and tables are fresh;
  // on refusal keep what was typed and show the key named by the server.
  document.querySelectorAll("form[data-reload]").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
      const problems = form.querySelector("[data-testid=form-problems]");
      if (problems) problems.textContent = "";
      const buttons = form.querySelectorAll("button");
      buttons.forEach((b) => (b.disabled = true));
      try {
        const result = await window.cc112.post(form);
        const waiting = (result.waiting_for_restart || []).length;
        window.cc112.toast("Diterapkan · Applied" + (waiting ? " (" + waiting + " wait for a restart)" : ""));
        window.location.reload();
      } catch (err) {
        if (problems) problems.textContent = err.message;
        window.cc112.toast(err.message, true);
        buttons.forEach((b) => (b.disabled = false));
      }
    });
  });
  document.querySelectorAll("form[data-confirm]:not([data-reload])").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
  // OPTIONS probe and test call: show the carrier's answer beside the button.
  document.querySelectorAll("form[data-probe]").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const out = form.querySelector("output");
      out.textContent = "…";
      try {
        const r = await window.cc112.post(form);
        if ("rtt_ms" in r) {
          out.textContent = r.answered ? r.status + " · " + r.rtt_ms + " ms" : "no answer · tidak menjawab";
        } else {
          out.textContent = (r.status || "no answer") + " " + r.reason + " · " + r.duration_s + " s";
        }
        out.className = (r.answered || r.ok) ? "ok" : "error";
      } catch (err) {
        out.textContent = err.message;
        out.className = "error";
      }
    });
  });
});
