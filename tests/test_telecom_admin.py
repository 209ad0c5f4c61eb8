"""The seams behind the telecom pages, on their own: documents, versions, conflicts, prompts."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w

from callcenter112.admin import (
    DirectoryPromptAdmin,
    MemoryConfigAdmin,
    PromptUploadError,
    config_document,
    ha1,
    softphone_secret,
)
from callcenter112.config import parse_config
from callcenter112.runtime_config import LiveConfig
from test_telecom_web import _tone_wav, config_with_telecom


def test_the_document_reads_back_to_the_same_configuration(tmp_path: Path) -> None:
    config = config_with_telecom(tmp_path)
    document = config_document(config)
    again = parse_config(tomllib.loads(tomli_w.dumps(document)), base_dir=tmp_path)
    assert again == config
    assert document["trunk"][0]["proxy"] == "127.0.0.1:5070"


async def test_versions_rollback_and_conflict(tmp_path: Path) -> None:
    admin = MemoryConfigAdmin(LiveConfig(config_with_telecom(tmp_path)), clock=lambda: 5.0)
    assert await admin.conflict() is None
    document = config_document(admin.current())
    document["queue"]["wrapup_s"] = 45
    result = await admin.propose(document, actor="telecom")
    assert result.ok and result.applied == ("queue.wrapup_s",)
    # The same document again changes nothing and makes no version.
    assert (await admin.propose(document, actor="telecom")).diff.empty
    assert [v.version for v in await admin.versions()] == [2, 1]
    missing = await admin.rollback(9, actor="telecom")
    assert not missing.ok and missing.problems == ("no version 9",)
    # A hand edit of the file after a web change is a conflict, with its diff.
    admin.file_text = admin.file_text.replace('name = "Call Center 112 Kota Ambon"', 'name = "X"')
    conflict = await admin.conflict()
    assert conflict is not None and conflict.stored.version == 2
    assert {c.path for c in conflict.diff.changes} == {"centre.name", "queue.wrapup_s"}
    admin.file_text = "[[trunk]]\nname = 1\n"
    broken = await admin.conflict()
    assert broken is not None and broken.problems


def test_softphone_secret_is_stored_as_ha1_digests() -> None:
    secret = softphone_secret("op9", "callcenter112", "pw-123456")
    assert secret == ha1("op9", "callcenter112", "pw-123456")
    assert "pw-123456" not in str(secret) and set(secret) == {"ha1_md5", "ha1_sha256"}


def test_prompt_apply_runs_the_hook_and_rollback_swaps(tmp_path: Path) -> None:
    changed: list[str] = []
    root = tmp_path / "sounds"
    (root / "en").mkdir(parents=True)
    first = _tone_wav(0.3, 8000)
    (root / "en" / "menu.wav").write_bytes(first)
    prompts = DirectoryPromptAdmin(root, on_change=changed.append)
    assert [e.name for e in prompts.list()] == ["en/menu"]
    preview = prompts.upload("en/menu", _tone_wav(0.5), "new.wav")
    entry = prompts.apply(preview.preview_id, actor="admin")
    assert entry.has_previous and changed == ["en/menu"]
    converted = (root / "en" / "menu.wav").read_bytes()
    prompts.rollback("en/menu", actor="admin")
    assert (root / "en" / "menu.wav").read_bytes() == first
    prompts.rollback("en/menu", actor="admin")  # and back again
    assert (root / "en" / "menu.wav").read_bytes() == converted
    assert changed == ["en/menu"] * 3
    with pytest.raises(PromptUploadError):
        prompts.apply(preview.preview_id, actor="admin")  # used once
    with pytest.raises(PromptUploadError):
        prompts.rollback("id/greeting", actor="admin")
