"""What the web's telecom, people and prompt pages may change, as narrow typed interfaces.

The pages never reach into the running centre. They talk to four seams:

- `ConfigAdmin`: the running configuration and its versions. A proposal is a
  whole TOML document; it is validated by `parse_config` (the key named on
  error), compared with the running one, applied through `LiveConfig` (all
  listeners check, then all apply) and recorded as a new `ConfigVersion`
  with origin "web". Roll-back re-proposes an older version's text.
  People (operators, accounts) live in the configuration, so supervisors'
  changes are proposals too (`operator_added`, `password_reset` …).
- `TrunkTools`: an OPTIONS probe to a trunk's proxy with its round-trip
  time, the qualify state and counters of every trunk, a test call.
- `CaptureSource`: the SIP messages captured for one incident.
- `PromptAdmin`: upload a recorded prompt (converted exactly like
  `callcenter112 prompts convert`), preview it, apply it, roll it back.

`MemoryConfigAdmin`, `MemoryTrunkTools` and `MemoryCaptureSource` keep their
state in memory (the tests use them; the running centre supplies objects
with the same methods backed by the store and the SIP endpoint).
`DirectoryPromptAdmin` works on the real prompt directory: the running
centre uses it as is, with a hook to reload its prompt library.

Softphone credentials follow the hardening rules: a new password is
generated here, shown once by the page that asked for it, and stored as
HA1 digests (RFC 7616 §3.4.2: H(user:realm:password) in MD5 and SHA-256)
when the configuration has `ha1_md5`/`ha1_sha256` keys on `[[operator]]`;
until then the plain `password` key is written (digest needs one or the
other).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import tomli_w

from .config import Config, ConfigError, OperatorConfig, parse_config
from .config_diff import ConfigDiff, diff_configs
from .config_source import ConfigVersion, Origin, Verdict, decide_source, sha256_text
from .runtime_config import LiveConfig, ReloadResult
from .sip.capture import CaptureBook, CapturedMessage
from .trunk_health import TrunkCounters, TrunkHealth

__all__ = [
    "PROMPT_NAME",
    "CaptureSource",
    "ConfigAdmin",
    "ConfigConflict",
    "DirectoryPromptAdmin",
    "MemoryCaptureSource",
    "MemoryConfigAdmin",
    "MemoryTrunkTools",
    "MemoryVersions",
    "NewPassword",
    "ProbeResult",
    "PromptAdmin",
    "PromptEntry",
    "PromptPreview",
    "PromptUploadError",
    "TelecomServices",
    "TestCallResult",
    "TrunkTools",
    "VersionBook",
    "VersionedConfigAdmin",
    "config_document",
    "ha1",
    "new_softphone_password",
    "softphone_secret",
    "trunk_health_report",
]

# --------------------------------------------------------------------------- configuration


def _plain(value: object) -> object:
    """A model dump made TOML-writable: host/port tables back to "host:port", no None."""
    if isinstance(value, Mapping):
        if set(value) == {"host", "port"}:
            host, port = value["host"], value["port"]
            return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_document(config: Config) -> dict[str, Any]:
    """The configuration as the TOML document `parse_config` reads back to the same `Config`."""
    out = _plain(config.model_dump(mode="json", exclude={"base_dir"}))
    assert isinstance(out, dict)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigConflict:
    """The hand-edited file and the newest web version disagree: a person decides."""

    file_text: str
    stored: ConfigVersion
    diff: ConfigDiff  # from the running (stored) version to the file
    problems: tuple[str, ...] = ()  # the file does not even validate


class ConfigAdmin(Protocol):
    """Async where the running centre reads or writes the store (versions live there)."""

    def current(self) -> Config: ...

    async def versions(self) -> list[ConfigVersion]:
        """Newest first."""
        ...

    async def propose(self, document: dict[str, Any], *, actor: str) -> ReloadResult: ...

    async def rollback(self, version: int, *, actor: str) -> ReloadResult: ...

    async def conflict(self) -> ConfigConflict | None: ...


class VersionBook(Protocol):
    """Where the configuration versions are kept: a list (tests) or the store."""

    async def newest(self) -> ConfigVersion | None: ...

    async def add(
        self, *, text: str, origin: Origin, file_sha256: str, actor: str, at: float
    ) -> ConfigVersion: ...

    async def listing(self) -> list[ConfigVersion]:
        """Newest first."""
        ...

    async def get(self, version: int) -> ConfigVersion | None: ...


@dataclass(slots=True)
class MemoryVersions:
    """A `VersionBook` in a list."""

    kept: list[ConfigVersion] = field(default_factory=list)

    async def newest(self) -> ConfigVersion | None:
        return self.kept[-1] if self.kept else None

    async def add(
        self, *, text: str, origin: Origin, file_sha256: str, actor: str, at: float
    ) -> ConfigVersion:
        version = ConfigVersion(
            version=(self.kept[-1].version + 1) if self.kept else 1,
            text=text,
            origin=origin,
            file_sha256=file_sha256,
            actor=actor,
            at=at,
        )
        self.kept.append(version)
        return version

    async def listing(self) -> list[ConfigVersion]:
        return list(reversed(self.kept))

    async def get(self, version: int) -> ConfigVersion | None:
        return next((v for v in self.kept if v.version == version), None)


class VersionedConfigAdmin:
    """`ConfigAdmin` over a `LiveConfig` and a `VersionBook`: the one home of
    the rules (validate, apply through every listener, record a version).

    `file_text` is the TOML file as it is on disk now (None: no file);
    `origin` is what a proposal's version is recorded as ("web")."""

    def __init__(
        self,
        live: LiveConfig,
        book: VersionBook,
        *,
        file_text: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.live = live
        self.book = book
        self.clock = clock
        self.file_text = (
            file_text if file_text is not None else tomli_w.dumps(config_document(live.current))
        )

    def current(self) -> Config:
        return self.live.current

    def current_file_text(self) -> str:
        return self.file_text

    async def versions(self) -> list[ConfigVersion]:
        return await self.book.listing()

    async def apply_document(
        self, document: dict[str, Any], *, actor: str, source: str, origin: Origin = "web"
    ) -> ReloadResult:
        base = self.live.current.base_dir
        try:
            new = parse_config(document, source=source, base_dir=base)
        except ConfigError as exc:
            return ReloadResult(
                ok=False, actor=actor, source=source, problems=tuple(str(p) for p in exc.problems)
            )
        result = self.live.apply(new, actor=actor, source=source)
        if result.ok and not result.diff.empty:
            newest = await self.book.newest()
            base_sha = (
                sha256_text(self.current_file_text())
                if origin != "web" or newest is None
                else newest.file_sha256
            )
            await self.book.add(
                text=tomli_w.dumps(config_document(self.live.current)),
                origin=origin,
                file_sha256=base_sha,
                actor=actor,
                at=self.clock(),
            )
        return result

    async def propose(self, document: dict[str, Any], *, actor: str) -> ReloadResult:
        return await self.apply_document(document, actor=actor, source="web")

    async def rollback(self, version: int, *, actor: str) -> ReloadResult:
        found = await self.book.get(version)
        if found is None:
            return ReloadResult(
                ok=False, actor=actor, source="web", problems=(f"no version {version}",)
            )
        return await self.apply_document(
            tomllib.loads(found.text), actor=actor, source=f"roll-back to version {version}"
        )

    async def conflict(self) -> ConfigConflict | None:
        newest = await self.book.newest()
        file_text = self.current_file_text()
        if newest is None:
            return None
        decision = decide_source(file_text, newest)
        if decision.verdict is not Verdict.CONFLICT:
            return None
        try:
            in_file = parse_config(
                tomllib.loads(file_text), source="file", base_dir=self.live.current.base_dir
            )
        except (ConfigError, tomllib.TOMLDecodeError) as exc:
            problems = (
                tuple(str(p) for p in exc.problems) if isinstance(exc, ConfigError) else (str(exc),)
            )
            return ConfigConflict(
                file_text=file_text,
                stored=newest,
                diff=ConfigDiff(changes=()),
                problems=problems,
            )
        return ConfigConflict(
            file_text=file_text, stored=newest, diff=diff_configs(self.live.current, in_file)
        )


class MemoryConfigAdmin(VersionedConfigAdmin):
    """`VersionedConfigAdmin` with the versions in a list, seeded with the
    file as version 1 (the running centre keeps them in the store:
    `live_config.StoreVersions`)."""

    def __init__(
        self,
        live: LiveConfig,
        *,
        file_text: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(live, MemoryVersions(), file_text=file_text, clock=clock)
        assert isinstance(self.book, MemoryVersions)
        self.book.kept.append(
            ConfigVersion(
                version=1,
                text=self.file_text,
                origin="file",
                file_sha256=sha256_text(self.file_text),
                actor="system",
                at=clock(),
            )
        )


# --------------------------------------------------------------------------- softphone secrets

# 16 characters from a 57-symbol alphabet (no 0/O, 1/l/I): ~93 bits, typed from paper.
_PASSWORD_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_PASSWORD_LENGTH = 16


def new_softphone_password() -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(_PASSWORD_LENGTH))


def ha1(user: str, realm: str, password: str) -> dict[str, str]:
    """HA1 = H(username:realm:password), RFC 7616 §3.4.2, for MD5 and SHA-256."""
    a1 = f"{user}:{realm}:{password}".encode()
    return {
        "ha1_md5": hashlib.md5(a1, usedforsecurity=False).hexdigest(),
        "ha1_sha256": hashlib.sha256(a1).hexdigest(),
    }


def softphone_secret(user: str, realm: str, password: str) -> dict[str, str]:
    """The `[[operator]]` keys that store a softphone password.

    HA1 only when the configuration knows the HA1 keys; otherwise the plain
    `password` (the HA1s are still computed, so the switch is one line)."""
    digests = ha1(user, realm, password)
    if {"ha1_md5", "ha1_sha256"} <= set(OperatorConfig.model_fields):
        return digests
    return {"password": password}


@dataclass(frozen=True, slots=True, kw_only=True)
class NewPassword:
    """A generated password: the page shows `password` once and keeps nothing."""

    user: str
    password: str
    result: ReloadResult


# --------------------------------------------------------------------------- trunks


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    trunk: str
    status: int | None  # the final response to OPTIONS; None: no answer (Timer F)
    rtt_ms: float | None
    reason: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "trunk": self.trunk,
            "status": self.status,
            "rtt_ms": self.rtt_ms,
            "reason": self.reason,
            "answered": self.status is not None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class TestCallResult:
    __test__: ClassVar[bool] = False  # not a pytest class

    target: str  # an agency name or number, or a trunk's test number
    status: int | None  # the final response; None: nothing came back
    reason: str
    duration_s: float

    def to_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "status": self.status,
            "reason": self.reason,
            "duration_s": round(self.duration_s, 2),
            "ok": self.status is not None and 200 <= self.status < 300,
        }


