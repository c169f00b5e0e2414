"""Low-rank-plus-damping OU propagation (thermo.lowrank) against dense references.

Statistical checks are seeded; tolerances follow from the sample count: means within 5 standard
errors, covariance entries within 5 standard deviations of the Gaussian (Wishart) sampling law,
``var(S_ij) = (C_ii C_jj + C_ij^2) / K``, plus any known discretization bias.
"""

import math

import numpy as np
import pytest
import torch

from thermo.backends import NumpyBackend
from thermo.errors import (
    InputError,
    NonFiniteInputError,
    NotPositiveDefiniteError,
    NotSymmetricError,
    ShapeMismatchError,
)
from thermo.exact import EigenOU
from thermo.lowrank import (
    KrylovOU,
    LowRankCurvature,
    LowRankOU,
    euler_maruyama,
    lanczos_apply,
    readout_coefficients,
)

torch.set_num_threads(1)
F64 = torch.float64
Z = 5.0  # standard errors allowed in statistical checks


# ------------------------------------------------------------------------------------------------
# helpers
def make_u(n, r, seed, duplicate=False, scale=1.0):
    rng = np.random.default_rng(seed)
    u = scale * rng.standard_normal((n, r)) / math.sqrt(r)
    if duplicate:  # rank deficient: a repeated and a scaled column
        u = np.hstack([u, u[:, :1], 2.0 * u[:, 1:2]])
    return torch.as_tensor(u)


def dense_a(u, lam):
    u = u.numpy()
    return u @ u.T + lam * np.eye(u.shape[0])


def dense_fn(a, f):
    w, v = np.linalg.eigh(a)
    return (v * f(w)) @ v.T


def dense_mean(a, x0, g, t):
    x_star = np.linalg.solve(a, g)
    return x_star + dense_fn(a, lambda w: np.exp(-w * t)) @ (x0 - x_star)


def dense_cov(a, t, kappa):
    return dense_fn(a, lambda w: kappa * (1 - np.exp(-2 * w * t)) / w)


def vec(n, seed):
    return np.random.default_rng(seed).standard_normal(n)


def assert_mean_close(samples, mean_ref, cov_ref, extra=0.0):
    """``samples`` (K, D): the sample mean within Z standard errors (+ ``extra`` bias)."""
    k = samples.shape[0]
    se = np.sqrt(np.clip(np.diag(cov_ref), 0, None) / k)
    err = np.abs(samples.mean(0) - mean_ref)
    assert np.all(err <= Z * se + extra + 1e-12), f"max err/se {np.max(err / np.maximum(se, 1e-300)):.2f}"


def assert_cov_close(samples, cov_ref, extra=0.0):
    """Sample covariance of ``samples`` (K, D) within Z Wishart standard deviations."""
    k = samples.shape[0]
    xc = samples - samples.mean(0)
    s = xc.T @ xc / (k - 1)
    d = np.clip(np.diag(cov_ref), 0, None)
    sd = np.sqrt((np.outer(d, d) + cov_ref**2) / k)
    err = np.abs(s - cov_ref)
    assert np.all(err <= Z * sd + extra + 1e-12), f"max err/sd {np.max(err / np.maximum(sd, 1e-300)):.2f}"


def readout_law(a, x0, g, t, n, h, kappa):
    """Dense joint law of (average of x at t - (n-1-j) h, x(t)): mean (2N,), covariance (2N, 2N)."""
    times = [t - (n - 1 - j) * h for j in range(n)]
    m = a.shape[0]

    def cross(s, u):  # Cov(x(s), x(u)) = C(s) exp(-A (u - s)) for s <= u
        lo, hi = min(s, u), max(s, u)
        return dense_cov(a, lo, kappa) @ dense_fn(a, lambda w: np.exp(-w * (hi - lo)))

    mean_avg = sum(dense_mean(a, x0, g, s) for s in times) / n
    c_aa = sum(cross(s, u) for s in times for u in times) / n**2
    c_af = sum(cross(s, t) for s in times) / n
    c_ff = dense_cov(a, t, kappa)
    cov = np.zeros((2 * m, 2 * m))
    cov[:m, :m], cov[:m, m:], cov[m:, :m], cov[m:, m:] = c_aa, c_af, c_af.T, c_ff
    return np.concatenate([mean_avg, dense_mean(a, x0, g, t)]), 0.5 * (cov + cov.T)


