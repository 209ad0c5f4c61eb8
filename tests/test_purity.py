"""The protocol and decision code is sans-IO (DESIGN §3, STYLE 1).

Walks the import statements of every pure module (and everything they import
from the package, transitively) and fails if asyncio, socket, time, the
database driver or the web framework appears. Also checks that the GPL test
peer pyVoIP is never imported by the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "callcenter112"

PURE = [
    "sip",
    "rtp",
    "sdp.py",
    "offer_answer.py",
    "ivr.py",
    "acd.py",
    "incidents.py",
    "media/g711.py",
    "media/tones.py",
    "media/clock.py",
    "media/player.py",
    "media/bridge.py",
    "location",
    # issue 11 rules (hardening)
    "guessing.py",
    "outside.py",
    "retention_guard.py",
    "numerals.py",
    "media/vad.py",
    "callers.py",
    "watchlist.py",
]
FORBIDDEN = {
    "asyncio",
    "socket",
    "time",
    "aiosqlite",
    "sqlite3",
    "starlette",
    "uvicorn",
    "fastapi",
    "selectors",
    "threading",
    "uvloop",
}


def _module_files(entry: str) -> list[Path]:
    path = SRC / entry
    if path.is_dir():
        return sorted(path.rglob("*.py"))
    return [path] if path.exists() else []


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = path.relative_to(SRC).parent.parts
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join(
                    ("callcenter112", *base, *(node.module.split(".") if node.module else ()))
                )
                names.add(mod)
                for alias in node.names:
                    names.add(f"{mod}.{alias.name}")
            elif node.module:
                names.add(node.module)
    return names


def _package_file(module: str) -> Path | None:
    parts = module.split(".")[1:]
    for n in range(len(parts), 0, -1):
        candidate = SRC.joinpath(*parts[:n])
        if candidate.with_suffix(".py").exists():
            return candidate.with_suffix(".py")
        if (candidate / "__init__.py").exists() and n == len(parts):
            return candidate / "__init__.py"
    return None


def _closure(files: list[Path]) -> dict[Path, set[str]]:
    seen: dict[Path, set[str]] = {}
    todo = list(files)
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        names = _imports(f)
        seen[f] = names
        for name in names:
            if name.startswith("callcenter112."):
                target = _package_file(name)
                if target is not None and target not in seen:
                    todo.append(target)
    return seen


@pytest.mark.parametrize("entry", PURE)
def test_pure_module_imports_no_io(entry: str) -> None:
    files = _module_files(entry)
    if not files:
        pytest.fail(f"{entry} is listed as pure but does not exist")
    bad = []
    for f, names in _closure(files).items():
        for name in names:
            if name.split(".")[0] in FORBIDDEN:
                bad.append(f"{f.relative_to(SRC)} imports {name}")
    assert not bad, "\n".join(bad)


def test_package_never_imports_pyvoip() -> None:
    offenders = [
        str(f.relative_to(SRC))
        for f in SRC.rglob("*.py")
        if any(n.split(".")[0] == "pyVoIP" for n in _imports(f))
    ]
    assert not offenders


def test_purity_walker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom asyncio import sleep\n")
    assert {"time", "asyncio"} <= _imports(bad)
