"""The study protocol: every registered study implements it, the registry holds each study once
under its own name, and the shared run (points, sweep, analysis, plot, report) works for a new
study that implements only the required parts."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from studies import projections
from studies.plotting import figure_problems
from studies.protocol import Study
from studies.registry import STUDIES, UnknownStudyError, in_words, timed_names
from studies.sweep import read_rows


@pytest.mark.parametrize("name", STUDIES.names())
def test_every_registered_study_implements_the_protocol(name, monkeypatch) -> None:
    # the projections study measures its step ratio for its points: not in this structural check
    monkeypatch.setattr(projections, "step_ratios", lambda cfg: (tuple(cfg.step_ratios), None))
    study = STUDIES.get(name)
    assert isinstance(study, Study) and not inspect.isabstract(type(study))
    assert study.name == name and study.help == STUDIES.entry(name).summary and study.description
    parser = argparse.ArgumentParser()
    study.add_arguments(parser)
    cfg = study.config_from_args(parser.parse_args([]))
    assert isinstance(cfg, study.config_type) and dataclasses.is_dataclass(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.out_dir = Path("elsewhere")  # type: ignore[misc]
    assert cfg.out_dir == Path("results") / name and study.csv_path(cfg.out_dir) == cfg.out_dir / f"{name}.csv"
    assert study.config_from_args(parser.parse_args(["--full"])) != cfg
    assert not set(study.swept) - {f.name for f in dataclasses.fields(cfg)}
    points = study.points(cfg)
    assert points and all(isinstance(p, dict) for p in points)
    assert len({json.dumps(p, sort_keys=True) for p in points}) == len(points)
    assert pickle.loads(pickle.dumps(study)).name == name  # pool workers receive it with each point


def test_the_registry_holds_each_study_once_in_order() -> None:
    names = STUDIES.names()
    assert names[:5] == ("asymptotic", "noise", "projections", "breakeven", "designspace")
    assert [n for n in names if n.startswith("tngd-")] == [f"tngd-{e}" for e in
                                                           ("wallclock", "analog-time", "delay", "noise", "bits", "runtime", "paper")]
    assert STUDIES.get("TNGD-Delay") is STUDIES.get("tngd-delay")
    with pytest.raises(UnknownStudyError, match="unknown study 'shampoo'"):
        STUDIES.get("shampoo")
    assert timed_names() == ("asymptotic", "tngd-runtime", "tngd-paper")
    assert in_words(names) == "asymptotic, noise, projections, breakeven, designspace, the seven tngd-* studies and solver"
    assert in_words(("a",)) == "a" and in_words(("a", "b")) == "a and b"


# --- a new study, implementing only what the protocol requires ----------------------------------------------------
@dataclass(frozen=True)
class _SquaresConfig:
    values: tuple[int, ...] = (1, 2, 3)
    offset: int = 0
    workers: int | None = None
    scheduler: str | None = None
    out_dir: Path = field(default=Path("results/squares"))

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("values is empty")

    @classmethod
    def full(cls, **overrides: Any) -> _SquaresConfig:
        return cls(**{"values": tuple(range(1, 11)), **overrides})


class _Squares(Study[_SquaresConfig]):
    name = "squares"
    help = "squares of whole numbers"
    description = "Squares each value."
    config_type = _SquaresConfig
    swept = ("values",)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--full", action="store_true")

    def config_from_args(self, args: argparse.Namespace) -> _SquaresConfig:
        return self.config(args.full)

    def points(self, cfg: _SquaresConfig) -> list[dict[str, Any]]:
        return [{"value": v} for v in cfg.values]

    def evaluate(self, cfg: _SquaresConfig, point: dict[str, Any]) -> dict[str, Any]:
        return {"square": point["value"] ** 2 + cfg.offset}

    def plot(self, cfg: _SquaresConfig, results: Any, path: Path) -> Any:
        path.write_bytes(b"png")  # the drawing itself is each study's own

    def report(self, cfg: _SquaresConfig, results: Any, path: Path) -> None:
        path.write_text(f"# Squares\n\nsum {sum(r['square'] for r in results)}\n")


def test_a_study_missing_a_part_cannot_be_made() -> None:
    class Incomplete(Study[_SquaresConfig]):
        name = "incomplete"

        def points(self, cfg: _SquaresConfig) -> list[dict[str, Any]]:
            return []

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]


def test_the_shared_run_sweeps_then_reports_and_resumes(tmp_path, monkeypatch) -> None:
    study = _Squares()
    cfg = study.config(values=(1, 2, 3), workers=1, out_dir=tmp_path)
    assert study.config(True).values == tuple(range(1, 11))
    csv_path = study.run(cfg, progress=False)
    assert csv_path == tmp_path / "squares.csv"
    assert [(r["value"], r["square"]) for r in read_rows(csv_path)] == [(1, 1), (2, 4), (3, 9)]
    assert (tmp_path / "squares.md").read_text() == "# Squares\n\nsum 14\n" and (tmp_path / "squares.png").exists()
    assert study.written(cfg, csv_path) == [str(csv_path), str(tmp_path / "squares.png"), str(tmp_path / "squares.md")]

    def refuse(*_: Any) -> dict[str, Any]:
        raise AssertionError("a finished point was recomputed")

    monkeypatch.setattr(_Squares, "evaluate", refuse)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert study.run(cfg, progress=False) == csv_path
    # the shared settings (every field but the swept ones and where it runs) guard the store
    with pytest.raises(ValueError, match="offset"):
        study.run(dataclasses.replace(cfg, offset=1), progress=False)


def test_the_user_guide_study_runs_as_written(tmp_path, monkeypatch) -> None:
    guide = Path(__file__).resolve().parents[2] / "docs" / "user-guide.md"
    section = guide.read_text(encoding="utf-8").split("\n## Adding a study\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"^```py\n(.*?)^```$", section, flags=re.S | re.M)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "user_guide_study"}
    exec(compile(code, str(guide), "exec", dont_inherit=True), namespace)  # noqa: S102
    study, cfg = namespace["windows"], namespace["cfg"]
    assert isinstance(study, Study) and not inspect.isabstract(type(study))
    rows = read_rows(tmp_path / "windows" / "windows.csv")
    assert len(rows) == len(cfg.windows_tau) * cfg.seeds and all(0 < r["rel_error"] < 1 for r in rows)
    assert "| 16 |" in (tmp_path / "windows" / "windows.md").read_text()
    assert not figure_problems(study.plot(cfg, study.analyse(cfg, rows), tmp_path / "again.png"))
    parser = argparse.ArgumentParser()
    study.add_arguments(parser)
    assert study.config_from_args(parser.parse_args(["--windows", "2,8"])).windows_tau == (2.0, 8.0)