def assert_close(p, q, atol=1e-12):
    """Entrywise ``|p - q| <= atol`` (torch.testing.assert_close costs ~1 s to import its first time)."""
    np.testing.assert_allclose(torch.as_tensor(p).numpy(), torch.as_tensor(q).numpy(), atol=atol)


def columns(x, k):
    return torch.as_tensor(x)[:, None].expand(-1, k)


# ------------------------------------------------------------------------------------------------
# 1. matrix functions
FUNCTIONS = {
    "exp": lambda w: np.exp(-0.7 * w),
    "inverse": lambda w: 1.0 / w,
    "sqrt": np.sqrt,
}


@pytest.mark.parametrize("fname", sorted(FUNCTIONS))
@pytest.mark.parametrize("n,r,lam,duplicate", [(8, 2, 0.3, False), (12, 4, 1e-3, False), (10, 3, 0.5, True)])
def test_apply_function_matches_dense(fname, n, r, lam, duplicate):
    f = FUNCTIONS[fname]
    u = make_u(n, r, seed=n + r, duplicate=duplicate)
    ou = LowRankOU(LowRankCurvature.from_matrix(u, lam), kappa=1.0)
    a = dense_a(u, lam)
    v = np.random.default_rng(1).standard_normal((n, 3))
    ref = dense_fn(a, f) @ v
    out = ou.apply_function(f, torch.as_tensor(v)).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-11 * np.abs(ref).max())
    # 1-D input keeps its shape
    assert ou.apply_function(f, torch.as_tensor(v[:, 0])).shape == (n,)
    if duplicate:
        assert ou.numerical_rank == r  # the duplicate and the scaled column add nothing
        assert u.shape[1] == r + 2


def test_eigenvalues_and_zero_u():
    u = make_u(9, 3, seed=2)
    ou = LowRankOU(LowRankCurvature.from_matrix(u, 0.2), kappa=1.0)
    w = np.linalg.eigvalsh(dense_a(u, 0.2))
    np.testing.assert_allclose(ou.eigenvalues.numpy(), w[-3:], rtol=1e-12)
    # U = 0: A = lam I, every mode dropped, no products needed
    zero = LowRankOU(LowRankCurvature.from_matrix(torch.zeros(5, 2, dtype=F64), 0.5), kappa=0.0)
    v = torch.arange(5.0, dtype=F64)
    assert zero.numerical_rank == 0
    assert_close(zero.apply_function(lambda m: 1 / m, v), v / 0.5)


def test_float32_agrees_with_float64():
    u = make_u(10, 3, seed=4)
    x0, g = torch.as_tensor(vec(10, 5)), torch.as_tensor(vec(10, 6))
    ref = LowRankOU(LowRankCurvature.from_matrix(u, 0.2), 0.0).mean(x0, g, 2.0)
    ou32 = LowRankOU(LowRankCurvature.from_matrix(u.float(), 0.2), 0.0)
    out = ou32.mean(x0, g, 2.0)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.double().numpy(), ref.numpy(), atol=1e-5 * ref.abs().max().item())


def test_matrix_free_products_match_from_matrix():
    """The products-only construction (what a GGN supplies) equals the dense one."""
    u = make_u(11, 3, seed=8)
    calls = {"u": 0, "ut": 0}

    def apply_u(c):
        calls["u"] += 1
        return u @ c

    def apply_ut(v):
        calls["ut"] += 1
        return u.T @ v

    free = LowRankOU(LowRankCurvature(apply_u, apply_ut, u.T @ u, 0.4, 11), kappa=0.5)
    dense = LowRankOU(LowRankCurvature.from_matrix(u, 0.4), kappa=0.5)
    x0, g = torch.as_tensor(vec(11, 1)), torch.as_tensor(vec(11, 2))
    assert_close(free.mean(x0, g, 0.8), dense.mean(x0, g, 0.8))
    calls.update(u=0, ut=0)
    free.readout(x0, g, 1.0, 4, 0.1, torch.Generator().manual_seed(0))
    assert calls == {"u": 1, "ut": 1}  # one pass each way for (average, final) jointly


