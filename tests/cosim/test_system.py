import copy
import dataclasses
import itertools
import math
import pickle
import warnings

import pytest

import thermo
from cosim.system import (
    A100,
    DEFAULT_LAUNCH_OVERHEAD_S,
    GPU_PRESETS,
    H100,
    PRECISIONS,
    V100,
    GPUSpec,
    SystemSpec,
    SystemSpecError,
    gpu_preset,
)
from thermo import DEVICES, LINKS, DeviceSpec, HardwareSpec, HardwareSpecError, LegacyFormatWarning, device_preset
from thermo.device import CouplingDelivery, LinkSpec, link_preset
from thermo.errors import DeviceSpecError

T = 1e12


def _gpu(**overrides):
    base = dict(
        name="toy",
        peak_flops={"float32": 2e12, "float64": 1e12},
        memory_bandwidth_bps=1e11,
        launch_overhead_s=1e-6,
    )
    base.update(overrides)
    return GPUSpec(**base)


# --- GPU ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GPU_PRESETS))
def test_gpu_presets_are_frozen_hashable_and_sourced(name):
    gpu = gpu_preset(name)
    assert gpu.name == name
    assert "datasheet" in gpu.source and "assumption" in gpu.source
    assert gpu.launch_overhead_s == DEFAULT_LAUNCH_OVERHEAD_S
    assert gpu.compute_efficiency == gpu.memory_efficiency == 1.0
    hash(gpu)
    with pytest.raises(dataclasses.FrozenInstanceError):
        gpu.compute_efficiency = 0.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        gpu.peak_flops["float32"] = 1.0  # type: ignore[index]


def test_specs_pickle_copy_and_convert_like_plain_dataclasses():
    spec = SystemSpec.default()
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert copy.deepcopy(spec) == spec
    assert dataclasses.asdict(spec)["gpu"]["peak_flops"] == dict(A100.peak_flops)
    with pytest.raises(TypeError, match="read-only"):
        pickle.loads(pickle.dumps(A100)).peak_flops.update({"float32": 1.0})


def test_gpu_preset_figures_match_the_datasheets():
    assert dict(V100.peak_flops) == {"float64": 7.8 * T, "float32": 15.7 * T, "float16": 125 * T}
    assert (V100.memory_bandwidth_bps, V100.power_w) == (900e9, 300.0)
    assert dict(A100.peak_flops) == {
        "float64": 9.7 * T,
        "float32": 19.5 * T,
        "tf32": 156 * T,
        "bfloat16": 312 * T,
        "float16": 312 * T,
    }
    assert (A100.memory_bandwidth_bps, A100.power_w) == (2039e9, 400.0)
    # H100 datasheet prints sparsity figures (989 TF32, 1979 BF16): dense is half.
    assert H100.peak("tf32") == pytest.approx(989.4 * T / 2)
    assert H100.peak("bfloat16") == H100.peak("float16") == 989.4 * T
    assert (H100.peak("float64"), H100.peak("float32")) == (34 * T, 67 * T)
    assert (H100.memory_bandwidth_bps, H100.power_w) == (3.35e12, 700.0)


def test_gpu_preset_is_case_insensitive_and_takes_overrides():
    assert gpu_preset("a100") is A100
    tuned = gpu_preset("h100", compute_efficiency=0.7)
    assert tuned.compute_efficiency == 0.7 and tuned.peak_flops == H100.peak_flops
    with pytest.raises(SystemSpecError, match="unknown GPU preset 'B200'.*A100"):
        gpu_preset("B200")


def test_peak_of_an_unlisted_precision_names_it_and_lists_the_gpus():
    with pytest.raises(SystemSpecError, match=r"'tf32'.*\['float64', 'float32', 'float16'\]"):
        V100.peak("tf32")


