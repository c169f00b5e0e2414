"""The planning laws: burn-in, windows, sample counts and error laws, against direct sums and Monte Carlo."""

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize

from thermo import cost, planning
from thermo.errors import InputError, NotPositiveDefiniteError, NotSymmetricError
from thermo.hardware import HardwareSpec
from thermo.planning import SpectrumInfo


def companion(lam, mass):
    return np.array([[0.0, 1.0], [-lam / mass, -1.0 / mass]])


def propagator(lam, t, mass):
    """``exp(F t)`` of one underdamped mode by scipy's matrix exponential (independent path)."""
    return scipy.linalg.expm(companion(lam, mass) * t)


# ------------------------------------------------------------------------------------------------
# spectrum
def test_spectrum_from_eigenvalues_bounds_and_matrix():
    spec = SpectrumInfo.from_eigenvalues([2.0, 0.5, 1.0])
    assert (spec.lambda_min, spec.lambda_max, spec.d, spec.bound) == (0.5, 2.0, 3, "exact")
    np.testing.assert_array_equal(spec.eigenvalues, [0.5, 1.0, 2.0])
    assert SpectrumInfo.from_bounds(0.5, 2.0, 3).bound == "worst-case"
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((4, 4)))
    a = q @ np.diag([1.0, 2.0, 3.0, 4.0]) @ q.T
    np.testing.assert_allclose(SpectrumInfo.from_matrix(a).eigenvalues, [1, 2, 3, 4], rtol=1e-12)
    # with hardware: scaled as the chip holds it, A_hat = A * coupling_range / max|A_ij|
    hw = HardwareSpec.ideal(coupling_range=0.5)
    scaled = SpectrumInfo.from_matrix(a, hw)
    np.testing.assert_allclose(scaled.eigenvalues, np.arange(1, 5) * 0.5 / np.abs(a).max(), rtol=1e-12)
    hash(spec)  # frozen and hashable despite the array


# ------------------------------------------------------------------------------------------------
# equilibration
@pytest.mark.parametrize("eps", [0.5, 1e-2, 1e-6])
def test_overdamped_equilibration_is_log_over_lambda_min(eps):
    spec = SpectrumInfo.from_eigenvalues([0.3, 1.0, 7.0])
    assert planning.equilibration_time_tau(spec, eps) == pytest.approx(math.log(1 / eps) / 0.3, rel=1e-14)
    assert planning.equilibration_time_tau(spec, eps, initial_error_ratio=20.0) == pytest.approx(
        math.log(20.0 / eps) / 0.3, rel=1e-14
    )
    assert planning.equilibration_time_tau(spec, eps, initial_error_ratio=eps / 2) == 0.0  # warm start
    assert planning.equilibration_time_tau(SpectrumInfo.from_bounds(0.3, 7.0, 3), eps) == pytest.approx(
        math.log(1 / eps) / 0.3, rel=1e-14
    )


@pytest.mark.parametrize("lam, mass", [(1.0, 0.01), (1.0, 0.2), (1.0, 0.25), (1.0, 0.26), (2.0, 3.0), (1e-3, 10.0)])
def test_relaxation_rate_is_the_slowest_eigenvalue_of_the_companion_matrix(lam, mass):
    roots = np.linalg.eigvals(companion(lam, mass))
    assert planning.relaxation_rate(lam, mass) == pytest.approx(-roots.real.max(), rel=1e-6)
    assert planning.relaxation_rate(lam, mass) == pytest.approx(
        (1 - math.sqrt(max(0.0, 1 - 4 * mass * lam))) / (2 * mass), rel=1e-9
    )


def test_relaxation_rate_tends_to_lambda_as_mass_vanishes():
    assert planning.relaxation_rate(0.7, 1e-12) == pytest.approx(0.7, rel=1e-10)
    assert planning.relaxation_rate(0.7, 0.0) == 0.7


def test_underdamped_equilibration_tends_to_the_overdamped_one():
    spec = SpectrumInfo.from_eigenvalues([0.3, 1.0, 7.0])
    over = planning.equilibration_time_tau(spec, 1e-3)
    for mass, tol in [(1e-3, 1e-2), (1e-5, 1e-4), (1e-8, 1e-7)]:
        assert planning.equilibration_time_tau(spec, 1e-3, mass_tau2=mass) == pytest.approx(over, rel=tol)
    assert planning.inverse_equilibration_time_tau(spec, 1e-3, mass_tau2=1e-8) == pytest.approx(
        planning.inverse_equilibration_time_tau(spec, 1e-3), rel=1e-6
    )


