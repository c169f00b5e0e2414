"""The one registry rule: case-insensitive lookup, registration order, clear errors, no duplicates."""

from __future__ import annotations

import pytest

from thermo.registry import Registry, UnknownNameError


class KindError(ValueError):
    pass


def test_lookup_ignores_case_and_keeps_the_registered_spelling() -> None:
    reg: Registry[int] = Registry("widget", KindError)
    reg.add("Alpha", 1, "the first")
    reg.add("beta", 2)
    assert reg.get("alpha") == reg.get("ALPHA") == 1
    assert reg.canonical("ALPHA") == "Alpha"
    assert reg.names() == ("Alpha", "beta") and list(reg) == ["Alpha", "beta"] and len(reg) == 2
    assert "BETA" in reg and "gamma" not in reg and 3 not in reg
    assert reg.help() == "Alpha: the first; beta"


def test_unknown_and_duplicate_names_raise_the_kinds_error() -> None:
    reg: Registry[int] = Registry("widget", KindError)
    reg.register("alpha")(1)
    with pytest.raises(KindError, match=r"unknown widget 'gamma'; choose one of alpha"):
        reg.get("gamma")
    with pytest.raises(KindError, match="already registered"):
        reg.add("ALPHA", 2)
    reg.add("alpha", 1)  # the same object again is not a conflict
    with pytest.raises(KindError, match="non-empty string"):
        reg.add("", 3)
    with pytest.raises(UnknownNameError):
        Registry("thing").get(None)


def test_restored_undoes_what_the_block_registers() -> None:
    reg: Registry[int] = Registry("widget", KindError)
    reg.add("alpha", 1)
    with reg.restored():
        reg.add("beta", 2)
        assert reg.names() == ("alpha", "beta")
    assert reg.names() == ("alpha",)