# ------------------------------------------------------------------------------------------------
# 2. exact sample law
@pytest.mark.parametrize(
    "t,n,r,lam,duplicate",
    [
        (0.1, 8, 2, 0.5, False),
        (1.0, 10, 3, 0.1, False),
        (5.0, 8, 4, 1.0, False),
        (1.0, 6, 2, 0.05, True),
    ],
)
def test_sample_law_matches_dense(t, n, r, lam, duplicate):
    kappa, k = 0.3, 20_000
    u = make_u(n, r, seed=10 * n + r, duplicate=duplicate, scale=1.5)
    a = dense_a(u, lam)
    ou = LowRankOU(LowRankCurvature.from_matrix(u, lam), kappa)
    x0, g = vec(n, 3), vec(n, 4)
    mean_ref, cov_ref = dense_mean(a, x0, g, t), dense_cov(a, t, kappa)
    # deterministic parts exactly
    np.testing.assert_allclose(
        ou.mean(torch.as_tensor(x0), torch.as_tensor(g), t).numpy(),
        mean_ref,
        atol=1e-10,
    )
    np.testing.assert_allclose(ou.dense_covariance(t).numpy(), cov_ref, atol=1e-12)
    samples = ou.sample(columns(x0, k), torch.as_tensor(g), t, torch.Generator().manual_seed(7))
    assert samples.shape == (n, k)
    s = samples.numpy().T
    assert_mean_close(s, mean_ref, cov_ref)
    assert_cov_close(s, cov_ref)


def test_sample_reproducible_and_shapes():
    u = make_u(7, 2, seed=0)
    ou = LowRankOU(LowRankCurvature.from_matrix(u, 0.3), 1.0)
    x0, g = torch.as_tensor(vec(7, 1)), torch.as_tensor(vec(7, 2))
    a = ou.sample(x0, g, 1.0, torch.Generator().manual_seed(3))
    b = ou.sample(x0, g, 1.0, torch.Generator().manual_seed(3))
    c = ou.sample(x0, g, 1.0, torch.Generator().manual_seed(4))
    assert a.shape == (7,)
    assert_close(a, b, atol=0)
    assert not torch.allclose(a, c)


# ------------------------------------------------------------------------------------------------
# 3. exact propagation vs Euler-Maruyama
def test_exact_matches_euler_maruyama():
    n, r, lam, kappa, t, dt, paths = 6, 2, 0.5, 0.3, 1.0, 1e-3, 4000
    u = make_u(n, r, seed=21, scale=1.2)
    cur = LowRankCurvature.from_matrix(u, lam)
    a = dense_a(u, lam)
    ou = LowRankOU(cur, kappa)
    x0, g = vec(n, 5), vec(n, 6)
    steps = round(t / dt)
    # the EM law itself, for its O(dt) bias against the exact law
    m_step = np.eye(n) - dt * a
    mean_em, cov_em = x0.copy(), np.zeros((n, n))
    for _ in range(steps):
        mean_em = m_step @ mean_em + dt * g
        cov_em = m_step @ cov_em @ m_step.T + 2 * kappa * dt * np.eye(n)
    mean_ex = ou.mean(torch.as_tensor(x0), torch.as_tensor(g), t).numpy()
    cov_ex = ou.dense_covariance(t).numpy()
    x = euler_maruyama(
        cur.matvec,
        torch.as_tensor(x0),
        torch.as_tensor(g),
        t,
        dt,
        kappa,
        paths,
        torch.Generator().manual_seed(9),
    )
    s = x.numpy().T
    assert_mean_close(s, mean_ex, cov_ex, extra=np.abs(mean_em - mean_ex).max())
    assert_cov_close(s, cov_ex, extra=np.abs(cov_em - cov_ex).max())
    assert np.abs(cov_em - cov_ex).max() < 1e-3  # the bias really is O(dt)


def em_readout_law(a, x0, g, t, dt, samples, h, kappa):
    """The exact law of the Euler-Maruyama chain's (average, final): mean (2N,), covariance."""
    m = a.shape[0]
    steps, every = round(t / dt), round(h / dt)
    sample_at = {steps - j * every for j in range(samples)}
    step = np.eye(m) - dt * a
    mean, cov = np.concatenate([x0, np.zeros(m)]), np.zeros((2 * m, 2 * m))
    take = np.block([[np.eye(m), np.zeros((m, m))], [np.eye(m), np.eye(m)]])  # S += x
    if 0 in sample_at:
        mean, cov = take @ mean, take @ cov @ take.T
    move = np.block([[step, np.zeros((m, m))], [np.zeros((m, m)), np.eye(m)]])
    noise = np.zeros((2 * m, 2 * m))
    noise[:m, :m] = 2 * kappa * dt * np.eye(m)
    for k in range(1, steps + 1):
        mean = move @ mean + np.concatenate([dt * g, np.zeros(m)])
        cov = move @ cov @ move.T + noise
        if k in sample_at:
            mean, cov = take @ mean, take @ cov @ take.T
    scale = np.concatenate([np.full(m, 1.0 / samples), np.ones(m)])  # (S / n, x)
    mean, cov = (
        scale * mean[np.r_[m : 2 * m, 0:m]],
        cov[np.ix_(np.r_[m : 2 * m, 0:m], np.r_[m : 2 * m, 0:m])],
    )
    return mean, scale[:, None] * cov * scale[None, :]


