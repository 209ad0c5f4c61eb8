"""A prompt replaced on the prompt page is re-read live (issue 16), through
`DirectoryPromptAdmin.on_change` → `PromptLibrary.reload`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from callcenter112.media.prompts import Codec, PromptError, PromptLibrary

SOUNDS = Path(__file__).resolve().parent.parent / "sounds"


def test_reload_takes_the_new_file_and_a_bad_one_keeps_the_old(tmp_path: Path) -> None:
    root = tmp_path / "sounds"
    shutil.copytree(SOUNDS, root)
    library = PromptLibrary.load(root)
    greeting = library.get("greeting", "id", Codec.PCMA)
    menu = library.get("menu", "id", Codec.PCMA)
    assert greeting.frames != menu.frames
    shutil.copy(root / "id" / "menu.wav", root / "id" / "greeting.wav")
    library.reload("id/greeting")
    assert library.get("greeting", "id", Codec.PCMA).frames == menu.frames
    assert library.get("greeting", "id", Codec.PCMU).frames == (
        library.get("menu", "id", Codec.PCMU).frames
    )
    assert greeting.frames != menu.frames  # a call holding the old prompt keeps it

    (root / "id" / "greeting.wav").write_bytes(b"not a wav")
    with pytest.raises(PromptError):
        library.reload("id/greeting")
    assert library.get("greeting", "id", Codec.PCMA).frames == menu.frames
