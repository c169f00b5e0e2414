import copy
import dataclasses
import itertools
import math
import pickle

import pytest

import thermo
from cosim.system import (
    A100,
    DEFAULT_LAUNCH_OVERHEAD_S,
    GPU_PRESETS,
    H100,
    LINK_PRESETS,
    PRECISIONS,
    V100,
    AnalogSpec,
    GPUSpec,
    LinkSpec,
    SystemSpec,
    SystemSpecError,
    gpu_preset,
    link_preset,
)
from thermo import HardwareSpec, HardwareSpecError

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


# --- link -----------------------------------------------------------------------------------
def test_transfer_time_is_latency_plus_bits_over_bandwidth():
    link = LinkSpec(bandwidth_bps=50e9, latency_s=1e-6)
    n_bytes = 1_000_000
    assert link.transfer_time_s(n_bytes) == pytest.approx(1e-6 + 8 * n_bytes / 50e9, rel=1e-15)
    assert link.transfer_time_s(0) == 1e-6
    with pytest.raises(SystemSpecError, match="n_bytes"):
        link.transfer_time_s(-1)


def test_link_presets_follow_the_lane_arithmetic():
    # 16 lanes at 16 (PCIe 4) or 32 (PCIe 5) GT/s with 128b/130b encoding, in bit/s.
    assert link_preset("PCIe4-x16").bandwidth_bps == pytest.approx(16 * 16e9 * 128 / 130, rel=2e-3)
    assert link_preset("pcie5-x16").bandwidth_bps == pytest.approx(16 * 32e9 * 128 / 130, rel=2e-3)
    assert LINK_PRESETS["paper-50gbps"].bandwidth_bps == HardwareSpec.published().link_bandwidth_bps
    for name, link in LINK_PRESETS.items():
        assert link.name == name
    with pytest.raises(SystemSpecError, match="unknown link preset"):
        link_preset("nvlink")


@pytest.mark.parametrize(
    "field, value",
    [("bandwidth_bps", 0.0), ("bandwidth_bps", math.inf), ("latency_s", -1.0), ("name", 3)],
)
def test_link_validation_names_the_field(field, value):
    kwargs = dict(bandwidth_bps=1e9, latency_s=0.0)
    kwargs[field] = value
    with pytest.raises(SystemSpecError, match=f"LinkSpec.{field}"):
        LinkSpec(**kwargs)


# --- analog ---------------------------------------------------------------------------------
def test_analog_units_fall_back_to_the_hardware():
    assert AnalogSpec().hardware == HardwareSpec.published()
    assert AnalogSpec().units is None
    noisy = thermo.preset("noisy")
    assert AnalogSpec(noisy).units == noisy.n_units
    assert AnalogSpec(noisy, units_per_chip=64).units == 64
    eff = AnalogSpec(noisy, n_chips=3, units_per_chip=64).effective_hardware()
    assert (eff.n_chips, eff.n_units) == (3, 64)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(hardware="published"), "hardware"),
        (dict(n_chips=0), "n_chips"),
        (dict(n_chips=True), "n_chips"),
        (dict(units_per_chip=0), "units_per_chip"),
        (dict(hardware=HardwareSpec(n_chips=2), n_chips=3), "n_chips"),
    ],
)
def test_analog_validation_names_the_field(kwargs, field):
    with pytest.raises(SystemSpecError, match=f"AnalogSpec.{field}"):
        AnalogSpec(**kwargs)


# --- system ---------------------------------------------------------------------------------
def test_default_system_and_the_hardware_it_hands_to_the_timing_model():
    spec = SystemSpec.default()
    assert spec.gpu is A100 and spec.link is LINK_PRESETS["paper-50gbps"]
    assert spec.analog.hardware == HardwareSpec.published()
    custom = SystemSpec(
        gpu=V100,
        link=LinkSpec(bandwidth_bps=1e9, latency_s=3e-6),
        analog=AnalogSpec(thermo.preset("noisy"), n_chips=2, units_per_chip=32),
    )
    hw = custom.analog_hardware()
    assert (hw.link_bandwidth_bps, hw.link_latency_s) == (1e9, 3e-6)
    assert (hw.n_chips, hw.n_units) == (2, 32)
    assert hw.bits_A == thermo.preset("noisy").bits_A


def test_system_validation_names_the_field():
    with pytest.raises(SystemSpecError, match="SystemSpec.gpu"):
        SystemSpec(gpu="A100", link=LINK_PRESETS["pcie4-x16"], analog=AnalogSpec())  # type: ignore[arg-type]


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
    list(itertools.product(sorted(GPU_PRESETS), sorted(LINK_PRESETS), sorted(thermo.PRESETS))),
)
def test_every_preset_combination_round_trips_exactly(gpu, link, hardware, tmp_path):
    _round_trips(SystemSpec.from_presets(gpu, link, hardware, n_chips=2, name="x"), tmp_path)


