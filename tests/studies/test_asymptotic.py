"""The asymptotic-speedup study end to end at a tiny size."""

from __future__ import annotations

import pytest

from studies import asymptotic
from studies.sweep import read_rows


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("asym")
    cfg = asymptotic.AsymptoticConfig(sizes=(32, 64, 128, 256), condition_numbers=(10.0, 1000.0), measure_max_n=128,
                                      repeats=1, workers=1, out_dir=out)
    path = asymptotic.run(cfg, progress=False)
    assert path.with_suffix(".png").stat().st_size > 0
    assert "Fitted exponents" in path.with_suffix(".md").read_text()
    return read_rows(path), cfg


def test_the_csv_has_every_point_with_sane_values(rows) -> None:
    data, cfg = rows
    assert {"kind", "n", "kappa", "time_s", "analog_time_s", "source"} <= set(data[0])
    assert len(data) == len(asymptotic.points(cfg))
    assert all(r["time_s"] > 0 for r in data)
    assert {r["kind"] for r in data} == set(asymptotic.KINDS)
    assert max(r["n"] for r in data if r["kind"] == "digital-measured") == 128


def test_times_grow_with_n_and_with_the_condition_number(rows) -> None:
    data, _ = rows
    for kind in ("digital-roofline", "thermo-inverse", "thermo-solve"):
        for kappa in {r["kappa"] for r in data if r["kind"] == kind}:
            series = sorted((r["n"], r["time_s"]) for r in data if r["kind"] == kind and r["kappa"] == kappa)
            assert all(b[1] > a[1] for a, b in zip(series, series[1:])), (kind, kappa)
    for kind in ("thermo-inverse", "thermo-solve"):
        at = {(r["n"], r["kappa"]): r["time_s"] for r in data if r["kind"] == kind}
        assert all(at[(n, 1000.0)] > at[(n, 10.0)] for n in (32, 64, 128, 256))


def test_fitted_exponents_and_speedups(rows) -> None:
    data, cfg = rows
    fits = {(f["kind"], f["kappa"]): f["exponent"] for f in asymptotic.fit_exponents(data, cfg.fit_points)}
    # small inversions are launch-bound on a GPU (flat); large ones compute-bound: cubic
    assert fits[("digital-roofline", 0.0)] < 1.0
    large = [{"kind": "digital-roofline", "n": n, "kappa": 0.0, **asymptotic.evaluate(cfg, {"kind": "digital-roofline", "n": n, "kappa": 0.0})}
             for n in (4096, 8192, 16384)]
    assert asymptotic.fit_exponents(large, 3)[0]["exponent"] == pytest.approx(3.0, abs=0.02)
    assert all(s["speedup"] > 0 for s in asymptotic.speedups(data))
