"""Signing in and out, and the start page that sends each role to its own page.

The sign-in form is protected against login CSRF with a double-submit token:
``GET /login`` sets a random value in an HttpOnly, SameSite=Strict cookie
scoped to ``/login`` and in a hidden field; ``POST /login`` needs both to
match. Every sign-in, failure and lockout is audit-logged (actions `login`,
`login_failed`, `login_lockout`, `logout`, target ``web``); if the audit log
cannot be written, nobody signs in (503) — access to evidence is never
unrecorded.
"""

from __future__ import annotations

import asyncio
import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .auth import Account, Role, csrf_matches
from .bodies import Payload, WebError
from .context import (
    SESSION_COOKIE,
    Call,
    WebContext,
    authenticate,
    client_ip,
    guarded,
    is_https,
)

__all__ = ["HOME", "LOGIN_COOKIE", "routes", "safe_next"]

LOGIN_COOKIE = "cc112_login"
_LOGIN_BODY_LIMIT = 8 * 1024

HOME: dict[Role, str] = {
    "operator": "/console",
    "supervisor": "/wallboard",
    "auditor": "/audit",
    "admin": "/telecom",
}


def safe_next(target: str | None) -> str | None:
    """A local path to go back to after sign-in, or None (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    if any(ord(c) < 0x20 for c in target):
        return None
    return target


def _actor_name(typed: str) -> str:
    clean = "".join(c for c in typed if c.isprintable())[:64]
    return clean or "-"


def _login_page(
    request: Request,
    ctx: WebContext,
    *,
    status: int = 200,
    message: str | None = None,
    user: str = "",
    next_path: str | None = None,
) -> Response:
    token = secrets.token_urlsafe(24)
    response = ctx.page(
        request,
        "login.html",
        who=None,
        session=None,
        status=status,
        login_csrf=token,
        message=message,
        user=user,
        next_path=next_path or "",
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    return response


async def login_form(request: Request) -> Response:
    ctx: WebContext = request.app.state.web
    found = authenticate(ctx, request)
    next_path = safe_next(request.query_params.get("next"))
    if found is not None:
        return RedirectResponse(next_path or HOME[found[0].role], status_code=303)
    return _login_page(request, ctx, next_path=next_path)


async def login_submit(request: Request) -> Response:
    ctx: WebContext = request.app.state.web
    payload = await Payload.read(request, limit=_LOGIN_BODY_LIMIT)
    if not csrf_matches(request.cookies.get(LOGIN_COOKIE, ""), payload.text("login_csrf")):
        raise WebError(403, "sign-in form expired (CSRF token missing); reload the page")
    user = payload.text("user", max_len=64) or ""
    password = payload.secret("password")
    next_path = safe_next(payload.text("next", max_len=2000))
    ip = client_ip(request)
    # Only names that exist get a user key (guessing.py: a sprayer of
    # invented names must not evict real accounts' counts).
    known = bool(user) and ctx.directory.account(user) is not None
    keys = ctx.guard.keys(user if known else None, ip)
    until = ctx.guard.locked_until(keys, ctx.now())
    if until is not None:
        await ctx.audit(
            _actor_name(user), "login_failed", "web", {"ip": ip, "reason": "locked_out"}
        )
        return _login_page(
            request,
            ctx,
            status=429,
            message=f"Terlalu banyak percobaan; coba lagi pukul {ctx.local_time(until, '%H:%M:%S')}"
            f" · Too many attempts; try again at {ctx.local_time(until, '%H:%M:%S')}",
            user=user,
            next_path=next_path,
        )
    account: Account | None = None
    if user and password:
        async with ctx.verify_slots:
            account = await asyncio.to_thread(ctx.directory.verify, user, password)
    now = ctx.now()
    if account is None:
        newly = ctx.guard.failed(keys, now)
        await ctx.audit(
            _actor_name(user),
            "login_failed",
            "web",
            {
                "ip": ip,
                "reason": "bad_credentials",
                "known_user": ctx.directory.account(user) is not None,
            },
        )
        if newly:
            await ctx.audit(
                "system",
                "login_lockout",
                "web",
                {"keys": newly, "until_s": ctx.guard.lockout_s, "user": _actor_name(user)},
            )
        return _login_page(
            request,
            ctx,
            status=401,
            message="Nama pengguna atau kata sandi salah · Wrong user name or password",
            user=user,
            next_path=next_path,
        )
    ctx.guard.succeeded(account.name, ip)
    await ctx.audit(account.name, "login", "web", {"ip": ip, "role": account.role})
    session = ctx.sessions.create(account, now)
    response = RedirectResponse(next_path or HOME[account.role], status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=int(ctx.sessions.ttl_s),
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@guarded("operator", "supervisor", "auditor")
async def logout(call: Call) -> Response:
    ctx = call.ctx
    if call.session is not None:
        ctx.sessions.drop(call.session.token)
    await ctx.audit(call.who, "logout", "web", {"ip": client_ip(call.request)})
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def home(request: Request) -> Response:
    ctx: WebContext = request.app.state.web
    found = authenticate(ctx, request)
    if found is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(HOME[found[0].role], status_code=303)


def routes() -> list[Route]:
    return [
        Route("/", home, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
