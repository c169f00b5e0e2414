"""Study: projected time to target for the AlgoPerf vision and graph workloads.

For ViT-S/16 on ImageNet and the ogbg-molpcba GNN (DESIGN.md section 4), project the time to
the AlgoPerf target of Adam (NAdamW's baseline step count), digital K-FAC and thermodynamic
K-FAC (factor solves on the analog device) on a described system (``cosim``), and sweep the
hardware parameters that matter most: the device time constant, converter bits, link bandwidth
and the number of chips.

K-FAC's steps to target are the baseline's times a reduction factor: the published 0.5-0.75
(Eschenhagen et al. 2023: both K-FAC variants reached the targets of these workloads in 50-75%
of the steps of the first-order reference), or one measured here on the digits MLP
(:func:`measured_step_ratio`: K-FAC's steps to Adam's final training loss over Adam's steps).
Layer shapes of the full-size models are stated in :data:`WORKLOADS` (the GNN's are an
approximation of the AlgoPerf reference GraphNet; see the notes there). Writes
``projections.csv``, ``projections.png`` and ``projections.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosim.calibration import Anchor, anchor_to_step
from cosim.kernels import KernelCalibration, calibrate_kernels, factor_sizes
from cosim.runs import REPLACED_PHASES, compare, device_free_s, offload_bound, project_run, steps_to_target
from cosim.shapes import LayerShape, ModelShape
from cosim.step_graphs import StepModel
from cosim.system import SystemSpec
from digital.train import TrainConfig, train

from . import checks, sweep
from .options import (
    HARDWARE_HELP,
    SYSTEM_HELP,
    add_sweep_arguments,
    given,
    positive_int,
    positive_ints,
    strings,
    sweep_options,
)
from .crossing import crossing
from .plotting import set_scale
from .protocol import Study

NAME = "projections"
"""``tcd study projections``: the stem of the study's files and the folder of its results."""


def _vit_s16() -> dict[str, Any]:
    tokens, dim, mlp, depth = 197, 384, 1536, 12  # 14 x 14 patches + the class token
    layers = [("patch_embed", 16 * 16 * 3, dim, 196)]
    for b in range(depth):
        layers += [(f"block{b}.{p}", dim, dim, tokens) for p in ("q", "k", "v", "out")]
        layers += [(f"block{b}.fc1", dim, mlp, tokens), (f"block{b}.fc2", mlp, dim, tokens)]
    layers.append(("head", dim, 1000, 1))
    other = depth * 2 * 2 * dim + 2 * dim + (tokens * dim) + dim  # LayerNorms, final norm, positions, class token
    return {"layers": layers, "batch_size": 1024, "output_dim": 1000, "other_params": other,
            "baseline_steps": 153_837, "baseline_s": 70_197.0, "target": "top-1 error 0.22691",
            "anchor_mode": "scale", "anchor_reason": "its step is dense GEMMs: the gap to the published step is kernel "
                                                     "efficiency, which K-FAC's extra kernels share",
            "notes": "ViT-S/16 (dim 384, depth 12, 6 heads, MLP 1536), global batch 1024"}


def _ogbg_gnn() -> dict[str, Any]:
    latent, steps, nodes, edges = 256, 5, 26, 56  # ogbg-molpcba: ~26 nodes and ~56 directed edges per graph
    layers = [("node_embed", 9, latent, nodes), ("edge_embed", 3, latent, edges)]
    for s in range(steps):
        layers += [(f"mp{s}.edge_mlp0", 4 * latent, latent, edges), (f"mp{s}.edge_mlp1", latent, latent, edges),
                   (f"mp{s}.node_mlp0", 3 * latent, latent, nodes), (f"mp{s}.node_mlp1", latent, latent, nodes),
                   (f"mp{s}.global_mlp0", 3 * latent, latent, 1), (f"mp{s}.global_mlp1", latent, latent, 1)]
    layers.append(("decoder", latent, 128, 1))
    return {"layers": layers, "batch_size": 512, "output_dim": 128, "other_params": steps * 6 * 2 * latent,
            "baseline_steps": 24_123, "baseline_s": 7_696.0, "target": "mAP 0.28098",
            "anchor_mode": "residual", "anchor_reason": "the layer model holds only its dense MLPs; the message "
                                                        "gather / scatter, graph batching and input pipeline are "
                                                        "memory-bound work it does not model, which K-FAC's extra "
                                                        "kernels do not share",
            "notes": "approximation of the AlgoPerf GraphNet: latent 256, 5 message-passing steps with "
                     "two-layer edge, node and global MLPs, ~26 nodes and ~56 edges per graph, batch 512"}


WORKLOADS = {"vit-imagenet": _vit_s16, "gnn-molpcba": _ogbg_gnn}

