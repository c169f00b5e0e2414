"""The block-Krylov propagator of the low-rank OU (thermo.krylov via LowRankOU(propagator=...))
against the eigh path (the reference) and the dense closed-form laws.

Means: in float64 the Krylov result is within ``1e-10`` (relative 2-norm) of the dense N x N
closed form and of the eigh path beyond that path's own error (which reaches ``2e-10`` at
``t = 1e4``, ``lam = 1e-3``: its eigenvalues carry ``eps ||K||``, amplified by ``1 / lam``); in
float32 (float64 Lanczos on the float32 Gram) within ``1e-5`` of the float64 reference and of the
float32 eigh path beyond that path's own float32 error. Laws: draws of the sample and of the readout average
(with the final state) from seeded repeats, mean within 5 standard errors and covariance entries
within 5 Wishart standard deviations of the dense closed form (the helpers of test_lowrank.py);
the draws are also checked pathwise against the eigh path's from the same seeds.
"""

import math

import numpy as np
import pytest
import torch

from thermo.errors import HardwareSpecError, InputError, NotPositiveDefiniteError
from thermo.hardware import HardwareSpec
from thermo.krylov import GramLanczos
from thermo.lowrank import (
    CHANGE_MARGIN,
    FIRST_CHECK_FRACTION,
    MIN_KRYLOV_RANK,
    PROBE_STEPS,
    LowRankCurvature,
    LowRankOU,
)
from thermo.lowrank_device import LowRankDevice, LowRankDeviceSpec

from .test_lowrank import assert_cov_close, assert_mean_close, dense_a, dense_cov, dense_mean, readout_law

torch.set_num_threads(1)
F64, F32 = torch.float64, torch.float32


