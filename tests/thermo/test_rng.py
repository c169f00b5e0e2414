"""Tests of thermo.rng: the generator's bits, the accuracy of the Gaussian transform, the law of
the output (moments, KS, tails, independence) and reproducibility (seeds, streams, splits, threads).

Statistical tolerances: for n i.i.d. N(0, 1) samples the standard errors are 1/sqrt(n) for the
sample mean, sqrt(2/n) for the sample variance, sqrt(6/n) for the skewness, sqrt(24/n) for the
excess kurtosis and 1/sqrt(n) for a sample correlation of independent sequences (all
asymptotically normal). A count of events of probability p is Binomial(n, p), standard deviation
sqrt(n p (1 - p)). Every check allows 5 standard errors (a false alarm has probability ~6e-7
per check) and the seeds are fixed, so the suite is deterministic.
"""

from __future__ import annotations

import math
import pickle

import numba
import numpy as np
import pytest
import scipy.stats
from scipy.special import ndtr, ndtri

from thermo import rng as counter_rng
from thermo.rng import CounterNormalRNG, philox4x32

N_STAT = 1 << 22  # ~4.2M samples for the moment checks
TAIL_R = float(-ndtri(2.0**-16))  # |z| beyond which the refined tail sampler is used (4.17)


@pytest.fixture(scope="module")
def big64() -> np.ndarray:
    return CounterNormalRNG(20240601).standard_normal(N_STAT)


@pytest.fixture(scope="module")
def big32() -> np.ndarray:
    return CounterNormalRNG(20240602).standard_normal(N_STAT, dtype=np.float32)


# ------------------------------------------------------------------------------------------------
# bits
def test_philox_known_answers():
    # Known-answer vectors of Philox-4x32-10 published with Random123 (kat_vectors).
    assert philox4x32((0, 0, 0, 0), (0, 0)) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    ones = 0xFFFFFFFF
    assert philox4x32((ones,) * 4, (ones, ones)) == (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)
    assert philox4x32((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0)) == (
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1,
    )


def test_kernel_words_match_reference():
    seed, stream, tile = 0x0123456789ABCDEF, 0x3456789ABCD, (1 << 33) + 5
    key = [np.uint32(seed & 0xFFFFFFFF), np.uint32(seed >> 32), np.uint32(stream & 0xFFFFFFFF), np.uint32(stream >> 32)]
    w = np.empty(1024, np.uint32)
    counter_rng._tile_words(w, tile, *key)
    for j in (0, 1, 77, 255):
        block = tile * 256 + j
        ref = philox4x32((block & 0xFFFFFFFF, block >> 32, stream & 0xFFFFFFFF, stream >> 32), (seed & 0xFFFFFFFF, seed >> 32))
        assert tuple(int(w[r * 256 + j]) for r in range(4)) == ref


# ------------------------------------------------------------------------------------------------
# transform accuracy against scipy's ndtri
def _test_words() -> np.ndarray:
    rng = np.random.default_rng(7)
    k_edge = np.arange(counter_rng._K_TAIL, counter_rng._K_TAIL + 4096, dtype=np.uint64)
    words = np.concatenate([
        rng.integers(0, 2**32, 1 << 18, dtype=np.uint64),
        np.arange(2**31 - 4096, 2**31 + 4096, dtype=np.uint64),  # centre
        k_edge, 2**32 - 1 - k_edge,  # just inside the body, both signs
        2**31 - 1 - np.arange(0, 2**31, 2**19 + 1, dtype=np.uint64),  # every octave
        (1 << np.arange(16, 31, dtype=np.uint64)) - 1, 1 << np.arange(16, 31, dtype=np.uint64),  # octave edges
    ]).astype(np.uint32)
    k = np.minimum(words, ~words) & 0x7FFFFFFF
    return words[k >= counter_rng._K_TAIL]  # body words only; the tail is tested separately


def _reference(words: np.ndarray) -> np.ndarray:
    return ndtri((words.astype(np.float64) + 0.5) * 2.0**-32)  # u is exact in float64


