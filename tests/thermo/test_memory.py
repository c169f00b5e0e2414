import pytest

from thermo.errors import MemoryBudgetError
from thermo.memory import check_memory, format_bytes, memory_budget_bytes, parse_bytes


@pytest.mark.parametrize("text, expected", [("8e9", 8_000_000_000), ("8GB", 8_000_000_000), ("512 MiB", 2**29),
                                            ("1024", 1024)])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "8 parsecs", "0", "-1GB", ""])
def test_parse_bytes_refuses_what_it_cannot_read(text):
    with pytest.raises(MemoryBudgetError):
        parse_bytes(text)


def test_budget_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TCD_MEMORY_BUDGET", "2GB")
    assert memory_budget_bytes() == 2_000_000_000
    monkeypatch.delenv("TCD_MEMORY_BUDGET")
    assert 0 < memory_budget_bytes()


def test_a_plan_above_the_budget_is_refused_naming_size_and_alternative():
    check_memory(1e6, "a small plan", "nothing", budget=2_000_000)
    with pytest.raises(MemoryBudgetError, match=r"16\.0 GB.*2\.0 MB.*use the exact path instead"):
        check_memory(1.6e10, "the dense simulator", "the exact path", budget=2_000_000)
    assert format_bytes(999) == "999 B"