def decaying_u(n: int, r: int, seed: int, duplicate: bool = False, top: float = 1.5) -> torch.Tensor:
    """``U`` ``(n, r)`` whose Gram has a GGN-like spectrum: a few large eigenvalues (up to about
    ``top^2``) and a geometric bulk near zero; ``duplicate`` appends a repeated and a scaled
    column (rank deficient)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, r)))
    w, _ = np.linalg.qr(rng.standard_normal((r, r)))
    u = q * (top * 0.8 ** np.arange(r)) @ w.T
    if duplicate:
        u = np.hstack([u, u[:, :1], 2.0 * u[:, 1:2]])
    return torch.as_tensor(u)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def pair(u: torch.Tensor, lam: float, kappa: float, **kwargs: object) -> tuple[LowRankOU, LowRankOU]:
    c = LowRankCurvature.from_matrix(u, lam)
    return LowRankOU(c, kappa, propagator="eigh"), LowRankOU(c, kappa, propagator="krylov", **kwargs)


CASES = [(r, dup) for r in (70, 130) for dup in (False, True)]


# ------------------------------------------------------------------------------------------------
# means, float64 and float32
@pytest.mark.parametrize("r,duplicate", CASES)
@pytest.mark.parametrize("lam", [1e-3, 0.1, 1.0])
@pytest.mark.parametrize("t", [0.1, 1.0, 50.0, 1e4])
def test_krylov_mean_matches_eigh_in_float64(r, duplicate, lam, t):
    u = decaying_u(240, r, seed=r + 7, duplicate=duplicate)
    rng = np.random.default_rng(3)
    x0, g = torch.as_tensor(rng.standard_normal((240, 2))), torch.as_tensor(rng.standard_normal(240))
    ref, kr = pair(u, lam, 0.0)
    m_ref, m_kr = ref.mean(x0, g, t), kr.mean(x0, g, t)
    assert kr.last_propagation.startswith("krylov") and not kr.decomposed
    truth = torch.as_tensor(np.stack([dense_mean(dense_a(u, lam), x, g.numpy(), t) for x in x0.numpy().T], axis=1))
    assert rel(m_kr, truth) <= 1e-10
    # where the eigh path itself is off (its eigenvalues carry eps ||K||, amplified by 1 / lam at large t)
    assert rel(m_kr, m_ref) <= 1e-10 + rel(m_ref, truth)
    # the state draw without noise and the readout's deterministic parts are the same functions
    avg_ref, fin_ref = ref.readout(x0, g, t, 4, t / 8)
    avg_kr, fin_kr = kr.readout(x0, g, t, 4, t / 8)
    slack = 1e-10 + 2 * rel(m_ref, truth)
    assert rel(avg_kr, avg_ref) <= slack and rel(fin_kr, fin_ref) <= slack


@pytest.mark.parametrize("r,duplicate", CASES)
@pytest.mark.parametrize("lam", [1e-3, 0.1, 1.0])
@pytest.mark.parametrize("t", [0.1, 50.0, 1e4])
def test_krylov_mean_matches_eigh_in_float32(r, duplicate, lam, t):
    u = decaying_u(240, r, seed=r + 7, duplicate=duplicate)
    rng = np.random.default_rng(4)
    x0, g = rng.standard_normal(240), rng.standard_normal(240)
    truth = pair(u, lam, 0.0)[0].mean(torch.as_tensor(x0), torch.as_tensor(g), t)
    ref, kr = pair(u.to(F32), lam, 0.0)
    x0f, gf = torch.as_tensor(x0, dtype=F32), torch.as_tensor(g, dtype=F32)
    m_ref, m_kr = ref.mean(x0f, gf, t), kr.mean(x0f, gf, t)
    assert m_kr.dtype == F32
    assert rel(m_kr, truth) <= 1e-5
    assert rel(m_kr, m_ref) <= 1e-5 + rel(m_ref, truth)


# ------------------------------------------------------------------------------------------------
# laws of the draws
@pytest.mark.parametrize("t,lam", [(0.1, 0.5), (3.0, 0.05), (1e4, 0.02)])
def test_krylov_sample_is_pathwise_the_eigh_draw_and_has_the_exact_law(t, lam):
    n, r, kappa, draws, chunk = 40, 24, 0.3, 3000, 6
    u = decaying_u(n, r, seed=11, top=2.0)
    ref, kr = pair(u, lam, kappa)
    a = dense_a(u, lam)
    rng = np.random.default_rng(5)
    x0, g = rng.standard_normal(n), rng.standard_normal(n)
    samples, worst = [], 0.0
    for i in range(draws // chunk):
        s_kr = kr.sample(torch.as_tensor(x0), torch.as_tensor(g)[:, None].expand(-1, chunk), t,
                         torch.Generator().manual_seed(i))
        if i < 5:  # the same noise through the eigh path: the same draw, to the tolerance
            s_ref = ref.sample(torch.as_tensor(x0), torch.as_tensor(g)[:, None].expand(-1, chunk), t,
                               torch.Generator().manual_seed(i))
            worst = max(worst, rel(s_kr, s_ref))
        samples.append(s_kr.numpy().T)
    assert worst <= 1e-10
    s = np.concatenate(samples)
    assert_mean_close(s, dense_mean(a, x0, g, t), dense_cov(a, t, kappa))
    assert_cov_close(s, dense_cov(a, t, kappa))


@pytest.mark.parametrize("t,samples_n,h,lam", [(1.5, 6, 0.2, 0.3), (40.0, 9, 2.0, 0.02)])
def test_krylov_readout_average_has_the_exact_joint_law(t, samples_n, h, lam):
    n, r, kappa, draws, chunk = 20, 16, 0.4, 3000, 6
    u = decaying_u(n, r, seed=13, top=1.3)
    ref, kr = pair(u, lam, kappa)
    a = dense_a(u, lam)
    rng = np.random.default_rng(6)
    x0, g = rng.standard_normal(n), rng.standard_normal(n)
    mean_ref, cov_ref = readout_law(a, x0, g, t, samples_n, h, kappa)
    rows, worst = [], 0.0
    for i in range(draws // chunk):
        cols = torch.as_tensor(x0)[:, None].expand(-1, chunk)
        avg, fin = kr.readout(cols, torch.as_tensor(g), t, samples_n, h, torch.Generator().manual_seed(i))
        if i < 5:
            avg_e, fin_e = ref.readout(cols, torch.as_tensor(g), t, samples_n, h, torch.Generator().manual_seed(i))
            worst = max(worst, rel(avg, avg_e), rel(fin, fin_e))
        rows.append(torch.cat([avg, fin]).numpy().T)
    assert worst <= 1e-10
    s = np.concatenate(rows)
    assert_mean_close(s, mean_ref, cov_ref)
    assert_cov_close(s, cov_ref)


# ------------------------------------------------------------------------------------------------
# the core, the checks, the cost rule
def test_krylov_with_a_core_matches_eigh_and_refuses_lost_definiteness():
    n, r, lam = 90, 30, 0.2
    u = decaying_u(n, r, seed=17)
    rng = np.random.default_rng(8)
    m = rng.standard_normal((r, r))
    core = torch.as_tensor(0.5 * (m + m.T) / math.sqrt(r) + np.eye(r))  # indefinite, A stays PD
    c = LowRankCurvature.from_matrix(u, lam, core=core)
    x0, g = torch.as_tensor(rng.standard_normal(n)), torch.as_tensor(rng.standard_normal(n))
    for t in (0.5, 30.0):
        ref = LowRankOU(c, 0.1, propagator="eigh").sample(x0, g, t, torch.Generator().manual_seed(2))
        kr = LowRankOU(c, 0.1, propagator="krylov").sample(x0, g, t, torch.Generator().manual_seed(2))
        assert rel(kr, ref) <= 1e-10
    bad = LowRankCurvature.from_matrix(u, 1e-3, core=-core - 2 * torch.eye(r, dtype=F64))
    with pytest.raises(NotPositiveDefiniteError, match="bits_A"):
        LowRankOU(bad, 0.1, propagator="krylov").mean(x0, g, 1.0)


def test_a_gram_with_a_negative_direction_is_refused_by_the_krylov_propagator():
    r, n = 5, 8
    gram = -torch.eye(r, dtype=F64)
    c = LowRankCurvature(lambda v: torch.zeros(n, v.shape[1], dtype=F64), lambda v: torch.ones(r, v.shape[1], dtype=F64),
                         gram, 0.1, n)
    with pytest.raises(NotPositiveDefiniteError, match="not a Gram matrix"):
        LowRankOU(c, 0.0, propagator="krylov").mean(torch.ones(n, dtype=F64), torch.ones(n, dtype=F64), 1.0)
    with pytest.raises(InputError, match="propagator"):
        LowRankOU(c, 0.0, propagator="lanczos")  # type: ignore[arg-type]


def test_the_auto_rule_takes_krylov_where_cheaper_and_eigh_elsewhere():
    x = np.random.default_rng(9)
    small = LowRankCurvature.from_matrix(decaying_u(100, MIN_KRYLOV_RANK - 1, seed=1), 0.01)
    assert LowRankOU(small, 0.0).decomposed  # below MIN_KRYLOV_RANK: eigh at construction
    c = LowRankCurvature.from_matrix(decaying_u(400, 200, seed=2), 0.01)
    x0, g = torch.as_tensor(x.standard_normal(400)), torch.as_tensor(x.standard_normal(400))
    ou = LowRankOU(c, 1e-4)
    assert not ou.decomposed and ou.krylov_budget(3, 50.0) == 200 // 6
    ou.sample(x0, g, 50.0, torch.Generator().manual_seed(0))  # stiffness 2 t L well inside the budget
    assert ou.last_propagation.startswith("krylov") and not ou.decomposed
    assert ou.krylov_budget(3, 1e5) is None  # sqrt(2 t L) beyond r / (2 k): eigh
    assert ou.krylov_budget(200, 1.0) is None  # many columns: eigh
    ref = LowRankOU(c, 1e-4, propagator="eigh").sample(x0, g, 1e5, torch.Generator().manual_seed(0))
    assert rel(ou.sample(x0, g, 1e5, torch.Generator().manual_seed(0)), ref) <= 1e-10
    assert ou.decomposed and ou.last_propagation == "eigh"  # computed once, kept for the upload
    assert ou.krylov_budget(3, 50.0) is None


def clustered_u(n: int, r: int, cluster: int, seed: int) -> torch.Tensor:
    """``U`` ``(n, r)`` whose Gram has ``cluster`` eigenvalues in ``[0.9, 1]`` (norm 1) over a
    geometric bulk below ``0.02``, in a random basis: its row sums, hence
    ``LowRankOU._gram_bound``, exceed the norm about ``0.8 sqrt(cluster)`` times."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, r)))
    w, _ = np.linalg.qr(rng.standard_normal((r, r)))
    s = np.concatenate([np.linspace(0.9, 1.0, cluster), 0.02 * 0.97 ** np.arange(r - cluster)])
    return torch.as_tensor(q * np.sqrt(s) @ w.T)