def test_float64_transform_accuracy():
    words = _test_words()
    ix = np.empty(words.size, np.uint32)
    uu = np.empty(words.size)
    z = np.empty(words.size)
    assert counter_rng._index64(ix, uu, words) >= counter_rng._K_TAIL
    counter_rng._eval64(z, ix, uu, counter_rng._TAB64)
    assert np.abs(z - _reference(words)).max() < 5e-14  # documented: 3e-14


def test_float32_transform_accuracy():
    words = _test_words()
    z = np.empty(words.size, np.float32)
    assert counter_rng._transform32(z, words, counter_rng._C32) >= counter_rng._K_TAIL
    ref = _reference(words)
    err = np.abs(z.astype(np.float64) - ref)
    assert err.max() < 1e-6
    assert (err / np.maximum(np.abs(ref), 1.0)).max() < 2.5e-7  # about 2 float32 ulp
    assert np.all(np.sign(z) == np.sign(ref))


def test_tail_quantile_matches_ndtri():
    p = np.logspace(-29.5, math.log10(2.0**-16), 400)
    q = np.array([counter_rng._tail_quantile(x) for x in p])
    np.testing.assert_allclose(q, -ndtri(p), rtol=2e-15, atol=0)


def test_fill_matches_reference_including_tails():
    """End to end: stream element i is Phi^-1 of its own word, refined in the tail as documented."""
    seed, stream, start = 99, 5, 3 * 1024 + 17
    z = CounterNormalRNG(seed, stream, position=start).standard_normal(1 << 20)
    tail = np.flatnonzero(np.abs(z) > TAIL_R - 1e-9)
    assert 10 < tail.size < 70  # expected 32 (probability 2^-15 per sample)
    check = np.concatenate([np.arange(0, 1 << 20, 4099), tail])
    for j in check:
        i = start + int(j)
        tile, o = divmod(i, 1024)
        block = tile * 256 + o % 256
        word = philox4x32((block & 0xFFFFFFFF, block >> 32, stream, 0), (seed, 0))[o // 256]
        k = min(word, 2**32 - 1 - word) & 0x7FFFFFFF
        if k >= counter_rng._K_TAIL:
            assert abs(z[j] - ndtri((word + 0.5) * 2.0**-32)) < 5e-14
        else:
            v0, v1, _, _ = philox4x32((i & 0xFFFFFFFF, i >> 32, stream, 0x80000000), (seed, 0))
            p = (k + (v1 * 2.0**32 + v0 + 0.5) * 2.0**-64) * 2.0**-32
            expected = -ndtri(p) if word >= 2**31 else ndtri(p)
            assert z[j] == pytest.approx(expected, rel=1e-14)


# ------------------------------------------------------------------------------------------------
# the law of the output
@pytest.mark.parametrize("which", ["big64", "big32"])
def test_moments(which, request):
    z = request.getfixturevalue(which).astype(np.float64)
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2 / n)
    assert abs(scipy.stats.skew(z)) < 5 * math.sqrt(6 / n)
    assert abs(scipy.stats.kurtosis(z)) < 5 * math.sqrt(24 / n)


@pytest.mark.parametrize("which", ["big64", "big32"])
def test_kolmogorov_smirnov(which, request):
    z = request.getfixturevalue(which)
    assert scipy.stats.kstest(z, "norm").pvalue > 1e-3


@pytest.mark.parametrize("which", ["big64", "big32"])
@pytest.mark.parametrize("threshold", [1.0, 2.0, 3.0, 4.0])
def test_tail_frequencies(which, threshold, request):
    z = request.getfixturevalue(which)
    n = z.size
    p = 2.0 * ndtr(-threshold)
    count = np.count_nonzero(np.abs(z) > threshold)
    assert abs(count - n * p) < 5 * math.sqrt(n * p * (1 - p))


