import math
import time

import numpy as np
import pytest

from cosim.roofline import (
    BYTES_PER_ELEMENT,
    CalibrationWarning,
    RooflineError,
    RooflineModel,
    Work,
    calibrate,
    cholesky,
    cholesky_inverse,
    cpu_spec,
    eigh,
    elementwise,
    gemm,
    measure,
)
from cosim.system import A100, V100, SystemSpecError

# A GPU whose terms are easy to compute by hand: peak 1e12 FLOP/s float32, 1e11 B/s.
TOY = cpu_spec(1e12, 1e11, launch_overhead_s=4e-6, name="toy").replace(
    compute_efficiency=0.5, memory_efficiency=0.8
)
TOY_RIDGE = (1e12 * 0.5) / (1e11 * 0.8)  # FLOP/byte


# --- Work -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(flops=-1, bytes=0), "flops"),
        (dict(flops=math.nan, bytes=0), "flops"),
        (dict(flops=0, bytes=math.inf), "bytes"),
        (dict(flops=0, bytes=0, kernels=-1), "kernels"),
        (dict(flops=0, bytes=0, kernels=1.5), "kernels"),
        (dict(flops=0, bytes=0, precision="fp8"), "precision"),
    ],
)
def test_work_validation_names_the_field(kwargs, field):
    with pytest.raises(RooflineError, match=f"Work.{field}"):
        Work(**kwargs)


def test_work_adds_and_refuses_mixed_precision():
    a = Work(10, 20, 1, name="a")
    b = Work(1, 2, 3, name="b")
    assert a + b == Work(11, 22, 4, name="a+b")
    assert sum([a, b, a]) == Work(21, 42, 5, name="a+b+a")
    assert a.scaled(3) == Work(30, 60, 3, name="a")
    with pytest.raises(RooflineError, match="'float32'.*'float64'"):
        a + Work(1, 1, precision="float64")
    assert isinstance(RooflineError("x"), SystemSpecError)


def test_arithmetic_intensity():
    assert Work(100, 25).arithmetic_intensity == 4.0
    assert RooflineModel.arithmetic_intensity(Work(1, 0)) == math.inf
    assert Work(0, 0).arithmetic_intensity == 0.0


# --- the roofline ---------------------------------------------------------------------------
def test_ridge_point_formula():
    assert RooflineModel(TOY).ridge_point("float32") == pytest.approx(TOY_RIDGE, rel=1e-15)
    assert RooflineModel(A100).ridge_point("float32") == pytest.approx(19.5e12 / 2039e9, rel=1e-15)
    assert RooflineModel(TOY).ridge_point("float64") == pytest.approx(TOY_RIDGE / 2, rel=1e-15)


def test_far_above_the_ridge_time_is_flops_over_peak():
    model = RooflineModel(TOY)
    work = Work(flops=1e12, bytes=1e12 / (1e4 * TOY_RIDGE), kernels=1)
    assert model.bound(work) == "compute"
    assert model.time_s(work) == pytest.approx(4e-6 + 1e12 / (1e12 * 0.5), rel=1e-15)
    terms = model.terms(work)
    assert terms.memory_s == pytest.approx(terms.compute_s * 1e-4, rel=1e-12)


def test_far_below_the_ridge_time_is_bytes_over_bandwidth():
    model = RooflineModel(TOY)
    work = Work(flops=1e-4 * TOY_RIDGE * 1e10, bytes=1e10, kernels=2)
    assert model.bound(work) == "memory"
    assert model.time_s(work) == pytest.approx(2 * 4e-6 + 1e10 / (1e11 * 0.8), rel=1e-15)


def test_tiny_work_is_launch_bound():
    model = RooflineModel(TOY)
    work = Work(flops=1e3, bytes=1e3, kernels=3)
    assert model.bound(work) == "launch"
    launch = 3 * 4e-6
    assert model.time_s(work) == pytest.approx(launch + 1e3 / (1e11 * 0.8), rel=1e-15)
    assert model.time_s(work) < 1.01 * launch


