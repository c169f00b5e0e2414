"""The covariance readout's law (thermo.covariance_law) and quantized readouts in the laws
(thermo.readout) against the exact path sampler, and the solver's routing between them."""

import math
import warnings

import numpy as np
import pytest
from scipy.stats import ks_2samp, norm

from thermo import HardwareSpec, SolverConfig, ThermodynamicSolver, ThermoWarning
from thermo import covariance_law as cl
from thermo.backends import NumpyBackend
from thermo.errors import InputError
from thermo.exact import EigenOU, ModeState
from thermo.matrices import random_spd
from thermo.quantize import Quantizer
from thermo.readout import DITHER_STEP_FRACTION, QuantizationNoise, min_innovation_variance

ALPHA = 1e-3  # family-wise false-alarm rate of each moment test (seeded: the draws are fixed)


# ------------------------------------------------------------------------------------------------
# helpers
def _brute_moments(lam, kT, h, n_burn, n):
    """E S'_jj and Var S'_jk by the O(N^2) double sums over the AR(1) covariances."""
    s, rho = kT / lam, np.exp(-lam * h)
    t = np.arange(n_burn + 1, n_burn + n + 1)
    lag, first = np.abs(t[:, None] - t[None, :]), np.minimum(t[:, None], t[None, :])
    cov = [s[j] * rho[j] ** lag * (1 - rho[j] ** (2 * first)) for j in range(lam.size)]
    pair = np.array([[np.sum(cj * ck) for ck in cov] for cj in cov]) / n**2
    np.fill_diagonal(pair, 2 * np.diagonal(pair))
    return np.array([np.trace(c) for c in cov]) / n, pair


def _path_estimators(a, kT, h, n_burn, n, repeats, seed, adc=None, unquantized=False):
    """``repeats`` independent device estimators ``S = (1/N) sum x x^T`` (units' basis,
    ``(repeats, d, d)``) from the exact path sampler: zero volts, burn-in, readings through ``adc``.
    With ``unquantized`` also the same paths' estimators without the ADC."""
    be = NumpyBackend()
    ou = EigenOU(a, kT, 0.0, be, "float64")
    rng = be.random(seed)
    d = a.shape[0]
    state = ou.propagate(ModeState(np.zeros((d, repeats)), None), n_burn * h, rng)
    acc = np.zeros((repeats, d, d))
    raw = np.zeros((repeats, d, d))
    for chunk, state in ou.sample_chunks(state, h, n, rng, 256):
        x = ou.from_modes(chunk)  # (m, d, repeats)
        if unquantized:
            raw += np.einsum("mir,mjr->rij", x, x)
        if adc is not None:
            x, _ = adc.apply(x, be, rng)
        acc += np.einsum("mir,mjr->rij", x, x)
    return (acc / n, raw / n) if unquantized else acc / n


def _law_draws(law, v, repeats, seed):
    be = NumpyBackend()
    rng = be.random(seed)
    return np.stack([cl.draw_second_moment(law, v, be, rng, "float64") for _ in range(repeats)])


def _unit_moments(law, v):
    """Mean and variance of every entry of ``S = V S' V^T (+ E_q)`` in the units' basis: with
    uncorrelated ``S'`` entries, ``Var S_il = sum_jk (V_ij V_lk + V_ik V_lj)^2 w_jk`` with
    ``w = Var S' / 2`` off the diagonal and ``Var S'_jj / 4`` on it."""
    d = v.shape[0]
    mean = (v * law.mean) @ v.T
    t = np.einsum("ij,lk->iljk", v, v) + np.einsum("ik,lj->iljk", v, v)
    w = law.variance / 2
    w[np.diag_indices(d)] /= 2
    var = np.einsum("iljk,jk->il", t * t, w)
    q = law.quantization
    if q is not None:
        mean = mean + q.variance * np.eye(d)
        var = var + q.variance**2 / law.n_samples * (1 - np.eye(d)) + q.square_variance / law.n_samples * np.eye(d)
    return mean, var


def _check_moments(samples, mean, var, nu_min, label):
    """Every entry's sample mean and variance against ``mean``/``var``, at a tolerance from the
    repeat count: Bonferroni over the ``d (d + 1) / 2`` entries at ``ALPHA``; a sample variance has
    relative standard error ``sqrt((2 + kurt) / (R - 1))``, kurtosis ``<= 12 / nu_min`` here."""
    r, d, _ = samples.shape
    iu = np.triu_indices(d)
    z_crit = norm.isf(ALPHA / (2 * iu[0].size))
    z_mean = (samples.mean(0) - mean)[iu] / np.sqrt(var[iu] / r)
    z_var = (samples.var(0, ddof=1) / var - 1)[iu] / math.sqrt((2 + 12 / nu_min) / (r - 1))
    assert np.abs(z_mean).max() < z_crit, f"{label}: mean off by {np.abs(z_mean).max():.2f} sigma (limit {z_crit:.2f})"
    assert np.abs(z_var).max() < z_crit, f"{label}: variance off by {np.abs(z_var).max():.2f} sigma (limit {z_crit:.2f})"


