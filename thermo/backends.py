"""Array backends: numpy (with numba kernels) on the CPU, torch on the CPU or a GPU.

The integrators are written once against the small :class:`ArrayBackend` interface; only the
operations whose spelling differs between numpy and torch (random numbers, eigendecompositions,
fused GEMM-accumulate, clipping, conversion) live here. Results are reproducible for a given
seed within one backend; the two backends use different random streams.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import scipy.linalg.blas
import torch

from .errors import InputError

Array = Any  # np.ndarray or torch.Tensor, depending on the backend

_DTYPES = {"float32": (np.float32, torch.float32), "float64": (np.float64, torch.float64)}


def all_finite(x: torch.Tensor) -> bool:
    """No NaN or infinity in ``x``: a NaN or inf entry makes the sum non-finite, so a finite sum
    settles it in one reduction (an elementwise ``isfinite`` pass costs about ten times more);
    only an overflowing sum needs the elementwise check."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


class RandomSource(ABC):
    """Seeded source of standard normals and uniforms on one backend."""

    @abstractmethod
    def normal(self, shape: tuple[int, ...], dtype: str) -> Array:
        """An array of i.i.d. N(0, 1) of ``shape``."""

    @abstractmethod
    def fill_normal(self, out: Array) -> Array:
        """Fill ``out`` (contiguous) with i.i.d. N(0, 1) in place and return it."""

    @abstractmethod
    def uniform(self, shape: tuple[int, ...], dtype: str) -> Array:
        """An array of i.i.d. U[0, 1) of ``shape``."""


class ArrayBackend(ABC):
    """The operations the integrators need, spelled for one array library."""

    name: str

    @abstractmethod
    def asarray(self, x: object, dtype: str) -> Array:
        """Convert ``x`` (numpy array, torch tensor, list) to this backend's array."""

    @abstractmethod
    def to_numpy(self, x: Array) -> np.ndarray:
        """Copy ``x`` to a host numpy array."""

    @abstractmethod
    def random(self, seed: int) -> RandomSource:
        """A seeded random source."""

    @abstractmethod
    def eigh(self, a: Array) -> tuple[Array, Array]:
        """Eigenvalues (ascending) and orthonormal eigenvectors (columns) of symmetric ``a``."""

    @abstractmethod
    def empty(self, shape: tuple[int, ...], dtype: str) -> Array: ...

    @abstractmethod
    def zeros(self, shape: tuple[int, ...], dtype: str) -> Array: ...

    @abstractmethod
    def eye(self, n: int, dtype: str) -> Array: ...

    @abstractmethod
    def matmul(self, a: Array, b: Array) -> Array:
        """``a @ b`` (broadcasting over leading dimensions)."""

    @abstractmethod
    def addmm_(self, acc: Array, a: Array, b: Array, beta: float = 1.0) -> Array:
        """``acc <- beta * acc + a @ b`` in place (one fused GEMM), return ``acc``."""

    @abstractmethod
    def clip_(self, x: Array, lo: float, hi: float) -> Array:
        """Clip ``x`` in place to ``[lo, hi]`` and return it."""

    @abstractmethod
    def floor(self, x: Array) -> Array: ...

    @abstractmethod
    def round(self, x: Array) -> Array:
        """Round half to even, elementwise."""

    @abstractmethod
    def exp(self, x: Array) -> Array: ...

    @abstractmethod
    def sqrt(self, x: Array) -> Array: ...

    @abstractmethod
    def all_finite(self, x: Array) -> bool: ...

    @abstractmethod
    def count(self, mask: Array) -> int:
        """Number of True entries of a boolean array."""

    @abstractmethod
    def copy(self, x: Array) -> Array: ...

    @abstractmethod
    def absmax(self, x: Array) -> float:
        """Largest absolute entry (0 for an empty array)."""


