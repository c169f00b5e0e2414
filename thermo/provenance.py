"""What produced a file: the package version and the versions of the libraries that decide its numbers.

Every CSV the project writes (sweeps, training histories) keeps :func:`provenance` beside it, so a
figure can be traced to the code that computed it.
"""

from __future__ import annotations

import datetime
import platform
from importlib import metadata

DISTRIBUTION = "thermo-codesign"


def package_version() -> str:
    """The installed version of this project (``"unknown"`` when run from an uninstalled tree)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def _version_of(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def provenance() -> dict[str, str | None]:
    """The project's version, Python's and the numerical libraries', and the UTC time (ISO 8601)."""
    return {
        "package": DISTRIBUTION,
        "version": package_version(),
        "python": platform.python_version(),
        "numpy": _version_of("numpy"),
        "scipy": _version_of("scipy"),
        "torch": _version_of("torch"),
        "numba": _version_of("numba"),
        "written_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