def _rel_frobenius(samples, inv, kT):
    return np.linalg.norm(samples / kT - inv, axis=(1, 2)) / np.linalg.norm(inv)


def _eig(a):
    lam, v = np.linalg.eigh(a)
    return lam, v


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam, h, n_burn, n", [
    (np.array([0.01, 0.3, 1.0, 5.0]), 0.1, 0, 50),
    (np.array([0.05, 0.2, 2.0]), 0.5, 7, 200),
    (np.array([1e-3, 1.0]), 0.1, 3, 400),
    (np.array([0.5]), 1.0, 0, 1),
    (np.array([0.2, 0.21]), 0.05, 2000, 300),
])
def test_closed_forms_equal_the_double_sums(lam, h, n_burn, n):
    mean, pair = _brute_moments(lam, 1.3, h, n_burn, n)
    law = cl.covariance_law(lam, 1.3, h, n_burn, n)
    assert np.allclose(law.mean, mean, rtol=1e-11, atol=0)
    assert np.allclose(law.variance, pair, rtol=1e-10, atol=0)
    nu = cl.effective_samples(lam, 1.3, h, n_burn, n)
    assert np.allclose(nu, 2 * mean**2 / np.diagonal(pair), rtol=1e-10)


def test_effective_samples_tend_to_n_over_coth_in_stationarity():
    lam, h, n = np.array([0.05, 0.5, 3.0]), 0.2, 200_000
    nu = cl.effective_samples(lam, 2.0, h, 10**6, n)
    assert np.allclose(nu, n / (1 / np.tanh(lam * h)), rtol=1e-3)


# (d, condition number, h, burn-in, N, repeats): a visible start at zero volts, strongly
# correlated slow modes, nearly independent readings in a larger d
MOMENT_CASES = [(4, 10.0, 0.5, 0, 150, 2000), (10, 30.0, 0.2, 40, 3000, 500), (20, 5.0, 1.0, 5, 500, 400)]


@pytest.mark.parametrize("d, kappa, h, n_burn, n, repeats", MOMENT_CASES)
def test_every_entry_matches_the_path_sampler_in_mean_and_variance(d, kappa, h, n_burn, n, repeats):
    kT = 0.7
    a = random_spd(d, kappa, seed=d)
    lam, v = _eig(a)
    law = cl.covariance_law(lam, kT, h, n_burn, n)
    nu_min = float(cl.effective_samples(lam, kT, h, n_burn, n).min())
    mean, var = _unit_moments(law, v)
    path = _path_estimators(a, kT, h, n_burn, n, repeats, seed=d)
    _check_moments(path, mean, var, nu_min, "path vs closed form")
    _check_moments(_law_draws(law, v, repeats, seed=100 + d), mean, var, nu_min, "law draws vs closed form")
    if n_burn == 0:  # the test sees the start at zero volts: the stationary law is rejected
        stationary = cl.covariance_law(lam, kT, h, 10**6, n)
        with pytest.raises(AssertionError, match="mean off"):
            _check_moments(path, *_unit_moments(stationary, v), nu_min, "path vs stationary law")


@pytest.mark.parametrize("d, kappa, h, n", [(8, 10.0, 0.5, 4000), (24, 4.0, 2.0, 1500)])
def test_the_inverse_error_distribution_matches_where_the_law_is_declared_accurate(d, kappa, h, n):
    kT, repeats = 0.5, 300
    a = random_spd(d, kappa, seed=3 * d)
    lam, v = _eig(a)
    assert cl.accuracy_refusal(lam, kT, h, 20, n) is None
    law = cl.covariance_law(lam, kT, h, 20, n)
    inv = np.linalg.inv(a)
    path = _rel_frobenius(_path_estimators(a, kT, h, 20, n, repeats, seed=d), inv, kT)
    drawn = _rel_frobenius(_law_draws(law, v, repeats, seed=d + 1), inv, kT)
    assert ks_2samp(path, drawn).pvalue > ALPHA


