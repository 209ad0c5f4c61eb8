/* SIP ladder: an arrow opens its message's full text below the diagram. */
"use strict";
(function () {
  function openTarget() {
    const id = window.location.hash.slice(1);
    if (!id.startsWith("msg-")) return;
    const item = document.getElementById(id);
    const details = item && item.querySelector("details");
    if (details) { details.open = true; item.scrollIntoView({ block: "center" }); }
  }
  window.addEventListener("hashchange", openTarget);
  document.addEventListener("DOMContentLoaded", openTarget);
})();