@pytest.mark.parametrize("mass", [0.05, 0.25 / 0.3, 1.0, 4.0])
def test_underdamped_equilibration_bounds_the_exact_response(mass):
    """After t0 every mode's response (from rest, by scipy's expm) stays below eps / r0."""
    lam = np.array([0.3, 1.0, 7.0])  # mass 1/1.2 makes the slowest mode critically damped
    eps, r0 = 1e-3, 3.0
    t0 = planning.equilibration_time_tau(lam, eps, initial_error_ratio=r0, mass_tau2=mass)
    assert t0 >= math.log(r0 / eps) / planning.relaxation_rate(0.3, mass) * (1 - 1e-12)
    dt = 2 * t0 / 300
    for l in lam:  # t0, t0 + dt, ..., 3 t0
        p, step = propagator(l, t0, mass), propagator(l, dt, mass)
        for _ in range(301):
            assert abs(p[0, 0]) <= eps / r0 * (1 + 1e-7)
            p = step @ p


def test_underdamped_equilibration_is_tight_where_the_response_is_monotone():
    eps = 1e-2
    # overdamped branch (4 m lam < 1): the envelope is the response itself
    lam, mass = 0.5, 0.3
    t0 = planning.equilibration_time_tau([lam], eps, mass_tau2=mass)
    assert propagator(lam, t0, mass)[0, 0] == pytest.approx(eps, rel=1e-8)
    # critical damping: (1 + y) e^-y = eps with y = t / (2m), about 44% longer than ln(1/eps)/rate
    mass = 0.25 / lam
    y = scipy.optimize.brentq(lambda y: (1 + y) * math.exp(-y) - eps, 1.0, 50.0)
    t0 = planning.equilibration_time_tau([lam], eps, mass_tau2=mass)
    assert t0 == pytest.approx(2 * mass * y, rel=1e-6)
    assert t0 / (math.log(1 / eps) / planning.relaxation_rate(lam, mass)) > 1.4


@pytest.mark.parametrize("mass", [0.0, 0.1, 0.25, 2.0])
def test_inverse_burn_in_bounds_the_covariance_deficit(mass):
    """From zero volts the covariance deficit of every mode is at most eps after the burn-in."""
    lam, kT, eps = np.array([0.4, 1.5, 6.0]), 0.3, 1e-3
    t0 = planning.inverse_equilibration_time_tau(lam, eps, mass_tau2=mass)
    if mass == 0:
        assert t0 == pytest.approx(math.log(1 / eps) / (2 * 0.4), rel=1e-14)
        return
    deficits = []
    for l in lam:
        phi = propagator(l, t0, mass)
        s_inf = np.diag([kT / l, kT / mass])
        cov = s_inf - phi @ s_inf @ phi.T  # Lyapunov: the covariance reached from a deterministic start
        deficits.append(1 - cov[0, 0] / s_inf[0, 0])
    assert max(deficits) == pytest.approx(eps, rel=1e-6)


# ------------------------------------------------------------------------------------------------
# solve window
def direct_variance_factor(acf, n):
    """(1/n) sum_{j,k < n} acf(|j - k|): n Var(mean) / s^2 for a stationary sequence."""
    return sum(acf[abs(j - k)] for j in range(n) for k in range(n)) / n


@pytest.mark.parametrize("mass", [0.0, 0.1, 0.7, 3.0])
@pytest.mark.parametrize("n", [1, 2, 37, 200])
def test_mean_variance_factor_equals_the_direct_sum_over_the_autocovariance(mass, n):
    lams, h = np.array([0.2, 1.0, 4.0]), 0.3
    got = planning.mean_variance_factor(lams, h, n, mass_tau2=mass)
    for lam, g in zip(lams, got):
        if mass == 0:
            acf = [math.exp(-lam * h * k) for k in range(n)]
        else:
            step = propagator(lam, h, mass)
            acf, p = [], np.eye(2)
            for _ in range(n):
                acf.append(p[0, 0])
                p = step @ p
        assert g == pytest.approx(direct_variance_factor(acf, n), rel=1e-9)


