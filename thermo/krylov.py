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
    vectors kept (capped at ``r``; the buffers are allocated at that size). The constructor
    ``K``-orthonormalizes the start block (one ``K`` product); each :meth:`extend` applies ``B``
    to the newest block, orthogonalizes and appends what is new (one ``K`` product, plus one
    ``S`` product with a core). :attr:`size` is the basis dimension, :attr:`applied` the number
    of basis vectors ``B`` has been applied to: the projection uses those (``T`` is exact there).
    A direction of negative ``K``-norm (beyond rounding) raises
    :class:`~thermo.errors.NotPositiveDefiniteError`: ``K`` is then not a Gram matrix.
    """

    def __init__(
        self, gram: np.ndarray, start: np.ndarray, core: np.ndarray | None = None, *, capacity: int | None = None
    ) -> None:
        r, k = start.shape
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
        self._append(w, w @ gram, None)

    @property
    def capacity(self) -> int:
        return self._q.shape[0]

    def _append(self, w: np.ndarray, pw: np.ndarray, before: np.ndarray | None) -> None:
        """K-orthonormalize the rows ``w`` (``pw = w K``) and append the new directions.

        ``before``: the squared ``K``-norms of the rows before orthogonalization (``None`` for
        the start block, whose own Gram is the reference)."""
        g = w @ pw.T
        g = 0.5 * (g + g.T)
        d, v = np.linalg.eigh(g)
        if before is None:
            ref = float(np.max(np.diag(g))) if g.size else 0.0
        else:
            ref = float(before.max()) if before.size else 0.0
        if d.size and d.min() < -1e3 * self.eps * max(ref, 0.0):
            raise NotPositiveDefiniteError(
                f"gram has a direction of K-norm^2 {d.min():.3e} < 0 (reference {ref:.3e}): it is not a Gram "
                "matrix U^T U"
            )
        keep = d > (100.0 * self.eps) ** 2 * ref if ref > 0 else np.zeros(d.shape, dtype=bool)
        room = self.capacity - self.size
        order = np.flatnonzero(keep)[::-1]  # the strongest directions first
        if order.size > room:
            self.truncated = True
            order = order[:room]
        lo = self.size
        if order.size == 0:
            self._block = (lo, lo)
            self.invariant = not self.truncated
            return
        root = np.sqrt(d[order])
        rot = v[:, order] / root  # (k, k')
        hi = lo + order.size
        self._q[lo:hi] = rot.T @ w
        self._p[lo:hi] = rot.T @ pw
        if lo > 0:  # the coupling of the new block to the one B was applied to: <q_new, B q_prev>_K
            plo, phi = self._block
            # w = B q_prev - (its components on the basis) = v diag(root) Q_new + (deflated rounding)
            couple = root[:, None] * v[:, order].T  # (k', k_prev)
            self._t[lo:hi, plo:phi] = couple
            self._t[plo:phi, lo:hi] = couple.T
        self.size = hi
        self._block = (lo, hi)

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
