import pytest

from thermo import HardwareSpec, preset
from thermo.config_files import read_table
from thermo.errors import ConfigFileError, HardwareSpecError, LegacyFormatWarning
from thermo.hardware import load_hardware


def test_a_hardware_file_starts_from_its_preset_and_overrides_fields(tmp_path):
    (tmp_path / "hw.toml").write_text('preset = "published"\nbits_A = 8\ntau_s = 1e-7\n')
    (tmp_path / "hw.yaml").write_text("bits_b: 12\nkT: 1e-5\n")  # no dot: still a float
    assert load_hardware(tmp_path / "hw.toml") == HardwareSpec.published(bits_A=8, tau_s=1e-7)
    assert preset(str(tmp_path / "hw.yaml")) == HardwareSpec(bits_b=12, kT=1e-5)
    assert preset(str(tmp_path / "hw.toml"), n_units=4).n_units == 4


def test_a_hardware_file_with_old_device_keys_warns_and_keeps_the_chip(tmp_path):
    (tmp_path / "old.toml").write_text('preset = "published"\nn_chips = 4\nlink_bandwidth_bps = 1e9\n')
    with pytest.warns(LegacyFormatWarning, match=r"link_bandwidth_bps, n_chips describe the device"):
        assert load_hardware(tmp_path / "old.toml") == HardwareSpec.published()


def test_preset_names_ignore_case_and_unknown_ones_list_the_choices():
    assert preset("Published") == HardwareSpec.published()
    with pytest.raises(HardwareSpecError, match=r"'quantum'.*ideal, published, noisy.*hardware file"):
        preset("quantum")


@pytest.mark.parametrize(
    "name, text, pattern",
    [
        ("missing.toml", None, "does not exist"),
        ("bad.yaml", "gpu:\n  name: [unclosed\n", r"not valid YAML at line 3"),
        ("bad.toml", "bits_A = \n", "not valid TOML"),
        ("list.yaml", "- 1\n- 2\n", "must hold a table"),
        ("hw.json", "{}", "suffix '.json'"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, name, text, pattern):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigFileError, match=pattern):
        read_table(path)


def test_unknown_hardware_keys_are_named(tmp_path):
    (tmp_path / "hw.toml").write_text("tau = 1e-6\n")
    with pytest.raises(HardwareSpecError, match=r"unknown key\(s\) \['tau'\]"):
        load_hardware(tmp_path / "hw.toml")
