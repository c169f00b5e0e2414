"""The tngd-paper study: the paper's scenario and its attribution one assumption at a time (each
target assumption moves its own row and the ones after it, never the ones before), the K-FAC
device chain from the favourable device to published, and a tiny run end to end."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest

from studies import tngd_paper as tp
from studies.checks import StudyConfigError
from studies.plotting import figure_problems
from studies.sweep import read_rows
from thermo import cost
from thermo.device import device_preset

CFG = tp.TNGDPaperConfig(models=("paper-cnn",), kernels="none")
N_PARAMS, RANK = 17156, 640  # the paper CNN: conv 80 + fc1 16416 + fc2 660 parameters; b d_z = 32 x 20


def _timings(jacobian_s: float = 0.15, gram_s: float = 0.01) -> dict[str, dict[str, float]]:
    """Timing rows of the paper CNN as a run writes them (made-up CPU seconds: the attribution is
    a function of them, so these tests do not time anything)."""
    seconds = {"gradient": 5e-4, "jacobian": jacobian_s, "update": 2e-5, "gram": gram_s, "adam": 8e-4}
    return {c: {"median_s": s, "curvature_s": 0.8 * gram_s if c == "gram" else math.nan, "n_params": N_PARAMS,
                "rank": RANK} for c, s in seconds.items()}


def _moved(rows_a: list[dict], rows_b: list[dict], column: str = "ratio") -> list[int]:
    return [a["step"] for a, b in zip(rows_a, rows_b) if a[column] != pytest.approx(b[column], rel=1e-12)]


def test_the_model_and_the_paper_scenario_use_the_papers_constants() -> None:
    shape = tp.model_shape("paper-cnn")
    assert shape.n_params == N_PARAMS and shape.batch_size * shape.output_dim == RANK
    rows = tp.tngd_attribution(CFG, "paper-cnn", _timings())
    start = rows[0]
    assert start["scenario"] == tp.paper_scenario(CFG) and start["host"] == "cpu" and start["curvature"] == "jacobian"
    # Appendix C: r (r + 2N) values at 16 bits over 50 Gb/s, nothing else on the programming phase
    assert start["program_s"] == pytest.approx(cost.tngd_array_values(N_PARAMS, RANK) * 16 / 50e9)
    assert start["run_s"] == pytest.approx(50e-6)  # t = 50 tau, tau = RC = 1 us
    assert start["digital_s"] == pytest.approx(5e-4 + 0.15 + 2e-5)  # gradient + J_f and H_L + update
    assert start["ratio"] == pytest.approx((start["digital_s"] + start["device_s"]) / 8e-4)
    assert [r["move"] for r in rows] == ["start", *(m.label for m in tp.TNGD_MOVES)]
    # the moves end at our scenario: no "every other difference" row is needed
    assert tp.same_scenario(rows[-1]["scenario"], tp.our_scenario(CFG))
    assert rows[-1]["host"] == "A100" and rows[-1]["curvature"] == "gram"
    assert all(0 < r["device_share"] < 1 for r in rows)


@pytest.mark.parametrize(("change", "first_moved"), [
    ({"link": device_preset("published").link.replace(bandwidth_bps=400e9)}, 4),  # (d) our link
    ({"link": device_preset("published").link.replace(latency_s=1e-3)}, 4),
    ({"chip": device_preset("published").chip.replace(dac_conversion_s=1e-6)}, 3),  # (c) our programming cost
    ({"chip": device_preset("published").chip.replace(program_settle_s=1e-4)}, 3),
])
def test_changing_one_target_assumption_moves_its_row_and_the_ones_after(change, first_moved) -> None:
    base = tp.tngd_attribution(CFG, "paper-cnn", _timings())
    ours = tp.our_scenario(CFG)
    target = dataclasses.replace(ours, device=ours.device.replace(**change))
    moved = tp.tngd_attribution(CFG, "paper-cnn", _timings(), target=target)
    assert len(moved) == len(base)
    assert _moved(base, moved) == list(range(first_moved, len(base)))
    assert _moved(base, moved, "device_s") == list(range(first_moved, len(base)))


def test_a_measured_part_moves_only_the_rows_that_use_it() -> None:
    base = tp.tngd_attribution(CFG, "paper-cnn", _timings())
    # a dearer Gram: the rows from (b) on; a dearer J_f moves the CPU row and, through the
    # Gram's GPU/CPU ratio of the J_f it replaces, the Gram rows, but not the GPU J_f row (a)
    assert _moved(base, tp.tngd_attribution(CFG, "paper-cnn", _timings(gram_s=0.02))) == [2, 3, 4]
    assert _moved(base, tp.tngd_attribution(CFG, "paper-cnn", _timings(jacobian_s=0.3))) == [0, 2, 3, 4]


def test_a_target_beyond_the_listed_moves_gets_a_last_row() -> None:
    ours = tp.our_scenario(CFG)
    target = dataclasses.replace(ours, device=ours.device.replace(n_chips=2))  # no move names the chip count
    rows = tp.tngd_attribution(CFG, "paper-cnn", _timings(), target=target)
    assert rows[-1]["move"] == tp.REST and tp.same_scenario(rows[-1]["scenario"], target)
    assert rows[-1]["scenario"].device.n_chips == 2 and rows[-2]["scenario"].device.n_chips == 1


def test_the_link_the_claim_needs_gives_the_claimed_ratio() -> None:
    cfg = dataclasses.replace(CFG, analog_time_tau=5.0)  # at 50 tau the run alone outlasts 2x Adam's GPU step
    rows = tp.tngd_attribution(cfg, "paper-cnn", _timings(gram_s=1e-4))
    last = rows[-1]
    needed = last["link_needed_bps"]
    assert math.isfinite(needed) and needed > 50e9
    scenario = last["scenario"]
    faster = dataclasses.replace(scenario, device=scenario.device.replace(
        link=scenario.device.link.replace(bandwidth_bps=needed)))
    priced = tp.tngd_attribution(cfg, "paper-cnn", _timings(gram_s=1e-4), start=faster, target=faster)[0]
    assert priced["ratio"] == pytest.approx(tp.CLAIMED_RATIO, rel=1e-9) and priced["agrees"]
    # the J_f row on the CPU cannot reach 2x Adam's at any bandwidth: its digital part alone is above it
    assert not math.isfinite(rows[0]["link_needed_bps"])


def test_the_verdict_and_the_move_that_changes_it() -> None:
    assert tp.agrees(2.0, 2.0) and tp.agrees(3.9, 2.0) and tp.agrees(1.0, 2.0)
    assert not tp.agrees(4.1, 2.0) and not tp.agrees(0.9, 2.0)
    rows = [{"move": "start", "agrees": False, "ratio": 200.0}, {"move": "(a)", "agrees": False, "ratio": 100.0},
            {"move": "(b)", "agrees": True, "ratio": 3.0}]
    assert "move (b) changes the verdict" in tp.verdict_change(rows)
    assert tp.verdict_change(rows[:2]).startswith("no move changes the verdict")


def test_the_kfac_chain_moves_one_knob_at_a_time_from_the_favourable_device_to_published() -> None:
    chain = tp.kfac_devices("aggressive", "published")
    assert [c[0] for c in chain] == ["start", *(m.label for m in tp.KFAC_MOVES)]
    start, end = chain[0][3], chain[-1][3]
    assert start.chip.tau_s == pytest.approx(1e-10) and start.n_chips == 4096 and start.chip.bits_A == 4
    assert start.link.bandwidth_bps == pytest.approx(1e3 * device_preset("aggressive").link.bandwidth_bps)
    assert tp.same_device(end, device_preset("published"))
    by_move = {c[0]: c for c in chain}
    assert by_move["chips"][1:3] == ("n_chips 4096", "n_chips 1")
    assert by_move["converter channels"][1] == by_move["converter channels"][2]  # one per unit at both ends
    # a target with more chips moves the chips row and the ones after, nothing before
    target = device_preset("published", n_chips=16)
    rows = tp.attribute(start, target, tp.KFAC_MOVES, lambda d: {"chips": d.n_chips}, tp.same_device)
    assert [r["chips"] for r in rows] == [4096] * 5 + [16] * 5


def test_the_config_refuses_what_it_cannot_run() -> None:
    with pytest.raises(StudyConfigError, match="models"):
        tp.TNGDPaperConfig(models=("mnist-cnn",))
    with pytest.raises(StudyConfigError, match="components"):
        tp.TNGDPaperConfig(components=("gradient", "adam"))
    with pytest.raises(StudyConfigError):
        tp.TNGDPaperConfig(agreement_factor=0.5)


def test_a_tiny_run_end_to_end(tmp_path) -> None:
    began = time.perf_counter()
    cfg = tp.TNGDPaperConfig(models=("paper-cnn",), components=("gradient", "jacobian", "update", "gram", "adam"),
                             repeats=1, budget_s=0.5, kfac_methods=("solve",), kfac_intervals=(1,), workers=1,
                             out_dir=tmp_path, kernels="none")
    path = tp.STUDY.run(cfg, progress=False)
    assert time.perf_counter() - began < 60
    rows = read_rows(path)
    assert len(rows) == len(tp.points(cfg)) == 5 + len(tp.KFAC_MOVES) + 1
    timings = [r for r in rows if r["table"] == "timing"]
    assert all(r["median_s"] > 0 and r["repeats"] >= 1 for r in timings)
    assert next(r for r in timings if r["item"] == "gram")["curvature_s"] > 0
    kfac = [r for r in rows if r["table"] == "kfac"]
    assert all(r["speedup_vs_kfac"] <= r["bound_vs_kfac"] * (1 + 1e-9) for r in kfac)
    derived = read_rows(tp.attribution_csv(path.with_suffix(".md")))
    assert [r["step"] for r in derived] == list(range(len(tp.TNGD_MOVES) + 1))
    text = path.with_suffix(".md").read_text()
    for needed in ("Published", "Verdict", "(a) GPU instead of CPU", "(d) our link", "solve method, interval 1",
                   "Explanation"):
        assert needed in text
    assert path.with_suffix(".png").stat().st_size > 0
    results = tp.analyse(cfg, rows)
    assert figure_problems(tp.plot(cfg, results, tmp_path / "again.png")) == []
    outcome = tp.STUDY.outcome(cfg, path)
    assert outcome[0].startswith("published:") and "paper-cnn" in outcome[1]
