/* Operator console: pop the incident when a call is offered or answered. */
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const root = document.querySelector("[data-testid=console]");
  if (!root) return;
  const slot = document.getElementById("incident-slot");
  const shown = () => {
    const card = slot.querySelector("[data-testid=incident-card]");
    return card ? card.dataset.incident : null;
  };

  function filterVillages() {
    const kec = slot.querySelector("#kecamatan");
    const kel = slot.querySelector("#kelurahan");
    if (!kec || !kel) return;
    kel.querySelectorAll("optgroup").forEach((group) => {
      const match = !kec.value || group.label === kec.value;
      group.hidden = !match;
      group.disabled = !match;
    });
    const chosen = kel.selectedOptions[0];
    if (chosen && chosen.dataset.kecamatan && kec.value && chosen.dataset.kecamatan !== kec.value) kel.value = "";
  }
  slot.addEventListener("change", (event) => {
    if (event.target && event.target.id === "kecamatan") filterVillages();
    if (event.target && event.target.id === "kelurahan") {
      const opt = event.target.selectedOptions[0];
      const kec = slot.querySelector("#kecamatan");
      if (opt && opt.dataset.kecamatan && kec && !kec.value) { kec.value = opt.dataset.kecamatan; filterVillages(); }
    }
  });
  filterVillages();

  async function show(incidentId, kind) {
    if (shown() === incidentId) {
      const card = slot.querySelector("[data-testid=incident-card]");
      if (kind === "call_answered" && card.dataset.kind !== kind) {
        card.dataset.kind = kind; // answered: keep what the operator typed, mark the phase
        const badge = card.querySelector(".incident-head .badge");
        if (badge) { badge.className = "badge phase-talking"; badge.textContent = "Bicara · Talking"; }
      }
      return;
    }
    let response = null;
    // The centre may announce the offer a moment before its snapshot shows it: retry briefly.
    for (let attempt = 0; attempt < 4; attempt++) {
      response = await fetch("/console/incidents/" + encodeURIComponent(incidentId), { credentials: "same-origin" });
      if (response.ok || (response.status !== 403 && response.status !== 404)) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    if (!response.ok) { window.cc112.toast("Insiden " + incidentId + ": HTTP " + response.status, true); return; }
    window.cc112.swap(slot, await response.text());
    const card = slot.querySelector("[data-testid=incident-card]");
    if (card) {
      card.dataset.kind = kind;
      card.classList.add("flash");
      document.title = "☎ " + incidentId + " · Konsol 112";
    }
    filterVillages();
  }

  // Incident events are handled one after another. An auto-answering softphone
  // answers ~40 ms after the offer, while the offer's card is still being fetched:
  // handled at once, the answer would start a second fetch, and whichever card
  // arrived last would win (the older "offered" one, wiping what was typed), and an
  // end arriving mid-fetch would find no card to mark.
  let pending = Promise.resolve();
  const inOrder = (handle) => (data) => {
    pending = pending
      .then(() => handle(JSON.parse(data)))
      .catch((err) => window.cc112.toast("Konsol · Console: " + err, true));
  };

  // Dispositions by keyboard (issue 12): the key picks the disposition; Shift+key
  // on prank/ghost saves it and ends the call in one action. Typing in a field
  // never triggers it.
  function disposeAndEnd(button) {
    const form = button.closest("form");
    const select = form && form.querySelector("#disposition");
    const flag = form && form.querySelector("[data-end-call]");
    if (!select || !flag) return;
    select.value = button.dataset.disposeEnd;
    flag.value = "1";
    form.requestSubmit();
    flag.value = "";
  }
  slot.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("[data-dispose-end]");
    if (button) disposeAndEnd(button);
  });
  document.addEventListener("keydown", (event) => {
    const el = event.target;
    if (event.ctrlKey || event.altKey || event.metaKey) return;
    if (el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName))) return;
    const key = event.key.toLowerCase();
    if (event.shiftKey) {
      const button = slot.querySelector('[data-dispose-end][data-key="' + CSS.escape(key) + '"]');
      if (button) { event.preventDefault(); disposeAndEnd(button); }
      return;
    }
    const option = slot.querySelector('#disposition option[data-key="' + CSS.escape(key) + '"]');
    if (option) { event.preventDefault(); option.parentElement.value = option.value; option.parentElement.focus(); }
  });

  window.cc112.live(root.dataset.events, {
    status: (html) => window.cc112.swap(document.getElementById("status-slot"), html),
    callbacks: (html) => window.cc112.swap(document.getElementById("callbacks-slot"), html),
    incident: inOrder((d) => show(d.incident_id, d.kind)),
    incident_withdrawn: inOrder((d) => {
      const card = slot.querySelector("[data-testid=incident-card]");
      if (card && card.dataset.incident === d.incident_id && card.dataset.kind === "call_offered") {
        slot.innerHTML = '<p class="empty" data-testid="no-incident">Menunggu panggilan<span class="en" lang="en"> · Waiting for a call</span></p>';
        document.title = "Konsol 112";
        window.cc112.toast("Panggilan dialihkan ke operator lain · Offer withdrawn");
      }
    }),
    incident_ended: inOrder((d) => {
      const card = slot.querySelector("[data-testid=incident-card]");
      if (card && card.dataset.incident === d.incident_id) { card.classList.add("ended"); card.dataset.ended = "yes"; }
    }),
  });
});
