/* Telecom view: trunks, registrations and RTP use refreshed from the live stream. */
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const root = document.querySelector("[data-testid=telecom]");
  if (!root) return;
  window.cc112.live(root.dataset.events, {
    live: (html) => window.cc112.swap(document.getElementById("telecom-live"), html),
  });
});