@pytest.mark.parametrize("mass", [0.0, 0.5])
def test_large_n_factor_is_the_limit_of_the_finite_one(mass):
    lams, h = np.array([0.05, 1.0, 4.0]), 0.2
    limit = planning.mean_variance_factor(lams, h, mass_tau2=mass)
    np.testing.assert_allclose(planning.mean_variance_factor(lams, h, 10**8, mass_tau2=mass), limit, rtol=1e-6)
    if mass == 0:
        rho = np.exp(-lams * h)
        np.testing.assert_allclose(limit, (1 + rho) / (1 - rho), rtol=1e-12)
    # large-n overstates the finite-n variance of a positively correlated sequence
    assert np.all(planning.mean_variance_factor(lams[:1], h, 100, mass_tau2=mass) < limit[:1])


@pytest.mark.parametrize("mass", [0.0, 0.1, 1.0, 5.0])
def test_integrated_autocorrelation_is_two_over_lambda_in_both_regimes(mass):
    """g h -> int phi dt = 2/lam as h -> 0: continuous averaging does not depend on the mass."""
    lams = np.array([0.3, 1.0, 3.0])
    for h, tol in [(1e-3, 2e-3), (1e-5, 2e-5)]:
        np.testing.assert_allclose(planning.mean_variance_factor(lams, h, mass_tau2=mass) * h, 2 / lams, rtol=tol)


def test_continuous_window_formula():
    lam = np.array([0.5, 1.0, 2.0])
    kT, eps, norm = 1e-3, 1e-2, 0.7
    expected = 2 * kT * np.sum(lam**-2.0) / (eps**2 * norm**2)
    assert planning.solve_window_tau(lam, kT, eps, norm) == pytest.approx(expected, rel=1e-12)
    # the discrete window converges to it as the sampling gets denser
    fine = planning.solve_window_tau(lam, kT, eps, norm, sample_interval_tau=1e-3)
    assert fine == pytest.approx(expected, rel=1e-3)
    assert planning.solve_relative_error(lam, kT, window=expected, solution_norm=norm) == pytest.approx(eps)


def test_solve_window_scales_as_kT_over_eps_squared():
    spec = SpectrumInfo.from_eigenvalues([0.1, 0.5, 2.0, 3.0])
    h, norm = 0.05, 1.3
    base = planning.solve_samples(spec, 1e-2, 1e-2, norm, sample_interval_tau=h)
    assert base > 10_000  # large enough that rounding up is invisible below
    assert planning.solve_samples(spec, 1e-2, 0.5e-2, norm, sample_interval_tau=h) == pytest.approx(4 * base, rel=1e-4)
    assert planning.solve_samples(spec, 3e-2, 1e-2, norm, sample_interval_tau=h) == pytest.approx(3 * base, rel=1e-4)
    assert planning.solve_window_tau(spec, 1e-2, 1e-2, norm, sample_interval_tau=h) == pytest.approx(base * h)
    # the predicted error of the planned window is at most the target (finite-N is smaller)
    err = planning.solve_relative_error(spec, 1e-2, window=base * h, solution_norm=norm, sample_interval_tau=h)
    assert 0.99e-2 < err <= 1e-2
    # noise-free: one sample
    assert planning.solve_samples(spec, 0.0, 1e-2, norm, sample_interval_tau=h) == 1


def test_solve_samples_exact_sum():
    lam, h, kT, eps, norm = np.array([0.5, 1.0, 2.0]), 0.2, 0.1, 0.05, 2.0
    g = 1 / np.tanh(lam * h / 2)
    assert planning.solve_samples(lam, kT, eps, norm, sample_interval_tau=h) == math.ceil(
        kT * np.sum(g / lam) / (eps * norm) ** 2
    )


