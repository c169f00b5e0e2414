"""The asymptotic-speedup study end to end at a tiny size."""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest

from cosim.roofline import MeasurementWarning, Timing
from studies import asymptotic
from studies.plotting import figure_problems
from studies.sweep import read_rows


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("asym")
    cfg = asymptotic.AsymptoticConfig(sizes=(32, 64, 128, 256), condition_numbers=(10.0, 1000.0), measure_max_n=128,
                                      repeats=3, max_repeats=5, workers=1, out_dir=out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MeasurementWarning)  # a busy test machine may flag a point
        path = asymptotic.run(cfg, progress=False)
    assert path.with_suffix(".png").stat().st_size > 0
    assert "Fitted exponents" in path.with_suffix(".md").read_text()
    return read_rows(path), cfg


def test_the_csv_has_every_point_with_sane_values(rows) -> None:
    data, cfg = rows
    assert {"kind", "n", "kappa", "time_s", "analog_time_s", "source", "spread", "repeats", "load", "cores"} <= set(data[0])
    assert len(data) == len(asymptotic.points(cfg))
    assert all(r["time_s"] > 0 for r in data)
    assert {r["kind"] for r in data} == set(asymptotic.KINDS)
    assert max(r["n"] for r in data if r["kind"] == "digital-measured") == 128
    for r in data:
        if r["kind"] == "digital-measured":  # timed between the least and the most repeats, with a spread
            assert 3 <= r["repeats"] <= 5 and r["spread"] >= 0 and r["cores"] >= 1
        else:  # projections carry no timing spread
            assert math.isnan(r["spread"]) and r["repeats"] == 0


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


def _fake_timing(spread_at: dict[int, float], load: float = 0.5):
    """A stand-in for the measurement: n^3 microseconds, with the given spread per width."""
    def measure(cfg, n):
        t = (n / 100) ** 3 * 1e-3
        return Timing(median_s=t, spread=spread_at.get(n, 0.02), repeats=cfg.max_repeats if n in spread_at else 5,
                      tolerance=cfg.spread_tolerance, load=load, cores=2, times_s=(t,) * 5)
    return measure


def test_a_noisy_point_is_flagged_in_the_report_and_left_out_of_the_fit(tmp_path, monkeypatch) -> None:
    # before: the measured series had no spread and every point was fitted, 100-1000x too slow or not
    monkeypatch.setattr(asymptotic, "_measure_cholesky_inverse", _fake_timing({256: 0.6}))
    cfg = asymptotic.AsymptoticConfig(sizes=(32, 64, 128, 256), condition_numbers=(10.0,), measure_max_n=256,
                                      workers=1, out_dir=tmp_path)
    with pytest.warns(MeasurementWarning, match=r"n = 256 \(spread 60% > 25%\)"):
        path = asymptotic.run(cfg, progress=False)
    rows = read_rows(path)
    measured = {r["n"]: r for r in rows if r["kind"] == "digital-measured"}
    assert measured[256]["spread"] == pytest.approx(0.6) and measured[256]["repeats"] == cfg.max_repeats
    fit = next(f for f in asymptotic.fit_exponents(rows, cfg.fit_points, cfg.spread_tolerance)
               if f["kind"] == "digital-measured")
    assert fit["excluded"] == [256] and fit["n_range"] == "32-128"
    assert fit["exponent"] == pytest.approx(3.0)  # the fake times are exactly n^3 on the points kept
    text = path.with_suffix(".md").read_text()
    assert "| 256 |" in text and "60% |" in text and "no: spread 60% > 25%" in text
    assert "1 of 4 measured points are unreliable" in text
    assert "left out n = 256" in asymptotic.summary(rows, cfg)