def test_below_the_threshold_the_law_misses_the_error_distribution():
    """N = d nearly independent readings: the entries' dependence (2 d / nu) triples the
    variance of the squared error; the KS test, with the repeats above, sees it."""
    d, kT, h, n, repeats = 16, 0.5, 4.0, 16, 300
    a = random_spd(d, 3.0, seed=5)
    lam, v = _eig(a)
    assert cl.accuracy_refusal(lam, kT, h, 20, n) is not None
    inv = np.linalg.inv(a)
    path = _rel_frobenius(_path_estimators(a, kT, h, 20, n, repeats, seed=1), inv, kT)
    drawn = _rel_frobenius(_law_draws(cl.covariance_law(lam, kT, h, 20, n), v, repeats, seed=2), inv, kT)
    assert ks_2samp(path, drawn).pvalue < ALPHA


def test_the_dependence_the_law_leaves_out_widens_the_squared_error_by_2d_over_nu():
    """Nearly independent readings (nu ~ N): the path's squared Frobenius error varies
    ``1 + 2 d / nu`` times as much as the law's, while their means agree (the threshold's basis)."""
    d, kT, h, n, repeats = 16, 1.0, 5.0, 80, 4000
    a = random_spd(d, 2.0, seed=6)
    lam, v = _eig(a)
    law = cl.covariance_law(lam, kT, h, 50, n)
    inv = np.linalg.inv(a)
    path = _rel_frobenius(_path_estimators(a, kT, h, 50, n, repeats, seed=4), inv, kT) ** 2
    drawn = _rel_frobenius(_law_draws(law, v, repeats, seed=5), inv, kT) ** 2
    predicted = 1 + 2 * d / float(cl.effective_samples(lam, kT, h, 50, n).min())
    assert abs(path.mean() / drawn.mean() - 1) < 0.03
    assert abs(path.var() / drawn.var() - predicted) < 0.1 * predicted  # the law alone would give 1


# ------------------------------------------------------------------------------------------------
# quantized readouts
def _dithered_adc(lam, kT, h, rounding, fraction=0.9 * DITHER_STEP_FRACTION, bits=14):
    """An ADC whose step is ``fraction sqrt(q_min)``, rails far (``2^(bits-1) - 1`` steps)."""
    step = fraction * math.sqrt(min_innovation_variance(lam, kT, h))
    return Quantizer(bits, step * (2 ** (bits - 1) - 1), rounding)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_quantized_readouts_bias_and_variance_match_the_quantizing_path(rounding):
    d, kT, h, n_burn, n, repeats = 5, 1.0, 1.0, 10, 2000, 1500
    a = random_spd(d, 4.0, seed=11)
    lam, v = _eig(a)
    adc = _dithered_adc(lam, kT, h, rounding)
    noise = QuantizationNoise.of(adc)
    law = cl.covariance_law(lam, kT, h, n_burn, n, noise)
    nu_min = float(cl.effective_samples(lam, kT, h, n_burn, n).min())
    quantized, raw = _path_estimators(a, kT, h, n_burn, n, repeats, seed=7, adc=adc, unquantized=True)
    _check_moments(quantized, *_unit_moments(law, v), nu_min, "quantizing path vs law")
    _check_moments(_law_draws(law, v, repeats, seed=8), *_unit_moments(law, v), nu_min, "law draws vs closed form")
    # the bias (delta^2 on the diagonal) is seen: the unquantized law is rejected
    with pytest.raises(AssertionError, match="mean off"):
        _check_moments(quantized, *_unit_moments(cl.covariance_law(lam, kT, h, n_burn, n), v), nu_min, "no bias")
    # the same paths with and without the ADC isolate the quantization terms X + E_q: mean
    # delta^2 I, variance delta^2 (M_ii + M_ll) / N (+ delta^4 / N), 4 delta^2 M_ii / N + Var(e^2) / N on the diagonal
    diff = quantized - raw
    m = (v * law.mean) @ v.T
    dm = np.diagonal(m)
    var = noise.variance * (dm[:, None] + dm[None, :]) / n + noise.variance**2 / n
    var[np.diag_indices(d)] = 4 * noise.variance * dm / n + noise.square_variance / n
    _check_moments(diff, noise.variance * np.eye(d), var, 1e9, "paired quantization error")
    # and the law carries exactly these terms on top of the thermal ones
    assert np.allclose(_unit_moments(law, v)[1] - _unit_moments(cl.covariance_law(lam, kT, h, n_burn, n), v)[1], var, rtol=1e-9)