def test_far_tail_law():
    """~2000 samples beyond 4.17 (the refined tail): their number is Binomial(n, 2^-15) and, given
    |z| > r, |z| has CDF 1 - Q(z) / Q(r); both are checked, plus the symmetry of the signs."""
    rng = CounterNormalRNG(4242)
    buf = np.empty(1 << 22, np.float32)
    n = 16 * buf.size
    far = []
    for _ in range(16):
        rng.fill(buf)
        far.append(buf[np.abs(buf) > TAIL_R].astype(np.float64))
    far = np.concatenate(far)
    p = 2.0**-15
    assert abs(far.size - n * p) < 5 * math.sqrt(n * p * (1 - p))
    q_r = ndtr(-TAIL_R)
    assert scipy.stats.kstest(np.abs(far), lambda x: 1.0 - ndtr(-x) / q_r).pvalue > 1e-3
    assert abs(np.count_nonzero(far > 0) - far.size / 2) < 5 * math.sqrt(far.size / 4)
    beyond5 = 2.0 * ndtr(-5.0)  # ~38 expected: Poisson
    assert abs(np.count_nonzero(np.abs(far) > 5.0) - n * beyond5) < 5 * math.sqrt(n * beyond5)


@pytest.mark.parametrize("lag", [1, 2, 255, 256, 257, 512, 768, 1024])
def test_autocorrelation(big64, lag):
    # Lags 256/512/768 pair words of one Philox block (the tile layout); 1024 pairs tiles.
    z = big64
    n = z.size - lag
    rho = np.dot(z[:-lag], z[lag:]) / n
    assert abs(rho) < 5 / math.sqrt(n)


def test_streams_and_seeds_uncorrelated():
    n = 1 << 21
    a = CounterNormalRNG(1, stream=0).standard_normal(n)
    others = [
        CounterNormalRNG(1, stream=1).standard_normal(n),
        CounterNormalRNG(2, stream=0).standard_normal(n),
        *[c.standard_normal(n) for c in CounterNormalRNG(1).spawn(2)],
    ]
    for b in others:
        assert abs(np.dot(a, b) / n) < 5 / math.sqrt(n)


def test_float32_and_float64_agree():
    n = 1 << 20
    z64 = CounterNormalRNG(3).standard_normal(n)
    z32 = CounterNormalRNG(3).standard_normal(n, dtype=np.float32)
    # same stream: the float32 path approximates the same quantiles to ~2 ulp
    assert np.all(np.abs(z32 - z64) <= 1e-6 * np.maximum(1.0, np.abs(z64)))
    # different streams: same law
    other = CounterNormalRNG(4).standard_normal(n, dtype=np.float32)
    assert scipy.stats.ks_2samp(z64, other).pvalue > 1e-3


# ------------------------------------------------------------------------------------------------
# reproducibility
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_seed_same_numbers(dtype):
    a = CounterNormalRNG(11, stream=2).standard_normal((64, 1024), dtype)
    b = CounterNormalRNG(11, stream=2).standard_normal((64, 1024), dtype)
    assert a.dtype == dtype and a.shape == (64, 1024)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunks_equal_one_fill(dtype):
    sizes = [1, 1023, 1024, 5000, 8191, 8192, 20000, 3, 65536, 100001]  # both sides of the serial cut
    whole = CounterNormalRNG(12, position=999).standard_normal(sum(sizes), dtype)
    rng = CounterNormalRNG(12, position=999)
    parts = [rng.standard_normal(s, dtype) for s in sizes]
    assert rng.position == 999 + sum(sizes)
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_independent_of_thread_count(dtype):
    before = numba.get_num_threads()
    try:
        results = []
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS), numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            results.append(CounterNormalRNG(13, position=500).standard_normal(1 << 18, dtype))
    finally:
        numba.set_num_threads(before)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_resume_at_position_and_advance():
    rng = CounterNormalRNG(14, stream=3)
    first = rng.standard_normal(70000)
    assert rng.position == 70000
    rest = rng.standard_normal(1000)
    np.testing.assert_array_equal(CounterNormalRNG(14, stream=3, position=70000).standard_normal(1000), rest)
    skip = CounterNormalRNG(14, stream=3).advance(69000)
    np.testing.assert_array_equal(skip.standard_normal(1000), first[69000:])
    clone = pickle.loads(pickle.dumps(rng))
    np.testing.assert_array_equal(clone.standard_normal(10), rng.standard_normal(10))


