"""Run projections: the offload bound against a device whose every operation costs nothing."""

from __future__ import annotations

import pytest

from cosim.runs import REPLACED_PHASES, compare, device_free_s, offload_bound
from cosim.shapes import LayerShape, ModelShape
from cosim.step_graphs import StepModel
from cosim.system import SystemSpec
from thermo import DeviceSpec, HardwareSpec
from thermo.device import LinkSpec

SHAPE = ModelShape((LayerShape("a", 256, 256, 4), LayerShape("b", 256, 64, 4)), batch_size=32, output_dim=64)


def free_device() -> DeviceSpec:
    """A device on which every operation takes (numerically) no time: no latency, an endless
    link, instant converters and settling, and a chip far faster than anything else."""
    chip = HardwareSpec.ideal(tau_s=1e-30, kT=1e-30, sample_rate_hz=1e30, dac_conversion_s=0.0,
                              adc_conversion_s=0.0, program_settle_s=0.0)
    return DeviceSpec(chip=chip, n_chips=4, link=LinkSpec(bandwidth_bps=1e300, latency_s=0.0))


@pytest.mark.parametrize("analog_op", ["inverse", "solve"])
@pytest.mark.parametrize("interval", [1, 10])
def test_a_free_device_reaches_exactly_the_printed_bound(analog_op, interval):
    system = SystemSpec.from_presets(gpu="V100").replace(device=free_device())
    common = dict(inv_update_steps=interval, factor_update_steps=interval)
    adam, digital, thermo = compare(SHAPE, system, {
        "adam": (StepModel(method="adam"), 100),
        "kfac": (StepModel(method="kfac", inverse_on="gpu", **common), 100),
        "tkfac": (StepModel(method="kfac", inverse_on="analog", analog_op=analog_op, **common), 100),
    })
    bound = offload_bound(digital, analog_op, adam)
    replaced = sum(digital.phase_s[p] for p in REPLACED_PHASES[analog_op])
    assert bound.replaced_s == pytest.approx(replaced) and 0 < bound.share < 1
    # the thermodynamic run is digital K-FAC's minus the replaced work, and its speedup the bound
    assert thermo.total_s == pytest.approx(digital.total_s - replaced, rel=1e-9)
    assert digital.total_s / thermo.total_s == pytest.approx(bound.vs_kfac, rel=1e-9)
    assert adam.total_s / thermo.total_s == pytest.approx(bound.vs_adam, rel=1e-9)


def test_the_published_device_stays_below_its_bound_and_bad_methods_are_named():
    system = SystemSpec.from_presets(gpu="V100")
    digital, thermo = compare(SHAPE, system, {
        "kfac": (StepModel(method="kfac", inverse_on="gpu"), 100),
        "tkfac": (StepModel(method="kfac", inverse_on="analog"), 100),
    })
    assert digital.total_s / thermo.total_s < offload_bound(digital, "inverse").vs_kfac
    with pytest.raises(ValueError, match="analog_op must be one of inverse, solve"):
        offload_bound(digital, "both")


def test_tngd_on_a_free_device_takes_its_digital_floor():
    system = SystemSpec.from_presets(gpu="V100")
    steps = {"tngd": (StepModel(method="tngd", overlap=False), 100)}
    (free,) = compare(SHAPE, system.replace(device=free_device()), steps)
    (published,) = compare(SHAPE, system, steps)
    assert free.total_s == pytest.approx(device_free_s(free), rel=1e-6)
    # the published device adds its own phases and leaves the digital floor as it was
    assert device_free_s(published) == pytest.approx(device_free_s(free), rel=1e-9)
    assert device_free_s(published) < published.total_s
