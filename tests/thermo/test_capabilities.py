"""The declared non-idealities: what each hardware requires, where the dense solver routes it and
what the low-rank device refuses, one table row per Nonideality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thermo import HardwareSpec, SolverConfig, ThermodynamicSolver, exact, lowrank, lowrank_device, stepwise
from thermo.capabilities import (
    TURN_OFF,
    Nonideality,
    UnmodelledHardwareError,
    describe,
    first_covering,
    required,
    unmodelled,
)
from thermo.errors import InputError
from thermo.lowrank import LowRankCurvature
from thermo.matrices import random_spd

D = 6
BASE = HardwareSpec.ideal(kT=1e-8)

# One hardware per member with only that feature (an ADC or clipping inside the dynamics needs
# rails, stochastic rounding a quantized converter), and the solver's route before the declared
# lists existed: the eigenbasis integrator iff the dynamics were linear, symmetric and static, else stepwise with
# exact_step unless drift or clipping inside the dynamics needed Euler-Maruyama.
ROWS = {
    Nonideality.COUPLING_QUANTIZATION: (dict(bits_A=12), ("exact", None)),
    Nonideality.INPUT_QUANTIZATION: (dict(bits_b=12), ("exact", None)),
    Nonideality.ADC_QUANTIZATION: (dict(bits_adc=12, v_range_v=50.0), ("exact", None)),
    Nonideality.STOCHASTIC_ROUNDING: (dict(bits_A=12, rounding="stochastic"), ("exact", None)),
    Nonideality.READOUT_CLIPPING: (dict(v_range_v=50.0), ("exact", None)),
    Nonideality.DYNAMICS_CLIPPING: (dict(v_range_v=50.0, clip_in_dynamics=True), ("stepwise", "euler_maruyama")),
    Nonideality.SYMMETRIC_MISMATCH: (dict(mismatch_sigma=1e-3), ("exact", None)),
    Nonideality.ASYMMETRIC_MISMATCH: (dict(mismatch_sigma=1e-3, mismatch_symmetric=False), ("stepwise", "exact_step")),
    Nonideality.DRIFT: (dict(drift_sigma=1e-3, drift_timescale_s=1e-4), ("stepwise", "euler_maruyama")),
    Nonideality.UNDERDAMPED: (dict(regime="underdamped", mass_s2=0.3e-12), ("exact", None)),
    Nonideality.TILING: (dict(n_units=D // 2), ("exact", None)),  # each block on the eigenbasis path
}
COMPANIONS = {Nonideality.ADC_QUANTIZATION: {Nonideality.READOUT_CLIPPING},
              Nonideality.DYNAMICS_CLIPPING: {Nonideality.READOUT_CLIPPING},
              Nonideality.STOCHASTIC_ROUNDING: {Nonideality.COUPLING_QUANTIZATION}}
# the key words of each member's message
WORDS = {Nonideality.COUPLING_QUANTIZATION: "bits_A", Nonideality.INPUT_QUANTIZATION: "bits_b",
         Nonideality.ADC_QUANTIZATION: "bits_adc", Nonideality.STOCHASTIC_ROUNDING: "stochastic",
         Nonideality.READOUT_CLIPPING: "v_range_v", Nonideality.DYNAMICS_CLIPPING: "clipping inside the dynamics",
         Nonideality.SYMMETRIC_MISMATCH: "mismatch", Nonideality.ASYMMETRIC_MISMATCH: "mismatch.*asymmetric",
         Nonideality.DRIFT: "drift", Nonideality.UNDERDAMPED: "underdamped", Nonideality.TILING: "n_units"}


def test_the_table_covers_every_member_and_each_member_has_words_and_a_switch() -> None:
    assert set(ROWS) == set(Nonideality) == set(WORDS) == set(TURN_OFF)
    assert required(BASE, size=10**6) == frozenset()  # the ideal chip needs nothing modelled
    for feature in Nonideality:
        assert describe(feature, BASE.replace(**ROWS[feature][0]), size=D)


@pytest.mark.parametrize("feature", list(Nonideality), ids=lambda f: f.value)
def test_each_feature_is_required_alone_and_its_switch_turns_it_off(feature: Nonideality) -> None:
    hw = BASE.replace(**ROWS[feature][0])
    assert required(hw, size=D) == {feature} | COMPANIONS.get(feature, set())
    assert feature not in required(hw.replace(**TURN_OFF[feature]), size=D)
    if feature is Nonideality.TILING:  # the chip size needs the problem's: only a larger one is tiled
        assert feature not in required(hw) and feature not in required(hw, size=D // 2)


@pytest.mark.parametrize("feature", list(Nonideality), ids=lambda f: f.value)
def test_the_solver_routes_each_feature_where_it_did_before(feature: Nonideality) -> None:
    options, (method, integrator) = ROWS[feature]
    hw = BASE.replace(**options)
    if feature is not Nonideality.TILING:  # the rule before the declared lists
        linear_symmetric = not hw.clip_in_dynamics and hw.drift_sigma == 0 and (
            hw.mismatch_sigma == 0 or hw.mismatch_symmetric)
        assert method == ("exact" if linear_symmetric else "stepwise")
    a = random_spd(D, 4.0, seed=1)
    b = np.random.default_rng(2).standard_normal(D)
    cfg = SolverConfig(burn_in_tau=2.0, window_tau=1.0)
    diag = ThermodynamicSolver(hw, cfg, seed=0).solve(a, b).diagnostics
    if feature is Nonideality.TILING:
        assert diag.n_tiles > 1 and "Gauss-Seidel" in " ".join(diag.notes)
        return
    assert (diag.method, diag.integrator) == (method, integrator)
    # method='exact' is refused by name where the eigenbasis does not model the feature
    solver = ThermodynamicSolver(hw, SolverConfig(burn_in_tau=2.0, window_tau=1.0, method="exact"), seed=0)
    if feature in exact.MODELS:
        assert solver.solve(a, b).diagnostics.method == "exact"
    else:
        with pytest.raises(InputError, match=rf"method='exact' cannot model .*{WORDS[feature]}.*method='stepwise'"):
            solver.solve(a, b)
    stepwise_run = ThermodynamicSolver(hw, SolverConfig(burn_in_tau=2.0, window_tau=1.0, method="stepwise"), seed=0)
    assert stepwise_run.solve(a, b).diagnostics.method == "stepwise"


@pytest.mark.parametrize("feature", list(Nonideality), ids=lambda f: f.value)
def test_the_low_rank_device_accepts_what_it_models_and_names_what_it_refuses(feature: Nonideality) -> None:
    hw = BASE.replace(**ROWS[feature][0])
    gen = torch.Generator().manual_seed(0)
    curvature = LowRankCurvature.from_matrix(torch.randn(D, 2, generator=gen, dtype=torch.float64), 0.5)
    g = torch.randn(D, generator=gen, dtype=torch.float64)
    if feature in lowrank_device.MODELS:
        device = lowrank_device.LowRankDevice(lowrank_device.LowRankDeviceSpec(hw), gen)
        device.upload(curvature, g)
        assert bool(torch.isfinite(device.run(1.0)).all())
        return
    off = next(iter(TURN_OFF[feature]))
    pattern = rf"low-rank device .*cannot model .*{WORDS[feature]}.*dense chip simulator.*hardware\.replace\({off}="
    with pytest.raises(UnmodelledHardwareError, match=pattern):
        device = lowrank_device.LowRankDevice(lowrank_device.LowRankDeviceSpec(hw), gen)
        device.upload(curvature, g)  # the chip size is checked here, where N is known


def test_the_declared_lists_nest_as_the_routing_expects() -> None:
    # the eigenbasis is preferred, so stepwise must cover at least as much; the device adds its
    # converters to the propagation's list
    assert exact.MODELS < stepwise.MODELS and lowrank.MODELS < lowrank_device.MODELS < stepwise.MODELS
    assert stepwise.MODELS == frozenset().union(*stepwise.INTEGRATOR_MODELS.values())
    assert all(Nonideality.TILING not in m for m in (exact.MODELS, stepwise.MODELS, lowrank_device.MODELS))
    noisy = HardwareSpec.noisy_low_precision()  # stochastic 8-bit converters, mismatch, drift, 256 units
    assert unmodelled(noisy, exact.MODELS, size=300) == [Nonideality.DRIFT, Nonideality.TILING]
    candidates = (("exact", exact.MODELS), ("stepwise", stepwise.MODELS))
    assert first_covering(candidates, noisy, size=256) == "stepwise" and first_covering(candidates, noisy, 300) is None
    assert first_covering(candidates, noisy.replace(drift_sigma=0.0)) == "exact"


def test_a_refusal_names_every_missing_feature_and_one_switch_for_each() -> None:
    hw = BASE.replace(mismatch_sigma=0.01, mismatch_symmetric=False, drift_sigma=0.01, v_range_v=1.0,
                      clip_in_dynamics=True)
    with pytest.raises(UnmodelledHardwareError) as info:
        lowrank_device.LowRankDeviceSpec(hw)
    message = str(info.value)
    for words in ("clipping inside the dynamics", "mismatch_sigma=0.01, asymmetric", "drift_sigma=0.01",
                  "hardware.replace(clip_in_dynamics=False, mismatch_sigma=0.0, drift_sigma=0.0)"):
        assert words in message, (words, message)
    assert isinstance(info.value, InputError)  # a method that does not fit the hardware is an input error