def test_readout_matches_euler_maruyama():
    """EM draws of the joint (average, final) against the exact law, up to EM's own O(dt) bias
    (computed exactly from the EM chain's Gaussian law)."""
    n, r, lam, kappa, t, samples, h, dt, paths = 5, 2, 0.4, 0.5, 1.2, 5, 0.2, 2e-3, 4000
    u = make_u(n, r, seed=22)
    cur = LowRankCurvature.from_matrix(u, lam)
    a = dense_a(u, lam)
    x0, g = torch.as_tensor(vec(n, 7)), torch.as_tensor(vec(n, 8))
    mean_ref, cov_ref = readout_law(a, x0.numpy(), g.numpy(), t, samples, h, kappa)
    mean_em, cov_em = em_readout_law(a, x0.numpy(), g.numpy(), t, dt, samples, h, kappa)
    assert np.abs(mean_em - mean_ref).max() < 10 * dt and np.abs(cov_em - cov_ref).max() < 10 * dt
    # the exact sampler's law is the dense one (checked by Monte Carlo in the readout tests)
    det = LowRankOU(cur, 0.0).readout(x0, g, t, samples, h)
    np.testing.assert_allclose(torch.cat(det).numpy(), mean_ref, atol=1e-11)
    avg_em, fin_em = euler_maruyama(
        cur.matvec,
        x0,
        g,
        t,
        dt,
        kappa,
        paths,
        torch.Generator().manual_seed(1),
        n_samples=samples,
        interval=h,
    )
    em = torch.cat([avg_em, fin_em]).numpy().T
    assert_mean_close(em, mean_ref, cov_ref, extra=np.abs(mean_em - mean_ref).max())
    assert_cov_close(em, cov_ref, extra=np.abs(cov_em - cov_ref).max())


# ------------------------------------------------------------------------------------------------
# 4. limits: natural gradient, t = 0, deterministic kappa = 0
def test_large_t_gives_woodbury_natural_gradient():
    n, r, lam = 12, 4, 0.05
    u = make_u(n, r, seed=31)
    ou = LowRankOU(LowRankCurvature.from_matrix(u, lam), kappa=0.0)
    g = torch.as_tensor(vec(n, 1))
    x0 = torch.as_tensor(vec(n, 2))
    k = u.T @ u
    woodbury = (g - u @ torch.linalg.solve(lam * torch.eye(r, dtype=F64) + k, u.T @ g)) / lam
    out = ou.mean(x0, g, t=2000.0)  # exp(-lam t) = e^-100
    assert torch.linalg.vector_norm(out - woodbury) <= 1e-8 * torch.linalg.vector_norm(woodbury)
    assert_close(ou.sample(x0, g, 2000.0), out, atol=0)


def test_t_zero_returns_start_and_small_t_is_a_gradient_step():
    u = make_u(8, 3, seed=32)
    cur = LowRankCurvature.from_matrix(u, 0.3)
    ou = LowRankOU(cur, kappa=2.0)
    x0, g = torch.as_tensor(vec(8, 1)), torch.as_tensor(vec(8, 2))
    assert_close(ou.mean(x0, g, 0.0), x0, atol=1e-15)
    assert_close(ou.sample(x0, g, 0.0, torch.Generator().manual_seed(0)), x0, atol=1e-15)
    assert_close(ou.mean(g, g, 0.0), g, atol=1e-15)  # x0 = g: the SGD step
    eps = 1e-6  # to second order: x0 - eps (A x0 - g) + eps^2 / 2 A (A x0 - g)
    grad = cur.matvec(x0) - g
    step = x0 - eps * grad + 0.5 * eps**2 * cur.matvec(grad)
    assert_close(ou.mean(x0, g, eps), step, atol=1e-14)


