"""Block Lanczos on a small dense Gram matrix, in the Gram's own inner product.

The exact low-rank OU transition (:mod:`thermo.lowrank`) needs matrix functions of
``A = U S U^T + lam I`` (``U`` ``(N, r)``, ``S`` an optional symmetric core, ``S = I`` without
one) applied to a few vectors. With ``K = U^T U`` (``r x r``) and ``M = U S U^T``,
``M^n = U (S K)^(n-1) S U^T`` for ``n >= 1``, so for every function ``f`` analytic on the spectrum::

    f(A) v = f(lam) v + U h(B) W0,    B = S K,   W0 = S U^T v,   h(x) = (f(lam + x) - f(lam)) / x,

a function of the small ``r x r`` operator ``B`` applied to the ``r``-vector ``W0``. ``B`` is
self-adjoint in the (semi-)inner product ``<x, y>_K = x^T K y`` and ``<x, x>_K = |U x|^2``: the
``K``-norm of an ``r``-space vector is the 2-norm of its image in parameter space, where the
result lives. :class:`GramLanczos` builds a ``K``-orthonormal basis ``Q`` (``Q^T K Q = I``) of the
block Krylov space ``span{W0, B W0, B^2 W0, ...}`` (all the columns of ``W0`` in one block, one
``K`` product per step whatever their number) and the projection ``T = Q^T K B Q``; then
``h(B) W0 ~= Q h(T) Q^T K W0`` (:meth:`GramLanczos.projection`), a Galerkin approximation whose
error is measured in the parameter-space norm. ``U Q`` has orthonormal columns, so ``T``'s
eigenvalues (Ritz values) are eigenvalues of ``U S U^T`` restricted to a subspace: they lie in its
spectrum (a negative one proves that ``K`` or ``lam I + M`` is not what it should be).

Why block Lanczos and not Chebyshev: a Chebyshev expansion needs a degree set by the whole
spectral interval (for ``exp(-t x)`` on ``[0, L]`` about ``sqrt(2 t L ln(1/eps))``, 75 at the
digits CNN's ``t L = 100`` for ``1e-12``), while Lanczos adapts to the spectrum: GGN Grams have a
few large eigenvalues and a bulk near zero, where the functions are nearly polynomial, and the
digits CNN's transition converges to ``1e-12`` in 20 block steps. Lanczos's price is the
reorthogonalization, ``O(r m^2 k^2)`` for ``m`` steps of ``k`` columns, small against the ``K``
products while ``m k << r``, and the dense ``T`` eigendecomposition, ``O((m k)^3)``.

Numerics: everything runs on the host in float64 (numpy: on these small matrices its per-call
overhead is a fraction of torch's, and float64 keeps the reorthogonalization and the stopping
rule far below float32 rounding), whatever the dtype and device of the caller's tensors. A
float32 Gram is kept as float32 (its conversion to float64 is exact, so the products are the
same, accumulated in float64, from half the bytes, and no float64 copy is made); accumulating
the ``K`` products in float32 instead would cost a digit: ``1e-5`` instead of ``8e-7`` from the
float64 truth at ``t = 1e4``, ``lam = 1e-3`` in the float32 tests. Full
reorthogonalization (classical Gram-Schmidt twice, in the ``K`` inner product through the stored
products ``P = K Q``: first against the last two blocks, where ``B q`` has its components in exact
arithmetic, then against the whole basis, which removes what rounding and deflation left; the
basis stays as orthonormal as with two full passes, and a step costs 10% less); a new direction
whose ``K``-norm after it is below ``100 eps`` of the block's ``K``-norm before it is deflated
(the space is then invariant in that direction, up to rounding), so the block can shrink and the
basis never exceeds the numerical rank of ``K``. Blocks are stored as rows (``(k, r)``), so every product is a row-major GEMM.

Speed: a block step is a few dozen operations on ``k x r`` and ``k x k`` arrays, microseconds of
arithmetic each, so the step runs in one compiled kernel (numba, :func:`_run_steps`) that takes
as many steps as the caller asks for between its convergence checks: the per-operation overhead
of the interpreter (about two thirds of a step's time on the digits CNN's ``r = 576``) is paid
once per check instead of some forty times per step. The buffers grow geometrically up to the
capacity, so a short run does not allocate (or zero) a basis of the whole space.
"""