def test_time_is_continuous_at_the_ridge_point():
    model = RooflineModel(TOY)
    bytes_ = 1e9
    at = model.time_s(Work(TOY_RIDGE * bytes_, bytes_))
    terms = model.terms(Work(TOY_RIDGE * bytes_, bytes_))
    assert terms.compute_s == pytest.approx(terms.memory_s, rel=1e-14)
    for eps in (1e-3, 1e-6, 1e-9):
        above = model.time_s(Work(TOY_RIDGE * (1 + eps) * bytes_, bytes_))
        below = model.time_s(Work(TOY_RIDGE * (1 - eps) * bytes_, bytes_))
        assert abs(above - at) <= 1.01 * eps * at and abs(below - at) <= 1e-12 * at
    # Below the ridge the time is flat in flops (memory-bound); above it grows with them.
    assert model.bound(Work(TOY_RIDGE * bytes_, bytes_)) == "compute"


def test_kernels_timed_separately_cost_at_least_their_sum():
    model = RooflineModel(TOY)
    compute, memory = Work(1e9, 1e3), Work(1e3, 1e9)
    assert model.total_time_s([compute, memory]) > model.time_s(compute + memory)
    assert model.total_time_s([compute, memory]) == pytest.approx(
        model.time_s(compute) + model.time_s(memory), rel=1e-15
    )


def test_unknown_precision_names_it_and_lists_the_gpus_precisions():
    with pytest.raises(SystemSpecError, match=r"'tf32'.*\['float64', 'float32', 'float16'\]"):
        RooflineModel(V100).time_s(Work(1, 1, precision="tf32"))


# --- kernel counts --------------------------------------------------------------------------
def test_gemm_counts():
    w = gemm(2, 3, 4)
    assert w.flops == 2 * 2 * 3 * 4
    assert w.bytes == (2 * 4 + 4 * 3 + 2 * 3) * 4
    assert gemm(2, 3, 4, "bfloat16").bytes == (2 * 4 + 4 * 3 + 2 * 3) * 2
    assert gemm(2, 3, 4, "tf32").bytes == w.bytes
    assert gemm(2, 3, 4, bytes_per_element=1).bytes == 2 * 4 + 4 * 3 + 2 * 3
    # Square GEMM intensity grows as n/3 * ... : 2n^3 / (3 n^2 * 4 bytes) = n / 6 FLOP/byte.
    assert gemm(600, 600, 600).arithmetic_intensity == pytest.approx(100.0)
    with pytest.raises(RooflineError, match="m must be"):
        gemm(-1, 2, 2)


def test_factorization_counts():
    d = 6
    assert cholesky(d).flops == pytest.approx(d**3 / 3)
    assert cholesky(d).bytes == 2 * d * d * 4
    inv = cholesky_inverse(d, "float64")
    assert inv.flops == pytest.approx(cholesky(d).flops + 2 * d**3 / 3)
    assert inv.bytes == 4 * d * d * 8
    assert eigh(d).flops == 9 * d**3 and eigh(d).bytes == (2 * d * d + d) * 4
    e = elementwise(10, reads=2, writes=1, precision="float16", flops_per_element=3)
    assert (e.flops, e.bytes) == (30, 10 * 3 * BYTES_PER_ELEMENT["float16"])


# --- calibration ----------------------------------------------------------------------------
def _workset():
    works = [gemm(n, n, n) for n in (128, 512, 2048)]  # intensities 21..341 >> ridge 0.625 below
    works += [elementwise(n, 2, 1) for n in (10**5, 10**6, 10**7)]  # 1/12 FLOP/byte
    works += [Work(0, 0, kernels=k, name="empty") for k in (1, 4)]
    return works


BASE = cpu_spec(1e12, 1e11, launch_overhead_s=1e-6)  # ridge 10 FLOP/byte at full efficiency


