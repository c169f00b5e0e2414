"""The protocol every study follows: its options, its points, one point's run, a report, a plot.

A study is one ``tcd study <name>`` command. It sweeps a grid of points (each evaluated on its
own, resumably, by :func:`studies.sweep.run_sweep`), then writes a Markdown report and a PNG plot
of what the points show beside the CSV of every point. :class:`Study` states what a study
implements and runs the parts in that order; :data:`studies.registry.STUDIES` lists the studies
the CLI offers.
"""

from __future__ import annotations

import argparse
import functools
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from . import sweep

Point = dict[str, Any]
"""One point of a sweep: the swept values (scalars; a seed among them) that identify it."""
Row = dict[str, Any]
"""What evaluating a point measured (a CSV row adds the point's own fields)."""


class StudyConfig(Protocol):
    """What the study protocol reads from every study config (a frozen dataclass that checks
    its fields in ``__post_init__`` and offers ``full(**overrides)`` for ``--full``)."""

    out_dir: Path
    workers: int | None
    scheduler: str | None


ConfigT = TypeVar("ConfigT", bound=StudyConfig)


class Study(ABC, Generic[ConfigT]):
    """Base class of the studies: the parts a study must implement, and the run that joins them.

    A new study subclasses ``Study`` and implements:

    - ``name`` (the command ``tcd study <name>``, the stem of its files), ``help`` (one line for
      ``tcd study --help``) and ``description`` (the paragraph of ``tcd study <name> --help``);
    - ``config_type``: its options, a frozen dataclass that validates itself in ``__post_init__``
      (:mod:`studies.checks`), with ``out_dir``, ``workers`` and ``scheduler`` fields and a
      ``full(**overrides)`` classmethod giving its full size;
    - :meth:`add_arguments` and :meth:`config_from_args`: its command-line options and the
      config they make (types and shared groups in :mod:`studies.options`);
    - :meth:`points`: the sweep grid;
    - :meth:`evaluate`: run one point;
    - :meth:`report`: the Markdown report, and :meth:`plot`: the PNG figure.

    It may override :meth:`analyse` (what the report and the plot draw from the rows, default
    the rows), :meth:`check` (warn about results that cannot be trusted), :meth:`outcome` (the
    lines ``tcd study <name>`` prints), ``swept`` (the config fields that make the grid, kept
    out of the settings every point shares), ``timed`` (the points time this machine) and, for a
    flow that is not one sweep then a report and a plot, :meth:`run` itself.

    ``evaluate`` runs in pool workers: a study object must pickle (module-level class, plain
    attributes).
    """

    name: str
    help: str
    description: str
    config_type: type[ConfigT]
    swept: tuple[str, ...] = ()
    """Config fields that define the grid of points (not shared settings of every point)."""
    timed: bool = False
    """The points time this machine: they run on one worker unless told otherwise, and
    ``tcd study all --workers N`` leaves this study's worker count alone."""

    # --- options ---------------------------------------------------------------------------
    @abstractmethod
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the study's command-line options on its ``tcd study <name>`` parser."""

    @abstractmethod
    def config_from_args(self, args: argparse.Namespace) -> ConfigT:
        """The config that the parsed options describe (``--full``: the full size)."""

    def config(self, full: bool = False, **overrides: Any) -> ConfigT:
        """The default config (``full``: the full size) with ``overrides``."""
        make = self.config_type.full if full else self.config_type  # type: ignore[attr-defined]
        return make(**overrides)

    # --- points ----------------------------------------------------------------------------
    @abstractmethod
    def points(self, cfg: ConfigT) -> list[Point]:
        """Every point of the sweep, in the order the CSV lists them."""

    @abstractmethod
    def evaluate(self, cfg: ConfigT, point: Point) -> Row:
        """Run one point; deterministic given the point (its seed is one of its fields)."""

    def analyse(self, cfg: ConfigT, rows: list[Row]) -> Any:
        """What the report and the plot are drawn from (a summary over seeds, fitted
        exponents...); by default the rows themselves."""
        return rows

    # --- outputs ---------------------------------------------------------------------------
    @abstractmethod
    def report(self, cfg: ConfigT, results: Any, path: Path) -> None:
        """Write the Markdown report (assumptions, tables, the plot's link) to ``path``."""

    @abstractmethod
    def plot(self, cfg: ConfigT, results: Any, path: Path) -> Any:
        """Draw the figure into the PNG ``path``; return the (closed) Matplotlib Figure."""

    def check(self, cfg: ConfigT, results: Any) -> None:
        """Warn about results that cannot be trusted, once the outputs are written (default:
        nothing to say)."""

    def outcome(self, cfg: ConfigT, csv_path: Path) -> list[str]:
        """The lines ``tcd study <name>`` prints after the run (default: none)."""
        return []

    def written(self, cfg: ConfigT, csv_path: Path) -> list[str]:
        """The files a run wrote, as ``tcd study <name>`` lists them."""
        return [str(csv_path), str(csv_path.with_suffix(".png")), str(csv_path.with_suffix(".md"))]

    # --- the run ---------------------------------------------------------------------------
    def csv_path(self, out_dir: Path) -> Path:
        """The CSV of every point (``<out_dir>/<name>.csv``; the plot and the report beside it)."""
        return Path(out_dir) / f"{self.name}.csv"

    def workers(self, cfg: ConfigT) -> int | None:
        """Process-pool size: the config's, else one for a timed study, else the sweep's default."""
        return cfg.workers or (1 if self.timed else None)

    def context(self, cfg: ConfigT) -> dict[str, Any]:
        """The settings every point shares: a rerun into the same folder with another one is refused."""
        return sweep.context_of(cfg, exclude=(*self.swept, "workers", "scheduler", "out_dir"))

    def run(self, cfg: ConfigT, progress: bool = True) -> Path:
        """Run the points not yet done, then analyse, plot, report and check; return the CSV."""
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        csv_path = self.csv_path(cfg.out_dir)
        rows = sweep.run_sweep(functools.partial(self.evaluate, cfg), self.points(cfg), csv_path,
                               workers=self.workers(cfg), scheduler=cfg.scheduler, progress=progress,
                               description=self.name, context=self.context(cfg))
        results = self.analyse(cfg, rows)
        self.plot(cfg, results, csv_path.with_suffix(".png"))
        self.report(cfg, results, csv_path.with_suffix(".md"))
        self.check(cfg, results)
        return csv_path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