def test_kappa_zero_is_deterministic():
    u = make_u(8, 2, seed=33)
    ou = LowRankOU(LowRankCurvature.from_matrix(u, 0.2), kappa=0.0)
    x0, g = torch.as_tensor(vec(8, 1)), torch.as_tensor(vec(8, 2))
    a = ou.sample(x0, g, 1.5, torch.Generator().manual_seed(1))
    b = ou.sample(x0, g, 1.5, torch.Generator().manual_seed(2))
    assert_close(a, b, atol=0)
    assert_close(a, ou.mean(x0, g, 1.5), atol=0)
    ra = ou.readout(x0, g, 1.5, 4, 0.3, torch.Generator().manual_seed(1))
    rb = ou.readout(x0, g, 1.5, 4, 0.3, None)
    for p, q in zip(ra, rb):
        assert_close(p, q, atol=0)
    assert torch.count_nonzero(ou.dense_covariance(3.0)) == 0


# ------------------------------------------------------------------------------------------------
# 5. readout
@pytest.mark.parametrize("mu", [1e-10, 0.03, 1.0, 40.0])
@pytest.mark.parametrize("t,n,h", [(2.0, 1, 0.0), (2.0, 7, 0.25), (1.5, 4, 0.5), (3.0, 120, 0.02)])
def test_readout_coefficients_match_direct_sums(mu, t, n, h):
    kappa = 0.7
    c = readout_coefficients(np.array([mu]), t, n, h, kappa)[0]
    times = np.array([t - (n - 1 - j) * h for j in range(n)])
    phi = lambda s: s if mu * s < 1e-12 else -np.expm1(-mu * s) / mu
    var = lambda s: kappa * 2 * (s if mu * s < 1e-12 else -np.expm1(-2 * mu * s) / (2 * mu))
    assert c[0] == pytest.approx(np.exp(-mu * t), rel=1e-12)
    assert c[1] == pytest.approx(phi(t), rel=1e-12)
    assert c[2] == pytest.approx(np.mean(np.exp(-mu * times)), rel=1e-12)
    assert c[3] == pytest.approx(np.mean([phi(s) for s in times]), rel=1e-12)
    cov = lambda s, u: var(min(s, u)) * np.exp(-mu * abs(u - s))
    s_ff = var(t)
    s_fa = np.mean([cov(s, t) for s in times])
    s_aa = np.mean([[cov(s, u) for u in times] for s in times])
    assert c[4] ** 2 == pytest.approx(s_ff, rel=1e-12)
    assert c[4] * c[5] == pytest.approx(s_fa, rel=1e-12)
    assert c[5] ** 2 + c[6] ** 2 == pytest.approx(s_aa, rel=1e-10)


@pytest.mark.parametrize("t,samples,h,lam", [(1.5, 6, 0.2, 0.3), (1.5, 4, 0.5, 0.1), (4.0, 20, 0.05, 1.0)])
def test_readout_joint_law_matches_dense(t, samples, h, lam):
    n, r, kappa, k = 6, 3, 0.4, 20_000
    u = make_u(n, r, seed=41, scale=1.3)
    a = dense_a(u, lam)
    ou = LowRankOU(LowRankCurvature.from_matrix(u, lam), kappa)
    x0, g = vec(n, 1), vec(n, 2)
    mean_ref, cov_ref = readout_law(a, x0, g, t, samples, h, kappa)
    # deterministic mean exactly (kappa = 0 draws nothing)
    det = LowRankOU(LowRankCurvature.from_matrix(u, lam), 0.0)
    avg0, fin0 = det.readout(torch.as_tensor(x0), torch.as_tensor(g), t, samples, h)
    np.testing.assert_allclose(np.concatenate([avg0.numpy(), fin0.numpy()]), mean_ref, atol=1e-11)
    avg, fin = ou.readout(
        columns(x0, k),
        torch.as_tensor(g),
        t,
        samples,
        h,
        torch.Generator().manual_seed(5),
    )
    s = torch.cat([avg, fin]).numpy().T
    assert_mean_close(s, mean_ref, cov_ref)
    assert_cov_close(s, cov_ref)