@pytest.mark.parametrize("fit_launch", [False, True])
def test_calibration_recovers_known_efficiencies_exactly(fit_launch):
    truth = BASE.replace(compute_efficiency=0.37, memory_efficiency=0.62, launch_overhead_s=7e-6)
    start = BASE if fit_launch else BASE.replace(launch_overhead_s=7e-6)
    model = RooflineModel(truth)
    measurements = [(w, model.time_s(w)) for w in _workset()]
    fitted = calibrate(start, measurements, fit_launch_overhead=fit_launch)
    assert fitted.compute_efficiency == pytest.approx(0.37, rel=1e-6)
    assert fitted.memory_efficiency == pytest.approx(0.62, rel=1e-6)
    assert fitted.launch_overhead_s == pytest.approx(7e-6, rel=1e-6)
    assert fitted.peak_flops == BASE.peak_flops and "calibrated on 8" in fitted.source


def test_calibration_with_noise_is_within_the_noise_of_the_mean():
    # No launch term and every item clearly on one side of the ridge: the log-space least squares
    # estimate of log(efficiency) is then the true one minus the mean log noise of its items,
    # whose standard deviation is sigma / sqrt(n).
    sigma = 0.05
    base = BASE.replace(launch_overhead_s=0.0)
    truth = base.replace(compute_efficiency=0.4, memory_efficiency=0.7)
    rng = np.random.default_rng(1234)
    works = [gemm(n, n, n) for n in (256, 384, 512, 768, 1024, 1536)]
    works += [elementwise(n, 2, 1) for n in (10**5, 3 * 10**5, 10**6, 3 * 10**6, 10**7)]
    model = RooflineModel(truth)
    noise = rng.normal(0.0, sigma, len(works))
    measurements = [(w, model.time_s(w) * math.exp(e)) for w, e in zip(works, noise)]
    fitted = calibrate(base, measurements)
    compute_noise, memory_noise = noise[:6], noise[6:]
    assert math.log(fitted.compute_efficiency) == pytest.approx(
        math.log(0.4) - compute_noise.mean(), abs=1e-6
    )
    assert math.log(fitted.memory_efficiency) == pytest.approx(
        math.log(0.7) - memory_noise.mean(), abs=1e-6
    )
    assert abs(math.log(fitted.compute_efficiency / 0.4)) < 4 * sigma / math.sqrt(6)
    assert abs(math.log(fitted.memory_efficiency / 0.7)) < 4 * sigma / math.sqrt(5)


def test_calibration_warns_about_an_unconstrained_efficiency():
    model = RooflineModel(BASE.replace(compute_efficiency=0.5))
    measurements = [(gemm(n, n, n), model.time_s(gemm(n, n, n))) for n in (256, 512, 1024)]
    with pytest.warns(CalibrationWarning, match="memory_efficiency"):
        fitted = calibrate(BASE, measurements)
    assert fitted.compute_efficiency == pytest.approx(0.5, rel=1e-6)


def test_calibration_rejects_bad_measurements():
    with pytest.raises(RooflineError, match="at least 3 measurements"):
        calibrate(BASE, [(gemm(8, 8, 8), 1e-3)] * 2, fit_launch_overhead=True)
    with pytest.raises(RooflineError, match="seconds must be finite > 0"):
        calibrate(BASE, [(gemm(8, 8, 8), 1e-3), (gemm(8, 8, 8), 0.0)])
    with pytest.raises(RooflineError, match="no flops, bytes or launches"):
        calibrate(BASE.replace(launch_overhead_s=0.0), [(gemm(8, 8, 8), 1e-3), (Work(0, 0), 1e-3)])
    with pytest.raises(SystemSpecError, match="'bfloat16'"):
        calibrate(BASE, [(gemm(8, 8, 8, "bfloat16"), 1e-3), (gemm(8, 8, 8), 1e-3)])


