"""Issue 6's "Done when" against the REAL running server, real peers and Debian's chromium.

One `callcenter112 serve` process (tests/harness.py) for the module; a SIPp
citizen presses 1 (medical) while no operator is on duty, so the caller
waits in the queue. Chromium (headless, through Playwright, launched by
conftest's `chromium` fixture) then follows that one emergency through the
web console:

1. the supervisor's wallboard shows the waiting caller within a second of the
   server queueing it — the one timed check, required by the issue. The
   clock starts at the server's own `queued_at` stamp (wall clock, written by
   the call actor) and stops at the moment the row entered the page's DOM,
   taken in the browser by a MutationObserver (same machine, same wall
   clock), so neither the test's polling nor Playwright's round trips are
   counted against the server;
2. op1 signs in to the console, then a baresip softphone registers as op1
   and auto-answers: the console pops that incident (caller, medical) and the
   after-call form saves to the real store;
3. the operator hangs up; the incident is completed and its recording sealed;
4. the auditor plays the recording (the `<audio>` element's currentTime
   advances) and, after a reload, the replay is listed on the page and is in
   the audit log;
5. separately: an operator signs in with the SIP credentials (a wrong
   password is refused first; both are in the audit log), an operator
   opening an auditor URL gets 403, and a form post without the CSRF token
   is refused with 403 and changes nothing.

Each page gets an init script (CDP, so the pages' CSP does not apply) that
counts the events its EventSource delivered — a test starts the next step
only once the page's live stream is subscribed — and timestamps watched
elements as they enter the DOM.

The flow test also writes docs/screenshots/real-wallboard.png,
real-console.png and real-incident.png. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from site_support import SCREENSHOTS

from harness import (
    Baresip,
    Server,
    SippRun,
    free_port,
    incident_of,
    need,
    operator_online,
    running_server,
    start_caller,
    talking_to,
)

pytestmark = [pytest.mark.browser, pytest.mark.peers]

CALLER = "081298765432"
VIEWPORT = {"width": 1366, "height": 768}  # the operators' laptops
# tests/harness.py's configuration: operators sign in with their SIP user and password.
PASSWORDS = {"op1": "secret1", "supervisor": "super-secret", "auditor": "audit-secret"}
ROLES = {"op1": "operator", "supervisor": "supervisor", "auditor": "auditor"}
# Short IVR and queue timers (tests/test_e2e_media.py uses the same).
FAST = """
menu_tries = 1
input_timeout_s = 1
[queue]
ring_timeout_s = 4
wrapup_s = 0
"""
AGENCIES = [("ambulans", "118"), ("damkar", "113")]
WALLBOARD_WITHIN_S = 1.0  # issue 6: "the wallboard shows a SIPp caller waiting within a second"

# Injected before any page script (CDP, so the pages' strict CSP does not apply):
# * counts what each EventSource delivered, per event name, so a test knows the
#   page's live stream is subscribed (its first full picture arrived) before it
#   makes the centre change anything;
# * records, by the browser's wall clock, the first moment a watched element
#   (a CSS selector, optionally holding a text) is in the DOM.
INSTRUMENT_JS = """
(() => {
  const stream = (window.__cc112Stream = { open: 0, events: {} });
  const Native = window.EventSource;
  if (Native) {
    window.EventSource = class extends Native {
      constructor(url, init) {
        super(url, init);
        super.addEventListener("open", () => { stream.open += 1; });
      }
      addEventListener(name, fn, options) {
        const counted = (event) => {
          stream.events[name] = (stream.events[name] || 0) + 1;
          return fn.call(this, event);
        };
        return super.addEventListener(name, counted, options);
      }
    };
  }
  const watched = (window.__cc112Seen = {});
  const present = (key) => {
    const [selector, text] = JSON.parse(key);
    return [...document.querySelectorAll(selector)].some(
      (el) => !text || el.textContent.includes(text));
  };
  const check = () => {
    for (const key of Object.keys(watched)) {
      if (watched[key] === null && present(key)) watched[key] = Date.now();
    }
  };
  window.__cc112Watch = (selector, text) => {
    const key = JSON.stringify([selector, text || ""]);
    if (!(key in watched)) watched[key] = null;
    check();
    return key;
  };
  new MutationObserver(check).observe(document, { childList: true, subtree: true });
})();
"""


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def centre(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real server: op1 configured but not on duty, two agencies, fast IVR timers."""
    need("sipp", "baresip", "sox")
    with running_server(
        tmp_path_factory.mktemp("real-web"),
        extra=FAST,
        agencies=AGENCIES,
        trunk_proxy_port=free_port(),  # nobody listens: no transfer is made here
    ) as server:
        yield server