def test_readout_matches_eigenbasis_monte_carlo():
    """Against thermo.exact's dense exact integrator sampling the whole path (two-sample)."""
    n, r, lam, kappa, t, samples, h, k = 5, 2, 0.3, 0.6, 2.0, 8, 0.15, 6000
    u = make_u(n, r, seed=43)
    a = dense_a(u, lam)
    x0, g = vec(n, 3), vec(n, 4)
    be = NumpyBackend()
    eig = EigenOU(a, kappa, 0.0, be, "float64")
    mu = eig.mode_mean(g[:, None])
    state = eig.state_from_x(np.repeat(x0[:, None], k, 1), mu)
    state = eig.propagate(state, t - (samples - 1) * h, be.random(3))
    total = eig.x_from_state(state, mu)
    for path, last in eig.sample_chunks(state, h, samples - 1, be.random(4), chunk=samples):
        total = total + sum(eig.from_modes(p + mu) for p in path)
    ref = np.concatenate([total / samples, eig.x_from_state(last, mu)]).T
    ou = LowRankOU(LowRankCurvature.from_matrix(u, lam), kappa)
    avg, fin = ou.readout(
        columns(x0, k),
        torch.as_tensor(g),
        t,
        samples,
        h,
        torch.Generator().manual_seed(6),
    )
    ex = torch.cat([avg, fin]).numpy().T
    _, cov_ref = readout_law(a, x0, g, t, samples, h, kappa)
    se = np.sqrt(2 * np.diag(cov_ref) / k)
    assert np.all(np.abs(ref.mean(0) - ex.mean(0)) <= Z * se)
    d = np.diag(cov_ref)
    assert np.all(np.abs(np.cov(ref.T) - np.cov(ex.T)) <= Z * np.sqrt(2 * (np.outer(d, d) + cov_ref**2) / k))


def test_readout_single_sample_is_the_state():
    u = make_u(7, 2, seed=44)
    ou = LowRankOU(LowRankCurvature.from_matrix(u, 0.3), 0.8)
    x0, g = torch.as_tensor(vec(7, 1)), torch.as_tensor(vec(7, 2))
    avg, fin = ou.readout(x0, g, 1.0, 1, 0.0, torch.Generator().manual_seed(5))
    assert_close(avg, fin, atol=0)
    assert_close(fin, ou.sample(x0, g, 1.0, torch.Generator().manual_seed(5)), atol=0)
    # a window of the whole run starts at x0 (allowed: (n - 1) h == t)
    avg, fin = ou.readout(x0, g, 1.0, 5, 0.25, torch.Generator().manual_seed(5))
    assert avg.shape == fin.shape == (7,)


# ------------------------------------------------------------------------------------------------
# 6. Krylov path
@pytest.mark.parametrize("fname", sorted(FUNCTIONS))
def test_lanczos_matches_eigen_path_small(fname):
    n, r, lam = 10, 3, 0.2
    u = make_u(n, r, seed=51)
    cur = LowRankCurvature.from_matrix(u, lam)
    ou = LowRankOU(cur, 1.0)
    v = torch.as_tensor(np.random.default_rng(2).standard_normal((n, 2)))
    ref = ou.apply_function(FUNCTIONS[fname], v)
    out = lanczos_apply(cur.matvec, v, FUNCTIONS[fname], m=n)
    assert torch.linalg.vector_norm(out - ref) <= 1e-8 * torch.linalg.vector_norm(ref)
    out1 = lanczos_apply(cur.matvec, v[:, 0], FUNCTIONS[fname], m=n)
    assert_close(out1, out[:, 0], atol=1e-12)


def test_krylov_ou_matches_eigen_ou():
    n, r, lam, kappa = 10, 3, 0.2, 0.5
    cur = LowRankCurvature.from_matrix(make_u(n, r, seed=52), lam)
    ou, kr = LowRankOU(cur, kappa), KrylovOU.from_curvature(cur, kappa, max_steps=n)
    x0, g = torch.as_tensor(vec(n, 1)), torch.as_tensor(vec(n, 2))
    close = lambda p, q: torch.linalg.vector_norm(p - q) <= 1e-8 * torch.linalg.vector_norm(q)
    assert close(kr.mean(x0, g, 1.3), ou.mean(x0, g, 1.3))
    assert close(kr.covariance_apply(0.7, g), ou.covariance_apply(0.7, g))
    # same generator, same draws of z: the noisy results agree too
    assert close(
        kr.sample(x0, g, 0.9, torch.Generator().manual_seed(1)),
        ou.sample(x0, g, 0.9, torch.Generator().manual_seed(1)),
    )
    for p, q in zip(
        kr.readout(x0, g, 2.0, 5, 0.3, torch.Generator().manual_seed(2)),
        ou.readout(x0, g, 2.0, 5, 0.3, torch.Generator().manual_seed(2)),
    ):
        assert close(p, q)


