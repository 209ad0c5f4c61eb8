"""Everything `serve` will open, checked before it does: one list for both.

`check-config` and `serve` call `preflight(cfg)` and refuse on what it
returns, so a file that passes the check starts (issue 11: a copied config
passed `check-config`, then `serve` disabled the web console). Checked: the
secrets rule (`config.exposure_problems`), the prompts folder (loadable),
the city areas file, the web and SIP certificates and keys (readable,
parseable, the key matches, not expired), the SIP CA file for outgoing TLS
(`sip.tls_ca`: loadable, holds a CA), and the database and recordings folders
(writable, or creatable).

Paths: one rule, `Config.path()` — relative paths are taken from the folder
above `config/` when the file lives in a folder named `config`, else from
the file's own folder. Both commands resolve through it, and every problem
names the resolved path so a copied file's mistake is plain.
"""

from __future__ import annotations

import datetime as _dt
import os
import ssl
import tempfile
from pathlib import Path

from .config import Config, ConfigProblem, exposure_problems

__all__ = ["check_ca_file", "check_certificate", "preflight", "writable_folder_problem"]


def writable_folder_problem(folder: Path) -> str | None:
    """Why files cannot be written in `folder` (created by serve if missing), or None."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return f"{folder}: no existing parent folder"
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder"
    if probe != folder:
        return None if os.access(probe, os.W_OK | os.X_OK) else f"cannot create {folder}"
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".preflight-"):
            pass
    except OSError as exc:
        return f"{folder}: not writable ({exc.strerror})"
    return None


def check_certificate(
    cert_path: Path, key_path: Path, *, now: _dt.datetime | None = None
) -> list[str]:
    """Problems with a PEM certificate and its key (empty list: usable)."""
    from cryptography import x509

    try:
        pem = cert_path.read_bytes()
    except OSError as exc:
        return [f"{cert_path}: cannot read ({exc.strerror})"]
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return [f"{cert_path}: not a PEM certificate"]
    problems: list[str] = []
    when = now or _dt.datetime.now(_dt.UTC)
    if cert.not_valid_after_utc <= when:
        problems.append(f"{cert_path}: expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    elif cert.not_valid_before_utc > when:
        problems.append(f"{cert_path}: not valid before {cert.not_valid_before_utc:%Y-%m-%d}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert_path), str(key_path))
    except FileNotFoundError:
        problems.append(f"{key_path}: cannot read")
    except ssl.SSLError as exc:
        problems.append(f"{key_path}: not the key of {cert_path.name} ({exc.reason})")
    except OSError as exc:
        problems.append(f"{key_path}: cannot read ({exc.strerror})")
    return problems


def check_ca_file(path: Path) -> str | None:
    """Why a PEM file of CA certificates cannot be trusted for TLS, or None:
    the same load `serve` does (`net.admission.client_tls_context`)."""
    from .net.admission import TlsSetupError, client_tls_context

    try:
        client_tls_context(str(path))
    except TlsSetupError as exc:
        return str(exc).removeprefix("sip.tls_ca: ")
    return None


def preflight(cfg: Config) -> list[ConfigProblem]:
    """Every problem `serve` would hit opening what `cfg` names."""
    from .media.prompts import PromptError, PromptLibrary
    from .web.areas import AreaError, load_city_areas

    problems = list(exposure_problems(cfg))
    prompts = cfg.path(cfg.ivr.prompts)
    try:
        PromptLibrary.load(prompts)
    except PromptError as exc:
        reason = str(exc) if str(prompts) in str(exc) else f"{prompts}: {exc}"
        problems.append(ConfigProblem("ivr.prompts", reason))
    if cfg.web.enabled:
        areas = cfg.path(cfg.web.city_areas)
        try:
            load_city_areas(areas)
        except AreaError as exc:
            problems.append(ConfigProblem("web.city_areas", str(exc)))
        if cfg.web.tls_certificate:
            for reason in check_certificate(
                cfg.path(cfg.web.tls_certificate), cfg.path(cfg.web.tls_key)
            ):
                problems.append(ConfigProblem("web.tls_certificate", reason))
    if cfg.sip.tls_listen is not None:  # issue 11 (`edge`): SIP over TLS
        for reason in check_certificate(
            cfg.path(cfg.sip.tls_certificate), cfg.path(cfg.sip.tls_key)
        ):
            problems.append(ConfigProblem("sip.tls_certificate", reason))
    if cfg.sip.tls_ca:  # outgoing SIP over TLS: the CAs the far end's certificate chains to
        ca_problem = check_ca_file(cfg.path(cfg.sip.tls_ca))
        if ca_problem is not None:
            problems.append(ConfigProblem("sip.tls_ca", ca_problem))
    from .records import is_postgresql

    folders = [("storage.recordings", cfg.path(cfg.storage.recordings))]
    if not is_postgresql(cfg.storage.database):
        folders.insert(0, ("storage.database", cfg.path(cfg.storage.database).parent))
    for key, folder in folders:
        why = writable_folder_problem(folder)
        if why is not None:
            problems.append(ConfigProblem(key, why))
    return problems