def test_peak_flops_are_canonical_whatever_the_spelling():
    a = _gpu(peak_flops={"float64": 1e12, "float32": 2e12})
    b = _gpu(peak_flops={"float32": 2_000_000_000_000, "float64": 1e12})
    assert a == b and hash(a) == hash(b)
    assert a.precisions == ("float64", "float32")
    assert isinstance(b.peak("float32"), float)


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", ""),
        ("peak_flops", {}),
        ("peak_flops", {"float8": 1e12}),
        ("peak_flops", {"float32": -1.0}),
        ("peak_flops", {"float32": math.inf}),
        ("memory_bandwidth_bps", 0.0),
        ("memory_bandwidth_bps", math.nan),
        ("launch_overhead_s", -1e-6),
        ("compute_efficiency", 0.0),
        ("compute_efficiency", 1.5),
        ("memory_efficiency", -0.1),
        ("power_w", 0.0),
        ("source", None),
    ],
)
def test_gpu_validation_names_the_field(field, value):
    with pytest.raises(SystemSpecError, match=f"GPUSpec.{field}"):
        _gpu(**{field: value})


def test_unknown_precision_lists_the_known_ones():
    with pytest.raises(SystemSpecError, match="'float8'.*" + ".*".join(PRECISIONS)):
        _gpu(peak_flops={"float8": 1.0})


# --- link (described in thermo.device) ----------------------------------------------------
def test_link_presets_follow_the_lane_arithmetic():
    # 16 lanes at 16 (PCIe 4) or 32 (PCIe 5) GT/s with 128b/130b encoding, in bit/s.
    assert link_preset("PCIe4-x16").bandwidth_bps == pytest.approx(16 * 16e9 * 128 / 130, rel=2e-3)
    assert link_preset("pcie5-x16").bandwidth_bps == pytest.approx(16 * 32e9 * 128 / 130, rel=2e-3)
    assert LINKS.get("paper-50gbps").bandwidth_bps == 50e9
    for name in LINKS:
        assert LINKS.get(name).name == name
    with pytest.raises(DeviceSpecError, match="unknown link preset"):
        link_preset("nvlink")


# --- system ---------------------------------------------------------------------------------
def test_default_system_is_an_a100_and_the_published_device():
    spec = SystemSpec.default()
    assert spec.gpu is A100 and spec.device == device_preset("published")
    assert spec.device.chip == HardwareSpec.published() and spec.device.link == LINKS.get("paper-50gbps")
    assert spec.resources() == {"gpu": 1, "link": 1, "analog": 1}
    custom = SystemSpec.from_presets("V100", "pcie4-x16", "noisy", n_chips=2, units_per_chip=32,
                                     coupling_delivery="per-chip")
    assert custom.device.chip == thermo.preset("noisy", n_units=32) and custom.device.n_chips == 2
    assert custom.device.link == LINKS.get("pcie4-x16")
    assert custom.resources() == {"gpu": 1, "link": 2, "analog": 2}  # one link per chip


def test_system_validation_names_the_field():
    with pytest.raises(SystemSpecError, match="SystemSpec.gpu"):
        SystemSpec(gpu="A100")  # type: ignore[arg-type]
    with pytest.raises(SystemSpecError, match="SystemSpec.device"):
        SystemSpec(gpu=A100, device=HardwareSpec.published())  # type: ignore[arg-type]


# --- serialization --------------------------------------------------------------------------
def _has_none(value):
    if isinstance(value, dict):
        return any(_has_none(v) for v in value.values())
    return value is None


def _round_trips(spec, tmp_path):
    data = spec.to_dict()
    assert not _has_none(data)
    assert SystemSpec.from_dict(data) == spec
    for suffix in (".toml", ".yaml", ".yml"):
        path = spec.save(tmp_path / f"spec{suffix}")
        assert SystemSpec.load(path) == spec, suffix


@pytest.mark.parametrize(
    "gpu, link, hardware",
    list(itertools.product(GPU_PRESETS.names(), LINKS.names(), thermo.PRESETS.names())),
)
def test_every_preset_combination_round_trips_exactly(gpu, link, hardware, tmp_path):
    _round_trips(SystemSpec.from_presets(gpu, link, hardware, n_chips=2, name="x"), tmp_path)