def test_non_default_specs_round_trip_exactly(tmp_path):
    noisy = thermo.preset("noisy", kT=1.234567890123e-5, chip_seed=7, readout="stream")
    spec = SystemSpec(
        gpu=_gpu(compute_efficiency=0.123456789, power_w=None, source="measured"),
        link=LinkSpec(bandwidth_bps=0.1 + 0.2, latency_s=0.0),
        analog=AnalogSpec(noisy, n_chips=5, units_per_chip=17),
        name="non-default",
        notes='quotes " and\nnewlines',
    )
    _round_trips(spec, tmp_path)
    # Ideal hardware: infinite rails and every None-valued converter field.
    ideal = SystemSpec.from_presets(hardware="ideal")
    assert math.isinf(ideal.analog.hardware.v_range_v)
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
            "link": "paper-50gbps",
            "analog": {"hardware": "published", "n_chips": 4},
        }
    )
    assert spec.gpu == A100.replace(
        compute_efficiency=0.6, peak_flops={**A100.peak_flops, "float64": 19.5e12}
    )
    assert spec.link == LINK_PRESETS["paper-50gbps"]
    assert spec.analog == AnalogSpec(HardwareSpec.published(), n_chips=4)
    partial = SystemSpec.from_dict(
        {
            "link": {"preset": "pcie4-x16", "latency_s": 2e-6},
            "analog": {"hardware": {"preset": "noisy", "bits_A": 10}},
        }
    )
    assert partial.gpu == SystemSpec.default().gpu
    assert partial.link == LINK_PRESETS["pcie4-x16"].replace(latency_s=2e-6)
    assert partial.analog.hardware == thermo.preset("noisy", bits_A=10)
    assert SystemSpec.from_dict({"analog": "ideal"}).analog.hardware == HardwareSpec.ideal()
    assert SystemSpec.from_dict({}) == SystemSpec.default().replace(name="", notes="")


@pytest.mark.parametrize(
    "data, pattern",
    [
        ({"gpus": "A100"}, r"'gpus'.*\[top level\]"),
        ({"gpu": {"preset": "A100", "flops": 1}}, r"'flops'.*\[gpu\]"),
        ({"link": {"bandwidth_bps": 1e9, "latency_s": 0, "mtu": 9000}}, r"'mtu'.*\[link\]"),
        ({"analog": {"chips": 2}}, r"'chips'.*\[analog\]"),
        ({"analog": {"hardware": {"tau": 1e-6}}}, r"'tau'.*\[analog.hardware\]"),
        ({"gpu": {"name": "x", "memory_bandwidth_bps": 1e9}}, r"\[gpu\].*'peak_flops'"),
        ({"gpu": "TPU"}, "unknown GPU preset 'TPU'"),
        ({"analog": {"hardware": "perfect"}}, "unknown hardware preset 'perfect'"),
        ({"gpu": ["A100"]}, r"\[gpu\] must be a table"),
        ({"gpu": {"preset": "A100", "compute_efficiency": 2.0}}, "GPUSpec.compute_efficiency"),
    ],
)
def test_bad_dicts_name_the_key_and_section(data, pattern):
    with pytest.raises(SystemSpecError, match=pattern):
        SystemSpec.from_dict(data)


def test_bad_hardware_values_raise_the_thermo_error_naming_the_field():
    with pytest.raises(HardwareSpecError, match="bits_A"):
        SystemSpec.from_dict({"analog": {"hardware": {"preset": "published", "bits_A": 1}}})


def test_file_suffix_must_be_toml_or_yaml(tmp_path):
    with pytest.raises(SystemSpecError, match=r"'\.json'.*\.toml, \.yaml or \.yml"):
        SystemSpec.default().save(tmp_path / "spec.json")
    with pytest.raises(SystemSpecError, match="suffix"):
        SystemSpec.load(tmp_path / "spec")


def test_hand_written_files_load(tmp_path):
    # YAML 1.1 would read 900e9 (no dot) as a string: the loader reads it as a float.
    (tmp_path / "a.yaml").write_text(
        "gpu:\n  name: mine\n  peak_flops: {float32: 14e12}\n  memory_bandwidth_bps: 900e9\n"
        "link: pcie4-x16\nanalog:\n  hardware: {preset: noisy, bits_adc: null, v_range_v: .inf}\n"
    )
    spec = SystemSpec.load(tmp_path / "a.yaml")
    assert spec.gpu == GPUSpec("mine", {"float32": 14e12}, 900e9)
    assert spec.analog.hardware == thermo.preset("noisy", bits_adc=None, v_range_v=math.inf)
    (tmp_path / "b.toml").write_text(
        'gpu = "H100"\nlink = "pcie5-x16"\n[analog]\nn_chips = 8\nunits_per_chip = 128\n'
        '[analog.hardware]\npreset = "published"\n'
    )
    spec = SystemSpec.load(tmp_path / "b.toml")
    assert spec == SystemSpec.from_presets(
        "H100", "pcie5-x16", "published", n_chips=8, units_per_chip=128
    )
