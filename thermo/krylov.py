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
rule far below float32 rounding), whatever the dtype and device of the caller's tensors; full
reorthogonalization (classical Gram-Schmidt twice, in the ``K`` inner product
through the stored products ``P = K Q``); a new direction whose ``K``-norm after it is below
``100 eps`` of the block's ``K``-norm before it is deflated (the space is then invariant in that
direction, up to rounding), so the block can shrink and the basis never exceeds the numerical
rank of ``K``. Blocks are stored as rows (``(k, r)``), so every product is a row-major GEMM.
"""

from __future__ import annotations

import numpy as np

from .errors import NotPositiveDefiniteError

__all__ = ["GramLanczos"]


class GramLanczos:
    """A ``K``-orthonormal block Krylov basis of ``B = S K`` (``K`` without a core) from ``W0``.

    Host float64 arrays (numpy): ``gram`` ``K`` ``(r, r)`` symmetric PSD; ``start`` ``W0``
    ``(r, k)``; ``core`` ``None`` or the symmetric ``S`` ``(r, r)``; ``capacity`` the most basis
    vectors kept (capped at ``r``; the buffers are allocated at that size); ``rank_floor``: a
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
        self.gram, self.core = gram, core
        self.eps = float(np.finfo(np.float64).eps)
        cap = r if capacity is None else max(1, min(r, int(capacity)))
        self._q = np.zeros((cap, r))  # basis rows q_i^T
        self._p = np.zeros((cap, r))  # rows (K q_i)^T
        self._t = np.zeros((cap, cap))  # T = Q^T K B Q, filled block column by block column
        self.start_rows = np.ascontiguousarray(start.T)  # W0^T, (k, r)
        self.size = 0  # basis vectors held
        self.applied = 0  # basis vectors B has been applied to
        self._block = (0, 0)  # rows of the newest block
        self.steps = 0
        self.invariant = False  # no new direction appeared: the space is invariant under B
        self.truncated = False  # the capacity cut new directions off: the space is not invariant
        w = self.start_rows.copy()
        if k > r:  # more columns than dimensions: start from an orthonormal basis of their span
            w = np.linalg.qr(start)[0].T * float(np.linalg.norm(start, axis=0).max())
        self._append(w, w @ gram, None)

    @property
    def capacity(self) -> int:
        return self._q.shape[0]

    def _append(self, w: np.ndarray, pw: np.ndarray, before: np.ndarray | None) -> None:
        """K-orthonormalize the rows ``w`` (``pw = w K``) and append their new directions.

        ``before``: the squared ``K``-norms of the rows before orthogonalization against the
        basis (``None`` for the start block, whose own Gram is the reference). A direction is new
        when its ``K``-norm exceeds ``100 eps`` of that reference. The eigendecomposition of the
        rows' ``K``-Gram resolves directions down to ``sqrt(1e3 eps)`` of the largest, so up to
        three passes run, each on the remainder of the last (orthogonalized against the whole
        basis again), and each pass's rows are orthonormalized twice (as Cholesky-QR2 does)."""
        g = w @ pw.T
        if before is None:
            ref = float(np.max(np.diag(g))) if g.size else 0.0
        else:
            ref = float(before.max()) if before.size else 0.0
        floor = (100.0 * self.eps) ** 2 * max(ref, 0.0)
        pw_in = pw.copy()  # the K-products of the rows as given: their couplings to the new directions
        lo = self.size
        found = False
        for attempt in range(3):
            if attempt:  # the remainder: orthogonalize it against the whole basis again
                for _ in range(2):
                    c = w @ self._p[: self.size].T
                    w = w - c @ self._q[: self.size]
                    pw = pw - c @ self._p[: self.size]
            g = w @ pw.T
            d, v = np.linalg.eigh(0.5 * (g + g.T))
            # rounding of a K-norm^2 is bounded by eps |w|_2 |w K|_2 (Cauchy-Schwarz): beyond it, K is not PSD
            bound = float(np.max(np.linalg.norm(w, axis=1) * np.linalg.norm(pw, axis=1))) if w.size else 0.0
            if attempt == 0 and d.size and d.min() < -1e3 * self.eps * max(bound, ref):
                raise NotPositiveDefiniteError(
                    f"gram has a direction of K-norm^2 {d.min():.3e} < 0 (reference {ref:.3e}): it is not a Gram "
                    "matrix U^T U"
                )
            top = float(d.max()) if d.size else 0.0
            if top <= floor:
                break
            found = True
            significant = d > max(floor, 1e3 * self.eps * top)
            unresolved = bool(np.any((d > floor) & ~significant))  # below this pass's resolution
            if self.rank_floor > 0:  # Rayleigh quotient |x|_K^2 / |x|_2^2 at or below it: null space of K
                significant &= d > self.rank_floor * np.sum((v.T @ w) ** 2, axis=1)
            order = np.flatnonzero(significant)[::-1]  # the strongest first
            room = self.capacity - self.size
            if order.size > room:
                self.truncated = True
                order = order[:room]
            if order.size == 0:
                break
            rot = v[:, order] / np.sqrt(d[order])
            qn, pn = rot.T @ w, rot.T @ pw
            gn = qn @ pn.T
            e, y = np.linalg.eigh(0.5 * (gn + gn.T))  # close to I: a second orthonormalization
            rot2 = y / np.sqrt(e)
            qn, pn = rot2.T @ qn, rot2.T @ pn
            hi = self.size + qn.shape[0]
            self._q[self.size : hi] = qn
            self._p[self.size : hi] = pn
            self.size = hi
            if not unresolved or self.size >= self.capacity:
                break
            c = w @ pn.T
            w, pw = w - c @ qn, pw - c @ pn
        if lo > 0 and self.size > lo:  # couplings of the new directions to the block B was applied to
            plo, phi = self._block
            couple = self._q[lo : self.size] @ pw_in.T  # <q_new, B q_prev>_K = q_new K w^T
            self._t[lo : self.size, plo:phi] = couple
            self._t[plo:phi, lo : self.size] = couple.T
        if self.size == lo and not (found and self.truncated):
            self.invariant = True
        self._block = (lo, self.size)

    def extend(self) -> bool:
        """One block step: ``B`` on the newest block, orthogonalized (twice) against the basis.

        Returns ``False`` (nothing done) when every basis vector has been applied: the space is
        invariant (:attr:`invariant`) or the capacity is reached (:attr:`truncated`)."""
        lo, hi = self._block
        if hi == lo or self.applied == self.size:
            return False
        p_block = self._p[lo:hi]
        w = p_block.copy() if self.core is None else p_block @ self.core  # rows (B q)^T = (S K q)^T
        q_all, p_all = self._q[:hi], self._p[:hi]
        coef = w @ p_all.T  # <B q_j, q_i>_K, (k, hi)
        w -= coef @ q_all
        again = w @ p_all.T
        w -= again @ q_all
        coef = (coef + again).T  # (hi, k)
        self._t[lo:hi, lo:hi] = 0.5 * (coef[lo:hi] + coef[lo:hi].T)
        if lo > 0:  # above the diagonal block, computed directly (the coupling was set by _append)
            self._t[:lo, lo:hi] = coef[:lo]
            self._t[lo:hi, :lo] = coef[:lo].T
        self.applied = hi
        self.steps += 1
        pw = w @ self.gram
        # K-norm^2 of each B q before orthogonalization: its components on the basis plus what is new
        self._append(w, pw, np.sum(coef**2, axis=0) + np.einsum("ij,ij->i", w, pw))
        return True

    @property
    def basis_rows(self) -> np.ndarray:
        """``Q^T`` on the applied vectors, ``(m, r)``."""
        return self._q[: self.applied]

    def projection(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ritz, rotation, coords)`` on the ``m = applied`` basis vectors: ``T = rotation
        diag(ritz) rotation^T`` (``(m,)``, ``(m, m)``) and ``coords = Q^T K W0`` ``(m, k)``, so
        ``h(B) W0 ~= Q rotation diag(h(ritz)) rotation^T coords``."""
        m = self.applied
        t = self._t[:m, :m]
        ritz, rot = np.linalg.eigh(0.5 * (t + t.T))
        return ritz, rot, self._p[:m] @ self.start_rows.T