@pytest.mark.parametrize("device", DEVICES.names())
def test_every_device_preset_round_trips_exactly(device, tmp_path):
    _round_trips(SystemSpec.from_presets(device=device), tmp_path)


def test_non_default_specs_round_trip_exactly(tmp_path):
    noisy = thermo.preset("noisy", kT=1.234567890123e-5, chip_seed=7, readout="stream", n_units=17)
    spec = SystemSpec(
        gpu=_gpu(compute_efficiency=0.123456789, power_w=None, source="measured"),
        device=DeviceSpec(chip=noisy, n_chips=5, link=LinkSpec(bandwidth_bps=0.1 + 0.2, latency_s=0.0),
                          coupling_delivery=CouplingDelivery.BROADCAST, adc_channels=3, resident_couplings=True,
                          replicas=True),
        name="non-default",
        notes='quotes " and\nnewlines',
    )
    _round_trips(spec, tmp_path)
    # Ideal hardware: infinite rails and every None-valued converter field.
    ideal = SystemSpec.from_presets(hardware="ideal")
    assert math.isinf(ideal.device.chip.v_range_v)
    _round_trips(ideal, tmp_path)
    assert "v_range_v = inf" in (tmp_path / "spec.toml").read_text()
    assert "v_range_v: .inf" in (tmp_path / "spec.yaml").read_text()


def test_presets_can_be_referenced_by_name_and_overridden():
    spec = SystemSpec.from_dict(
        {
            "gpu": {
                "preset": "A100",
                "compute_efficiency": 0.6,
                "peak_flops": {"float64": 19.5e12},
            },
            "device": {"preset": "published", "n_chips": 4},
        }
    )
    assert spec.gpu == A100.replace(
        compute_efficiency=0.6, peak_flops={**A100.peak_flops, "float64": 19.5e12}
    )
    assert spec.device == device_preset("published").replace(n_chips=4)
    partial = SystemSpec.from_dict(
        {"device": {"link": {"preset": "pcie4-x16", "latency_s": 2e-6}, "chip": {"preset": "noisy", "bits_A": 10}}}
    )
    assert partial.gpu == SystemSpec.default().gpu
    assert partial.device.link == LINKS.get("pcie4-x16").replace(latency_s=2e-6)
    assert partial.device.chip == thermo.preset("noisy", bits_A=10)
    assert SystemSpec.from_dict({"device": {"chip": "ideal"}}).device.chip == HardwareSpec.ideal()
    assert SystemSpec.from_dict({"device": "aggressive"}).device == device_preset("aggressive")
    assert SystemSpec.from_dict({}) == SystemSpec.default().replace(name="", notes="")


@pytest.mark.parametrize(
    "data, error, pattern",
    [
        ({"gpus": "A100"}, SystemSpecError, r"'gpus'.*\[top level\]"),
        ({"gpu": {"preset": "A100", "flops": 1}}, SystemSpecError, r"'flops'.*\[gpu\]"),
        ({"device": {"link": {"bandwidth_bps": 1e9, "latency_s": 0, "mtu": 9000}}}, DeviceSpecError,
         r"'mtu'.*\[device.link\]"),
        ({"device": {"chips": 2}}, DeviceSpecError, r"'chips'.*\[device\]"),
        ({"device": {"chip": {"tau": 1e-6}}}, HardwareSpecError, r"'tau'.*\[device.chip\]"),
        ({"gpu": {"name": "x", "memory_bandwidth_bps": 1e9}}, SystemSpecError, r"\[gpu\].*'peak_flops'"),
        ({"gpu": "TPU"}, SystemSpecError, "unknown GPU preset 'TPU'"),
        ({"device": {"chip": "perfect"}}, DeviceSpecError, "unknown hardware preset 'perfect'"),
        ({"device": "warp"}, DeviceSpecError, "unknown device preset 'warp'"),
        ({"gpu": ["A100"]}, SystemSpecError, r"\[gpu\] must be a table"),
        ({"gpu": {"preset": "A100", "compute_efficiency": 2.0}}, SystemSpecError, "GPUSpec.compute_efficiency"),
        ({"device": {"n_chips": 2}, "link": "pcie4-x16"}, SystemSpecError, r"mixes the old sections \['link'\]"),
    ],
)
def test_bad_dicts_name_the_key_and_section(data, error, pattern):
    with pytest.raises(error, match=pattern):
        SystemSpec.from_dict(data)


