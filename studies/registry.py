"""The registry of studies: the one list that ``tcd study <name>``, its help text and the order
of ``tcd study all`` read, filled here in that order from the modules that define the studies.

Adding a study: define it in its own module (a :class:`studies.protocol.Study` named ``STUDY``)
and add it to :data:`_IN_ORDER` below.
"""

from __future__ import annotations

from pathlib import Path

from thermo.registry import Registry

from . import asymptotic, breakeven, designspace, noise, projections, solver, tngd, tngd_paper
from .protocol import Study


class UnknownStudyError(LookupError):
    """No study is registered under a name (the CLI reports it as bad input)."""


STUDIES: Registry[Study] = Registry("study", UnknownStudyError)
"""Every study, in the order ``tcd study --help`` lists them and ``tcd study all`` runs them."""

_IN_ORDER: tuple[Study, ...] = (asymptotic.STUDY, noise.STUDY, projections.STUDY, breakeven.STUDY, designspace.STUDY,
                                *tngd.VARIANTS.values(), tngd_paper.STUDY, solver.STUDY)
for _study in _IN_ORDER:
    STUDIES.add(_study.name, _study, _study.help)


def timed_names() -> tuple[str, ...]:
    """The studies whose points time this machine (they keep to one worker)."""
    return tuple(name for name in STUDIES.names() if STUDIES.get(name).timed)


_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")


def in_words(names: tuple[str, ...]) -> str:
    """``("a", "b", "t-x", "t-y")`` -> ``"a, b and the two t-* studies"``: single studies by
    name, a family of studies sharing a prefix before ``-`` by its size."""
    families: dict[str, list[str]] = {}
    for name in names:
        families.setdefault(name.partition("-")[0] if "-" in name else name, []).append(name)
    parts = [members[0] if len(members) == 1 else
             f"the {_NUMBER_WORDS[len(members)] if len(members) < len(_NUMBER_WORDS) else len(members)} "
             f"{prefix}-* studies" for prefix, members in families.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def report_path(out_dir: Path, name: str) -> Path:
    """The Markdown report that study ``name`` writes into ``out_dir``."""
    return STUDIES.get(name).csv_path(out_dir).with_suffix(".md")


def write_index(out_dir: Path, command: str) -> Path:
    """``out_dir/README.md``: a link to the report of every study, each run into
    ``out_dir/<name>/`` by ``command`` (named in the page), titled by its report's heading."""
    out_dir = Path(out_dir)
    pages = []
    for name in STUDIES.names():
        report = report_path(out_dir / name, name)
        title = report.read_text().splitlines()[0].lstrip("# ")
        pages.append(f"- [{title}]({report.relative_to(out_dir).as_posix()}): `tcd study {name}`")
    index = ["# Studies", "", f"Each page below was written by its study (`{command}`); the CSVs of every point "
             "lie beside it.", "", *pages]
    path = out_dir / "README.md"
    path.write_text("\n".join(index) + "\n")
    return path