class TrunkTools(Protocol):
    def probe(self, trunk: str) -> Awaitable[ProbeResult]: ...

    def health(self) -> dict[str, dict[str, object]]:
        """Per trunk: {"qualify": TrunkHealth.to_json(), "counters": TrunkCounters.to_json()}."""
        ...

    def test_call(self, target: str) -> Awaitable[TestCallResult]: ...


def trunk_health_report(
    names: Iterable[str],
    qualify: Mapping[str, TrunkHealth],
    counters: Mapping[str, TrunkCounters],
    *,
    wall: float,
) -> dict[str, dict[str, object]]:
    """What `TrunkTools.health` answers, per trunk name."""
    return {
        name: {
            "qualify": qualify.get(name, TrunkHealth(trunk=name)).to_json(),
            "counters": counters.get(name, TrunkCounters()).to_json(wall=wall),
        }
        for name in names
    }


ProbeScript = Callable[[str], Awaitable[ProbeResult]]
CallScript = Callable[[str], Awaitable[TestCallResult]]


@dataclass(slots=True)
class MemoryTrunkTools:
    """`TrunkTools` whose carrier network is a script: the carrier is what tests mock.

    `probe` records the outcome in the trunk's `TrunkHealth` exactly as the
    continuous qualify does, so the page shows the same state either way."""

    carrier_probe: ProbeScript
    carrier_call: CallScript
    clock: Callable[[], float] = time.time
    qualify: dict[str, TrunkHealth] = field(default_factory=dict)
    counters: dict[str, TrunkCounters] = field(default_factory=dict)

    async def probe(self, trunk: str) -> ProbeResult:
        from .trunk_health import ProbeOutcome

        health = self.qualify.setdefault(trunk, TrunkHealth(trunk=trunk))
        now = self.clock()
        health.probe_sent(now)
        result = await self.carrier_probe(trunk)
        outcome = ProbeOutcome.ANSWERED if result.status is not None else ProbeOutcome.TIMED_OUT
        done = now + (result.rtt_ms or 0.0) / 1000.0
        health.probe_done(outcome, now=done, wall=done, status=result.status)
        return result

    def health(self) -> dict[str, dict[str, object]]:
        names = sorted(self.qualify.keys() | self.counters.keys())
        return trunk_health_report(names, self.qualify, self.counters, wall=self.clock())

    async def test_call(self, target: str) -> TestCallResult:
        return await self.carrier_call(target)