def test_outside_the_dither_condition_the_errors_do_not_average_out():
    """A step 4x the fresh noise per reading, yet 8x below every unit's spread: consecutive
    readings round alike, so the paired quantization error varies far more than the
    independent model says (why the condition is on the innovation, not the spread)."""
    d, kT, h, n, repeats = 3, 1.0, 1e-4, 2000, 300
    a = random_spd(d, 2.0, seed=2)
    lam, v = _eig(a)
    q_min = min_innovation_variance(lam, kT, h)
    adc = _dithered_adc(lam, kT, h, "nearest", fraction=4.0)
    assert adc.step < math.sqrt(kT / lam.max()) / 8
    noise = QuantizationNoise.of(adc)
    law = cl.covariance_law(lam, kT, h, 0, n, noise)
    quantized, raw = _path_estimators(a, kT, h, 10**4, n, repeats, seed=3, adc=adc, unquantized=True)
    dm = np.diagonal((v * law.mean) @ v.T)
    model = 4 * noise.variance * dm / n + noise.square_variance / n
    ratio = np.diagonal((quantized - raw).var(0)) / model
    assert adc.step > DITHER_STEP_FRACTION * math.sqrt(q_min)
    assert ratio.min() > 1.5, ratio


# ------------------------------------------------------------------------------------------------
# the solver's routing
def _window_at(nu_target, lam, kT, h, n_burn):
    """Fewest samples whose slowest mode has at least ``nu_target`` effective samples."""
    lo, hi = 1, 1
    while cl.effective_samples(lam, kT, h, n_burn, hi).min() < nu_target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cl.effective_samples(lam, kT, h, n_burn, mid).min() < nu_target else (lo, mid)
    return hi


def test_the_solver_takes_the_law_above_the_threshold_and_the_path_below():
    d, kT = 12, 0.05
    a = random_spd(d, 5.0, seed=4)
    hw = HardwareSpec.ideal(kT=kT)
    alpha = np.abs(a).max()
    lam = np.linalg.eigvalsh(a / alpha)
    h, burn = hw.sample_interval_tau, 5.0
    n_burn = math.ceil(burn / h - 1e-9)
    n_cross = _window_at(cl.accuracy_threshold(d), lam, kT, h, n_burn)
    above = SolverConfig(burn_in_tau=burn, window_tau=(n_cross + 1) * h)
    below = SolverConfig(burn_in_tau=burn, window_tau=(n_cross - 2) * h)
    law_run = ThermodynamicSolver(hw, above, seed=0).inverse(a).diagnostics
    path_run = ThermodynamicSolver(hw, below, seed=0).inverse(a).diagnostics
    assert law_run.readout_law and law_run.method == "exact" and law_run.n_samples == n_cross + 1
    assert not path_run.readout_law and path_run.n_samples == n_cross - 2
    assert any("effective samples" in note for note in path_run.notes)
    off = ThermodynamicSolver(hw, SolverConfig(burn_in_tau=burn, window_tau=(n_cross + 1) * h, closed_form=False), seed=0)
    assert not off.inverse(a).diagnostics.readout_law


def test_the_law_draws_the_planned_samples_past_the_cap_and_the_path_warns():
    a = random_spd(6, 5.0, seed=7)
    hw = HardwareSpec.ideal(kT=0.05)
    cfg = SolverConfig(target_rel_error=0.01, max_samples=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThermoWarning)
        res = ThermodynamicSolver(hw, cfg, seed=0).inverse(a)
    diag = res.diagnostics
    assert diag.readout_law and diag.n_samples > 1000
    assert diag.predicted_rel_error <= 0.0101
    inv = np.linalg.inv(a)
    assert np.linalg.norm(res.inverse - inv) / np.linalg.norm(inv) < 3 * diag.predicted_rel_error
    with pytest.warns(ThermoWarning, match="capped at max_samples=1000"):
        path = ThermodynamicSolver(hw, SolverConfig(target_rel_error=0.01, max_samples=1000, closed_form=False), seed=0).inverse(a)
    assert path.diagnostics.n_samples == 1000 and not path.diagnostics.readout_law


def test_a_plan_above_the_analog_time_limit_is_an_error_naming_the_fix():
    a = random_spd(6, 5.0, seed=7)
    solver = ThermodynamicSolver(HardwareSpec.ideal(kT=0.05), SolverConfig(target_rel_error=0.01, max_analog_time_tau=100.0))
    with pytest.raises(InputError, match=r"above SolverConfig.max_analog_time_tau=100: raise max_analog_time_tau"):
        solver.inverse(a)
    with pytest.raises(InputError, match="max_analog_time_tau"):
        SolverConfig(max_analog_time_tau=0.0)