def test_bad_hardware_values_raise_the_thermo_error_naming_the_field():
    with pytest.raises(HardwareSpecError, match="bits_A"):
        SystemSpec.from_dict({"device": {"chip": {"preset": "published", "bits_A": 1}}})


def test_file_suffix_must_be_toml_or_yaml(tmp_path):
    with pytest.raises(SystemSpecError, match=r"'\.json'.*\.toml, \.yaml or \.yml"):
        SystemSpec.default().save(tmp_path / "spec.json")
    with pytest.raises(SystemSpecError, match="suffix"):
        SystemSpec.load(tmp_path / "spec")


def test_hand_written_files_load(tmp_path):
    # YAML 1.1 would read 900e9 (no dot) as a string: the loader reads it as a float.
    (tmp_path / "a.yaml").write_text(
        "gpu:\n  name: mine\n  peak_flops: {float32: 14e12}\n  memory_bandwidth_bps: 900e9\n"
        "device:\n  link: pcie4-x16\n  chip: {preset: noisy, bits_adc: null, v_range_v: .inf}\n"
    )
    spec = SystemSpec.load(tmp_path / "a.yaml")
    assert spec.gpu == GPUSpec("mine", {"float32": 14e12}, 900e9)
    assert spec.device.chip == thermo.preset("noisy", bits_adc=None, v_range_v=math.inf)
    assert spec.device.link == LINKS.get("pcie4-x16")


OLD_FILES = {
    "b.toml": ('gpu = "H100"\nlink = "pcie5-x16"\n[analog]\nn_chips = 8\nunits_per_chip = 128\n'
               '[analog.hardware]\npreset = "published"\n'),
    "c.yaml": ("gpu: H100\nlink: {bandwidth_bps: 1.0e9, latency_s: 3.0e-6}\nanalog:\n  n_chips: 8\n"
               "  units_per_chip: 128\n  hardware: {preset: published, link_bandwidth_bps: 7.0e9, n_chips: 8}\n"),
    "d.toml": 'gpu = "H100"\nanalog = "noisy"\n',
}


@pytest.mark.parametrize("name", sorted(OLD_FILES))
def test_old_layout_files_load_with_a_warning_and_give_the_same_system(name, tmp_path):
    path = tmp_path / name
    path.write_text(OLD_FILES[name])
    with pytest.warns(LegacyFormatWarning, match=f"system file {path} uses the old layout"):
        spec = SystemSpec.load(path)
    expected = {
        "b.toml": SystemSpec.from_presets("H100", "pcie5-x16", "published", n_chips=8, units_per_chip=128),
        # the system's link was authoritative: the hardware's own link field was overridden
        "c.yaml": SystemSpec(gpu=H100, device=device_preset("published").replace(
            link=LinkSpec(bandwidth_bps=1e9, latency_s=3e-6), n_chips=8, chip=HardwareSpec.published(n_units=128))),
        "d.toml": SystemSpec.from_presets("H100", hardware="noisy"),
    }[name]
    assert spec == expected
    # saved again, it is in the new layout and loads without a warning
    spec.save(tmp_path / "new.toml")
    assert "[device" in (tmp_path / "new.toml").read_text() and "[analog" not in (tmp_path / "new.toml").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SystemSpec.load(tmp_path / "new.toml") == spec


def test_old_layout_with_two_chip_counts_is_refused():
    with pytest.warns(LegacyFormatWarning), pytest.raises(SystemSpecError, match="set the chip count once"):
        SystemSpec.from_dict({"analog": {"n_chips": 3, "hardware": {"preset": "published", "n_chips": 2}}})