def test_krylov_large_n():
    """N = 3000: exact (to 1e-8) once m >= r + 1 (A has r + 1 distinct eigenvalues); with
    m < r + 1 on a wider U, exp(-A t) v to 1e-6 relative with 20 steps."""
    n, lam = 3000, 0.1
    x0, g = torch.as_tensor(vec(n, 1)), torch.as_tensor(vec(n, 2))
    cur = LowRankCurvature.from_matrix(make_u(n, 6, seed=53, scale=2.0), lam)
    ou, kr = (
        LowRankOU(cur, 0.5),
        KrylovOU.from_curvature(cur, 0.5, max_steps=10, tol=None),
    )
    ref = ou.mean(x0, g, 1.5)
    assert torch.linalg.vector_norm(kr.mean(x0, g, 1.5) - ref) <= 1e-8 * torch.linalg.vector_norm(ref)
    wide = LowRankCurvature.from_matrix(make_u(n, 80, seed=54, scale=2.0), lam)
    f = FUNCTIONS["exp"]
    ref = LowRankOU(wide, 0.0).apply_function(f, x0)
    out = lanczos_apply(wide.matvec, x0, f, m=20)
    assert torch.linalg.vector_norm(out - ref) <= 1e-6 * torch.linalg.vector_norm(ref)
    # the tolerance-based stop reaches the same accuracy
    out_tol = lanczos_apply(wide.matvec, x0, f, m=60, tol=1e-10)
    assert torch.linalg.vector_norm(out_tol - ref) <= 1e-8 * torch.linalg.vector_norm(ref)


