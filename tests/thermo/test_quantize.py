import numpy as np
import pytest

from thermo.backends import NumpyBackend
from thermo.errors import HardwareSpecError
from thermo.quantize import Quantizer

BACKEND = NumpyBackend()


def test_grid_is_symmetric_mid_tread_with_exact_rails():
    q = Quantizer(4, 1.0)
    assert q.step == pytest.approx(1 / 7)
    x = np.linspace(-1, 1, 1001)
    y, clipped = q.apply(x, BACKEND)
    assert clipped == 0
    levels = np.unique(np.round(y / q.step))
    assert levels.min() == -7 and levels.max() == 7 and 0 in levels
    assert np.abs(y - x).max() <= q.step / 2 + 1e-12


def test_clipping_counts_saturated_values():
    q = Quantizer(8, 0.5)
    y, clipped = q.apply(np.array([-2.0, -0.5, 0.1, 0.7, 3.0]), BACKEND)
    assert clipped == 3  # -2.0, 0.7 and 3.0 exceed the rails
    assert y.min() == pytest.approx(-0.5) and y.max() == pytest.approx(0.5)


def test_ideal_converter_only_clips():
    y, clipped = Quantizer(None, 1.0).apply(np.array([0.1234567, 2.0]), BACKEND)
    assert y[0] == 0.1234567 and y[1] == 1.0 and clipped == 1


def test_stochastic_rounding_is_unbiased():
    q = Quantizer(6, 1.0, "stochastic")
    rng = BACKEND.random(3)
    x = np.full(200_000, 0.3 * q.step + 5 * q.step)
    y, _ = q.apply(x, BACKEND, rng)
    # each draw is a Bernoulli(0.3) choice between two levels one step apart:
    # the mean's standard error is step * sqrt(0.3 * 0.7 / n)
    se = q.step * np.sqrt(0.21 / x.size)
    assert abs(y.mean() - x[0]) < 5 * se
    assert set(np.round(y / q.step).astype(int)) == {5, 6}


def test_nearest_rounding_error_variance_is_step_squared_over_12():
    q = Quantizer(10, 1.0)
    x = np.random.default_rng(0).uniform(-1, 1, 400_000)
    y, _ = q.apply(x, BACKEND)
    var = np.var(y - x)
    # uniform error on [-step/2, step/2]: variance step^2/12; the sample variance of n uniform
    # errors has relative standard error sqrt(0.8 / n) (kurtosis 1.8)
    assert var == pytest.approx(q.step**2 / 12, rel=5 * np.sqrt(0.8 / x.size))


def test_bad_quantizer():
    with pytest.raises(HardwareSpecError):
        Quantizer(1, 1.0)
    with pytest.raises(HardwareSpecError):
        Quantizer(8, 0.0)