def test_different_seeds_and_streams_differ():
    draws = [
        CounterNormalRNG(seed, stream).standard_normal(1000)
        for seed, stream in [(0, 0), (1, 0), (0, 1), (2**64 - 1, 0), (0, 2**62 - 1)]
    ]
    for i in range(len(draws)):
        for j in range(i):
            assert not np.any(draws[i] == draws[j])


def test_spawn():
    parent = CounterNormalRNG(21, stream=4)
    kids = parent.spawn(3) + parent.spawn(2)
    assert parent.n_children_spawned == 5
    streams = [k.stream for k in kids]
    assert len(set(streams + [4])) == 6 and all(k.seed == 21 and k.position == 0 for k in kids)
    # reproducible and resumable
    assert [k.stream for k in CounterNormalRNG(21, stream=4).spawn(5)] == streams
    assert [k.stream for k in CounterNormalRNG(21, stream=4, n_children_spawned=3).spawn(2)] == streams[3:]
    grandkids = kids[0].spawn(2)
    assert not set(k.stream for k in grandkids) & set(streams + [4])
    assert parent.spawn(0) == []


def test_shapes_and_empty():
    rng = CounterNormalRNG(5)
    assert rng.standard_normal().shape == () and rng.position == 1
    assert rng.standard_normal(0).shape == (0,) and rng.position == 1
    out = np.empty((3, 0, 2), np.float32)
    assert rng.fill(out) is out and rng.position == 1
    assert rng.standard_normal((2, 3), "float32").dtype == np.float32


# ------------------------------------------------------------------------------------------------
# errors
def test_bad_arrays():
    rng = CounterNormalRNG(0)
    with pytest.raises(ValueError, match="C-contiguous"):
        rng.fill(np.empty((8, 8))[:, ::2])
    with pytest.raises(ValueError, match="C-contiguous"):
        rng.fill(np.empty((8, 8), order="F"))
    with pytest.raises(TypeError, match="dtype"):
        rng.fill(np.empty(8, np.float16))
    with pytest.raises(TypeError, match="dtype"):
        rng.fill(np.empty(8, np.int64))
    with pytest.raises(TypeError, match="ndarray"):
        rng.fill([0.0] * 8)
    ro = np.empty(8)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        rng.fill(ro)
    with pytest.raises(TypeError, match="dtype"):
        rng.standard_normal(4, dtype=np.int32)
    with pytest.raises(TypeError, match="dtype"):
        rng.standard_normal(4, dtype="complex128")
    assert rng.position == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="seed"):
        CounterNormalRNG(-1)
    with pytest.raises(ValueError, match="seed"):
        CounterNormalRNG(2**64)
    with pytest.raises(TypeError, match="seed"):
        CounterNormalRNG(1.5)
    with pytest.raises(TypeError, match="seed"):
        CounterNormalRNG(True)
    with pytest.raises(ValueError, match="stream"):
        CounterNormalRNG(0, stream=-3)
    with pytest.raises(ValueError, match="stream"):
        CounterNormalRNG(0, stream=2**62)
    with pytest.raises(ValueError, match="position"):
        CounterNormalRNG(0, position=-1)
    with pytest.raises(ValueError, match="exhausted"):
        CounterNormalRNG(0, position=2**62 - 3).standard_normal(4)
    with pytest.raises(ValueError, match="n"):
        CounterNormalRNG(0).spawn(-1)
    assert CounterNormalRNG(np.uint64(2**64 - 1)).seed == 2**64 - 1