def test_worst_case_window_from_bounds():
    lam = np.array([0.2, 0.9, 3.0, 5.0])
    bounds = SpectrumInfo.from_bounds(0.2, 5.0, 4)
    all_at_min = SpectrumInfo.from_eigenvalues([0.2] * 4)
    all_at_max = SpectrumInfo.from_eigenvalues([5.0] * 4)
    kw = dict(sample_interval_tau=0.1)
    # given |x*|: the worst spectrum has every eigenvalue at lambda_min
    worst = planning.solve_samples(bounds, 1e-2, 1e-2, 1.0, **kw)
    assert worst == planning.solve_samples(all_at_min, 1e-2, 1e-2, 1.0, **kw)
    assert planning.solve_samples(lam, 1e-2, 1e-2, 1.0, **kw) < worst
    # rms-typical |x*| from the input range: the noise-to-signal ratio is worst at lambda_max
    fallback = dict(input_range_v=0.5, **kw)
    worst_fb = planning.solve_samples(bounds, 1e-2, 1e-2, **fallback)
    assert worst_fb == planning.solve_samples(all_at_max, 1e-2, 1e-2, **fallback)
    assert planning.solve_samples(lam, 1e-2, 1e-2, **fallback) <= worst_fb
    assert planning.typical_solution_norm(lam, 0.5) == pytest.approx(0.5 * math.sqrt(np.sum(lam**-2.0)))


def test_monte_carlo_solve_error_at_the_planned_window():
    """d = 3 overdamped chip, exact AR(1) recursion per eigenmode, 400 repetitions.

    The squared error of one repetition is sum_i sigma_i^2 chi^2_1 (Gaussian, independent modes),
    so the mean over R repetitions has relative standard deviation sqrt(2 sum sigma^4 / R) /
    sum sigma^2 <= sqrt(2 / R); the rms (its square root) half that. Four standard deviations
    give the tolerance: 11% here, inside the 15% allowed.
    """
    lam, h, kT, eps, norm, reps = np.array([0.5, 1.0, 2.0]), 0.2, 0.4, 0.1, 1.0, 400
    n = planning.solve_samples(lam, kT, eps, norm, sample_interval_tau=h)
    assert 1000 < n < 5000
    rng = np.random.default_rng(12345)
    rho = np.exp(-lam * h)
    s2 = kT / lam
    sigma = np.sqrt(s2 * (1 - rho**2))
    u = rng.standard_normal((reps, 3)) * np.sqrt(s2)  # start in stationarity
    total = np.zeros((reps, 3))
    for _ in range(n):
        u = rho * u + sigma * rng.standard_normal((reps, 3))
        total += u
    rms = math.sqrt(np.mean(np.sum((total / n) ** 2, axis=1))) / norm
    predicted = planning.solve_relative_error(lam, kT, window=n * h, solution_norm=norm, sample_interval_tau=h)
    var_modes = s2 * planning.mean_variance_factor(lam, h, n) / n
    tol = 4 * 0.5 * math.sqrt(2 * np.sum(var_modes**2) / reps) / np.sum(var_modes)
    assert tol < 0.15
    assert predicted <= eps and predicted == pytest.approx(eps, rel=0.01)
    assert rms == pytest.approx(predicted, rel=tol)


def test_monte_carlo_underdamped_solve_error_with_aliased_oscillation():
    """One oscillating mode sampled every half period: consecutive samples anticorrelate and the
    error is well below the overdamped AR(1) prediction; the underdamped formula gets it right.
    Tolerance as above for one mode: 4 * sqrt(2 / R) / 2 = 14% at R = 400."""
    lam, mass, kT, norm, reps = 1.0, 2.0, 0.05, 1.0, 400
    omega = math.sqrt(lam / mass - 1 / (4 * mass**2))
    h = math.pi / omega
    n = 400
    under = planning.solve_relative_error([lam], kT, window=n * h, solution_norm=norm, sample_interval_tau=h, mass_tau2=mass)
    over = planning.solve_relative_error([lam], kT, window=n * h, solution_norm=norm, sample_interval_tau=h)
    assert under < 0.8 * over
    phi = propagator(lam, h, mass)
    s_inf = np.diag([kT / lam, kT / mass])
    chol = np.linalg.cholesky(s_inf - phi @ s_inf @ phi.T)
    rng = np.random.default_rng(7)
    z = rng.standard_normal((reps, 2)) * np.sqrt(np.diag(s_inf))
    total = np.zeros(reps)
    for _ in range(n):
        z = z @ phi.T + rng.standard_normal((reps, 2)) @ chol.T
        total += z[:, 0]
    rms = math.sqrt(np.mean((total / n) ** 2)) / norm
    assert rms == pytest.approx(under, rel=2 * math.sqrt(2 / reps))


