import datetime
import tomllib
from pathlib import Path

from thermo.provenance import package_version, provenance


def test_version_is_the_one_in_pyproject():
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert package_version() == pyproject["project"]["version"]


def test_provenance_names_the_libraries_and_the_time():
    record = provenance()
    assert record["version"] == package_version()
    assert record["torch"] and record["numpy"]
    assert datetime.datetime.fromisoformat(record["written_utc"]).tzinfo is not None