def test_a_busy_machine_flags_every_measured_point(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(asymptotic, "_measure_cholesky_inverse", _fake_timing({}, load=3.1))
    cfg = asymptotic.AsymptoticConfig(sizes=(32, 64, 128), condition_numbers=(10.0,), workers=1, out_dir=tmp_path)
    with pytest.warns(MeasurementWarning, match=r"load 3\.1 on 2 cores"):
        path = asymptotic.run(cfg, progress=False)
    rows = read_rows(path)
    fits = {f["kind"] for f in asymptotic.fit_exponents(rows, cfg.fit_points, cfg.spread_tolerance)}
    assert "digital-measured" not in fits and "digital-roofline" in fits  # nothing measured is trusted


def test_the_figure_is_log_log_labelled_with_units_and_marks_unreliable_points(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(asymptotic, "_measure_cholesky_inverse", _fake_timing({64: 0.9}))
    cfg = asymptotic.AsymptoticConfig(sizes=(32, 64, 128), condition_numbers=(10.0,), workers=1, out_dir=tmp_path)
    with pytest.warns(MeasurementWarning):
        rows = read_rows(asymptotic.run(cfg, progress=False))
    fig = asymptotic.plot(rows, asymptotic.fit_exponents(rows, 3, cfg.spread_tolerance), tmp_path / "a.png", cfg)
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log" and figure_problems(fig) == []
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("unreliable timing" in t for t in labels)


@pytest.mark.parametrize("bad, field", [(dict(repeats=0), "repeats"), (dict(repeats=2), "repeats"),
                                        (dict(sizes=(64, 128.5)), r"sizes\[1\]"), (dict(sizes=(True, 64)), "sizes"),
                                        (dict(workers=0), "workers"), (dict(n_chips=1.5), "n_chips"),
                                        (dict(fit_points=1), "fit_points"), (dict(target_rel_error=1.0), "target_rel_error"),
                                        (dict(spread_tolerance=0), "spread_tolerance"),
                                        (dict(repeats=10, max_repeats=5), "max_repeats"),
                                        (dict(measure_threads=0), "measure_threads")])
def test_bad_configurations_name_the_field_and_value(bad, field) -> None:
    with pytest.raises(ValueError, match=field):
        asymptotic.AsymptoticConfig(**bad)
    assert asymptotic.AsymptoticConfig(sizes=(64.0, 128)).sizes == (64, 128)  # a whole float is a whole number


def test_one_converter_channel_per_chip_fits_the_published_exponent_in_n(tmp_path):
    """Serial converters read n node voltages per sample: once that outlasts the relaxation time
    (n > kappa tau / (coupling_range adc_conversion_s) = 200 for kappa = 2 on the published chip),
    every sample the target needs costs n conversions and the time grows as n^2."""
    from studies import asymptotic

    cfg = asymptotic.AsymptoticConfig(sizes=(512, 1024, 2048), condition_numbers=(2.0, 4.0), measure_max_n=1,
                                      converter_channels=1, fit_points=3, workers=1, out_dir=tmp_path)
    assert asymptotic.serial_crossover(cfg, 2.0) == pytest.approx(200.0)
    rows = [dict(p, **asymptotic.evaluate(cfg, p)) for p in asymptotic.points(cfg) if p["kind"] == "thermo-inverse"]
    fits = {f["kappa"]: f for f in asymptotic.fit_exponents(rows, cfg.fit_points)}
    assert fits[2.0]["exponent"] == pytest.approx(2.0, abs=0.05)
    assert asymptotic.verdict(fits[2.0]["exponent"], 2.0) == "agrees"
    # one channel per unit (the published device) stays linear in n: one conversion per sample
    parallel = dataclasses.replace(cfg, converter_channels=None)
    rows_p = [dict(p, **asymptotic.evaluate(parallel, p)) for p in asymptotic.points(parallel)
              if p["kind"] == "thermo-inverse"]
    fit_p = {f["kappa"]: f for f in asymptotic.fit_exponents(rows_p, cfg.fit_points)}[2.0]
    assert fit_p["exponent"] == pytest.approx(1.0, abs=0.1)
    assert "one ADC channel per unit" in asymptotic.deciding_assumption(parallel, fit_p, "n")
    # the fit in kappa at the largest n is reported beside the paper's 2
    (kappa_fit,) = asymptotic.fit_kappa_exponents(rows)
    assert kappa_fit["n"] == 2048 and kappa_fit["theory"] == 2.0 and math.isfinite(kappa_fit["exponent"])
