"""The file-or-store rule: every row of its table, and the conflict."""

from __future__ import annotations

from callcenter112.config_source import ConfigVersion, Verdict, decide_source, sha256_text

BASE = '[sip]\nlisten = "127.0.0.1:5060"\n'
WEB = BASE + '[[agency]]\nname = "damkar"\n'
EDITED = BASE + "# an engineer's edit\n"


def _v(text: str, origin: str, base: str, version: int = 1) -> ConfigVersion:
    return ConfigVersion(
        version=version,
        text=text,
        origin=origin,
        file_sha256=sha256_text(base),  # type: ignore[arg-type]
    )


def test_first_start_seeds_the_store_from_the_file() -> None:
    d = decide_source(BASE, None, actor="system", at=5.0)
    assert d.verdict is Verdict.SEED and d.run_text == BASE
    assert d.new_version is not None and d.new_version.version == 1
    assert d.new_version.origin == "file" and d.new_version.file_sha256 == sha256_text(BASE)


def test_same_text_is_in_sync() -> None:
    d = decide_source(BASE, _v(BASE, "file", BASE))
    assert d.verdict is Verdict.IN_SYNC and d.new_version is None


def test_web_change_survives_a_restart_with_the_old_file() -> None:
    d = decide_source(BASE, _v(WEB, "web", BASE, 2))
    assert d.verdict is Verdict.STORE_AHEAD and d.run_text == WEB and d.new_version is None


def test_edited_file_after_file_versions_becomes_a_new_version() -> None:
    d = decide_source(EDITED, _v(BASE, "file", BASE, 3))
    assert d.verdict is Verdict.FILE_AHEAD and d.run_text == EDITED
    assert d.new_version is not None and d.new_version.version == 4


def test_file_and_web_both_edited_is_a_conflict_that_keeps_the_running_version() -> None:
    d = decide_source(EDITED, _v(WEB, "web", BASE, 2))
    assert d.conflict and d.run_text == WEB and d.new_version is None


def test_exporting_the_web_version_into_the_file_resolves_the_conflict() -> None:
    d = decide_source(WEB, _v(WEB, "web", BASE, 2))
    assert d.verdict is Verdict.IN_SYNC and d.run_text == WEB