class NumpyBackend(ArrayBackend):
    """numpy arrays on the host; the noise comes from a counter-based numba generator."""

    name = "numpy"

    def asarray(self, x: object, dtype: str) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        return np.ascontiguousarray(x, dtype=_DTYPES[dtype][0])

    def to_numpy(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)

    def random(self, seed: int) -> RandomSource:
        return _NumpyRandom(seed)

    def eigh(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # LAPACK through torch's build is ~1.8x faster than numpy/scipy's syevd on this class of
        # CPU for float32 (measured in benchmarks/bench_exact.py); results are identical in law.
        w, v = torch.linalg.eigh(torch.from_numpy(np.ascontiguousarray(a)))
        return w.numpy(), np.ascontiguousarray(v.numpy())

    def empty(self, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        return np.empty(shape, dtype=_DTYPES[dtype][0])

    def zeros(self, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        return np.zeros(shape, dtype=_DTYPES[dtype][0])

    def eye(self, n: int, dtype: str) -> np.ndarray:
        return np.eye(n, dtype=_DTYPES[dtype][0])

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # Through torch's BLAS (zero-copy views), the library that also runs eigh: OpenBLAS's
        # idle threads spin after a call and slowed a following torch eigh by ~50% on 2 cores
        # (measured with benchmarks/bench_exact.py). One thread pool avoids the contention.
        return (torch.from_numpy(np.asarray(a)) @ torch.from_numpy(np.asarray(b))).numpy()

    def addmm_(self, acc: np.ndarray, a: np.ndarray, b: np.ndarray, beta: float = 1.0) -> np.ndarray:
        # Which BLAS, measured on a 2-core AVX2 machine (benchmarks/bench_stepwise.py):
        # float64 GEMMs run ~40% faster in OpenBLAS (scipy) than in torch's BLAS; float32 ones
        # equally fast in both, and torch's shares its OpenMP runtime with the parallel numba
        # noise kernel (float64 noise is drawn on one thread, see _NumpyRandom), so the thread
        # pools never spin against each other (that cost 8 ms per 1 ms step).
        if (
            acc.dtype == np.float64
            and a.dtype == b.dtype == np.float64
            and acc.ndim == a.ndim == b.ndim == 2
            and acc.flags.c_contiguous
            and a.flags.c_contiguous
            and b.flags.c_contiguous
        ):
            # In place, on the transposed (Fortran-ordered) views: acc^T <- b^T a^T + beta acc^T
            scipy.linalg.blas.dgemm(1.0, b.T, a.T, beta=beta, c=acc.T, overwrite_c=True)
            return acc
        torch.from_numpy(acc).addmm_(torch.from_numpy(np.asarray(a)), torch.from_numpy(np.asarray(b)), beta=beta)
        return acc

    def clip_(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return np.clip(x, lo, hi, out=x)

    def floor(self, x: np.ndarray) -> np.ndarray:
        return np.floor(x)

    def round(self, x: np.ndarray) -> np.ndarray:
        return np.round(x)

    def exp(self, x: np.ndarray) -> np.ndarray:
        return np.exp(x)

    def sqrt(self, x: np.ndarray) -> np.ndarray:
        return np.sqrt(x)

    def all_finite(self, x: np.ndarray) -> bool:
        return bool(np.isfinite(x).all())

    def count(self, mask: np.ndarray) -> int:
        return int(np.count_nonzero(mask))

    def copy(self, x: np.ndarray) -> np.ndarray:
        return x.copy()

    def absmax(self, x: np.ndarray) -> float:
        return float(np.abs(x).max()) if x.size else 0.0


class _NumpyRandom(RandomSource):
    def __init__(self, seed: int) -> None:
        from .rng import CounterNormalRNG

        self._normal = CounterNormalRNG(seed)
        self._uniform = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))

    def normal(self, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        return self._normal.fill(np.empty(shape, dtype=_DTYPES[dtype][0]))

    def fill_normal(self, out: np.ndarray) -> np.ndarray:
        # float64 draws run on one thread: float64 GEMMs run in OpenBLAS, whose pool would fight
        # numba's. (Not via numba.set_num_threads: numba and torch share the OpenMP runtime, so
        # restoring numba's count would also change torch's thread count, and its float32 sums.)
        return self._normal.fill(out, serial=out.dtype == np.float64)

    def uniform(self, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        return self._uniform.random(shape, dtype=_DTYPES[dtype][0])


class TorchBackend(ArrayBackend):
    """torch tensors on ``device`` (``cpu``, ``cuda``, ``cuda:1``, ...)."""

    name = "torch"

    def __init__(self, device: str | torch.device | None = None) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device {device!r} requested but CUDA is not available")

    def asarray(self, x: object, dtype: str) -> torch.Tensor:
        return torch.as_tensor(x, dtype=_DTYPES[dtype][1], device=self.device).contiguous()

    def to_numpy(self, x: torch.Tensor) -> np.ndarray:
        return x.detach().cpu().numpy()

    def random(self, seed: int) -> RandomSource:
        return _TorchRandom(seed, self.device)

    def eigh(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.linalg.eigh(a)

    def empty(self, shape: tuple[int, ...], dtype: str) -> torch.Tensor:
        return torch.empty(shape, dtype=_DTYPES[dtype][1], device=self.device)

    def zeros(self, shape: tuple[int, ...], dtype: str) -> torch.Tensor:
        return torch.zeros(shape, dtype=_DTYPES[dtype][1], device=self.device)

    def eye(self, n: int, dtype: str) -> torch.Tensor:
        return torch.eye(n, dtype=_DTYPES[dtype][1], device=self.device)

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b

    def addmm_(self, acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        return acc.addmm_(a, b, beta=beta)

    def clip_(self, x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return x.clamp_(lo, hi)

    def floor(self, x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x)

    def round(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    def exp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)

    def sqrt(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x)

    def all_finite(self, x: torch.Tensor) -> bool:
        return all_finite(x)

    def count(self, mask: torch.Tensor) -> int:
        return int(mask.sum())

    def copy(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    def absmax(self, x: torch.Tensor) -> float:
        return float(x.abs().max()) if x.numel() else 0.0


class _TorchRandom(RandomSource):
    def __init__(self, seed: int, device: torch.device) -> None:
        self._gen = torch.Generator(device=device)
        self._gen.manual_seed(int(seed))
        self._device = device

    def normal(self, shape: tuple[int, ...], dtype: str) -> torch.Tensor:
        return torch.randn(
            shape, generator=self._gen, dtype=_DTYPES[dtype][1], device=self._device
        )

    def fill_normal(self, out: torch.Tensor) -> torch.Tensor:
        return out.normal_(generator=self._gen)

    def uniform(self, shape: tuple[int, ...], dtype: str) -> torch.Tensor:
        return torch.rand(
            shape, generator=self._gen, dtype=_DTYPES[dtype][1], device=self._device
        )


def get_backend(backend: str | ArrayBackend = "numpy", device: str | None = None) -> ArrayBackend:
    """Resolve a backend by name (``numpy`` or ``torch``) or pass an instance through."""
    if isinstance(backend, ArrayBackend):
        return backend
    if backend == "numpy":
        if device not in (None, "cpu"):
            raise InputError(f"the numpy backend runs on the CPU only, not on {device!r}")
        return NumpyBackend()
    if backend == "torch":
        return TorchBackend(device)
    raise InputError(f"unknown backend {backend!r}: use 'numpy' or 'torch'")