# --------------------------------------------------------------------------- helpers


def _base(server: Server) -> str:
    return f"http://127.0.0.1:{server.web_port}"


async def _page(chromium: Any) -> Any:
    context = await chromium.new_context(viewport=VIEWPORT, locale="id-ID")
    await context.add_init_script(INSTRUMENT_JS)
    return await context.new_page()


async def _sign_in(page: Any, server: Server, user: str) -> None:
    await page.goto(f"{_base(server)}/login")
    await page.fill("[data-testid=login-user]", user)
    await page.fill("[data-testid=login-password]", PASSWORDS[user])
    async with page.expect_navigation():
        await page.click("[data-testid=login-submit]")
    assert "/login" not in page.url, await page.content()
    assert await page.get_attribute("[data-testid=who]", "data-role") == ROLES[user]


async def _stream_delivered(page: Any, event: str) -> None:
    """Wait (bounded) until the page's live stream delivered its first `event`:
    it is subscribed to the centre, so nothing that happens next is missed."""
    await page.wait_for_function(
        f"() => window.__cc112Stream && (window.__cc112Stream.events[{event!r}] || 0) > 0",
        timeout=20_000,
    )


async def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll a quick, blocking check (a SQLite read) without holding the loop up for long."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def _blocking(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def _shot(page: Any, name: str, *, down_to: str | None = None) -> Path:
    """The page at 1366 px wide: the viewport, or from the top down to the bottom
    of the `down_to` element (kept under ~200 KB for the docs)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    if down_to is None:
        await page.screenshot(path=str(path))
    else:
        bottom = await page.evaluate(
            "(s) => document.querySelector(s).getBoundingClientRect().bottom + window.scrollY",
            down_to,
        )
        clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": bottom + 24}
        await page.screenshot(path=str(path), full_page=True, clip=clip)
    return path


def _queued_at(server: Server, caller: str) -> float | None:
    rows = server.sql(
        "SELECT queued_at FROM incidents WHERE caller = ? ORDER BY arrived_at DESC LIMIT 1", caller
    )
    return float(rows[0][0]) if rows and rows[0][0] is not None else None


def _sealed(server: Server, caller: str) -> dict[str, Any] | None:
    incident = incident_of(server, caller)
    if incident is None or incident["status"] != "completed":
        return None
    recordings = incident["recordings"]
    if not recordings or not all(r["sha256"] for r in recordings):
        return None
    return incident


def _disposition(server: Server, incident_id: str) -> tuple[Any, ...] | None:
    rows = server.sql(
        "SELECT disposition, kecamatan, kelurahan, description FROM incidents WHERE id = ?",
        incident_id,
    )
    return rows[0] if rows and rows[0][0] is not None else None


def _any_incident_id(server: Server) -> str:
    rows = server.sql("SELECT id FROM incidents ORDER BY arrived_at DESC LIMIT 1")
    return str(rows[0][0]) if rows else "20260101-0001"


async def _closing(*pages: Any) -> None:
    for page in pages:
        await page.context.close()


# --------------------------------------------------------------------------- the flow


async def test_a_real_call_on_the_wallboard_the_console_and_the_audit_pages(
    chromium: Any, centre: Server, tmp_path: Path
) -> None:
    server = centre
    caller: SippRun | None = None
    phone: Baresip | None = None
    pages: list[Any] = []
    try:
        # -- 1. The supervisor's wallboard, live, before anybody calls.
        wallboard = await _page(chromium)
        pages.append(wallboard)
        await _sign_in(wallboard, server, "supervisor")
        assert wallboard.url.endswith("/wallboard")
        await _stream_delivered(wallboard, "waiting")
        row = "[data-testid=waiting-row]"
        key = await wallboard.evaluate("([s, t]) => window.__cc112Watch(s, t)", [row, CALLER])

        # -- 2. A citizen presses 1 (medical); no operator is on duty, so they wait.
        caller = start_caller(server, tmp_path / "caller", caller=CALLER, digits="1", talk_ms=60000)
        await wallboard.wait_for_selector(f"{row}:has-text('{CALLER}')", timeout=30_000)
        queued_at = await _until(lambda: _queued_at(server, CALLER), 20, "the caller's queued_at")
        shown_ms = await wallboard.evaluate("(k) => window.__cc112Seen[k]", key)
        assert shown_ms is not None
        latency = shown_ms / 1000 - queued_at
        print(f"wallboard showed the waiting caller {latency:+.3f} s after queued_at")
        assert latency <= WALLBOARD_WITHIN_S, (
            f"the wallboard showed the waiting caller {latency:.3f} s after the server queued "
            f"it (allowed {WALLBOARD_WITHIN_S} s)"
        )
        incident = incident_of(server, CALLER)
        assert incident is not None and incident["status"] == "active"
        iid = incident["id"]
        waiting = f"{row}[data-incident='{iid}']"
        assert await wallboard.get_attribute(
            f"{waiting} [data-testid=category]", "data-category"
        ) == ("medical")
        assert await wallboard.get_attribute("[data-testid=wb-waiting]", "data-total") == "1"
        # Today's figures count the arrival, live.
        await wallboard.wait_for_function(
            "() => document.querySelector('[data-testid=sla-arrived]').textContent.trim() === '1'",
            timeout=15_000,
        )
        await _shot(wallboard, "real-wallboard.png")

        # -- 3. op1's console is open; op1's softphone registers and auto-answers.
        console = await _page(chromium)
        pages.append(console)
        await _sign_in(console, server, "op1")
        assert console.url.endswith("/console")
        await _stream_delivered(console, "status")
        assert await console.is_visible("[data-testid=no-incident]")
        phone = Baresip(
            tmp_path / "op1", user="op1", password="secret1", server_port=server.sip_port
        )
        await _blocking(phone.start)
        await _until(lambda: operator_online(server, "op1"), 30, "op1's softphone registered")
        card = f"[data-testid=incident-card][data-incident='{iid}']"
        await console.wait_for_selector(card, timeout=30_000)
        assert (await console.inner_text("[data-testid=incident-caller]")).strip() == CALLER
        category = "[data-testid=incident-category] [data-testid=category]"
        assert await console.get_attribute(category, "data-category") == "medical"
        await _until(lambda: talking_to(server, CALLER, "op1"), 30, "the caller bridged to op1")
        await console.wait_for_selector(f"{card}[data-kind=call_answered]", timeout=20_000)
        # On the wallboard (live, no reload) the caller left the waiting list and op1
        # is on the call.
        await wallboard.wait_for_selector(waiting, state="detached", timeout=20_000)
        await wallboard.wait_for_selector(
            "[data-testid=operator-row][data-user=op1][data-state=on_call]", timeout=20_000
        )

        # The after-call form writes the real incident.
        await console.fill("[data-testid=location-text]", "Jl. Pattimura, depan gereja")
        await console.select_option("[data-testid=kecamatan]", "Sirimau")
        await console.select_option("[data-testid=kelurahan]", "Kelurahan Honipopu")
        await console.fill("[data-testid=description]", "Bapak sesak napas, sadar")
        await console.select_option("[data-testid=disposition-select]", "genuine")
        await console.check("[data-testid=agency-ambulans]")
        await console.click("[data-testid=save-disposition]")
        await console.wait_for_selector("#toast .msg", timeout=20_000)
        assert "Gagal" not in await console.inner_text("#toast")
        saved = await _until(lambda: _disposition(server, iid), 20, "the disposition saved")
        assert saved == ("genuine", "Sirimau", "Kelurahan Honipopu", "Bapak sesak napas, sadar")
        await console.evaluate("window.scrollTo(0, 0)")
        await _shot(console, "real-console.png")

        # -- 4. The operator hangs up: the incident completes, the recording is sealed.
        await _blocking(phone.command, "hangup")
        assert await _blocking(caller.wait, 60) == 0, caller.logs()
        incident = await _until(lambda: _sealed(server, CALLER), 30, "completed + sealed")
        assert incident["operator"] == "op1" and incident["operator_answered_at"] is not None
        await console.wait_for_selector(f"{card}[data-ended=yes]", timeout=20_000)

        # -- 5. The auditor replays the recording; the replay is audit-logged and listed.
        audit = await _page(chromium)
        pages.append(audit)
        await _sign_in(audit, server, "auditor")
        assert audit.url.endswith("/audit")
        await audit.goto(f"{_base(server)}/audit/incidents/{iid}")
        assert await audit.inner_text("[data-testid=incident-id]") == iid
        assert await audit.get_attribute("[data-testid=integrity]", "data-status") == "intact"
        assert await audit.is_visible("[data-testid=no-replays]")
        played = await audit.evaluate(
            "document.querySelector('[data-testid=audio-player]').play()"
            ".then(() => 'ok', e => String(e))"
        )
        assert played == "ok"
        first = await audit.evaluate(
            "document.querySelector('[data-testid=audio-player]').currentTime"
        )
        later = first
        for _ in range(200):  # bounded: the element must advance through the audio
            await asyncio.sleep(0.05)
            later = await audit.evaluate(
                "document.querySelector('[data-testid=audio-player]').currentTime"
            )
            if later >= first + 0.5:
                break
        assert later >= first + 0.5, (first, later)
        await audit.evaluate("document.querySelector('[data-testid=audio-player]').pause()")
        await audit.reload()
        assert await audit.is_visible(
            "[data-testid=replay-row][data-action=replay][data-actor=auditor]"
        )
        audit_log = server.sql("SELECT action, actor, target FROM audit_log ORDER BY seq")
        assert ("replay", "auditor", iid) in audit_log, audit_log
        await _shot(audit, "real-incident.png", down_to="[data-testid=replays]")
    finally:
        if phone is not None:
            await _blocking(phone.stop)
        if caller is not None:
            caller.kill()
        await _closing(*pages)


# --------------------------------------------------------------------------- sign-in, refusals


async def test_an_operator_signs_in_with_the_sip_credentials(chromium: Any, centre: Server) -> None:
    page = await _page(chromium)
    try:
        await page.goto(f"{_base(centre)}/login")
        await page.fill("[data-testid=login-user]", "op1")
        await page.fill("[data-testid=login-password]", "salah")
        async with page.expect_navigation():
            await page.click("[data-testid=login-submit]")
        assert "Wrong user name or password" in await page.inner_text("[data-testid=login-message]")
        await _sign_in(page, centre, "op1")
        assert page.url.endswith("/console")
        failed = centre.sql("SELECT actor FROM audit_log WHERE action = 'login_failed'")
        signed_in = centre.sql("SELECT actor FROM audit_log WHERE action = 'login'")
        assert failed and ("op1",) in signed_in, (failed, signed_in)
    finally:
        await _closing(page)


async def test_an_operator_opening_an_auditor_url_gets_403(chromium: Any, centre: Server) -> None:
    page = await _page(chromium)
    try:
        await _sign_in(page, centre, "op1")
        response = await page.goto(f"{_base(centre)}/audit/incidents/{_any_incident_id(centre)}")
        assert response is not None and response.status == 403
        assert await page.get_attribute("[data-testid=error]", "data-status") == "403"
        assert "Akses ditolak" in await page.inner_text("h1")
        response = await page.goto(f"{_base(centre)}/audit")
        assert response is not None and response.status == 403
    finally:
        await _closing(page)


async def test_a_form_post_without_the_csrf_token_is_refused(chromium: Any, centre: Server) -> None:
    page = await _page(chromium)
    try:
        await _sign_in(page, centre, "op1")
        async with page.expect_navigation() as navigation:
            await page.evaluate(
                """() => {
                    const form = document.createElement('form');
                    form.method = 'post';
                    form.action = '/console/status';
                    for (const [k, v] of [['state', 'paused'], ['reason', 'istirahat']]) {
                        const input = document.createElement('input');
                        input.name = k; input.value = v; form.appendChild(input);
                    }
                    document.body.appendChild(form);
                    form.submit();
                }"""
            )
        response = await navigation.value
        assert response.status == 403
        assert "CSRF" in await page.inner_text("[data-testid=error-message]")
        # Nothing changed: no pause was recorded for op1.
        paused = centre.sql(
            "SELECT count(*) FROM operator_states WHERE operator = 'op1' AND state = 'paused'"
        )
        assert paused == [(0,)]
    finally:
        await _closing(page)