# ------------------------------------------------------------------------------------------------
# inverse window
@pytest.mark.parametrize("mass", [0.0, 0.3, 2.0])
def test_pair_factor_equals_the_direct_sum(mass):
    h, lam_i, lam_j, terms = 0.4, 0.3, 1.7, 4000
    if mass == 0:
        acf_i = np.exp(-lam_i * h * np.arange(terms))
        acf_j = np.exp(-lam_j * h * np.arange(terms))
    else:
        acf_i, acf_j = np.empty(terms), np.empty(terms)
        pi, pj = np.eye(2), np.eye(2)
        si, sj = propagator(lam_i, h, mass), propagator(lam_j, h, mass)
        for k in range(terms):
            acf_i[k], acf_j[k] = pi[0, 0], pj[0, 0]
            pi, pj = si @ pi, sj @ pj
    acfs = [acf_i, acf_j]
    g = np.array([[2 * np.sum(x * y) - 1 for y in acfs] for x in acfs])  # two-sided sums over k in Z
    if mass == 0:
        rho = math.exp(-(lam_i + lam_j) * h)
        assert g[0, 1] == pytest.approx((1 + rho) / (1 - rho), rel=1e-12)
    # P by hand: sum_ij (1 + delta_ij) G_ij w_i w_j / sum_i w_i^2 with w = 1 / lam
    w = 1 / np.array([lam_i, lam_j])
    p = (w @ g @ w + np.sum(np.diag(g) * w**2)) / np.sum(w**2)
    got = planning.inverse_error_constant([lam_i, lam_j], sample_interval_tau=h, mass_tau2=mass)
    assert got == pytest.approx(p, rel=1e-9)


def test_inverse_constant_for_independent_samples_of_equal_modes_is_d_plus_one():
    # all eigenvalues equal and samples far apart: err^2 = (d + 1) / N, the sqrt(d / N) law
    spec = SpectrumInfo.from_eigenvalues([2.0] * 5)
    assert planning.inverse_error_constant(spec, sample_interval_tau=50.0) == pytest.approx(6.0, rel=1e-12)
    assert planning.inverse_error_constant(SpectrumInfo.from_bounds(2.0, 9.0, 5), sample_interval_tau=50.0) == pytest.approx(6.0)


def test_inverse_samples_scale_as_one_over_eps_squared_and_ignore_kT():
    spec = SpectrumInfo.from_eigenvalues(np.geomspace(0.05, 1.0, 20))
    base = planning.inverse_samples(spec, 0.1, sample_interval_tau=0.1)
    assert planning.inverse_samples(spec, 0.05, sample_interval_tau=0.1) == pytest.approx(4 * base, rel=1e-4)
    assert planning.inverse_samples(spec, 0.01, sample_interval_tau=0.1) == pytest.approx(100 * base, rel=1e-4)
    assert planning.inverse_relative_error(spec, base, sample_interval_tau=0.1) <= 0.1
    # kT cancels: the device estimate does not depend on it either
    a = cost.estimate_inverse(HardwareSpec.ideal(kT=1e-6), spec, target_rel_error=0.1)
    b = cost.estimate_inverse(HardwareSpec.ideal(kT=1.0), spec, target_rel_error=0.1)
    assert a.n_samples == b.n_samples == base


def test_inverse_worst_case_is_all_eigenvalues_at_lambda_min():
    lam = np.geomspace(0.1, 3.0, 6)
    worst = planning.inverse_error_constant(SpectrumInfo.from_bounds(0.1, 3.0, 6), sample_interval_tau=0.2)
    assert worst == pytest.approx(planning.inverse_error_constant([0.1] * 6, sample_interval_tau=0.2), rel=1e-12)
    assert planning.inverse_error_constant(lam, sample_interval_tau=0.2) < worst
    # continuous limit: P h -> P_continuous
    cont = planning.inverse_error_constant(lam, sample_interval_tau=None)
    assert planning.inverse_error_constant(lam, sample_interval_tau=1e-4) * 1e-4 == pytest.approx(cont, rel=1e-3)
    assert planning.inverse_window_tau(lam, 0.1) == pytest.approx(cont / 0.01)


