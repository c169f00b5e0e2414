import csv

import numpy as np
import pytest

from studies import solver


def test_interrupted_sweep_resumes_to_the_same_csv(tmp_path):
    cfg = solver.SolverStudyConfig(size=5, condition_number=5.0, presets=("ideal",), windows_tau=(2.0, 8.0), seeds=2, workers=1, out_dir=tmp_path / "a")
    full = solver.run(cfg, progress=False)
    # simulate a run killed after two points: keep the header and two rows, then restart
    partial_dir = tmp_path / "b"
    partial_dir.mkdir()
    lines = full.read_text().splitlines()
    (partial_dir / "solver.csv").write_text("\n".join(lines[:3]) + "\n")
    resumed = solver.run(solver.SolverStudyConfig(**{**cfg.__dict__, "out_dir": partial_dir}), progress=False)
    key = lambda r: (r["preset"], float(r["window_tau"]), int(r["seed"]))  # noqa: E731
    a = sorted(csv.DictReader(full.open()), key=key)
    b = sorted(csv.DictReader(resumed.open()), key=key)
    assert [key(r) for r in a] == [key(r) for r in b]
    np.testing.assert_allclose([float(r["rel_error"]) for r in a], [float(r["rel_error"]) for r in b], rtol=1e-12)


def test_error_decreases_with_the_window(tmp_path):
    cfg = solver.SolverStudyConfig(size=8, condition_number=10.0, presets=("ideal",), windows_tau=(1.0, 64.0), seeds=3, workers=1, out_dir=tmp_path)
    rows = solver.summarize(solver.read_rows(solver.run(cfg, progress=False)))
    assert rows[0]["window_tau"] < rows[1]["window_tau"]
    assert rows[1]["rel_error_rms"] < rows[0]["rel_error_rms"]


def test_the_figure_is_log_log_with_units(tmp_path):
    from studies.plotting import figure_problems

    cfg = solver.SolverStudyConfig(size=5, condition_number=5.0, presets=("ideal",), windows_tau=(1.0, 64.0), seeds=1,
                                 workers=1, out_dir=tmp_path)
    rows = solver.read_rows(solver.run(cfg, progress=False))
    fig = solver.plot(rows, tmp_path / "p.png", cfg)
    assert figure_problems(fig) == [] and fig.axes[0].get_xscale() == "log"



@pytest.mark.parametrize("bad, field", [(dict(size=0), "size"), (dict(seeds=0), "seeds"), (dict(size=4.5), "size"),
                                        (dict(windows_tau=(0.0,)), "windows_tau"), (dict(matrix_seed=-1), "matrix_seed"),
                                        (dict(workers=0), "workers"), (dict(condition_number=0.5), "condition_number")])
def test_bad_configurations_name_the_field_and_value(bad, field):
    with pytest.raises(ValueError, match=field):
        solver.SolverStudyConfig(**bad)
