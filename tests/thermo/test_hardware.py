import math

import pytest

from thermo import HardwareSpec, HardwareSpecError, preset
from thermo.capabilities import required
from thermo.hardware import johnson_noise_variance


@pytest.mark.parametrize("name", ["ideal", "published", "noisy"])
def test_presets_validate_and_are_frozen(name):
    spec = preset(name)
    with pytest.raises(AttributeError):
        spec.tau_s = 2.0  # type: ignore[misc]


def test_published_preset_carries_the_paper_figures():
    spec = HardwareSpec.published()
    assert spec.tau_s == pytest.approx(1e-6)  # R = 1 kOhm, C = 1 nF
    assert (spec.bits_A, spec.bits_b, spec.bits_adc) == (16, 16, 16)
    # the paper's 50 Gb/s link belongs to the device, not to the chip
    assert not hasattr(spec, "link_bandwidth_bps") and not hasattr(spec, "n_chips")


def test_ideal_preset_has_every_nonideality_off():
    spec = HardwareSpec.ideal()
    assert not spec.has_quantization
    assert math.isinf(spec.v_range_v)
    assert not required(spec) and spec.n_units is None


@pytest.mark.parametrize(
    "field, value",
    [
        ("tau_s", 0.0),
        ("tau_s", -1.0),
        ("kT", -1e-6),
        ("bits_A", 1),
        ("bits_adc", 64),
        ("bits_b", 3.5),
        ("sample_rate_hz", 0.0),
        ("mismatch_sigma", -0.1),
        ("n_units", 0),
        ("drift_timescale_s", math.inf),
        ("regime", "critical"),
        ("rounding", "up"),
    ],
)
def test_impossible_values_name_the_field(field, value):
    with pytest.raises(HardwareSpecError, match=field):
        HardwareSpec(**{field: value})


def test_consistency_rules():
    with pytest.raises(HardwareSpecError, match="mass_s2"):
        HardwareSpec(regime="underdamped")
    with pytest.raises(HardwareSpecError, match="v_range_v"):
        HardwareSpec(bits_adc=8)  # an ADC needs a finite range
    with pytest.raises(HardwareSpecError, match="sample_rate_hz"):
        HardwareSpec(sample_rate_hz=1e9, adc_conversion_s=1e-8)


def test_replace_revalidates_and_derived_units():
    spec = HardwareSpec.published()
    with pytest.raises(HardwareSpecError, match="tau_s"):
        spec.replace(tau_s=0.0)
    faster = spec.replace(sample_rate_hz=2e7)
    assert faster.sample_interval_tau == pytest.approx(0.05)
    under = spec.replace(regime="underdamped", mass_s2=0.25e-12)
    assert under.mass_tau2 == pytest.approx(0.25)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(HardwareSpecError, match="published"):
        preset("quantum")


def test_johnson_noise():
    # k_B T / C at 300 K and 1 nF is 4.14e-12 V^2
    assert johnson_noise_variance(300.0, 1e-9) == pytest.approx(4.141947e-12, rel=1e-6)


def test_with_converter_bits_sets_all_three_converters():
    from thermo import HardwareSpec

    hw = HardwareSpec.published().with_converter_bits(6)
    assert (hw.bits_A, hw.bits_b, hw.bits_adc) == (6, 6, 6)
    assert hw.tau_s == HardwareSpec.published().tau_s