def test_measure_takes_the_median_after_warmup():
    calls = []
    work = Work(1, 1)

    def fn():
        calls.append(None)
        time.sleep(0.002)

    out_work, seconds = measure(fn, work, repeats=3, warmup=2)
    assert out_work is work and len(calls) == 5
    assert 0.002 <= seconds < 0.2
    with pytest.raises(RooflineError, match="repeats"):
        measure(fn, work, repeats=0)


def test_calibration_on_torch_matmuls_predicts_a_held_out_size():
    torch = pytest.importorskip("torch")

    def matmul(n):
        a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        return lambda: torch.matmul(a, b, out=c)

    def add(n):
        a, b, c = torch.randn(n), torch.randn(n), torch.empty(n)
        return lambda: torch.add(a, b, out=c)

    # Peaks set well above what one CPU core reaches, so the fitted efficiencies stay below 1.
    # One thread: timings of a multi-threaded BLAS swing widely when other processes share the
    # cores, one thread is steadier.
    spec = cpu_spec(1e12, 1e11)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        measurements = [measure(matmul(n), gemm(n, n, n), repeats=7) for n in (64, 128, 256, 768)]
        measurements += [
            measure(add(n), elementwise(n, 2, 1), repeats=7) for n in (2**18, 2**21, 2**23)
        ]
        work, seconds = measure(matmul(384), gemm(384, 384, 384), repeats=7)
    finally:
        torch.set_num_threads(threads)
    fitted = calibrate(spec, measurements, fit_launch_overhead=True)
    assert 0 < fitted.compute_efficiency <= 1 and 0 < fitted.memory_efficiency <= 1
    predicted = RooflineModel(fitted).time_s(work)
    assert 0.5 < predicted / seconds < 2.0