@pytest.mark.parametrize("mass", [0.0, 0.4])
def test_blockwise_pair_sum_equals_the_dense_one(mass):
    lam = np.random.default_rng(3).uniform(0.01, 2.0, 301)
    dense = planning.inverse_error_constant(lam, sample_interval_tau=0.1, mass_tau2=mass, block_rows=301)
    blocked = planning.inverse_error_constant(lam, sample_interval_tau=0.1, mass_tau2=mass, block_rows=7)
    assert blocked == pytest.approx(dense, rel=1e-12)


def test_large_spectrum_is_evaluated_in_blocks():
    lam = np.geomspace(1e-3, 1.0, 2100)  # above PAIR_DENSE_MAX: blocked by default
    p = planning.inverse_error_constant(lam, sample_interval_tau=0.1)
    assert p == pytest.approx(planning.inverse_error_constant(lam, sample_interval_tau=0.1, block_rows=2100), rel=1e-12)


def test_monte_carlo_inverse_error_at_the_planned_window():
    """d = 3 overdamped, 400 repetitions of the second-moment estimator at the planned N.

    The error entries (i <= j) are nearly Gaussian and uncorrelated, so the squared Frobenius
    error is a weighted chi-square: as for the solve the rms over R repetitions has relative
    standard deviation at most sqrt(2 / R) / 2; four of them: 14%.
    """
    lam, h, eps, kT, reps = np.array([0.5, 1.0, 2.0]), 0.5, 0.1, 0.2, 400
    n = planning.inverse_samples(lam, eps, sample_interval_tau=h)
    assert 300 < n < 3000
    rng = np.random.default_rng(99)
    rho, s2 = np.exp(-lam * h), kT / lam
    sigma = np.sqrt(s2 * (1 - rho**2))
    u = rng.standard_normal((reps, 3)) * np.sqrt(s2)
    second = np.zeros((reps, 3, 3))
    for _ in range(n):
        u = rho * u + sigma * rng.standard_normal((reps, 3))
        second += u[:, :, None] * u[:, None, :]
    estimate = second / (n * kT)
    truth = np.diag(1 / lam)
    rel2 = np.sum((estimate - truth) ** 2, axis=(1, 2)) / np.sum(truth**2)
    rms = math.sqrt(rel2.mean())
    predicted = planning.inverse_relative_error(lam, n, sample_interval_tau=h)
    assert predicted <= eps and predicted == pytest.approx(eps, rel=0.01)
    assert rms == pytest.approx(predicted, rel=4 * 0.5 * math.sqrt(2 / reps))



def test_bad_spectra_are_rejected():
    with pytest.raises(NotPositiveDefiniteError, match="eigenvalues"):
        SpectrumInfo.from_eigenvalues([1.0, 0.0, 2.0])
    with pytest.raises(NotPositiveDefiniteError, match="lambda_min"):
        SpectrumInfo.from_bounds(-1.0, 2.0, 3)
    with pytest.raises(InputError, match="exceeds lambda_max"):
        SpectrumInfo.from_bounds(3.0, 2.0, 3)
    with pytest.raises(InputError, match="d must be"):
        SpectrumInfo.from_bounds(1.0, 2.0, 0)
    with pytest.raises(InputError, match="finite"):
        SpectrumInfo.from_eigenvalues([1.0, math.inf])
    with pytest.raises(InputError, match="symmetric"):
        SpectrumInfo.from_matrix(np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(InputError, match="d = 2"):
        SpectrumInfo(1.0, 2.0, 2, np.array([1.0, 1.5, 2.0]))


def test_spectrum_from_matrix_runs_the_solvers_input_checks():
    from thermo.errors import UnsupportedInputError

    with pytest.raises(UnsupportedInputError, match="complex"):
        SpectrumInfo.from_matrix(np.eye(3) * (1 + 1j))
    skew = np.eye(4)
    skew[0, 1], skew[1, 0] = 0.5, -0.5
    with pytest.raises(NotSymmetricError):
        SpectrumInfo.from_matrix(skew)