# --------------------------------------------------------------------------- captures


class CaptureSource(Protocol):
    async def messages(self, incident_id: str) -> list[CapturedMessage]:
        """Every kept message of the incident's legs (secrets already masked); [] if none."""
        ...


@dataclass(slots=True)
class MemoryCaptureSource:
    books: dict[str, CaptureBook] = field(default_factory=dict)

    def add(self, incident_id: str, message: CapturedMessage) -> bool:
        return self.books.setdefault(incident_id, CaptureBook()).add(message)

    async def messages(self, incident_id: str) -> list[CapturedMessage]:
        book = self.books.get(incident_id)
        return list(book.messages) if book is not None else []


# --------------------------------------------------------------------------- prompts

# "id/greeting": a language folder and a prompt file name, as under ivr.prompts.
PROMPT_NAME = re.compile(r"^(id|en)/[a-z0-9_]{1,64}$")
_UPLOAD_SUFFIXES = frozenset({".wav", ".mp3", ".ogg", ".oga", ".opus"})
_PREVIOUS = ".previous"
_PREVIEWS = ".previews"


class PromptUploadError(ValueError):
    """An upload refused: a bad name or file type, or audio ffmpeg cannot read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptEntry:
    name: str  # "id/greeting"
    seconds: float
    has_previous: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptPreview:
    preview_id: str
    name: str
    seconds: float
    path: Path  # the converted A-law WAV


class PromptAdmin(Protocol):
    def list(self) -> list[PromptEntry]: ...

    def upload(self, name: str, data: bytes, filename: str) -> PromptPreview:
        """Convert (blocking: ffmpeg); raises `PromptUploadError`."""
        ...

    def preview(self, preview_id: str) -> PromptPreview | None: ...

    def apply(self, preview_id: str, *, actor: str) -> PromptEntry: ...

    def rollback(self, name: str, *, actor: str) -> PromptEntry: ...


class DirectoryPromptAdmin:
    """Prompts in `root` (`ivr.prompts`), previews in `root/.previews`, the
    version each apply replaced in `root/.previous`.

    `on_change(name)` runs after a prompt file changed (the running centre
    reloads that prompt into its library; calls already playing it keep the
    frames they hold). The web calls `apply`/`rollback` in a worker thread,
    so `on_change` must hand over to the loop (`loop.call_soon_threadsafe`)."""

    def __init__(self, root: Path, *, on_change: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.on_change = on_change
        self._previews: dict[str, PromptPreview] = {}

    def _file(self, name: str, base: Path | None = None) -> Path:
        if not PROMPT_NAME.match(name):
            raise PromptUploadError(f"prompt name {name!r}: expected id/name or en/name")
        return (base or self.root) / f"{name}.wav"

    def list(self) -> list[PromptEntry]:
        from .media.recorder import WavError, wav_info

        out = []
        for lang in ("id", "en"):
            for path in sorted((self.root / lang).glob("*.wav")):
                name = f"{lang}/{path.stem}"
                if not PROMPT_NAME.match(name):
                    continue
                try:
                    info = wav_info(path)
                    seconds = info.frames / info.sample_rate
                except (WavError, OSError):
                    seconds = 0.0
                previous = self._file(name, self.root / _PREVIOUS).is_file()
                out.append(PromptEntry(name=name, seconds=seconds, has_previous=previous))
        return out

    def upload(self, name: str, data: bytes, filename: str) -> PromptPreview:
        from .media.prompts import PromptError
        from .media.prompts_cli import convert_recording

        self._file(name)
        suffix = Path(filename).suffix.lower()
        if suffix not in _UPLOAD_SUFFIXES:
            raise PromptUploadError(f"{filename!r}: send a WAV, MP3 or OGG recording")
        previews = self.root / _PREVIEWS
        previews.mkdir(parents=True, exist_ok=True)
        preview_id = secrets.token_hex(8)
        dst = previews / f"{preview_id}.wav"
        with tempfile.TemporaryDirectory(dir=previews) as tmp:
            src = Path(tmp) / f"upload{suffix}"
            src.write_bytes(data)
            try:
                seconds = convert_recording(src, dst)
            except PromptError as exc:
                raise PromptUploadError(str(exc).replace(str(src), filename)) from None
        preview = PromptPreview(preview_id=preview_id, name=name, seconds=seconds, path=dst)
        self._previews[preview_id] = preview
        return preview

    def preview(self, preview_id: str) -> PromptPreview | None:
        return self._previews.get(preview_id)

    def apply(self, preview_id: str, *, actor: str) -> PromptEntry:
        preview = self._previews.pop(preview_id, None)
        if preview is None or not preview.path.is_file():
            raise PromptUploadError("no such preview (upload again)")
        target = self._file(preview.name)
        keep = self._file(preview.name, self.root / _PREVIOUS)
        if target.is_file():
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(target, keep)
        target.parent.mkdir(parents=True, exist_ok=True)
        preview.path.replace(target)  # atomic on one filesystem
        if self.on_change is not None:
            self.on_change(preview.name)
        return PromptEntry(name=preview.name, seconds=preview.seconds, has_previous=keep.is_file())

    def rollback(self, name: str, *, actor: str) -> PromptEntry:
        target = self._file(name)
        keep = self._file(name, self.root / _PREVIOUS)
        if not keep.is_file():
            raise PromptUploadError(f"{name}: no previous version to go back to")
        # Swap, so a roll-back can itself be rolled back.
        swap = keep.with_suffix(".swap")
        shutil.copy2(target, swap)
        keep.replace(target)
        swap.replace(keep)
        if self.on_change is not None:
            self.on_change(name)
        entry = next(e for e in self.list() if e.name == name)
        return entry


# --------------------------------------------------------------------------- the bundle


@dataclass(frozen=True, slots=True, kw_only=True)
class TelecomServices:
    """What `create_app(telecom=…)` receives; a missing seam answers 503 on its pages."""

    config: ConfigAdmin | None = None
    trunks: TrunkTools | None = None
    captures: CaptureSource | None = None
    prompts: PromptAdmin | None = None