def test_the_law_is_seeded():
    a = random_spd(10, 20.0, seed=1)
    hw = HardwareSpec.published()
    first = ThermodynamicSolver(hw, SolverConfig(target_rel_error=0.05), seed=3).inverse(a)
    again = ThermodynamicSolver(hw, SolverConfig(target_rel_error=0.05), seed=3).inverse(a)
    other = ThermodynamicSolver(hw, SolverConfig(target_rel_error=0.05), seed=4).inverse(a)
    assert first.diagnostics.readout_law
    assert np.array_equal(first.inverse, again.inverse) and not np.array_equal(first.inverse, other.inverse)


def test_published_hardware_is_inside_the_dither_condition_coarse_adcs_close_rails_and_inertia_are_not():
    a = random_spd(8, 20.0, seed=2)
    cfg = SolverConfig(target_rel_error=0.05)
    published = ThermodynamicSolver(HardwareSpec.published(), cfg, seed=0).inverse(a).diagnostics
    assert published.readout_law and published.adc_clip_fraction == 0.0
    coarse = ThermodynamicSolver(HardwareSpec.published(bits_adc=6), cfg, seed=0).inverse(a).diagnostics
    assert not coarse.readout_law and any("dither condition" in note for note in coarse.notes)
    close = ThermodynamicSolver(HardwareSpec.published(v_range_v=0.01, bits_adc=None), cfg, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThermoWarning)
        close_diag = close.inverse(a).diagnostics
    assert not close_diag.readout_law and any("rails" in note for note in close_diag.notes)
    heavy = ThermodynamicSolver(HardwareSpec.ideal(kT=0.05, regime="underdamped", mass_s2=0.5e-12), SolverConfig(window_tau=20.0), seed=0)
    heavy_diag = heavy.inverse(a).diagnostics
    assert not heavy_diag.readout_law and any("overdamped" in note for note in heavy_diag.notes)


def test_a_quantized_solve_draws_its_window_average_inside_the_dither_condition():
    """Repeated right-hand sides are independent chains: the law's mean and spread of each
    unit's average agree with the quantizing path's; a coarse ADC is sampled along its path."""
    d, chains = 6, 400
    a = random_spd(d, 5.0, seed=3)
    b = np.repeat(np.random.default_rng(0).standard_normal(d)[:, None], chains, 1)
    hw = HardwareSpec.published(kT=1e-4)
    cfg = SolverConfig(target_rel_error=0.02)
    law = ThermodynamicSolver(hw, cfg, seed=1).solve(a, b)
    path = ThermodynamicSolver(hw, SolverConfig(target_rel_error=0.02, closed_form=False), seed=2).solve(a, b)
    assert law.diagnostics.readout_law and not path.diagnostics.readout_law
    assert law.diagnostics.n_samples == path.diagnostics.n_samples
    xl, xp = np.asarray(law.x), np.asarray(path.x)
    spread = np.sqrt((xl.var(1) + xp.var(1)) / chains)
    z_crit = norm.isf(ALPHA / (2 * d))
    assert np.abs(xl.mean(1) - xp.mean(1)).max() < z_crit * spread.max()
    assert np.abs(xl.var(1, ddof=1) / xp.var(1, ddof=1) - 1).max() < z_crit * math.sqrt(4 / (chains - 1))
    # the law's standard error includes the readings' rounding
    assert law.stderr is not None and np.all(law.stderr > 0)
    coarse = ThermodynamicSolver(HardwareSpec.published(kT=1e-4, bits_adc=5), cfg, seed=1).solve(a, b[:, :2])
    assert not coarse.diagnostics.readout_law and any("dither" in note for note in coarse.diagnostics.notes)


@pytest.mark.slow
def test_published_device_inverse_error_distribution_law_against_path():
    """End to end on the published device (16-bit converters, rails): 200 inversions drawn from
    the law and 200 sampled reading by reading; their relative errors agree in distribution."""
    d, runs = 16, 200
    a = random_spd(d, 30.0, seed=9)
    inv = np.linalg.inv(a)
    hw = HardwareSpec.published()
    errors = {}
    for closed_form in (True, False):
        solver = ThermodynamicSolver(hw, SolverConfig(target_rel_error=0.1, closed_form=closed_form), seed=int(closed_form))
        results = [solver.inverse(a) for _ in range(runs)]
        assert all(r.diagnostics.readout_law == closed_form for r in results)
        errors[closed_form] = [np.linalg.norm(r.inverse - inv) / np.linalg.norm(inv) for r in results]
    assert ks_2samp(errors[True], errors[False]).pvalue > ALPHA
