"""What changed between two configurations, and what a reload can apply live.

`callcenter112 reload` (and SIGHUP, and the telecom page) validate a new
configuration exactly as `check-config` does, then compare it with the running
one. The comparison is keyed the way telecom staff think of the file: trunks,
agencies, users and API tokens by `name`, operators by `user`, so moving a
table in the file is not a change and an edit reads `operator[op3].skills`,
not `operator[2].skills`.

Each changed key is either **live** (applied without ending any call) or
**restart** (listen addresses, the RTP range, the storage: sockets and files
a running process holds). A reload applies the live part atomically and
reports the restart part as waiting.

Secrets never appear in a diff: a changed password reads `(secret changed)`.
The audit log stores this rendering, with who and when.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .config import Config

__all__ = ["RESTART_KEYS", "SECRET_KEYS", "ConfigChange", "ConfigDiff", "diff_configs"]

# Keys held by the running process: a new value waits for the next start.
RESTART_KEYS: tuple[str, ...] = (
    "sip.listen",
    "sip.advertise",
    "sip.tls_listen",
    "sip.tls_certificate",
    "sip.tls_key",
    "sip.tls_ca",
    "sip.timer_t1_ms",
    "rtp.ports",
    "rtp.preopen",
    "web.listen",
    "web.enabled",
    "web.tls_certificate",
    "web.tls_key",
    "storage.database",
    "storage.recordings",
    "centre.timezone",
)

# Key names (the last part of a path) whose values are never shown.
SECRET_KEYS: frozenset[str] = frozenset(
    {
        "password",
        "password_hash",
        "auth_password",
        "token_hash",
        "key",
        "ha1",
        "ha1_md5",
        "ha1_sha256",
        "secret",
        "metrics_token",
    }
)

# Arrays of tables and the field that names each row.
_ROW_KEYS: dict[str, str] = {
    "trunk": "name",
    "operator": "user",
    "agency": "name",
    "user": "name",
    "api_token": "name",
    "category": "id",
}

ChangeKind = Literal["added", "removed", "changed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigChange:
    path: str  # "trunk[telkom].allow", "queue.wrapup_s", "operator[op3]"
    kind: ChangeKind
    old: str | None  # rendered, secrets hidden
    new: str | None
    restart: bool

    def __str__(self) -> str:
        tail = " (needs a restart)" if self.restart else ""
        if self.kind == "added":
            return f"+ {self.path} = {self.new}{tail}"
        if self.kind == "removed":
            return f"- {self.path} (was {self.old}){tail}"
        return f"~ {self.path}: {self.old} -> {self.new}{tail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigDiff:
    changes: tuple[ConfigChange, ...]

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def live(self) -> tuple[ConfigChange, ...]:
        return tuple(c for c in self.changes if not c.restart)

    @property
    def waiting(self) -> tuple[ConfigChange, ...]:
        """Changes that take effect at the next start."""
        return tuple(c for c in self.changes if c.restart)

    def sections(self) -> frozenset[str]:
        """Top-level sections touched live: what the running centre re-applies."""
        return frozenset(c.path.split(".", 1)[0].split("[", 1)[0] for c in self.live)

    def lines(self) -> list[str]:
        return [str(c) for c in self.changes]

    def to_json(self) -> dict[str, Any]:
        return {
            "changes": [
                {"path": c.path, "kind": c.kind, "old": c.old, "new": c.new, "restart": c.restart}
                for c in self.changes
            ],
            "waiting_for_restart": [c.path for c in self.waiting],
        }


def _is_secret(path: str) -> bool:
    last = path.rsplit(".", 1)[-1].split("[", 1)[0]
    return last in SECRET_KEYS


def _render(path: str, value: object) -> str:
    if _is_secret(path):
        return "(secret)" if value not in ("", None) else "(none)"
    if isinstance(value, Mapping) and set(value) == {"host", "port"}:
        return f"{value['host']}:{value['port']}"
    if isinstance(value, Mapping):
        inner = ", ".join(
            f"{k} = {_render(f'{path}.{k}', v)}" for k, v in value.items() if v not in ("", None)
        )
        return "{" + inner + "}"
    if isinstance(value, str):
        return repr(value)
    return repr(value) if not isinstance(value, (list, tuple)) else repr(list(value))


def _needs_restart(path: str) -> bool:
    return any(path == k or path.startswith(k + ".") for k in RESTART_KEYS)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else key
        if not prefix and key in _ROW_KEYS and isinstance(value, list):
            ident = _ROW_KEYS[key]
            for row in value:
                if isinstance(row, Mapping):
                    yield f"{key}[{row.get(ident)}]", row
            continue
        if isinstance(value, Mapping) and not prefix:
            yield from _flatten(value, path)
        else:
            yield path, value


def _dump(cfg: Config) -> dict[str, Any]:
    return cfg.model_dump(mode="json", exclude={"base_dir"})


def diff_configs(old: Config, new: Config) -> ConfigDiff:
    """Every key that differs, rows of arrays of tables matched by name."""
    before = dict(_flatten(_dump(old)))
    after = dict(_flatten(_dump(new)))
    changes: list[ConfigChange] = []
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if a == b:
            continue
        restart = _needs_restart(path)
        if path in after and path not in before:
            changes.append(
                ConfigChange(
                    path=path, kind="added", old=None, new=_render(path, b), restart=restart
                )
            )
        elif path in before and path not in after:
            changes.append(
                ConfigChange(
                    path=path, kind="removed", old=_render(path, a), new=None, restart=restart
                )
            )
        elif "[" in path and isinstance(a, Mapping) and isinstance(b, Mapping):
            # A row present in both: one change per field, with the row's path.
            for key in sorted(a.keys() | b.keys()):
                if a.get(key) == b.get(key):
                    continue
                sub = f"{path}.{key}"
                if _is_secret(sub):
                    old_s, new_s = "(secret)", "(secret changed)"
                else:
                    old_s, new_s = _render(sub, a.get(key)), _render(sub, b.get(key))
                changes.append(
                    ConfigChange(path=sub, kind="changed", old=old_s, new=new_s, restart=restart)
                )
        else:
            if _is_secret(path):
                old_s, new_s = "(secret)", "(secret changed)"
            else:
                old_s, new_s = _render(path, a), _render(path, b)
            changes.append(
                ConfigChange(path=path, kind="changed", old=old_s, new=new_s, restart=restart)
            )
    return ConfigDiff(changes=tuple(changes))