def count_block_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The block steps each GramLanczos.extend call is asked for, from now on."""
    asked: list[int] = []
    extend = GramLanczos.extend

    def spy(self: GramLanczos, steps: int = 1) -> bool:
        asked.append(steps)
        return extend(self, steps)

    monkeypatch.setattr(GramLanczos, "extend", spy)
    return asked


def test_auto_predicts_the_steps_from_the_ritz_value_not_the_gram_bound(monkeypatch: pytest.MonkeyPatch):
    c = LowRankCurvature.from_matrix(clustered_u(600, 400, 100, seed=12), 0.01)
    rng = np.random.default_rng(13)
    x0, g = torch.as_tensor(rng.standard_normal(600)), torch.as_tensor(rng.standard_normal(600))
    ou = LowRankOU(c, 1e-4)
    budget = ou.krylov_budget(3, 300.0)
    assert budget == 400 // 6
    # the O(r^2) bound (7.5 here) predicts more steps than the budget (the old rule took the
    # eigh), the norm (1) half of it
    assert ou.predicted_steps(300.0, ou._gram_bound()) > budget > ou.predicted_steps(300.0, 1.0)
    asked = count_block_steps(monkeypatch)
    out = ou.sample(x0, g, 300.0, torch.Generator().manual_seed(0))
    assert ou.last_propagation.startswith("krylov") and not ou.decomposed
    assert asked[0] == PROBE_STEPS
    # the first check goes FIRST_CHECK_FRACTION of the way to sqrt(2 t theta) + 8, theta ~ ||K|| = 1
    assert asked[1] + PROBE_STEPS == math.ceil(FIRST_CHECK_FRACTION * ou.predicted_steps(300.0, 1.0))
    ref = LowRankOU(c, 1e-4, propagator="eigh").sample(x0, g, 300.0, torch.Generator().manual_seed(0))
    assert rel(out, ref) <= 1e-10


def test_auto_takes_eigh_after_the_probe_when_the_ritz_value_predicts_beyond_the_budget(
    monkeypatch: pytest.MonkeyPatch,
):
    c = LowRankCurvature.from_matrix(clustered_u(600, 400, 100, seed=12), 0.01)
    rng = np.random.default_rng(14)
    x0, g = torch.as_tensor(rng.standard_normal(600)), torch.as_tensor(rng.standard_normal(600))
    ou = LowRankOU(c, 1e-4)
    t = 3000.0  # sqrt(2 t ||K||) + 8 = 85 > 66 steps, while the diagonal's lower bound predicts 52
    budget = ou.krylov_budget(3, t)
    assert budget == 66 and ou.predicted_steps(t, 1.0) > budget
    asked = count_block_steps(monkeypatch)
    out = ou.sample(x0, g, t, torch.Generator().manual_seed(0))
    assert asked == [PROBE_STEPS]  # the probe, then the eigh: no run to the budget
    assert ou.decomposed and ou.last_propagation == "eigh"
    ref = LowRankOU(c, 1e-4, propagator="eigh").sample(x0, g, t, torch.Generator().manual_seed(0))
    assert rel(out, ref) <= 1e-12
    forced = LowRankOU(c, 1e-4, propagator="krylov")  # no budget: the prediction does not stop it
    assert rel(forced.sample(x0, g, t, torch.Generator().manual_seed(0)), ref) <= 1e-10


def test_auto_falls_back_to_eigh_when_the_budget_runs_out():
    # an oscillating function on a spread spectrum: no polynomial of degree r / (2 k) = 48 fits it
    rng = np.random.default_rng(10)
    u = torch.as_tensor(rng.standard_normal((300, 96)) * 2.0)
    c = LowRankCurvature.from_matrix(u, 0.01)
    v = torch.as_tensor(rng.standard_normal(300))
    f = lambda mu: np.cos(40.0 * mu)  # noqa: E731
    ou = LowRankOU(c, 0.0)
    out = ou.apply_function(f, v)  # unknown horizon: tried, then the eigh
    assert ou.decomposed and ou.last_propagation == "eigh"
    ref = LowRankOU(c, 0.0, propagator="eigh").apply_function(f, v)
    assert rel(out, ref) <= 1e-12
    forced = LowRankOU(c, 0.0, propagator="krylov")  # no budget: it runs to the whole space
    assert rel(forced.apply_function(f, v), ref) <= 1e-9 and not forced.decomposed


def test_gram_lanczos_reads_a_float32_gram_as_its_exact_float64_value():
    u = decaying_u(80, 40, seed=23).numpy()
    g32 = (u.T @ u).astype(np.float32)
    start = np.random.default_rng(1).standard_normal((40, 3))
    kept, widened = GramLanczos(g32, start), GramLanczos(g32.astype(np.float64), start)
    for lan in (kept, widened):
        lan.extend(8)
    assert kept.gram.dtype == np.float32 and kept.applied == widened.applied == 24
    ritz32, ritz64 = kept.projection()[0], widened.projection()[0]
    # the same products (float32 -> float64 is exact), summed in another order at most
    np.testing.assert_allclose(ritz32, ritz64, rtol=0, atol=1e-13 * ritz64.max())


def test_gram_lanczos_basis_is_k_orthonormal_and_deflates_dependent_columns():
    u = decaying_u(60, 20, seed=21).numpy()
    gram = u.T @ u
    start = gram @ np.random.default_rng(0).standard_normal((20, 2))
    start = np.hstack([start, start[:, :1] * 3.0])  # a dependent column
    lan = GramLanczos(gram, start)
    assert lan.size == 2  # the dependent direction is deflated at the start
    while lan.extend():
        pass
    q = lan.basis_rows
    np.testing.assert_allclose(q @ gram @ q.T, np.eye(q.shape[0]), atol=1e-10)
    assert lan.invariant and lan.applied <= 20
    ritz, _, _ = lan.projection()
    np.testing.assert_allclose(np.sort(ritz)[-3:], np.linalg.eigvalsh(gram)[-3:], rtol=1e-10)



def test_gram_lanczos_accepts_a_gram_whose_spectrum_falls_to_rounding_without_a_rank_floor():
    """Eigenvalues from 9 down to 1e-25 (``0.8^r``): the rows that reach the null space have tiny
    ``|w K|``, and the rounding of their ``K``-norms is set by ``||K||`` instead (3 of these 6
    Grams were refused as "not a Gram matrix" when its scale was ``|w| |w K|``). Without a rank
    floor the basis goes on into the null space (where its ``K``-orthonormal vectors are huge
    and carry ``K``'s rounding: what ``rank_floor`` is for), but the top of the spectrum is exact."""
    for seed in range(6):
        u = decaying_u(300, 130, seed=seed, top=3.0).numpy()
        gram = u.T @ u
        lan = GramLanczos(gram, u.T @ np.random.default_rng(seed).standard_normal((300, 3)))
        lan.extend(130)
        ritz = np.sort(lan.projection()[0])[-3:]
        np.testing.assert_allclose(ritz, np.linalg.eigvalsh(gram)[-3:], rtol=1e-10)


def test_gram_lanczos_runs_many_steps_in_one_call_as_one_at_a_time_and_grows_its_buffers():
    u = decaying_u(300, 150, seed=22).numpy()
    gram = u.T @ u
    start = np.random.default_rng(1).standard_normal((150, 3))
    one, many = GramLanczos(gram, start), GramLanczos(gram, start)
    rows = many._q.shape[0]  # starts small (four blocks), grows as the basis does
    assert rows == 12 < many.capacity == 150
    for _ in range(9):
        assert one.extend()
    assert many.extend(9) and many.steps == one.steps == 9
    assert many._q.shape[0] > rows and many.size == one.size == 30
    np.testing.assert_array_equal(many.basis_rows, one.basis_rows)
    np.testing.assert_array_equal(many.projection()[0], one.projection()[0])
    q = many.basis_rows
    np.testing.assert_allclose(q @ gram @ q.T, np.eye(q.shape[0]), atol=1e-10)
    capped = GramLanczos(gram, start, capacity=10)  # the capacity cuts the fourth block to one vector
    assert capped.extend(50) and capped.size == 10 and capped.truncated and not capped.invariant
    assert capped.steps == 4 and capped.applied == 10 and not capped.extend()  # all applied: nothing left


def test_gram_lanczos_projection_after_fewer_steps_is_the_one_those_steps_had():
    u = decaying_u(200, 90, seed=23).numpy()
    gram = u.T @ u
    start = np.random.default_rng(2).standard_normal((90, 3))
    long = GramLanczos(gram, start)
    long.extend(8)
    for steps in (0, 1, 5, 8):
        short = GramLanczos(gram, start)
        if steps:
            short.extend(steps)
        assert long.applied_after(steps) == short.applied == 3 * steps
        for a, b in zip(long.projection(steps), short.projection()):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * max(1.0, float(np.abs(b).max(initial=0.0))))
    with pytest.raises(ValueError, match="steps must be in"):
        long.applied_after(9)


