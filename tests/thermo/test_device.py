"""The device description: validation naming the field, presets that say where they come from,
the knobs' arithmetic, tables and files (old chip tables with device keys load with a warning)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from thermo import DEVICES, LINKS, DeviceSpec, HardwareSpec, as_device, device_preset
from thermo.device import CouplingDelivery, LinkSpec, device_from_table, link_preset, load_device
from thermo.errors import DeviceSpecError, HardwareSpecError, LegacyFormatWarning


def test_the_default_device_is_one_published_chip_on_the_papers_link():
    dev = DeviceSpec()
    assert dev.chip == HardwareSpec.published() and dev.n_chips == 1
    assert (dev.link.bandwidth_bps, dev.link.latency_s) == (50e9, 1e-6)
    assert dev.coupling_delivery is CouplingDelivery.SHARED
    assert (dev.dac_channels, dev.adc_channels, dev.resident_couplings, dev.replicas) == (None, None, False, False)
    assert as_device(HardwareSpec.ideal()) == DeviceSpec(chip=HardwareSpec.ideal())
    assert as_device(dev) is dev
    with pytest.raises(DeviceSpecError, match="HardwareSpec or DeviceSpec"):
        as_device("published")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(n_chips=0), "n_chips"),
        (dict(n_chips=True), "n_chips"),
        (dict(n_chips=2.0), "n_chips"),
        (dict(coupling_delivery="multicast"), "coupling_delivery"),
        (dict(dac_channels=0), "dac_channels"),
        (dict(adc_channels=1.5), "adc_channels"),
        (dict(chip=HardwareSpec(n_units=8), adc_channels=16), "adc_channels"),
        (dict(resident_couplings=1), "resident_couplings"),
        (dict(replicas=True), "replicas"),  # an unbounded chip has no spare units
        (dict(chip="published"), "chip"),
        (dict(link=50e9), "link"),
        (dict(name=3), "name"),
    ],
)
def test_impossible_devices_name_the_field(changes, field):
    with pytest.raises(DeviceSpecError, match=f"DeviceSpec.{field}"):
        DeviceSpec(**changes)


@pytest.mark.parametrize("changes, field", [(dict(bandwidth_bps=0.0), "bandwidth_bps"), (dict(latency_s=-1.0), "latency_s"),
                                            (dict(bandwidth_bps=math.inf), "bandwidth_bps"), (dict(name=None), "name")])
def test_impossible_links_name_the_field(changes, field):
    with pytest.raises(DeviceSpecError, match=f"LinkSpec.{field}"):
        LinkSpec(**{"bandwidth_bps": 1e9, "latency_s": 0.0, **changes})


def test_knob_arithmetic():
    dev = DeviceSpec(chip=HardwareSpec.published(n_units=100), replicas=True, adc_channels=4, dac_channels=10)
    assert (dev.copies(30), dev.copies(100), dev.copies(101)) == (3, 1, 1)
    assert dev.adc_rounds(30) == 8 and dev.dac_rounds(900, 30) == 90
    # 8 conversions of 10 ns = 80 ns is shorter than the chip's 100 ns: the chip rate holds
    assert dev.sample_interval_s(30) == pytest.approx(1e-7)
    assert dev.sample_interval_s(60) == pytest.approx(15 * 1e-8)
    assert DeviceSpec().copies(5) == 1 and DeviceSpec().adc_rounds(1000) == 1
    assert dev.with_converter_channels(None) == dev.replace(dac_channels=None, adc_channels=None)


def test_presets_say_where_they_come_from_and_differ_where_they_should():
    assert DEVICES.names() == ("published", "paper-2024-tngd", "noisy", "aggressive")
    for name in DEVICES:
        dev = device_preset(name)
        assert dev.name == name and dev.source
    paper = device_preset("PAPER-2024-TNGD")
    assert (paper.chip.bits_A, paper.chip.bits_b, paper.chip.bits_adc) == (16, 16, 16)
    assert paper.link.bandwidth_bps == 50e9 and paper.chip.tau_s == pytest.approx(1e-6)
    assert (paper.link.latency_s, paper.chip.dac_conversion_s, paper.chip.adc_conversion_s) == (0.0, 0.0, 0.0)
    aggressive = device_preset("aggressive")
    assert aggressive.coupling_delivery is CouplingDelivery.BROADCAST and aggressive.resident_couplings
    assert aggressive.replicas and aggressive.chip.readout == "accumulate" and "assumption" in aggressive.source
    assert device_preset("published") == DeviceSpec(name="published", source=device_preset("published").source)
    assert link_preset("PCIe5-x16").bandwidth_bps == 504e9 and "pcie4-x16" in LINKS
    with pytest.raises(DeviceSpecError, match="unknown device preset 'warp'; choose one of published"):
        device_preset("warp")


def test_tables_round_trip_and_files_load(tmp_path):
    dev = device_preset("aggressive").replace(adc_channels=2)
    assert device_from_table(dev.to_dict()) == dev
    ideal = DeviceSpec(chip=HardwareSpec.ideal(), n_chips=2)  # None fields are left out and restored
    assert device_from_table(ideal.to_dict()) == ideal
    (tmp_path / "dev.toml").write_text(
        'preset = "published"\nn_chips = 4\ncoupling_delivery = "per-chip"\nlink = "pcie4-x16"\n'
        '[chip]\nn_units = 64\nbits_A = 8\n'
    )
    loaded = load_device(tmp_path / "dev.toml")
    assert loaded == device_preset("published").replace(
        n_chips=4, coupling_delivery=CouplingDelivery.PER_CHIP, link=link_preset("pcie4-x16"),
        chip=HardwareSpec.published(n_units=64, bits_A=8))
    assert device_preset(str(tmp_path / "dev.toml")) == loaded
    with pytest.raises(DeviceSpecError, match=r"unknown key\(s\) \['chips'\]"):
        device_from_table({"chips": 2})
    with pytest.raises(HardwareSpecError, match=r"unknown key\(s\) \['bits'\] in \[device.chip\]"):
        device_from_table({"chip": {"bits": 2}})


def test_old_device_keys_in_a_chip_table_move_to_the_device_with_a_warning():
    with pytest.warns(LegacyFormatWarning, match=r"link_bandwidth_bps -> device.link.bandwidth_bps.*n_chips -> device.n_chips"):
        dev = device_from_table({"chip": {"preset": "published", "n_chips": 3, "link_bandwidth_bps": 1e9}})
    assert dev.n_chips == 3 and dev.link.bandwidth_bps == 1e9 and dev.chip == HardwareSpec.published()
    fields = {f.name for f in dataclasses.fields(HardwareSpec)}
    assert not {"n_chips", "link_bandwidth_bps", "link_latency_s"} & fields


def test_an_explicit_device_field_wins_over_the_old_key_of_its_chip():
    with pytest.warns(LegacyFormatWarning, match=r"link_bandwidth_bps -> device.link.bandwidth_bps.*n_chips ignored"):
        dev = device_from_table({"chip": {"preset": "published", "n_chips": 3, "link_bandwidth_bps": 1e9}, "n_chips": 2})
    assert dev.n_chips == 2 and dev.link.bandwidth_bps == 1e9