SENSITIVITY: dict[str, tuple[float, ...]] = {
    "tau_scale": (0.1, 1.0, 10.0),
    "bits": (8.0, 12.0, 16.0),
    "link_scale": (0.1, 1.0, 10.0),
    "n_chips": (1.0, 16.0, 256.0),
}
"""Hardware knobs swept around the base system (scales multiply the base figure)."""

SENSITIVITY_FULL: dict[str, tuple[float, ...]] = {
    "tau_scale": (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
    "bits": (6.0, 8.0, 10.0, 12.0, 14.0, 16.0),
    "link_scale": (0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0),
    "n_chips": (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 256.0),
}
"""The denser grids of ``ProjectionConfig.full()``."""


@dataclass(frozen=True)
class ProjectionConfig:
    workloads: tuple[str, ...] = ("vit-imagenet", "gnn-molpcba")
    gpu: str = "V100"
    """AlgoPerf's reference hardware (8x V100; the data-parallel batch is split over ``n_gpus``)."""
    n_gpus: int = 8
    link: str = "paper-50gbps"
    hardware: str = "published"
    n_chips: int = 16
    system: str | None = None
    """A system file (``.toml``/``.yaml``, see ``cosim.SystemSpec.load``) that replaces ``gpu``,
    ``link``, ``hardware`` and ``n_chips``."""
    step_ratios: tuple[float, ...] = (0.5, 0.75)
    """K-FAC steps over the baseline's (published range); a measured ratio is added by ``run``."""
    knobs: tuple[str, ...] = tuple(SENSITIVITY)
    """Which of :data:`SENSITIVITY`'s knobs to sweep."""
    dense_grids: bool = False
    """Sweep the knobs over :data:`SENSITIVITY_FULL` instead of :data:`SENSITIVITY`."""
    measure_ratio: bool = True
    measure_steps: int = 200
    target_rel_error: float = 1e-2
    inv_update_steps: int = 10
    """The factor and inverse interval of the sensitivity sweep (both K-FACs alike)."""
    intervals: tuple[int, ...] = (1, 10, 100)
    """Factor and inverse intervals of the like-for-like base table (both K-FACs alike)."""
    methods: tuple[str, ...] = ("inverse", "solve")
    """The published thermodynamic K-FAC methods of the base table; the sweep uses ``solve``."""
    anchor: bool = True
    """Anchor the GPU so that the projected Adam step equals AlgoPerf's published one."""
    kernels: str = "measure"
    """The kernel rates relative to a GEMM (``GPUSpec.kernel_efficiency``): ``measure`` them on this
    machine at the workloads' factor sizes (once, kept as ``kernels.json`` in ``out_dir``), ``none``
    (every kernel at the GEMM rate: the uncalibrated roofline), or a kernel calibration file
    (``tcd calibrate --kernels``, e.g. measured on a GPU)."""
    workers: int | None = None
    scheduler: str | None = None
    out_dir: Path = field(default=Path("results") / NAME)

    @classmethod
    def full(cls, **overrides: Any) -> ProjectionConfig:
        return cls(**{"step_ratios": (0.5, 0.625, 0.75, 1.0), "dense_grids": True, "measure_steps": 600, **overrides})

    @property
    def grids(self) -> dict[str, tuple[float, ...]]:
        return SENSITIVITY_FULL if self.dense_grids else SENSITIVITY

    def __post_init__(self) -> None:
        unknown = set(self.workloads) - set(WORKLOADS)
        if not self.workloads or unknown:
            raise ValueError(f"workloads must be among {sorted(WORKLOADS)}, unknown: {sorted(unknown)}")
        if set(self.knobs) - set(SENSITIVITY):
            raise ValueError(f"knobs must be among {sorted(SENSITIVITY)}, got {self.knobs}")
        if not self.methods or set(self.methods) - set(REPLACED_PHASES):
            raise checks.StudyConfigError(f"ProjectionConfig.methods must be among {', '.join(REPLACED_PHASES)}, "
                                          f"got {self.methods!r}")
        owner = "ProjectionConfig"
        checks.hardware(owner, "hardware", self.hardware)
        checks.system_file(owner, "system", self.system)
        kernels_option(owner, self.kernels)
        checks.store(
            self,
            n_gpus=checks.integer(owner, "n_gpus", self.n_gpus),
            n_chips=checks.integer(owner, "n_chips", self.n_chips),
            step_ratios=checks.reals(owner, "step_ratios", self.step_ratios, 0.0, low_open=True),
            measure_steps=checks.integer(owner, "measure_steps", self.measure_steps),
            target_rel_error=checks.real(owner, "target_rel_error", self.target_rel_error, 0.0, 1.0, True, True),
            inv_update_steps=checks.integer(owner, "inv_update_steps", self.inv_update_steps),
            intervals=checks.integers(owner, "intervals", self.intervals, distinct=True),
            workers=checks.workers(owner, self.workers),
        )


def measured_step_ratio(steps: int = 200, seed: int = 0) -> float:
    """K-FAC's steps to reach Adam's final training loss over Adam's steps, on the digits MLP
    (both at the best points of ``digital.tuning``'s grids)."""
    adam = train(TrainConfig(task="digits-mlp", optimizer="adam", lr=0.03, steps=steps, eval_every=10, seed=seed))
    kfac = train(TrainConfig(task="digits-mlp", optimizer="kfac", lr=0.3, steps=steps, eval_every=10, seed=seed,
                             optimizer_options={"damping": 1e-2, "kl_clip": 1e-2}))
    reached = steps_to_target(kfac.history, adam.final["train_loss"])
    return (reached if reached is not None else steps) / steps


def base_system(gpu: str, link: str | None, hardware: str | None, n_chips: int | None, system: str | None = None,
                device: str = "published") -> Any:
    """The system of the projections: a system file when given (``cosim.SystemSpec.load``), else
    presets by name (``cosim.SystemSpec.from_presets``: the ``device`` preset with the link, chip
    and chip count given, None keeping the device's)."""
    if system is not None:
        return SystemSpec.load(system)
    return SystemSpec.from_presets(gpu=gpu, link=link, hardware=hardware, n_chips=n_chips, device=device)


def describe_system(system: Any) -> str:
    """One line naming a system's GPU and its device (:meth:`thermo.DeviceSpec.summary`), for the reports."""
    origin = f" (system file: {system.name})" if system.name else ""
    return f"{system.gpu.name}, {system.device.summary()}{origin}"


def _system(cfg: ProjectionConfig, knob: str, value: float) -> Any:
    system = base_system(cfg.gpu, cfg.link, cfg.hardware, cfg.n_chips, cfg.system)
    device = system.device
    hw, link, chips = device.chip, device.link, device.n_chips
    if knob == "tau_scale":
        hw = dataclasses.replace(hw, tau_s=hw.tau_s * value)
    elif knob == "bits":
        hw = hw.with_converter_bits(int(value))
    elif knob == "link_scale":
        link = dataclasses.replace(link, bandwidth_bps=link.bandwidth_bps * value)
    elif knob == "n_chips":
        chips = int(value)
    return dataclasses.replace(system, device=device.replace(chip=hw, link=link, n_chips=chips))


def points(cfg: ProjectionConfig, ratios: tuple[float, ...]) -> list[dict[str, Any]]:
    """The like-for-like base table (every interval and method at every ratio) and the
    sensitivity sweep (each knob at the sweep interval, solve method)."""
    out = []
    for w in cfg.workloads:
        for ratio in ratios:
            for interval in cfg.intervals:
                for method in cfg.methods:
                    out.append({"workload": w, "knob": "base", "value": 1.0, "step_ratio": ratio,
                                "interval": interval, "method": method})
            for knob in cfg.knobs:
                for value in cfg.grids[knob]:
                    out.append({"workload": w, "knob": knob, "value": float(value), "step_ratio": ratio,
                                "interval": cfg.inv_update_steps, "method": "solve"})
    return out


KERNEL_CHOICES = ("measure", "none")
KERNELS_HELP = ("kernel rates relative to a GEMM: 'measure' them here at the workloads' factor sizes (default; "
                "kept in the output folder), 'none' (the uncalibrated roofline) or a file from tcd calibrate --kernels")


def kernels_option(owner: str, value: object) -> None:
    """Check a ``kernels`` option: ``measure``, ``none`` or an existing calibration file."""
    if not isinstance(value, str) or not value:
        raise checks.StudyConfigError(f"{owner}.kernels must be 'measure', 'none' or a file, got {value!r}")
    if value not in KERNEL_CHOICES and not Path(value).is_file():
        raise checks.StudyConfigError(f"{owner}.kernels: {value!r} is neither 'measure', 'none' nor an existing "
                                      "kernel calibration file (write one with tcd calibrate --kernels)")


KERNELS_FILE = "kernels.json"
"""The kernel calibration a study measured, beside its CSV (reused by every later run there)."""


@functools.lru_cache(maxsize=8)
def kernel_rates(kernels: str, out_dir: Path, workloads: tuple[str, ...], n_gpus: int) -> KernelCalibration | None:
    """The kernel calibration a study uses (see ``ProjectionConfig.kernels``): None for ``none``;
    for ``measure``, the one kept in ``out_dir`` or, the first time, a new measurement of float32
    GEMM, Cholesky, Cholesky inverse and eigh at every factor size of ``workloads`` on this
    machine's CPU (about ten seconds), saved there."""
    if kernels == "none":
        return None
    if kernels != "measure":
        return KernelCalibration.load(kernels)
    path = Path(out_dir) / KERNELS_FILE
    if path.is_file():
        return KernelCalibration.load(path)
    sizes = factor_sizes(workload_shape(w, n_gpus) for w in workloads)
    calibration = calibrate_kernels(sizes, source=f"factor sizes of {', '.join(workloads)}")
    calibration.save(path)
    return calibration


def calibrated(system: Any, calibration: KernelCalibration | None) -> Any:
    """``system`` with its GPU's kernel rates from ``calibration`` (unchanged for None)."""
    return system if calibration is None else system.replace(gpu=calibration.apply(system.gpu))


def config_kernels(cfg: Any) -> KernelCalibration | None:
    """The kernel calibration of a study config with ``kernels``, ``out_dir``, ``workloads``, ``n_gpus``."""
    return kernel_rates(cfg.kernels, Path(cfg.out_dir), tuple(cfg.workloads), cfg.n_gpus)


def evaluate(cfg: ProjectionConfig, point: dict[str, Any]) -> dict[str, Any]:
    """Projected time to target of the three methods for one workload, knob value, ratio,
    interval and thermodynamic method."""
    system = calibrated(_system(cfg, point["knob"], float(point["value"])), config_kernels(cfg))
    return project_methods(point["workload"], system, float(point["step_ratio"]), n_gpus=cfg.n_gpus,
                           interval=int(point["interval"]), analog_op=str(point["method"]),
                           target_rel_error=cfg.target_rel_error, anchor=cfg.anchor)


def workload_shape(workload: str, n_gpus: int) -> ModelShape:
    """The per-GPU shape of a workload of :data:`WORKLOADS` (data parallel: each of ``n_gpus``
    GPUs takes its share of the batch)."""
    spec = WORKLOADS[workload]()
    per_gpu = spec["batch_size"] // n_gpus
    return ModelShape(tuple(LayerShape(n, i, o, r) for n, i, o, r in spec["layers"]), per_gpu, spec["output_dim"],
                      spec["other_params"], name=workload)


def published_step_s(workload: str) -> float:
    """AlgoPerf's NAdamW seconds per step to target (DESIGN.md section 4: baseline seconds over steps)."""
    spec = WORKLOADS[workload]()
    return spec["baseline_s"] / spec["baseline_steps"]


def project_methods(
    workload: str, system: Any, step_ratio: float, *, n_gpus: int, interval: int, analog_op: str,
    target_rel_error: float, anchor: bool = True,
) -> dict[str, Any]:
    """Time to target (s) of Adam (the baseline's steps), digital K-FAC and thermodynamic K-FAC
    (``analog_op``: the published inverse or solve method), both K-FACs at ``step_ratio`` times the
    baseline's steps and at the same factor and inverse ``interval``, for a workload of
    :data:`WORKLOADS` on ``system`` (a ``cosim.SystemSpec``).

    ``anchor``: the GPU is first anchored so that the projected Adam step equals AlgoPerf's
    published one (:func:`cosim.calibration.anchor_to_step`); the roofline's own Adam time is kept
    beside it. The row carries the offload bound (:func:`cosim.runs.offload_bound`): the share of
    digital K-FAC that the device replaces and the largest speedup any device could give."""
    spec = WORKLOADS[workload]()
    base = spec["baseline_steps"]
    kfac_steps = max(1, round(base * step_ratio))
    shape, system, anchored = _anchored(workload, system, n_gpus, anchor)
    common = dict(inv_update_steps=interval, factor_update_steps=interval, target_rel_error=target_rel_error)
    adam, digital, thermo = compare(shape, system, {
        "adam": (StepModel(method="adam"), base),
        "kfac": (StepModel(method="kfac", inverse_on="gpu", **common), kfac_steps),
        "tkfac": (StepModel(method="kfac", inverse_on="analog", analog_op=analog_op, **common), kfac_steps),
    })
    bound = offload_bound(digital, analog_op, adam)
    bottleneck = max(thermo.utilization, key=thermo.utilization.get)
    return {
        "adam_s": adam.total_s, "kfac_s": digital.total_s, "tkfac_s": thermo.total_s,
        "speedup_vs_adam": adam.total_s / thermo.total_s, "speedup_vs_kfac": digital.total_s / thermo.total_s,
        "kfac_vs_adam": adam.total_s / digital.total_s, "tkfac_bottleneck": bottleneck, "bottleneck": bottleneck,
        "replaced_share": bound.share, "bound_vs_kfac": bound.vs_kfac, "bound_vs_adam": bound.vs_adam,
        "anchor_scale": 1.0 if anchored is None else anchored.scale,
        "unmodelled_step_s": 0.0 if anchored is None else anchored.residual_s,
        "roofline_adam_s": adam.total_s if anchored is None else anchored.modelled_step_s * base,
        "anchor_mode": spec["anchor_mode"] if anchor else "none",
        "inversion_share": digital.phase_s.get("invert", 0.0) / digital.total_s,
        "n_params": shape.n_params, "algoperf_adam_s": spec["baseline_s"],
    }


def _anchored(workload: str, system: Any, n_gpus: int, anchor: bool) -> tuple[ModelShape, Any, Anchor | None]:
    """The workload's per-GPU shape and ``system`` with its GPU's own roofline (``anchor_scale``
    1), anchored to AlgoPerf's published Adam step in the workload's mode when ``anchor``, and the
    anchor (None without)."""
    shape = workload_shape(workload, n_gpus)
    system = system.replace(gpu=system.gpu.replace(anchor_scale=1.0))
    if not anchor:
        return shape, system, None
    return anchor_to_step(shape, system, published_step_s(workload), source="AlgoPerf NAdamW",
                          mode=WORKLOADS[workload]()["anchor_mode"])


def project_tngd(
    workload: str, system: Any, step_ratio: float, *, n_gpus: int, interval: int, analog_time_tau: float = 50.0,
    anchor: bool = True,
) -> dict[str, Any]:
    """Time to target (s) of thermodynamic NGD (``analog_time_tau`` per iteration, the paper's 50
    tau) beside Adam and digital K-FAC (at ``interval``) on a workload of :data:`WORKLOADS`, TNGD
    and K-FAC at ``step_ratio`` times the baseline's steps (an assumption: TNGD converges in as
    few steps as K-FAC). The bound is TNGD's digital floor (:func:`cosim.runs.device_free_s`: its
    gradient and the ``d_z`` backward passes of its Jacobian, with the device taking no time)."""
    shape, system, _ = _anchored(workload, system, n_gpus, anchor)
    base = WORKLOADS[workload]()["baseline_steps"]
    steps = max(1, round(base * step_ratio))
    adam, digital, tngd = compare(shape, system, {
        "adam": (StepModel(method="adam"), base),
        "kfac": (StepModel(method="kfac", inverse_on="gpu", inv_update_steps=interval, factor_update_steps=interval), steps),
        "tngd": (StepModel(method="tngd", analog_time_tau=analog_time_tau), steps),
    })
    floor = device_free_s(tngd)
    return {"adam_s": adam.total_s, "kfac_s": digital.total_s, "tngd_s": tngd.total_s,
            "speedup_vs_adam": adam.total_s / tngd.total_s, "speedup_vs_kfac": digital.total_s / tngd.total_s,
            "bottleneck": max(tngd.utilization, key=tngd.utilization.get),
            "bound_vs_adam": adam.total_s / floor, "bound_vs_kfac": digital.total_s / floor,
            "device_share": 1.0 - floor / tngd.total_s, "n_params": shape.n_params,
            "rank": shape.batch_size * shape.output_dim}


@functools.lru_cache(maxsize=8)
def step_ratios(cfg: ProjectionConfig) -> tuple[tuple[float, ...], float | None]:
    """The K-FAC step ratios swept (the configured ones, then the measured one) and the ratio
    measured on the digits MLP (None with ``measure_ratio`` off). The measurement trains two
    seeded runs: it is made once per configuration in a process (its points and its report
    both need it)."""
    measured = round(measured_step_ratio(cfg.measure_steps), 4) if cfg.measure_ratio else None
    return tuple(dict.fromkeys((*cfg.step_ratios, *(() if measured is None else (measured,))))), measured


def run(cfg: ProjectionConfig, progress: bool = True) -> Path:
    """Measure K-FAC's step ratio (unless told not to), run the missing points, plot and report;
    return the CSV path."""
    return STUDY.run(cfg, progress)


KNOB_LABELS = {
    "base": "base system (x1)",
    "tau_scale": "device time constant (x preset's tau)",
    "bits": "converter bit width (bits)",
    "link_scale": "link bandwidth (x preset's)",
    "n_chips": "analog chips (count)",
}
"""The x label of each knob's panel, with its unit."""


def plot(rows: list[dict[str, Any]], path: Path) -> Any:
    """Speedup over digital K-FAC against each knob, a row of panels per workload; an axis is
    logarithmic where its values span more than a decade. Returns the (closed) Figure."""
    # matplotlib is imported where a figure is drawn: at module level it would slow every
    # `tcd` command (even --help) by about half a second
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = sorted({r["workload"] for r in rows})
    knobs = [k for k in SENSITIVITY if any(r["knob"] == k for r in rows)] or ["base"]
    if knobs == ["base"]:  # the base table holds every interval and method: draw the solve method's
        rows = [r for r in rows if r.get("method", "solve") == "solve"]
    fig, axes = plt.subplots(len(workloads), len(knobs), figsize=(3.6 * len(knobs), 3 * len(workloads)), squeeze=False)
    for i, w in enumerate(workloads):
        for j, knob in enumerate(knobs):
            ax = axes[i][j]
            xs, ys = [], [1.0]
            for ratio in sorted({r["step_ratio"] for r in rows}):
                pts = sorted((r["value"], r["speedup_vs_kfac"]) for r in rows
                             if r["workload"] == w and r["knob"] == knob and r["step_ratio"] == ratio)
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=f"K-FAC steps x{ratio:g}")
                    xs += [p[0] for p in pts]
                    ys += [p[1] for p in pts]
            ax.axhline(1.0, color="k", lw=0.8)
            set_scale(ax, "x", xs)
            set_scale(ax, "y", ys)
            ax.set_title(f"{w}: {knob}", fontsize=8)
            ax.set_xlabel(KNOB_LABELS[knob], fontsize=7)
            ax.set_ylabel("thermo over digital K-FAC speedup (x)", fontsize=7)
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def report(
    rows: list[dict[str, Any]], path: Path, cfg: ProjectionConfig, ratios: tuple[float, ...], measured: float | None = None
) -> None:
    base_rows = [r for r in rows if r["knob"] == "base"]
    anchors = {r["workload"]: r for r in base_rows}
    lines = ["# Projected time to target: AlgoPerf vision and graph workloads", "",
             f"![sensitivity of the speedup to the hardware]({path.with_suffix('.png').name})", "", "## Assumptions",
             f"- System: {describe_system(base_system(cfg.gpu, cfg.link, cfg.hardware, cfg.n_chips, cfg.system))}; "
             f"the GPU is one of {cfg.n_gpus} data-parallel GPUs (batch split evenly); analog target relative error "
             f"{cfg.target_rel_error:g}; factor condition number 1e3 (cosim default).",
             "- Like for like: digital and thermodynamic K-FAC share the factor and inverse interval of each row. The "
             "inverse method inverts the factors on the device at that interval and preconditions on the GPU; the "
             "solve method solves with the gradient's right-hand sides on the device every step, its factors "
             "programmed at the factor interval when the device keeps its couplings (resident) and every step "
             "otherwise.",
             f"- K-FAC step ratios: {', '.join(f'{r:g}' for r in ratios)} (published 0.5-0.75"
             + (f"; measured on the digits MLP: {measured:g})" if measured is not None else ")"),
             "- Baseline steps (NAdamW median to target, AlgoPerf): "
             + "; ".join(f"{w}: {WORKLOADS[w]()['baseline_steps']:,} steps to {WORKLOADS[w]()['target']}" for w in cfg.workloads),
             *[f"- {w}: {WORKLOADS[w]()['notes']}" for w in cfg.workloads]]
    if cfg.anchor:
        lines += ["- Anchored digital baseline: the projected Adam step equals AlgoPerf's published NAdamW step "
                  "(baseline seconds over steps); the device's times are the cost model's."]
        for w, a in anchors.items():
            spec, roofline_step = WORKLOADS[w](), a["roofline_adam_s"] / WORKLOADS[w]()["baseline_steps"]
            how = (f"every GPU kernel x{a['anchor_scale']:.3g}, K-FAC's extra kernels too" if a["anchor_mode"] == "scale"
                   else f"{a['unmodelled_step_s']:.4g} s of unmodelled work per step, the same for every method "
                        f"({100 * (1 - roofline_step / published_step_s(w)):.3g}% of the step is anchored, not modelled)")
            lines.append(f"  - {w}: published {published_step_s(w):.4g} s per step, roofline {roofline_step:.4g} s; "
                         f"anchored as a {a['anchor_mode']} ({how}), because {spec['anchor_reason']}.")
    else:
        lines += ["- The roofline is not anchored (datasheet peaks, dense layers only): compare the projected Adam time "
                  "with AlgoPerf's measured one (last column)."]
    lines += kernel_lines(cfg, base_rows)
    lines += ["- Bound: the share of digital K-FAC's run that the device replaces (inversions; with the solve method "
              "also the preconditioning products) sets the largest speedup any device could give, over digital "
              "K-FAC and over Adam (Amdahl: the replaced work taking no time).", ""]
    for w in cfg.workloads:
        ws = [r for r in base_rows if r["workload"] == w]
        if ws:
            top = max(ws, key=lambda r: r["replaced_share"])
            lines.append(f"- {w}: the replaced work weighs most at interval {top['interval']} ({top['method']} method): "
                         f"{100 * top['replaced_share']:.3g}% of digital K-FAC's run. The paper's claims rest on a "
                         "digital K-FAC whose inversion dominates the step, the frequent-inversion end of this table"
                         + (": here it does not dominate at any interval." if top["replaced_share"] < 0.5 else "."))
    lines += ["", "## Like for like (base system)", "",
              "| workload | K-FAC step ratio | interval | method | Adam (h) | Adam, roofline (h) | digital K-FAC (h) | "
              "thermodynamic K-FAC (h) | thermo vs Adam | thermo vs digital K-FAC | replaced share | bound vs digital "
              "K-FAC | bound vs Adam | bottleneck | AlgoPerf NAdamW measured (h) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in base_rows:
        lines.append(f"| {r['workload']} | {r['step_ratio']:g} | {r['interval']} | {r['method']} | {r['adam_s'] / 3600:.3g} | "
                     f"{r['roofline_adam_s'] / 3600:.3g} | {r['kfac_s'] / 3600:.3g} | {r['tkfac_s'] / 3600:.3g} | "
                     f"{r['speedup_vs_adam']:.3g}x | {r['speedup_vs_kfac']:.3g}x | {100 * r['replaced_share']:.3g}% | "
                     f"{r['bound_vs_kfac']:.3g}x | {r['bound_vs_adam']:.3g}x | {r['tkfac_bottleneck']} | "
                     f"{r['algoperf_adam_s'] / 3600:.3g} |")
    lines += ["", f"## Sensitivity (solve method, interval {cfg.inv_update_steps}: thermodynamic over digital K-FAC speedup)", "",
              "| workload | knob | value | step ratio | speedup vs digital K-FAC | bound | speedup vs Adam |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["knob"] != "base":
            lines.append(f"| {r['workload']} | {r['knob']} | {r['value']:g} | {r['step_ratio']:g} | "
                         f"{r['speedup_vs_kfac']:.3g}x | {r['bound_vs_kfac']:.3g}x | {r['speedup_vs_adam']:.3g}x |")
    lines += kernel_table(cfg)
    path.write_text("\n".join(lines) + "\n")


def factorization_rate_for(workload: str, system: Any, target_bound: float, *, interval: int, n_gpus: int,
                           step_ratio: float, anchor: bool = True) -> float | None:
    """The Cholesky-inverse FLOP rate relative to a GEMM (``GPUSpec.kernel_efficiency``) at which
    the inverse method's bound over digital K-FAC reaches ``target_bound`` (a slower factorization
    weighs more in digital K-FAC, so the bound grows as the rate falls); None when even a rate of
    1e-4 leaves it below. The bound is digital K-FAC's alone, so only its run is projected; the
    anchor is made once (Adam, which it rests on, does no factorization)."""
    shape, anchored, _ = _anchored(workload, system, n_gpus, anchor)
    steps = max(1, round(WORKLOADS[workload]()["baseline_steps"] * step_ratio))
    digital_kfac = StepModel(method="kfac", inverse_on="gpu", inv_update_steps=interval, factor_update_steps=interval)

    def bound_at(rate: float) -> tuple[float, str]:
        gpu = anchored.gpu.replace(kernel_efficiency={**anchored.gpu.kernel_efficiency, "cholesky_inverse": rate})
        digital = project_run(shape, anchored.replace(gpu=gpu), digital_kfac, steps)
        return offload_bound(digital, "inverse").vs_kfac, "gpu"

    found = crossing(bound_at, target_bound, 1.0, 1e-4, rel_tol=0.02)
    return found.value


def kernel_lines(cfg: ProjectionConfig, base_rows: list[dict[str, Any]]) -> list[str]:
    """The report's account of the kernel rates: where they come from, what they are, and the
    factorization rate at which the bound would reach 2x."""
    calibration = config_kernels(cfg)
    if calibration is None:
        lines = ["- Kernel rates: none (every kernel runs at the GEMM's FLOP rate; `--kernels measure` measures them)."]
    else:
        rates = ", ".join(f"{k} {v:.3g}" for k, v in calibration.relative().items())
        lines = [f"- Kernel rates relative to a GEMM (FLOP rate, by the roofline's FLOP counts), measured on "
                 f"{calibration.machine} at the workloads' factor sizes: {rates}. The GPU is assumed to keep these "
                 "ratios; its own were not measured (no GPU here): a GPU's factorizations usually fall further behind "
                 "its GEMMs, which raises the bound. The timings are in the table at the end."]
    system = calibrated(base_system(cfg.gpu, cfg.link, cfg.hardware, cfg.n_chips, cfg.system), calibration)
    ratio = min(cfg.step_ratios)
    for w in cfg.workloads:
        rows = [r for r in base_rows if r["workload"] == w and r["interval"] == min(cfg.intervals) and r["method"] == "inverse"]
        if not rows:
            continue
        need = factorization_rate_for(w, system, 2.0, interval=min(cfg.intervals), n_gpus=cfg.n_gpus, step_ratio=ratio,
                                      anchor=cfg.anchor)
        have = system.gpu.kernel_efficiency.get("cholesky_inverse", 1.0)
        lines.append(f"- {w}: inversions take {100 * rows[0]['inversion_share']:.3g}% of digital K-FAC at interval "
                     f"{min(cfg.intervals)}; the bound over digital K-FAC would reach 2x only if the GPU inverted its "
                     "factors at " + ("less than 1e-4 of its GEMM rate" if need is None else
                                      f"{need:.3g} of its GEMM rate (assumed here: {have:.3g})") + ".")
    return lines


def kernel_table(cfg: ProjectionConfig) -> list[str]:
    calibration = config_kernels(cfg)
    if calibration is None:
        return []
    return ["", f"## Kernel timings on {calibration.machine}", "", calibration.table()]


class ProjectionsStudy(Study[ProjectionConfig]):
    """The projections study under the study protocol; each part hands over to this module's
    function of the same name (which tests and notebooks call directly)."""

    name = NAME
    help = "projected time to target for ViT/ImageNet and the ogbg-molpcba GNN: Adam, digital and thermodynamic K-FAC"
    description = ("AlgoPerf baseline steps, K-FAC step ratios (published and measured here) and a sensitivity sweep "
                   "over the device time constant, bits, link bandwidth and chips.")
    config_type = ProjectionConfig
    swept = ("workloads", "step_ratios", "knobs", "dense_grids", "measure_ratio", "measure_steps", "intervals", "methods")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--full", action="store_true", help="the full size (step ratios 0.5-1, denser sensitivity grids, "
                            "600 measured steps)")
        parser.add_argument("--workloads", type=strings, default=None, help="vit-imagenet,gnn-molpcba (default both)")
        parser.add_argument("--gpu", default="V100", help="GPU preset (default V100, AlgoPerf's reference)")
        parser.add_argument("--chips", type=positive_int, default=16, help="analog chips of the base system (default 16)")
        parser.add_argument("--hardware", default=None, help=HARDWARE_HELP + " of the base system (default published)")
        parser.add_argument("--system", default=None, help=SYSTEM_HELP)
        parser.add_argument("--knobs", type=strings, default=None, help="sensitivity knobs: tau_scale,bits,link_scale,n_chips (default all)")
        parser.add_argument("--no-measure", action="store_true", help="skip measuring K-FAC's step ratio on the digits MLP")
        parser.add_argument("--sweep-interval", type=positive_int, default=None,
                            help="factor and inverse interval of the sensitivity sweep (default 10)")
        parser.add_argument("--intervals", type=positive_ints, default=None,
                            help="factor and inverse intervals of the like-for-like table (default 1,10,100)")
        parser.add_argument("--methods", type=strings, default=None,
                            help=f"thermodynamic K-FAC methods of that table: {', '.join(REPLACED_PHASES)} (default both)")
        parser.add_argument("--no-anchor", action="store_true",
                            help="keep the roofline's own Adam step instead of anchoring it to AlgoPerf's published one")
        parser.add_argument("--kernels", default=None, help=KERNELS_HELP)
        add_sweep_arguments(parser, f"results/{self.name}")

    def config_from_args(self, args: argparse.Namespace) -> ProjectionConfig:
        overrides = {**sweep_options(args), **given(args, "workloads", "knobs", "hardware", "system", "intervals", "methods",
                                                    "kernels"),
                     "gpu": args.gpu, "n_chips": args.chips, "measure_ratio": not args.no_measure,
                     "anchor": not args.no_anchor,
                     **({} if args.sweep_interval is None else {"inv_update_steps": args.sweep_interval})}
        return self.config(args.full, **overrides)

    def points(self, cfg: ProjectionConfig) -> list[dict[str, Any]]:
        """Every (workload, knob value, step ratio, interval, method), the measured ratio among the ratios."""
        config_kernels(cfg)  # measured here, once, before the pool's workers read it
        return points(cfg, step_ratios(cfg)[0])

    def evaluate(self, cfg: ProjectionConfig, point: dict[str, Any]) -> dict[str, Any]:
        return evaluate(cfg, point)

    def plot(self, cfg: ProjectionConfig, results: Any, path: Path) -> Any:
        return plot(results, path)

    def report(self, cfg: ProjectionConfig, results: Any, path: Path) -> None:
        report(results, path, cfg, *step_ratios(cfg))

    def outcome(self, cfg: ProjectionConfig, csv_path: Path) -> list[str]:
        """The base system's times to target, per workload and step ratio."""
        return [f"{r['workload']:<13} K-FAC steps x{r['step_ratio']:<6g} interval {r['interval']:<4} {r['method']:<8} "
                f"Adam {r['adam_s'] / 3600:8.3g} h  "
                f"digital K-FAC {r['kfac_s'] / 3600:8.3g} h  thermodynamic K-FAC {r['tkfac_s'] / 3600:8.3g} h "
                f"({r['speedup_vs_adam']:.3g}x Adam, bound {r['bound_vs_kfac']:.3g}x digital K-FAC, "
                f"bottleneck {r['tkfac_bottleneck']})"
                for r in sweep.read_rows(csv_path, last_run=True) if r["knob"] == "base"]


STUDY = ProjectionsStudy()