# --- measure_stable: the procedure under a fake clock (no real timing) ----------------------------
class FakeClock:
    """A clock that only moves when the timed function runs (by its scripted durations) or the
    procedure sleeps: every timing the procedure sees is known exactly."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = iter(durations)
        self.calls = 0

    def __call__(self):
        return self.now

    def fn(self):
        self.calls += 1
        self.now += next(self.durations)

    def sleep(self, seconds):
        self.now += seconds


def _stable(clock, **kwargs):
    from cosim.roofline import measure_stable

    options = dict(clock=clock, sleep=clock.sleep, load=lambda: 0.1, cores=2, warmup=1)
    return measure_stable(clock.fn, "the fake kernel", **{**options, **kwargs})


def test_stable_timings_stop_at_the_minimum_repeats_without_warning(recwarn):
    clock = FakeClock([1.0] + [1e-3] * 100)  # a slow warm-up call, then identical calls
    timing = _stable(clock, min_repeats=5, max_repeats=30)
    assert timing.repeats == 5 and clock.calls == 6  # the warm-up is not timed
    assert timing.median_s == pytest.approx(1e-3) and timing.spread == pytest.approx(0.0, abs=1e-9)
    assert timing.stable and timing.reliable and not recwarn.list


def test_noisy_timings_hit_the_cap_and_warn_with_the_figures():
    from cosim.roofline import MeasurementWarning

    # alternating 1 ms and 2 ms: p10 = 1 ms, p90 = 2 ms, median 1.5 ms -> spread 2/3, never below 10%
    clock = FakeClock([1e-3, 2e-3] * 100)
    with pytest.warns(MeasurementWarning, match=r"the fake kernel are unreliable: spread 67% .*after 12 repeats.*"
                                                r"load 0\.1 on 2 cores; rerun on an idle machine"):
        timing = _stable(clock, warmup=0, min_repeats=4, max_repeats=12)
    assert timing.repeats == 12 and not timing.stable
    assert timing.median_s == pytest.approx(1.5e-3) and timing.spread == pytest.approx(2 / 3)


def test_noise_that_settles_stops_as_soon_as_the_spread_is_small():
    from cosim.roofline import relative_spread

    durations = [5e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3] + [1e-3] * 50
    clock = FakeClock(durations)
    timing = _stable(clock, warmup=0, min_repeats=3, max_repeats=50, tolerance=0.1)
    # the one 5 ms outlier keeps p90 high until it lies in the top decile of the repeats
    assert relative_spread(durations[: timing.repeats - 1]) > 0.1 >= timing.spread
    assert 3 < timing.repeats < 50


def test_the_time_budget_stops_a_noisy_measurement():
    from cosim.roofline import MeasurementWarning

    clock = FakeClock([0.5, 1.5] * 100)  # 1 s per call on average, noisy
    with pytest.warns(MeasurementWarning):
        timing = _stable(clock, warmup=0, min_repeats=3, max_repeats=100, budget_s=5.0)
    # stops at the first call that ends past 5 s of clock: 0.5 + 1.5 + 0.5 + 1.5 + 0.5 + 1.5 = 6 s after 6 calls
    assert timing.repeats == 6


def test_pauses_count_towards_the_budget_but_not_the_timings():
    clock = FakeClock([1e-3] * 100)
    timing = _stable(clock, warmup=0, min_repeats=2, max_repeats=100, pause_s=0.25)
    assert timing.median_s == pytest.approx(1e-3) and timing.repeats == 2
    assert clock.now == pytest.approx(2 * (0.25 + 1e-3))


def test_a_busy_machine_warns_even_when_the_repeats_agree():
    from cosim.roofline import MeasurementWarning

    clock = FakeClock([1e-3] * 100)
    with pytest.warns(MeasurementWarning, match=r"spread 0% .*load 3\.1 on 2 cores"):
        timing = _stable(clock, load=lambda: 3.1)
    assert timing.stable and timing.busy and not timing.reliable
    clock = FakeClock([1e-3] * 100)
    assert not _stable(clock, load=lambda: None).busy  # no load average (Windows): not called busy


def test_warn_false_leaves_the_verdict_to_the_timing(recwarn):
    clock = FakeClock([1e-3, 2e-3] * 100)
    timing = _stable(clock, warn=False, max_repeats=8, load=lambda: 9.0)
    assert not timing.reliable and not recwarn.list
    assert "spread 67%" in timing.describe() and "8 repeats" in timing.describe()


@pytest.mark.parametrize("kwargs, name", [(dict(tolerance=0), "tolerance"), (dict(min_repeats=0), "min_repeats"),
                                          (dict(min_repeats=5, max_repeats=3), "max_repeats"),
                                          (dict(max_repeats=True), "max_repeats"), (dict(budget_s=-1), "budget_s"),
                                          (dict(warmup=-1), "warmup"), (dict(pause_s=-0.1), "pause_s")])
def test_measure_stable_refuses_bad_settings_naming_them(kwargs, name):
    with pytest.raises(RooflineError, match=name):
        _stable(FakeClock([1e-3] * 10), **kwargs)


def test_relative_spread_is_the_p10_p90_width_over_the_median():
    from cosim.roofline import relative_spread

    assert relative_spread([1.0]) == 0.0
    times = np.arange(1.0, 12.0)  # 1..11: p10 = 2, p90 = 10, median 6
    assert relative_spread(times) == pytest.approx(8 / 6)
    with pytest.raises(RooflineError, match="at least one"):
        relative_spread([])


def test_timing_of_times_taken_elsewhere_warns_like_measure_stable():
    from cosim.roofline import MeasurementWarning, timing_of

    timing = timing_of([1e-3] * 6, "an interleaved contender", load=0.2, cores=2)
    assert timing.median_s == pytest.approx(1e-3) and timing.repeats == 6 and timing.reliable
    with pytest.warns(MeasurementWarning, match="an interleaved contender are unreliable: spread 67%"):
        timing_of([1.0, 2.0, 1.0, 2.0], "an interleaved contender", load=0.2, cores=2)
