"""Where the running configuration comes from: the TOML file or the store.

Telecom staff change trunks and agencies in the web, supervisors add
operators there, and an engineer may still edit the TOML file. Both must
survive a restart, both nodes of a pair must see the same configuration, and
neither may silently override the other.

The rule (docs/configuration.md, "Where live changes live"):

- The **store** holds the versions of the configuration (full TOML text, who,
  when, from where) and is the source of truth; on two nodes they share it.
- The **file** is the base. At the first start the store is seeded from it.
- Each version remembers the SHA-256 of the file it was based on. At start
  and at `reload`, the file is compared with the newest version:

  | file                                   | newest version from | result                 |
  |----------------------------------------|---------------------|------------------------|
  | same text as the newest version        | anything            | in sync                |
  | unchanged since the newest version     | web                 | run the newest version |
  | edited                                 | file                | new version from file  |
  | edited                                 | web                 | **conflict**           |

  On a conflict the newest stored version keeps running (calls never see a
  half-applied mix), the telecom page and `reload` show the difference, and a
  person decides: `callcenter112 config import FILE` (the file wins, audited)
  or `callcenter112 config export` into the file (the web's version wins).

Pure: texts and hashes in, a decision out; the store and the CLI do the I/O.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Literal

__all__ = ["ConfigVersion", "Origin", "SourceDecision", "Verdict", "decide_source", "sha256_text"]

Origin = Literal["file", "web", "cli"]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigVersion:
    version: int
    text: str  # the whole TOML document
    origin: Origin
    file_sha256: str  # the file this version was based on
    actor: str = "system"
    at: float = 0.0

    @property
    def sha256(self) -> str:
        return sha256_text(self.text)


class Verdict(enum.Enum):
    SEED = "seed"  # no version yet: store the file as version 1
    IN_SYNC = "in_sync"
    STORE_AHEAD = "store_ahead"  # web changes since; the file is the old base
    FILE_AHEAD = "file_ahead"  # the file was edited; store it as a new version
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceDecision:
    verdict: Verdict
    run_text: str  # what the centre runs with
    new_version: ConfigVersion | None  # to store, if any

    @property
    def conflict(self) -> bool:
        return self.verdict is Verdict.CONFLICT


def decide_source(
    file_text: str, newest: ConfigVersion | None, *, actor: str = "system", at: float = 0.0
) -> SourceDecision:
    file_sha = sha256_text(file_text)
    if newest is None:
        seed = ConfigVersion(
            version=1, text=file_text, origin="file", file_sha256=file_sha, actor=actor, at=at
        )
        return SourceDecision(verdict=Verdict.SEED, run_text=file_text, new_version=seed)
    if file_sha == newest.sha256:
        return SourceDecision(verdict=Verdict.IN_SYNC, run_text=newest.text, new_version=None)
    if file_sha == newest.file_sha256:
        # The file has not been touched since the newest version was made.
        verdict = Verdict.STORE_AHEAD if newest.origin != "file" else Verdict.IN_SYNC
        return SourceDecision(verdict=verdict, run_text=newest.text, new_version=None)
    if newest.origin == "file":
        edited = ConfigVersion(
            version=newest.version + 1,
            text=file_text,
            origin="file",
            file_sha256=file_sha,
            actor=actor,
            at=at,
        )
        return SourceDecision(verdict=Verdict.FILE_AHEAD, run_text=file_text, new_version=edited)
    return SourceDecision(verdict=Verdict.CONFLICT, run_text=newest.text, new_version=None)
