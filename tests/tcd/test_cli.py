import csv
import json
import re
import signal
import subprocess
import sys
import time

import pytest

from tcd.cli import build_parser, main
from thermo.provenance import package_version


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


def test_study_solver_runs_writes_outputs_and_resumes(tmp_path, capsys):
    args = ["study", "solver", "--size", "6", "--kappa", "10", "--presets", "ideal,published", "--windows", "2,8",
            "--seeds", "2", "--workers", "1", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "rms rel err" in out and "published" in out
    rows = list(csv.DictReader((tmp_path / "solver.csv").open()))
    assert len(rows) == 2 * 2 * 2
    assert all(0 <= float(r["rel_error"]) < 1 and float(r["analog_time_s"]) > 0 for r in rows)
    assert (tmp_path / "solver.png").stat().st_size > 0
    assert "OU theory" in (tmp_path / "solver.md").read_text()
    # a rerun finds every point done and appends nothing
    assert main(args) == 0
    assert len(list(csv.DictReader((tmp_path / "solver.csv").open()))) == 8


def test_bad_arguments_give_a_clear_error(tmp_path, capsys):
    assert main(["study", "solver", "--presets", "quantum", "--out", str(tmp_path)]) == 2
    assert "unknown presets" in capsys.readouterr().err
    assert main(["demo", "--device", "quantum", "--out", str(tmp_path)]) == 2
    assert "DemoConfig.device" in capsys.readouterr().err


def test_demo_help_names_the_methods_and_its_options(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "thermodynamic K-FAC" in out and "TNGD" in out
    for option in ("--epochs", "--batch-size", "--loss-target", "--seed", "--workers", "--out", "--no-progress",
                   "--system", "--gpu", "--device", "--converter-channels"):
        assert option in out


def test_train_writes_history_and_plot_and_resumes(tmp_path, capsys):
    args = ["train", "--task", "digits-mlp", "--optimizer", "kfac", "--solver", "thermo", "--hardware", "ideal",
            "--opt", "damping=1e-2", "--opt", "mode=solve", "--solver-opt", "target_rel_error=0.05",
            "--steps", "4", "--eval-every", "2", "--checkpoint", str(tmp_path / "ck.pt"),
            "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "analog device time" in out and "final train loss" in out
    (csv_path,) = tmp_path.glob("digits-mlp_kfac-thermo-ideal_lr0.1_seed0_*.csv")
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 4 and all(float(r["analog_time_s"]) > 0 for r in rows)
    assert csv_path.with_suffix(".png").stat().st_size > 0
    assert main(args) == 0  # resumes a finished run: nothing new, same history
    assert "resuming" in capsys.readouterr().out
    assert len(list(csv.DictReader(csv_path.open()))) == 4


def test_train_names_each_configuration_apart_and_records_it_beside_the_csv(tmp_path, capsys):
    base = ["train", "--optimizer", "sgd", "--steps", "2", "--eval-every", "0", "--out", str(tmp_path), "--no-progress"]
    for extra in ([], ["--lr", "0.2"], ["--opt", "momentum=0.9"], ["--seed", "1"]):
        assert main(base + extra) == 0
    csvs = sorted(tmp_path.glob("*.csv"))
    assert len(csvs) == 4 and len({p.name for p in csvs}) == 4
    records = [json.loads(p.with_suffix(".json").read_text()) for p in csvs]
    assert {r["config"]["lr"] for r in records} == {0.1, 0.2}
    assert all(r["status"] == "completed" and r["provenance"]["version"] == package_version() for r in records)
    assert len(list(tmp_path.glob("*.ckpt"))) == 4  # each run resumable by rerunning its command


def test_train_stops_a_diverging_run_with_its_history_and_status_1(tmp_path, capsys):
    args = ["train", "--optimizer", "sgd", "--lr", "1e6", "--steps", "200", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tcd train: training diverged at step")
    assert "learning rate" in err and "written to" in err
    (csv_path,) = tmp_path.glob("*.csv")
    assert 0 < len(list(csv.DictReader(csv_path.open()))) < 200
    assert json.loads(csv_path.with_suffix(".json").read_text())["status"].startswith("diverged")


def test_train_refuses_hardware_it_would_ignore(tmp_path, capsys):
    assert main(["train", "--optimizer", "adam", "--hardware", "published", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--hardware applies to --solver thermo or --optimizer tngd" in capsys.readouterr().err


def _wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_ctrl_c_on_train_writes_the_history_and_says_how_to_resume(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "tcd", "train", "--optimizer", "sgd", "--steps", "1000000",
                             "--eval-every", "0", "--out", str(tmp_path), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: list(tmp_path.glob("*.ckpt")), 120), "no checkpoint appeared"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err and "interrupted after step" in err and "rerun the same command to resume" in err
    (csv_path,) = tmp_path.glob("*.csv")
    assert len(list(csv.DictReader(csv_path.open()))) >= 50


def test_ctrl_c_on_a_study_prints_what_was_saved_and_how_to_resume(tmp_path):
    # 2 workers on 30 points of the noisy preset (its stepwise runs take ~10 s in all here); interrupt once the
    # store exists, well before the last point
    proc = subprocess.Popen([sys.executable, "-m", "tcd", "study", "solver", "--size", "48", "--presets", "noisy", "--windows",
                             "1,2,4,8,16,32,64,128,256,512", "--seeds", "3", "--workers", "2", "--out", str(tmp_path),
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: list(tmp_path.glob("*.sqlite")), 120), "no store appeared"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert re.search(r"interrupted: \d+ of 30 points are saved in .*solver.sqlite; rerun the same command", err)


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


@pytest.mark.slow
def test_calibrate_kernels_gives_the_system_its_measured_rates(tmp_path, capsys):
    system = tmp_path / "system.toml"
    assert main(["calibrate", "--tasks", "digits-mlp", "--kernels", "--out", str(system)]) == 0
    assert "rate / GEMM rate" in capsys.readouterr().out
    from cosim import SystemSpec
    from cosim.kernels import KernelCalibration

    rates = KernelCalibration.load(tmp_path / "kernels.json").relative()
    assert SystemSpec.load(system).gpu.kernel_efficiency == pytest.approx(rates)


def test_study_asymptotic_runs_and_resumes(tmp_path, capsys):
    args = ["study", "asymptotic", "--sizes", "32,64,128", "--kappas", "10", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    assert "fitted p=" in capsys.readouterr().out
    first = (tmp_path / "asymptotic.csv").read_text()
    assert main(args) == 0  # every point done: the CSV is unchanged
    assert (tmp_path / "asymptotic.csv").read_text() == first


def test_study_noise_reports_the_smallest_precision(tmp_path, capsys):
    args = ["study", "noise", "--tasks", "digits-mlp", "--methods", "solve", "--steps", "10", "--seeds", "2", "--bits", "6,16", "--workers", "1",
            "--out", str(tmp_path),
            "--no-progress"]
    assert main(args) == 0
    assert "smallest bit width keeping K-FAC ahead of Adam" in capsys.readouterr().out
    assert (tmp_path / "noise.csv").exists()


def test_study_projections_prints_the_base_system(tmp_path, capsys):
    args = ["study", "projections", "--workloads", "gnn-molpcba", "--knobs", "bits", "--no-measure", "--intervals", "1,2", "--sweep-interval", "1", "--workers", "1",
            "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "gnn-molpcba" in out and "thermodynamic K-FAC" in out
    report = (tmp_path / "projections.md").read_text()
    assert "AlgoPerf NAdamW measured" in report and "## Kernel timings on" in report
    assert (tmp_path / "kernels.json").is_file()  # measured here by default, kept for the next run


def test_study_designspace_prints_the_pareto_front(tmp_path, capsys):
    args = ["study", "designspace", "--tasks", "digits-mlp", "--steps", "5", "--seeds", "2", "--bits", "12", "--target-errors", "0.3,0.03",
            "--mismatch", "0", "--tau-scales", "1", "--workload", "gnn-molpcba", "--workers", "1", "--out", str(tmp_path),
            "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out and "12 bits" in out and "advantage over Adam" in out
    assert (tmp_path / "designspace.csv").exists() and (tmp_path / "designspace.png").exists()


def test_study_all_runs_every_study_into_its_folder_and_indexes_the_reports(tmp_path, monkeypatch, capsys):
    from studies.registry import STUDIES
    from tcd import cli

    calls = []
    real_main = cli.main

    def fake_study(args):  # each study's own end-to-end test lives above; here: order, folders, options
        calls.append((args.study, args.out, args.workers, args.full))
        args.out.mkdir(parents=True)
        (args.out / f"{args.study}.md").write_text(f"# Title of {args.study}\n\nbody\n")
        return 0

    monkeypatch.setitem(cli._COMMANDS, "study", lambda args: cli._study_all(args) if args.study == "all" else fake_study(args))
    assert real_main(["study", "all", "--out", str(tmp_path), "--workers", "3", "--no-progress"]) == 0
    assert [c[0] for c in calls] == list(STUDIES.names())
    assert all(out == tmp_path / name for name, out, _, _ in calls)
    workers = {name: w for name, _, w, _ in calls}
    assert workers["asymptotic"] == 1 and workers["noise"] == 3  # measurements stay on one worker
    assert workers["tngd-runtime"] is None and workers["tngd-delay"] == 3
    index = (tmp_path / "README.md").read_text()
    assert f"(`tcd study all --out {tmp_path}`)" in index
    for name in STUDIES.names():
        assert f"- [Title of {name}]({name}/{name}.md): `tcd study {name}`" in index


def test_study_help_lists_exactly_the_registered_studies(capsys):
    from studies.registry import STUDIES

    with pytest.raises(SystemExit) as exc:
        main(["study", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if re.match(r"^ {4}\S", line)]
    assert listed == [*STUDIES.names(), "all"]
    for entry in STUDIES.entries():  # the one-line help of each is its registry summary
        assert " ".join(entry.summary.split()[:4]) in " ".join(out.split())


def test_study_tngd_prints_the_published_outcome_and_the_verdict(tmp_path, capsys):
    args = ["study", "tngd-delay", "--task", "digits-mlp", "--epochs", "1", "--seeds", "1", "--workers", "1",
            "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "published: At t = 5 tau" in out and "verdict:" in out
    assert (tmp_path / "tngd-delay.csv").exists()


# --- reliability: one-line errors, counts, files, pipes ----------------------------------------------------------------
def test_version_names_the_package(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"tcd (thermo-codesign) {package_version()}"


@pytest.mark.parametrize(
    "argv",
    [
        ["study", "noise", "--steps", "0"],
        ["study", "noise", "--seeds", "0"],
        ["study", "noise", "--bits", "4.5"],
        ["study", "designspace", "--seeds", "2.5"],
        ["study", "tngd-delay", "--epochs", "0"],
        ["study", "asymptotic", "--sizes", "64,0"],
        ["study", "noise", "--workers", "0"],
        ["study", "solver", "--size", "0"],
        ["demo", "--epochs", "0"],
        ["demo", "--loss-target", "-1"],
        ["train", "--steps", "-3"],
        ["train", "--lr", "nan"],
        ["project", "--batch-size", "1.5"],
    ],
)
def test_zero_negative_and_fractional_counts_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "expected" in capsys.readouterr().err


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["project", "--mlp", "wide", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tcd project: error: --mlp expects WIDTHxDEPTH")
    with pytest.raises(ValueError, match="WIDTHxDEPTH"):
        main(["project", "--mlp", "wide", "--out", str(tmp_path), "--debug"])


def test_an_unexpected_error_is_one_line_that_points_to_debug(monkeypatch, capsys):
    from tcd import cli

    def broken(args):
        raise TypeError("unsupported operand")

    monkeypatch.setitem(cli._COMMANDS, "presets", broken)
    assert main(["presets"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: TypeError: unsupported operand" in err and "--debug" in err


@pytest.mark.parametrize(
    "name, text, pattern",
    [("missing.toml", None, r"missing\.toml does not exist"),
     ("bad.yaml", "gpu:\n  name: [unclosed\n", r"bad\.yaml is not valid YAML at line 3")],
)
def test_a_missing_or_malformed_system_file_is_named(tmp_path, capsys, name, text, pattern):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    assert main(["project", "--system", str(path), "--mlp", "32x2", "--steps", "adam=10", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(pattern, err)


def test_an_out_folder_that_is_a_file_or_unwritable_is_refused_before_work(tmp_path, capsys):
    occupied = tmp_path / "occupied"
    occupied.write_text("")
    assert main(["study", "asymptotic", "--sizes", "32", "--out", str(occupied), "--no-progress"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["study", "asymptotic", "--sizes", "32", "--out", str(occupied / "below"), "--no-progress"]) == 2
    assert f"{occupied} is a file, not a folder" in capsys.readouterr().err  # the ancestor in the way is named
    assert not list(tmp_path.glob("**/*.csv"))


def test_presets_list_hardware_gpu_and_link_presets_readably(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "hardware presets" in out and "GPU presets" in out and "link presets" in out
    assert "50 Gbit/s" in out and "15.7 TFLOP/s" in out and "1 us" in out  # SI prefixes, not 5e+10
    assert main(["presets", "a100"]) == 0
    out = capsys.readouterr().out
    assert "A100" in out and "hardware presets" not in out
    assert main(["presets", "tpu"]) == 2
    assert "unknown preset(s) ['tpu']" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly():
    reader = subprocess.run(f"{sys.executable} -m tcd presets | head -n 1", shell=True, capture_output=True, text=True,
                            timeout=120)
    assert reader.stdout.startswith("hardware presets")
    assert "Traceback" not in reader.stderr and "BrokenPipe" not in reader.stderr


def test_project_speedups_keep_significant_digits_and_compare_with_digital_kfac(tmp_path, capsys):
    args = ["project", "--mlp", "64x2", "--batch-size", "32", "--steps", "adam=100", "--steps", "kfac=100",
            "--steps", "tkfac=100", "--target-rel-error", "1e-3", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("method"))
    assert "vs adam" in header and "vs kfac" in header
    tkfac = next(line for line in out.splitlines() if line.startswith("tkfac "))
    speedups = [float(t[:-1]) for t in tkfac.split() if t.endswith("x")]
    assert len(speedups) == 2 and all(s > 0 for s in speedups)  # never printed as 0.00x
    assert "0.00x" not in out
    bound = next(line for line in out.splitlines() if line.startswith("bound of tkfac:"))
    share, over_kfac = (float(t.rstrip("%x")) for t in re.findall(r"[\d.e+-]+[%x]", bound)[:2])
    assert 0 < share < 100 and over_kfac == pytest.approx(1 / (1 - share / 100), rel=2e-2)
    record = json.loads((tmp_path / "projection.json").read_text())
    assert record["config"]["steps"] == {"adam": 100, "kfac": 100, "tkfac": 100}
    assert record["config"]["system"]["gpu"]["name"] == "A100" and record["provenance"]["version"] == package_version()


def test_hardware_files_work_wherever_a_preset_is_taken(tmp_path, capsys):
    hw = tmp_path / "hw.toml"
    hw.write_text('preset = "published"\nbits_A = 12\nbits_b = 12\nbits_adc = 12\n')
    assert main(["study", "solver", "--size", "6", "--kappa", "10", "--presets", str(hw), "--windows", "4", "--seeds",
                 "1", "--workers", "1", "--out", str(tmp_path / "solver"), "--no-progress"]) == 0
    assert main(["project", "--hardware", str(hw), "--mlp", "32x2", "--steps", "tkfac=10",
                 "--out", str(tmp_path / "project")]) == 0
    assert main(["study", "asymptotic", "--sizes", "32,64", "--kappas", "10", "--hardware", str(hw),
                 "--out", str(tmp_path / "asym"), "--no-progress"]) == 0
    assert main(["study", "noise", "--tasks", "digits-mlp", "--methods", "solve", "--steps", "3", "--seeds", "1", "--bits", "12",
                 "--hardware", str(hw), "--workers", "1", "--out", str(tmp_path / "noise"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["project", "--hardware", str(tmp_path / "nope.yaml"), "--out", str(tmp_path)]) == 2
    assert "nope.yaml does not exist" in capsys.readouterr().err


def test_an_unreachable_dask_scheduler_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TCD_SCHEDULER_TIMEOUT_S", "1")
    args = ["study", "asymptotic", "--sizes", "32", "--kappas", "10", "--scheduler", "tcp://127.0.0.1:1",
            "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in err


def test_warnings_are_one_line_named_after_the_command(capsys):
    import warnings

    from tcd import cli

    def warn(args):
        warnings.warn("timings of X are unreliable", UserWarning)
        return 0

    cli._COMMANDS["presets"], original = warn, cli._COMMANDS["presets"]
    try:
        assert main(["presets"]) == 0
    finally:
        cli._COMMANDS["presets"] = original
    assert capsys.readouterr().err == "tcd presets: warning: timings of X are unreliable\n"


def test_system_files_work_in_the_studies_that_project(tmp_path, capsys):
    from cosim import SystemSpec

    system = SystemSpec.from_presets(gpu="H100", link="pcie5-x16", hardware="published", n_chips=4).replace(
        name="my lab")
    path = system.save(tmp_path / "lab.toml")
    assert main(["study", "projections", "--system", str(path), "--kernels", "none", "--workloads", "gnn-molpcba", "--knobs", "bits", "--intervals", "1", "--sweep-interval", "1",
                 "--no-measure", "--workers", "1", "--out", str(tmp_path / "pr"), "--no-progress"]) == 0
    report = (tmp_path / "pr" / "projections.md").read_text()
    assert "H100" in report and "pcie5-x16" in report and "4 analog chip(s)" in report
    assert main(["study", "asymptotic", "--sizes", "32,64", "--kappas", "10", "--system", str(path),
                 "--out", str(tmp_path / "asym"), "--no-progress"]) == 0
    rows = list(csv.DictReader((tmp_path / "asym" / "asymptotic.csv").open()))
    assert {r["source"] for r in rows if r["kind"] == "digital-roofline"} == {"roofline H100"}
    capsys.readouterr()
    assert main(["study", "projections", "--system", str(tmp_path / "none.toml"), "--out", str(tmp_path / "x"),
                 "--no-progress"]) == 2
    assert "none.toml does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("command, expected", [("presets", "nothing of it was written"),
                                               ("study", "every finished point is kept")])
def test_ctrl_c_outside_a_run_says_what_it_means(monkeypatch, capsys, tmp_path, command, expected):
    from tcd import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli._COMMANDS, command, interrupted)
    argv = ["presets"] if command == "presets" else ["study", "noise", "--out", str(tmp_path)]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
