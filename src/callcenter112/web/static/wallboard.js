/* Supervisor wallboard: sections redrawn from the live stream; waits tick; alert past the threshold. */
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const root = document.querySelector("[data-testid=wallboard]");
  if (!root) return;
  const alertAfter = parseFloat(root.dataset.alertS);
  const banner = document.getElementById("wait-alert");
  const panel = document.getElementById("wb-waiting");

  function checkAlert(now) {
    let late = false;
    panel.querySelectorAll("tr[data-arrived]").forEach((row) => {
      const over = now - parseFloat(row.dataset.arrived) >= alertAfter;
      row.classList.toggle("late", over);
      late = late || over;
    });
    panel.classList.toggle("alert", late);
    banner.hidden = !late;
    root.dataset.alert = late ? "yes" : "no";
  }
  document.addEventListener("cc112:tick", (event) => checkAlert(event.detail.now));

  const handlers = {};
  ["waiting", "operators", "calls", "sla", "callbacks"].forEach((name) => {
    handlers[name] = (html) => {
      window.cc112.swap(document.getElementById("wb-" + name), html);
      if (name === "waiting") checkAlert(window.cc112.serverNow());
    };
  });
  window.cc112.live(root.dataset.events, handlers);
});
