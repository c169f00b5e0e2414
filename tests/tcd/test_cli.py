import csv

import pytest

from tcd.cli import build_parser, main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "demo" in out and "presets" in out


def test_presets_prints_every_field(capsys):
    assert main(["presets", "published"]) == 0
    out = capsys.readouterr().out
    assert "tau_s" in out and "bits_adc" in out and "1e-06" in out


def test_demo_runs_writes_outputs_and_resumes(tmp_path, capsys):
    args = ["demo", "--size", "6", "--kappa", "10", "--presets", "ideal,published", "--windows", "2,8",
            "--seeds", "2", "--workers", "1", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "rms rel err" in out and "published" in out
    rows = list(csv.DictReader((tmp_path / "solver_demo.csv").open()))
    assert len(rows) == 2 * 2 * 2
    assert all(0 <= float(r["rel_error"]) < 1 and float(r["analog_time_s"]) > 0 for r in rows)
    assert (tmp_path / "solver_demo.png").stat().st_size > 0
    assert "OU theory" in (tmp_path / "solver_demo.md").read_text()
    # a rerun finds every point done and appends nothing
    assert main(args) == 0
    assert len(list(csv.DictReader((tmp_path / "solver_demo.csv").open()))) == 8


def test_bad_arguments_give_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--presets", "quantum", "--out", str(tmp_path)]) == 2
    assert "unknown presets" in capsys.readouterr().err


def test_train_writes_history_and_plot_and_resumes(tmp_path, capsys):
    args = ["train", "--task", "digits-mlp", "--optimizer", "kfac", "--solver", "thermo", "--hardware", "ideal",
            "--opt", "damping=1e-2", "--opt", "mode=solve", "--solver-opt", "target_rel_error=0.05",
            "--steps", "4", "--eval-every", "2", "--checkpoint", str(tmp_path / "ck.pt"),
            "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "analog device time" in out and "final train loss" in out
    rows = list(csv.DictReader((tmp_path / "digits-mlp_kfac_thermo_seed0.csv").open()))
    assert len(rows) == 4 and all(float(r["analog_time_s"]) > 0 for r in rows)
    assert (tmp_path / "digits-mlp_kfac_thermo_seed0.png").stat().st_size > 0
    assert main(args) == 0  # resumes a finished run: nothing new, same history
    assert len(list(csv.DictReader((tmp_path / "digits-mlp_kfac_thermo_seed0.csv").open()))) == 4


def test_train_reports_bad_options(capsys):
    assert main(["train", "--solver", "quantum", "--steps", "1", "--no-progress"]) == 2
    assert "unknown solver 'quantum'" in capsys.readouterr().err
    assert main(["train", "--opt", "damping", "--no-progress"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_project_prints_methods_with_assumptions_and_writes_outputs(tmp_path, capsys):
    args = ["project", "--mlp", "64x3", "--batch-size", "32", "--chips", "2", "--steps", "adam=100",
            "--steps", "kfac=60", "--steps", "tkfac-solve=60", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "tkfac-solve" in out and "gpu = A100" in out and "link.bandwidth_bps" in out
    rows = list(csv.DictReader((tmp_path / "projection.csv").open()))
    assert [r["label"] for r in rows] == ["adam", "kfac", "tkfac-solve"]
    assert all(float(r["total_s"]) > 0 for r in rows)
    assert (tmp_path / "projection.png").stat().st_size > 0
    assert main(["project", "--steps", "shampoo=10", "--out", str(tmp_path)]) == 2
    assert "unknown method 'shampoo'" in capsys.readouterr().err


def test_cotrain_prints_both_runs_and_the_projection(capsys):
    args = ["cotrain", "--steps", "4", "--lr", "0.3", "--opt", "damping=1e-2", "--opt", "mode=solve",
            "--solver-opt", "target_rel_error=0.05", "--chips", "2", "--eval-every", "0", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "thermodynamic K-FAC" in out and "digital K-FAC" in out and "speedup" in out and "gpu = A100" in out


def test_calibrate_writes_a_system_that_project_reads(tmp_path, capsys):
    system = tmp_path / "system.toml"
    assert main(["calibrate", "--tasks", "digits-mlp", "--out", str(system)]) == 0
    out = capsys.readouterr().out
    assert "gradient_s" in out and "compute_efficiency" in out
    assert main(["project", "--system", str(system), "--mlp", "32x2", "--steps", "adam=10", "--out", str(tmp_path)]) == 0
    assert "this machine (cpu)" in capsys.readouterr().out


def test_study_asymptotic_runs_and_resumes(tmp_path, capsys):
    args = ["study", "asymptotic", "--sizes", "32,64,128", "--kappas", "10", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    assert "fitted p=" in capsys.readouterr().out
    first = (tmp_path / "asymptotic.csv").read_text()
    assert main(args) == 0  # every point done: the CSV is unchanged
    assert (tmp_path / "asymptotic.csv").read_text() == first


def test_study_noise_reports_the_smallest_precision(tmp_path, capsys):
    args = ["study", "noise", "--tasks", "digits-mlp", "--steps", "10", "--seeds", "2", "--bits", "6,16", "--workers", "1",
            "--out", str(tmp_path),
            "--no-progress"]
    assert main(args) == 0
    assert "smallest bit width keeping K-FAC ahead of Adam" in capsys.readouterr().out
    assert (tmp_path / "noise.csv").exists()


def test_study_projections_prints_the_base_system(tmp_path, capsys):
    args = ["study", "projections", "--workloads", "gnn-molpcba", "--knobs", "bits", "--no-measure", "--workers", "1",
            "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "gnn-molpcba" in out and "thermodynamic K-FAC" in out
    assert "AlgoPerf NAdamW measured" in (tmp_path / "projections.md").read_text()


def test_study_designspace_prints_the_pareto_front(tmp_path, capsys):
    args = ["study", "designspace", "--steps", "5", "--seeds", "2", "--bits", "12", "--target-errors", "0.3,0.03",
            "--mismatch", "0", "--tau-scales", "1", "--workload", "gnn-molpcba", "--workers", "1", "--out", str(tmp_path),
            "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out and "12 bits" in out
    assert (tmp_path / "designspace.csv").exists() and (tmp_path / "designspace.png").exists()


def test_study_all_runs_every_study_into_its_folder_and_indexes_the_reports(tmp_path, monkeypatch, capsys):
    from tcd import cli

    calls = []
    real_main = cli.main

    def fake_study(args):  # each study's own end-to-end test lives above; here: order, folders, options
        calls.append((args.study, args.out, args.workers, args.full))
        args.out.mkdir(parents=True)
        (args.out / f"{args.study}.md").write_text(f"# Title of {args.study}\n\nbody\n")
        return 0

    monkeypatch.setattr(cli, "_cmd_study", lambda args: cli._study_all(args) if args.study == "all" else fake_study(args))
    assert real_main(["study", "all", "--out", str(tmp_path), "--workers", "3", "--no-progress"]) == 0
    assert [c[0] for c in calls] == list(cli.STUDY_ORDER)
    assert all(out == tmp_path / name for name, out, _, _ in calls)
    workers = {name: w for name, _, w, _ in calls}
    assert workers["asymptotic"] == 1 and workers["noise"] == 3  # measurements stay on one worker
    index = (tmp_path / "README.md").read_text()
    for name in cli.STUDY_ORDER:
        assert f"[Title of {name}]({name}/{name}.md)" in index


def test_study_tngd_prints_the_published_outcome_and_the_verdict(tmp_path, capsys):
    args = ["study", "tngd-delay", "--task", "digits-mlp", "--epochs", "1", "--seeds", "1", "--workers", "1",
            "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "published: At t = 5 tau" in out and "verdict:" in out
    assert (tmp_path / "tngd-delay.csv").exists()
