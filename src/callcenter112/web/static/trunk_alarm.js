/* Wallboard: a red banner while a carrier stops answering OPTIONS (trunk qualify down). */
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const banner = document.getElementById("trunk-alarm");
  if (!banner) return;
  async function check() {
    try {
      const r = await fetch(banner.dataset.health, { credentials: "same-origin", headers: { "Accept": "application/json" } });
      if (!r.ok) return;
      const trunks = (await r.json()).trunks || {};
      const down = Object.keys(trunks).filter((name) => trunks[name].qualify.state === "down");
      banner.textContent = down.length
        ? "Trunk tidak menjawab · Carrier not answering: " + down.join(", ")
        : "";
      banner.hidden = down.length === 0;
      banner.dataset.down = down.join(",");
    } catch (e) { /* the next check tries again */ }
  }
  check();
  setInterval(check, 10000);
});
