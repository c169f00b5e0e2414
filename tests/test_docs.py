"""The user guide's examples run as written.

Every ```python block of ``docs/user-guide.md`` is executed, in order, in one namespace, in a
temporary working directory; a ```toml block whose first line is ``# NAME.toml`` is written
there as ``NAME.toml`` first (the examples load it) and must describe a valid system (a block whose
first line names a "hardware file" must describe valid hardware). Every
``tcd ...`` command of the ```bash blocks must parse with the real CLI parser. ``text`` and other
blocks are illustrations only and are skipped.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "user-guide.md"
_FENCE = re.compile(r"^```(\S*)\s*$")
_FILE_LINE = re.compile(r"^#\s*(\S+\.toml)\s*$")


def fenced_blocks(text: str) -> list[tuple[str, int, str]]:
    """``(language, first line number, code)`` of every fenced block (lines count from 1)."""
    blocks: list[tuple[str, int, str]] = []
    lang: str | None = None
    start, body = 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if lang is None:
            if match:
                lang, start, body = match.group(1).lower(), number + 1, []
        elif line.strip() == "```":
            blocks.append((lang, start, "\n".join(body) + "\n"))
            lang = None
        else:
            body.append(line)
    if lang is not None:
        raise AssertionError(f"{DOC}: the block opened at line {start - 1} is never closed")
    return blocks


def _blocks(lang: str) -> list[tuple[int, str]]:
    return [(line, code) for kind, line, code in fenced_blocks(DOC.read_text(encoding="utf-8")) if kind == lang]


@pytest.fixture
def restore_registries() -> Iterator[None]:
    """The examples register a solver backend and a task: remove whatever they add."""
    from digital.solvers import SOLVERS
    from digital.tasks import TASKS
    from tests.digital.registry_helpers import registries_restored

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest and steadiest
    try:
        with registries_restored(SOLVERS, TASKS):
            yield
    finally:
        torch.set_num_threads(threads)


def test_the_guide_has_python_examples() -> None:
    assert len(_blocks("python")) >= 5


def test_python_examples_run_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_registries: None
) -> None:
    monkeypatch.chdir(tmp_path)
    for _, code in _blocks("toml"):
        name = _FILE_LINE.match(code.splitlines()[0])
        if name:
            (tmp_path / name.group(1)).write_text(code, encoding="utf-8")
    namespace: dict[str, object] = {"__name__": "user_guide"}
    for line, code in _blocks("python"):
        # pad so that a traceback points at the line of the guide
        exec(compile("\n" * (line - 1) + code, str(DOC), "exec"), namespace)  # noqa: S102


def test_toml_examples_are_valid_systems(tmp_path: Path) -> None:
    from cosim import SystemSpec
    from thermo.hardware import load_hardware

    blocks = _blocks("toml")
    assert blocks
    for line, code in blocks:
        path = tmp_path / f"line{line}.toml"
        path.write_text(code, encoding="utf-8")
        hardware = "hardware file" in code.splitlines()[0]
        try:
            load_hardware(path) if hardware else SystemSpec.load(path)  # the loaders users call
        except Exception as err:  # name the block that failed
            raise AssertionError(f"{DOC}:{line}: {err}") from err


def _tcd_commands() -> list[tuple[int, list[str]]]:
    """Argument lists of every ``tcd`` command in the bash blocks (comments stripped; ``&&``
    chains split)."""
    commands = []
    for line, code in _blocks("bash"):
        for offset, text in enumerate(code.splitlines()):
            for part in text.split("&&"):
                words = shlex.split(part, comments=True)
                if words and words[0] == "tcd":
                    commands.append((line + offset, words[1:]))
    return commands


def test_tcd_commands_parse(capsys: pytest.CaptureFixture[str]) -> None:
    from tcd.cli import build_parser

    commands = _tcd_commands()
    assert len(commands) >= 5
    for line, argv in commands:
        try:
            build_parser().parse_args(argv)
        except SystemExit as exit_:  # --help exits 0; a bad option exits 2
            assert exit_.code == 0, f"{DOC}:{line}: tcd {' '.join(argv)} does not parse: {capsys.readouterr().err}"