def test_lanczos_zero_vector():
    cur = LowRankCurvature.from_matrix(make_u(6, 2, seed=55), 0.3)
    v = torch.zeros(6, 2, dtype=F64)
    v[:, 1] = 1.0
    out = lanczos_apply(cur.matvec, v, np.sqrt, m=6)
    assert torch.count_nonzero(out[:, 0]) == 0
    ref = LowRankOU(cur, 1.0).apply_function(np.sqrt, v[:, 1])
    assert_close(out[:, 1], ref, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# 7. bad inputs
def test_bad_inputs_raise_naming_the_problem():
    u = make_u(6, 2, seed=61)
    cur = LowRankCurvature.from_matrix(u, 0.3)
    ou = LowRankOU(cur, 1.0)
    x0, g = torch.as_tensor(vec(6, 1)), torch.as_tensor(vec(6, 2))
    gram = u.T @ u
    with pytest.raises(InputError, match="t must be"):
        ou.mean(x0, g, -1.0)
    with pytest.raises(InputError, match="t must be"):
        ou.sample(x0, g, float("nan"))
    with pytest.raises(NotPositiveDefiniteError, match="damping"):
        LowRankCurvature.from_matrix(u, 0.0)
    with pytest.raises(NotPositiveDefiniteError, match="damping"):
        LowRankCurvature.from_matrix(u, -1.0)
    bad = gram.clone()
    bad[0, 1] += 1.0
    with pytest.raises(NotSymmetricError, match="gram"):
        LowRankCurvature(cur.apply_u, cur.apply_ut, bad, 0.3, 6)
    nan = gram.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(NonFiniteInputError, match="gram"):
        LowRankCurvature(cur.apply_u, cur.apply_ut, nan, 0.3, 6)
    with pytest.raises(ShapeMismatchError, match="gram"):
        LowRankCurvature(cur.apply_u, cur.apply_ut, torch.zeros(2, 3, dtype=F64), 0.3, 6)
    with pytest.raises(NotPositiveDefiniteError, match="Gram"):
        LowRankOU(LowRankCurvature(cur.apply_u, cur.apply_ut, -gram, 0.3, 6), 1.0)
    with pytest.raises(ShapeMismatchError, match="x0"):
        ou.mean(torch.zeros(5, dtype=F64), g, 1.0)
    with pytest.raises(ShapeMismatchError, match="g must"):
        ou.sample(x0, torch.zeros(7, dtype=F64), 1.0)
    with pytest.raises(ShapeMismatchError, match="broadcast"):
        ou.mean(torch.zeros(6, 2, dtype=F64), torch.zeros(6, 3, dtype=F64), 1.0)
    with pytest.raises(NonFiniteInputError, match="g contains"):
        ou.mean(x0, torch.full((6,), float("inf"), dtype=F64), 1.0)
    with pytest.raises(InputError, match="kappa"):
        LowRankOU(cur, -0.1)
    with pytest.raises(InputError, match="kappa"):
        KrylovOU(cur.matvec, 6, -1.0)
    with pytest.raises(InputError, match="window"):
        ou.readout(x0, g, 1.0, 5, 0.3)
    with pytest.raises(InputError, match="n_samples"):
        ou.readout(x0, g, 1.0, 0, 0.1)
    with pytest.raises(InputError, match="interval"):
        ou.readout(x0, g, 1.0, 3, 0.0)
    wrong = LowRankOU(
        LowRankCurvature(lambda c: torch.zeros(5, c.shape[1], dtype=F64), cur.apply_ut, gram, 0.3, 6),
        1.0,
    )
    with pytest.raises(ShapeMismatchError, match="apply_u returned"):
        wrong.mean(x0, g, 1.0)
    with pytest.raises(InputError, match="m \\(Lanczos"):
        lanczos_apply(cur.matvec, x0, np.sqrt, m=0)
    with pytest.raises(InputError, match="dt"):
        euler_maruyama(cur.matvec, x0, g, 1.0, 0.0, 1.0, 10)
    # all input errors are ValueErrors
    with pytest.raises(ValueError):
        ou.mean(x0, g, -1.0)


def test_a_failed_low_precision_eigh_is_retried_in_float64(monkeypatch) -> None:
    import thermo.lowrank as lowrank

    real = torch.linalg.eigh
    calls = []

    def flaky(a):
        calls.append(a.dtype)
        if a.dtype == torch.float32:
            raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")
        return real(a)

    gen = torch.Generator().manual_seed(0)
    U = torch.randn(8, 3, generator=gen)
    monkeypatch.setattr(lowrank.torch.linalg, "eigh", flaky)
    ou = lowrank.LowRankOU(lowrank.LowRankCurvature.from_matrix(U, 0.5), 0.0)
    assert calls == [torch.float32, torch.float64] and ou.eigenvalues.dtype == torch.float32
    monkeypatch.setattr(lowrank.torch.linalg, "eigh", real)
    expected = torch.linalg.eigvalsh(U.T.double() @ U.double()) + 0.5
    torch.testing.assert_close(ou.eigenvalues.double(), expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# a core: A = U S U^T + lam I (the quantized TNGD device's J_q^T H_q J_q / b + lam I)
def _core_problem(seed: int, shift: float):
    gen = torch.Generator().manual_seed(seed)
    n, r = 14, 5
    U = torch.randn(n, r, generator=gen, dtype=F64)
    B = torch.randn(r, r, generator=gen, dtype=F64)
    S = B @ B.T / r - shift * torch.eye(r, dtype=F64)  # indefinite for shift > smallest eigenvalue
    return U, S, torch.randn(n, generator=gen, dtype=F64), torch.randn(n, generator=gen, dtype=F64)


def test_a_core_is_propagated_exactly_even_when_indefinite() -> None:
    U, S, x0, g = _core_problem(0, 0.05)
    lam, t, kappa = 0.6, 0.9, 0.3
    assert float(torch.linalg.eigvalsh(S)[0]) < 0  # the core itself is indefinite, A stays definite
    curv = LowRankCurvature.from_matrix(U, lam, core=S)
    A = U @ S @ U.T + lam * torch.eye(U.shape[0], dtype=F64)
    torch.testing.assert_close(curv.dense(), A, rtol=1e-13, atol=1e-13)
    ou = LowRankOU(curv, kappa)
    E = torch.linalg.matrix_exp(-A * t)
    eye = torch.eye(A.shape[0], dtype=F64)
    mean = E @ x0 + torch.linalg.solve(A, (eye - E) @ g)
    torch.testing.assert_close(ou.mean(x0, g, t), mean, rtol=1e-11, atol=1e-12)
    cov = kappa * torch.linalg.solve(A, eye - torch.linalg.matrix_exp(-2 * A * t))
    torch.testing.assert_close(ou.dense_covariance(t), cov, rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(torch.sort(ou.eigenvalues).values[-3:], torch.linalg.eigvalsh(A)[-3:], rtol=1e-11, atol=0)
    krylov = KrylovOU.from_curvature(curv, kappa, max_steps=20)  # the matvec carries the core too
    torch.testing.assert_close(krylov.mean(x0, g, t), mean, rtol=1e-9, atol=1e-10)


def test_a_core_that_destroys_definiteness_is_refused_naming_the_fix() -> None:
    U, S, _, _ = _core_problem(1, 3.0)
    with pytest.raises(NotPositiveDefiniteError, match="lost definiteness.*bits_A.*damping"):
        LowRankOU(LowRankCurvature.from_matrix(U, 0.1, core=S), 0.0)
    with pytest.raises(NotSymmetricError, match="core"):
        LowRankCurvature.from_matrix(U, 0.1, core=S + torch.triu(torch.ones_like(S), 1))
    with pytest.raises(ShapeMismatchError, match="core"):
        LowRankCurvature.from_matrix(U, 0.1, core=S[:-1, :-1])
