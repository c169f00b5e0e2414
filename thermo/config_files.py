"""Reading the TOML and YAML files that describe hardware and systems.

One reader for every description file: the format follows the suffix (``.toml``, ``.yaml``,
``.yml``); a missing file, an unreadable one and a syntax error each raise
:class:`~thermo.errors.ConfigFileError` with the path (and the line, where the parser gives one),
so a typo never ends in a parser's traceback.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

from .errors import ConfigFileError

SUFFIXES = (".toml", ".yaml", ".yml")


def is_config_path(text: str | os.PathLike[str]) -> bool:
    """True when ``text`` names a description file (by its suffix), not a preset."""
    return Path(text).suffix.lower() in SUFFIXES


def file_format(path: Path) -> str:
    """``"toml"`` or ``"yaml"`` from the suffix; a clear error for any other."""
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return "toml"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise ConfigFileError(f"cannot tell the format of {str(path)!r} from its suffix {suffix!r}: use .toml, .yaml or .yml")


def read_table(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The top-level table of a TOML or YAML file (``{}`` for an empty YAML file)."""
    path = Path(path)
    fmt = file_format(path)
    if not path.exists():
        raise ConfigFileError(f"{path} does not exist; check the path (relative paths start at {Path.cwd()})")
    if path.is_dir():
        raise ConfigFileError(f"{path} is a folder, not a .toml or .yaml file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"cannot read {path}: {exc}") from None
    if fmt == "toml":
        import tomllib

        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigFileError(f"{path} is not valid TOML: {exc}") from None
    else:
        import yaml

        try:
            data = yaml.load(text, Loader=yaml_loader())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigFileError(f"{path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path} must hold a table of keys and values, got {type(data).__name__}")
    return data


@functools.lru_cache(maxsize=1)
def yaml_loader() -> type:
    """SafeLoader that also reads ``900e9`` as a float: YAML 1.1 (pyyaml) wants a dot
    (``900.0e9``), YAML 1.2 and hand-written configs do not."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
            re.VERBOSE,
        ),
        list("-+0123456789."),
    )
    return Loader