@pytest.mark.parametrize("spectrum", ["decaying", "clustered"])
@pytest.mark.parametrize("lam,t", [(1e-3, 50.0), (0.1, 1e3), (0.01, 5.0)])
def test_the_newest_rows_of_the_coefficients_measure_the_last_change_within_the_margin(spectrum, lam, t):
    """A check reads ``|z_s - z_(s-1)|`` as ``CHANGE_MARGIN`` times the norm of ``z_s``'s rows on
    the newest block: those rows are a lower bound (``z_(s-1)`` has none), and the change is within
    the margin of them wherever it is between rounding and 1e-3 of the result."""
    n, r = 300, 130
    u = (decaying_u(n, r, seed=24, top=3.0) if spectrum == "decaying" else clustered_u(n, r, 12, seed=24)).numpy()
    gram = u.T @ u
    lan = GramLanczos(gram, u.T @ np.random.default_rng(3).standard_normal((n, 3)),
                      rank_floor=1e-12 * float(np.trace(gram)))
    lan.extend(r // 3)

    def h(x: np.ndarray) -> np.ndarray:  # the divided difference of the mean's exp(-t A) part
        return np.expm1(-t * x) * math.exp(-t * lam) / np.where(x > 0, x, 1.0)

    def z(steps: int) -> np.ndarray:
        ritz, rot, coords = lan.projection(steps)
        return rot @ (h(ritz)[:, None] * (rot.T @ coords))

    decided = 0
    for s in range(2, lan.steps + 1):
        new, old = z(s), z(s - 1)
        size = float(np.linalg.norm(new, axis=0).max())
        change = float(np.linalg.norm(new - np.vstack([old, np.zeros((new.shape[0] - old.shape[0], 3))]), axis=0).max())
        rows = float(np.linalg.norm(new[lan.applied_after(s - 1):], axis=0).max())
        assert rows <= change * (1 + 1e-9) + 1e-15 * size
        if 1e-11 * size < change < 1e-3 * size:
            decided += 1
            assert change <= CHANGE_MARGIN * rows
    assert decided >= 3


# ------------------------------------------------------------------------------------------------
# the device setting
def test_the_device_passes_the_propagator_and_both_agree():
    u = decaying_u(150, 80, seed=23)
    c = LowRankCurvature.from_matrix(u, 0.05)
    g = torch.as_tensor(np.random.default_rng(1).standard_normal(150))
    hw = HardwareSpec.ideal(kT=1e-3)
    reads = {}
    for propagator in ("eigh", "krylov", "auto"):
        dev = LowRankDevice(LowRankDeviceSpec(hw, n_readout=3, propagator=propagator),
                            torch.Generator().manual_seed(4))
        dev.upload(c, g)
        dev.reset(g.clone())
        reads[propagator] = dev.run(10 * hw.sample_interval_tau)
        assert dev.process.propagator == propagator
    assert rel(reads["krylov"], reads["eigh"]) <= 1e-10 and rel(reads["auto"], reads["eigh"]) <= 1e-10
    with pytest.raises(HardwareSpecError, match="propagator"):
        LowRankDeviceSpec(hw, propagator="chebyshev")  # type: ignore[arg-type]