from __future__ import annotations

import numba
import numpy as np

from .errors import NotPositiveDefiniteError

__all__ = ["GramLanczos"]

# bits of the kernels' status word
_FOUND, _TRUNCATED, _INVARIANT, _NEGATIVE = 1, 2, 4, 8
# slots of the kernels' integer state: basis size, vectors B was applied to, the newest block's
# rows [lo, hi), block steps taken, and the status word
_SIZE, _APPLIED, _LO, _HI, _STEPS, _STATUS = range(6)


# reassociation (vectorized reductions) and fused multiply-adds; NaN and inf still propagate
_FAST = {"reassoc", "contract"}


@numba.njit(cache=True, fastmath=_FAST)
def _rows_dot(w: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``w @ m.T`` for row-major ``w`` ``(k, r)`` and ``m`` ``(n, r)`` with few rows ``k``, as ``(k, n)``.

    ``w @ K`` is ``_rows_dot(w, K)`` for a symmetric ``K``. OpenBLAS packs the whole of ``m`` for
    such skinny products: a ``(3, 576) x (576, 576)`` ``dgemm`` took 0.35-0.43 ms here against
    0.06 ms for one ``dgemv``. This kernel streams ``m`` once per group of three rows of ``w``
    (register blocks of 3 x 2, 2 x 4 or 1 x 4 dot products), 0.11 ms on that product."""
    k, r = w.shape
    n = m.shape[0]
    out = np.empty((k, n))
    a = 0
    while a + 2 < k:  # three rows of w against two rows of m
        w0, w1, w2 = w[a], w[a + 1], w[a + 2]
        for j in range(0, n - 1, 2):
            m0, m1 = m[j], m[j + 1]
            s00 = s01 = s10 = s11 = s20 = s21 = 0.0
            for i in range(r):
                x0, x1 = m0[i], m1[i]
                s00 += x0 * w0[i]
                s01 += x1 * w0[i]
                s10 += x0 * w1[i]
                s11 += x1 * w1[i]
                s20 += x0 * w2[i]
                s21 += x1 * w2[i]
            out[a, j], out[a, j + 1] = s00, s01
            out[a + 1, j], out[a + 1, j + 1] = s10, s11
            out[a + 2, j], out[a + 2, j + 1] = s20, s21
        if n % 2:
            m0 = m[n - 1]
            s00 = s10 = s20 = 0.0
            for i in range(r):
                s00 += m0[i] * w0[i]
                s10 += m0[i] * w1[i]
                s20 += m0[i] * w2[i]
            out[a, n - 1], out[a + 1, n - 1], out[a + 2, n - 1] = s00, s10, s20
        a += 3
    if k - a == 2:  # two rows of w against four rows of m
        w0, w1 = w[a], w[a + 1]
        j = 0
        while j + 3 < n:
            m0, m1, m2, m3 = m[j], m[j + 1], m[j + 2], m[j + 3]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = 0.0
            for i in range(r):
                y0, y1 = w0[i], w1[i]
                s00 += m0[i] * y0
                s01 += m1[i] * y0
                s02 += m2[i] * y0
                s03 += m3[i] * y0
                s10 += m0[i] * y1
                s11 += m1[i] * y1
                s12 += m2[i] * y1
                s13 += m3[i] * y1
            out[a, j], out[a, j + 1], out[a, j + 2], out[a, j + 3] = s00, s01, s02, s03
            out[a + 1, j], out[a + 1, j + 1], out[a + 1, j + 2], out[a + 1, j + 3] = s10, s11, s12, s13
            j += 4
        while j < n:
            m0 = m[j]
            s00 = s10 = 0.0
            for i in range(r):
                s00 += m0[i] * w0[i]
                s10 += m0[i] * w1[i]
            out[a, j], out[a + 1, j] = s00, s10
            j += 1
    elif k - a == 1:  # one row of w against four rows of m
        w0 = w[a]
        j = 0
        while j + 3 < n:
            m0, m1, m2, m3 = m[j], m[j + 1], m[j + 2], m[j + 3]
            s00 = s01 = s02 = s03 = 0.0
            for i in range(r):
                y0 = w0[i]
                s00 += m0[i] * y0
                s01 += m1[i] * y0
                s02 += m2[i] * y0
                s03 += m3[i] * y0
            out[a, j], out[a, j + 1], out[a, j + 2], out[a, j + 3] = s00, s01, s02, s03
            j += 4
        while j < n:
            m0 = m[j]
            s00 = 0.0
            for i in range(r):
                s00 += m0[i] * w0[i]
            out[a, j] = s00
            j += 1
    return out


@numba.njit(cache=True, fastmath=_FAST)
def _subtract_mul(w: np.ndarray, c: np.ndarray, q: np.ndarray) -> None:
    """``w -= c @ q`` in place: ``w`` ``(k, r)``, ``c`` ``(k, n)``, ``q`` ``(n, r)`` (few rows ``k``;
    ``q`` is read once, four rows at a time)."""
    k, r = w.shape
    n = q.shape[0]
    j = 0
    while j + 3 < n:
        q0, q1, q2, q3 = q[j], q[j + 1], q[j + 2], q[j + 3]
        for a in range(k):
            c0, c1, c2, c3 = c[a, j], c[a, j + 1], c[a, j + 2], c[a, j + 3]
            wa = w[a]
            for i in range(r):
                wa[i] -= c0 * q0[i] + c1 * q1[i] + c2 * q2[i] + c3 * q3[i]
        j += 4
    while j < n:
        q0 = q[j]
        for a in range(k):
            c0 = c[a, j]
            wa = w[a]
            for i in range(r):
                wa[i] -= c0 * q0[i]
        j += 1


@numba.njit(cache=True)
def _sym_eigh(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.linalg.eigh(0.5 * (g + g.T))


@numba.njit(cache=True)
def _append_rows(
    q: np.ndarray,
    p: np.ndarray,
    t: np.ndarray,
    state: np.ndarray,
    w: np.ndarray,
    pw: np.ndarray,
    ref: float,
    capacity: int,
    rank_floor: float,
    eps: float,
    negative: np.ndarray,
    k_scale: float,
) -> None:
    """K-orthonormalize the rows ``w`` (``pw = w K``) and append their new directions.

    ``ref``: the reference squared ``K``-norm (the largest of the rows before orthogonalization
    against the basis; for the start block, the largest diagonal entry of its own Gram). A
    direction is new when its ``K``-norm exceeds ``100 eps`` of that reference. The
    eigendecomposition of the rows' ``K``-Gram resolves directions down to ``sqrt(1e3 eps)`` of
    the largest, so up to three passes run, each on the remainder of the last (orthogonalized
    against the whole basis again), and each pass's rows are orthonormalized twice (as
    Cholesky-QR2 does). A negative ``K``-norm^2 beyond rounding (``1e3 eps`` of the larger of
    ``ref``, ``|w|_2 |w K|_2`` and ``k_scale |w|_2^2``, ``k_scale >= ||K||_2``) sets ``_NEGATIVE``
    and stores ``(value, reference)`` in ``negative``; nothing is appended then. ``w`` and ``pw``
    are overwritten."""
    floor = (100.0 * eps) ** 2 * max(ref, 0.0)
    pw_in = pw.copy()  # the K-products of the rows as given: their couplings to the new directions
    lo = state[_SIZE]
    size = lo
    found = False
    truncated = (state[_STATUS] & _TRUNCATED) != 0
    for attempt in range(3):
        if attempt:  # the remainder: orthogonalize it against the whole basis again
            for _ in range(2):
                c = _rows_dot(w, p[:size])
                _subtract_mul(w, c, q[:size])
                _subtract_mul(pw, c, p[:size])
        d, v = _sym_eigh(_rows_dot(w, pw))
        if d.size == 0:
            break
        if attempt == 0:
            # the rounding of a K-norm^2 w K w^T: of order eps |w|_2 |w K|_2 (Cauchy-Schwarz), and
            # eps ||K|| |w|_2^2 from the product w K itself (which dominates for rows near the null
            # space of K, whose |w K| is small): beyond it, K is not PSD
            bound = 0.0
            for i in range(w.shape[0]):
                w2 = np.sum(w[i] ** 2)
                bound = max(bound, np.sqrt(w2 * np.sum(pw[i] ** 2)), k_scale * w2)
            if d.min() < -1e3 * eps * max(bound, ref):
                negative[0], negative[1] = d.min(), ref
                state[_STATUS] |= _NEGATIVE
                return
        top = d.max()
        if top <= floor:
            break
        found = True
        resolution = max(floor, 1e3 * eps * top)
        unresolved = False
        keep = d > resolution
        for i in range(d.size):
            if d[i] > floor and not keep[i]:
                unresolved = True  # below this pass's resolution: another pass
        if rank_floor > 0:  # Rayleigh quotient |x|_K^2 / |x|_2^2 at or below it: null space of K
            norms2 = np.sum((v.T @ w) ** 2, axis=1)
            keep &= d > rank_floor * norms2
        order = np.flatnonzero(keep)[::-1]  # the strongest first
        room = capacity - size
        if order.size > room:
            truncated = True
            order = order[:room]
        if order.size == 0:
            break
        rot = np.empty((v.shape[0], order.size))
        for j in range(order.size):
            rot[:, j] = v[:, order[j]] / np.sqrt(d[order[j]])
        qn = rot.T @ w
        pn = rot.T @ pw
        e, y = _sym_eigh(qn @ pn.T)  # close to I: a second orthonormalization
        rot2 = y / np.sqrt(e)
        qn = rot2.T @ qn
        pn = rot2.T @ pn
        hi = size + qn.shape[0]
        q[size:hi] = qn
        p[size:hi] = pn
        size = hi
        if not unresolved or size >= capacity:
            break
        c = _rows_dot(w, pn)
        _subtract_mul(w, c, qn)
        _subtract_mul(pw, c, pn)
    if lo > 0 and size > lo:  # couplings of the new directions to the block B was applied to
        plo, phi = state[_LO], state[_HI]
        couple = _rows_dot(q[lo:size], pw_in)  # <q_new, B q_prev>_K = q_new K w^T
        t[lo:size, plo:phi] = couple
        t[plo:phi, lo:size] = couple.T
    status = state[_STATUS]
    if found:
        status |= _FOUND
    if truncated:
        status |= _TRUNCATED
    if size == lo and not (found and truncated):
        status |= _INVARIANT
    state[_STATUS] = status
    state[_SIZE] = size
    state[_LO] = lo
    state[_HI] = size


@numba.njit(cache=True)
def _run_steps(
    gram: np.ndarray,
    core: np.ndarray,
    q: np.ndarray,
    p: np.ndarray,
    t: np.ndarray,
    state: np.ndarray,
    applied_at: np.ndarray,
    n_steps: int,
    capacity: int,
    rank_floor: float,
    eps: float,
    negative: np.ndarray,
    k_scale: float,
) -> None:
    """Up to ``n_steps`` block steps: ``B`` on the newest block, orthogonalized against the last
    two blocks and then against the whole basis, its new directions appended. Stops early when
    every basis vector has been applied (the space is invariant or the capacity is reached) or at
    a negative ``K``-norm.
    ``core``: ``(0, 0)`` for none; ``applied_at[s]`` receives the vectors applied after step ``s``;
    ``k_scale``: an upper bound of ``||K||_2`` (:func:`_append_rows`)."""
    for _ in range(n_steps):
        lo, hi = state[_LO], state[_HI]
        if hi == lo or state[_APPLIED] == state[_SIZE] or (state[_STATUS] & _NEGATIVE) != 0:
            return
        p_block = p[lo:hi]
        w = p_block.copy() if core.shape[0] == 0 else _rows_dot(p_block, core)  # rows (B q)^T = (S K q)^T
        q_all, p_all = q[:hi], p[:hi]
        # the block before this one starts here: B q is K-orthogonal to every earlier block in exact
        # arithmetic, so the first pass runs on the last two blocks only, the second on the whole basis
        near = applied_at[state[_STEPS] - 1] if state[_STEPS] > 0 else 0
        local = _rows_dot(w, p[near:hi])  # <B q_j, q_i>_K on the last two blocks, (k, hi - near)
        _subtract_mul(w, local, q[near:hi])
        coef = _rows_dot(w, p_all)  # what is left on the whole basis: rounding, and deflated directions
        _subtract_mul(w, coef, q_all)
        coef[:, near:hi] += local
        coef = coef.T.copy()  # (hi, k)
        diag = coef[lo:hi]
        t[lo:hi, lo:hi] = 0.5 * (diag + diag.T)
        if lo > 0:  # above the diagonal block, computed directly (the coupling was set by _append_rows)
            t[:lo, lo:hi] = coef[:lo]
            t[lo:hi, :lo] = coef[:lo].T
        state[_APPLIED] = hi
        state[_STEPS] += 1
        applied_at[state[_STEPS]] = hi
        pw = _rows_dot(w, gram)  # gram symmetric: w K
        # K-norm^2 of each B q before orthogonalization: its components on the basis plus what is new
        before = np.sum(coef**2, axis=0) + np.sum(w * pw, axis=1)
        _append_rows(q, p, t, state, w, pw, before.max(), capacity, rank_floor, eps, negative, k_scale)


class GramLanczos:
    """A ``K``-orthonormal block Krylov basis of ``B = S K`` (``K`` without a core) from ``W0``.

    Host arrays (numpy, float64 but for ``gram``, which may be float32): ``gram`` ``K`` ``(r, r)``
    symmetric PSD; ``start`` ``W0``
    ``(r, k)``; ``core`` ``None`` or the symmetric ``S`` ``(r, r)``; ``capacity`` the most basis
    vectors kept (capped at ``r``); ``rank_floor``: a
    direction whose Rayleigh quotient ``x^T K x / x^T x`` is at most this is treated as part of
    the null space of ``K`` and not kept (the eigen path's dropping of modes ``s <= tol max(s)``:
    ``K``-orthonormal vectors there have huge 2-norms and would carry ``K``'s rounding). The constructor
    ``K``-orthonormalizes the start block (one ``K`` product); each :meth:`extend` applies ``B``
    to the newest block, orthogonalizes and appends what is new (one ``K`` product, plus one
    ``S`` product with a core). :attr:`size` is the basis dimension, :attr:`applied` the number
    of basis vectors ``B`` has been applied to: the projection uses those (``T`` is exact there).
    A direction of negative ``K``-norm (beyond rounding) raises
    :class:`~thermo.errors.NotPositiveDefiniteError`: ``K`` is then not a Gram matrix.
    """

    def __init__(
        self,
        gram: np.ndarray,
        start: np.ndarray,
        core: np.ndarray | None = None,
        *,
        capacity: int | None = None,
        rank_floor: float = 0.0,
    ) -> None:
        r, k = start.shape
        self.rank_floor = float(rank_floor)
        # a float32 Gram stays float32 (exact in float64, and half the bytes each step streams);
        # the products with it accumulate in float64 either way
        dtype = np.float32 if np.asarray(gram).dtype == np.float32 else np.float64
        self.gram = np.ascontiguousarray(gram, dtype=dtype)
        self.core = None if core is None else np.ascontiguousarray(core, dtype=np.float64)
        self._core = np.zeros((0, 0)) if core is None else self.core
        self.eps = float(np.finfo(np.float64).eps)
        # trace K >= ||K||_2 for a PSD K: the scale of the rounding in K-norms (a negative trace
        # gives none, so every negative K-norm^2 of such a K is refused)
        self._k_scale = max(float(np.trace(self.gram, dtype=np.float64)), 0.0)
        self._capacity = r if capacity is None else max(1, min(r, int(capacity)))
        self._state = np.zeros(6, dtype=np.int64)
        # vectors applied after each block step (each step applies at least one: at most capacity steps)
        self._applied_at = np.zeros(self._capacity + 1, dtype=np.int64)
        self._negative = np.zeros(2)
        self._width = min(k, r)  # the most rows a block can have
        rows = min(self._capacity, 4 * self._width)
        self._q = np.empty((rows, r))  # basis rows q_i^T (rows below size are never read)
        self._p = np.empty((rows, r))  # rows (K q_i)^T
        self._t = np.zeros((rows, rows))  # T = Q^T K B Q, filled block column by block column
        self.start_rows = np.ascontiguousarray(start.T, dtype=np.float64)  # W0^T, (k, r)
        w = self.start_rows.copy()
        if k > r:  # more columns than dimensions: start from an orthonormal basis of their span
            w = np.ascontiguousarray(np.linalg.qr(start)[0].T * float(np.linalg.norm(start, axis=0).max()))
        pw = _rows_dot(w, self.gram)
        ref = float(np.max(np.sum(w * pw, axis=1))) if w.size else 0.0
        self._reserve(self._width)
        _append_rows(self._q, self._p, self._t, self._state, w, pw, ref, self._capacity, self.rank_floor,
                     self.eps, self._negative, self._k_scale)
        self._raise_if_negative()

    # -- state ---------------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def size(self) -> int:
        """Basis vectors held."""
        return int(self._state[_SIZE])

    @property
    def applied(self) -> int:
        """Basis vectors ``B`` has been applied to."""
        return int(self._state[_APPLIED])

    @property
    def steps(self) -> int:
        """Block steps taken."""
        return int(self._state[_STEPS])

    @property
    def invariant(self) -> bool:
        """No new direction appeared: the space is invariant under ``B``."""
        return bool(self._state[_STATUS] & _INVARIANT)

    @property
    def truncated(self) -> bool:
        """The capacity cut new directions off: the space is not invariant."""
        return bool(self._state[_STATUS] & _TRUNCATED)

    def _reserve(self, extra: int) -> None:
        """Grow the buffers (geometrically, up to the capacity) to hold ``extra`` more rows."""
        need = min(self._capacity, self.size + extra)
        rows = self._q.shape[0]
        if need <= rows:
            return
        rows = min(self._capacity, max(need, 2 * rows))
        m, r = self.size, self._q.shape[1]
        for name in ("_q", "_p"):
            grown = np.empty((rows, r))
            grown[:m] = getattr(self, name)[:m]
            setattr(self, name, grown)
        t = np.zeros((rows, rows))
        old = self._t.shape[0]
        t[:old, :old] = self._t
        self._t = t

    def _raise_if_negative(self) -> None:
        if self._state[_STATUS] & _NEGATIVE:
            value, ref = self._negative
            raise NotPositiveDefiniteError(
                f"gram has a direction of K-norm^2 {value:.3e} < 0 (reference {ref:.3e}): it is not a Gram "
                "matrix U^T U"
            )

    # -- steps -----------------------------------------------------------------------------------------
    def extend(self, steps: int = 1) -> bool:
        """Up to ``steps`` block steps: ``B`` on the newest block, orthogonalized (against the
        last two blocks, then the whole basis), its new directions appended.

        Returns ``False`` when nothing was done: every basis vector has been applied (the space
        is invariant, :attr:`invariant`, or the capacity is reached, :attr:`truncated`)."""
        if self.applied == self.size:
            return False
        before = self.steps
        self._reserve(steps * self._width)
        _run_steps(self.gram, self._core, self._q, self._p, self._t, self._state, self._applied_at, int(steps),
                   self._capacity, self.rank_floor, self.eps, self._negative, self._k_scale)
        self._raise_if_negative()
        return self.steps > before

    @property
    def basis_rows(self) -> np.ndarray:
        """``Q^T`` on the applied vectors, ``(m, r)``."""
        return self._q[: self.applied]

    def applied_after(self, steps: int) -> int:
        """Basis vectors ``B`` had been applied to after ``steps`` block steps (``0 <= steps <=``
        :attr:`steps`): the leading ``applied_after(s)`` rows and columns of ``T`` are the
        projection on the Krylov space of ``s`` steps, unchanged by the steps after it."""
        if not 0 <= steps <= self.steps:
            raise ValueError(f"steps must be in [0, {self.steps}], got {steps}")
        return int(self._applied_at[steps])

    def projection(self, steps: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ritz, rotation, coords)`` on the ``m`` basis vectors applied after ``steps`` block
        steps (default: all of them, ``m = applied``): ``T_m = rotation diag(ritz) rotation^T``
        (``(m,)``, ``(m, m)``) and ``coords = Q_m^T K W0`` ``(m, k)``, so
        ``h(B) W0 ~= Q_m rotation diag(h(ritz)) rotation^T coords``. An earlier ``steps`` gives
        the approximation that step count had, without recomputing it."""
        m = self.applied if steps is None else self.applied_after(steps)
        t = self._t[:m, :m]
        ritz, rot = np.linalg.eigh(0.5 * (t + t.T))
        return ritz, rot, _rows_dot(self._p[:m], self.start_rows)
