"""Co-simulation of a training step on a host GPU, a link and an analog thermodynamic device.

``schedule`` is the SimPy discrete-event model of steps on shared resources (and the exact
periodic projection of long runs); ``shapes`` records a model's layer shapes and ``step_graphs``
turns them and a method into the task graph of a step with durations; ``system`` describes the machine (:class:`SystemSpec` = :class:`GPUSpec` + :class:`thermo.DeviceSpec`,
with sourced presets and TOML/YAML files); ``roofline`` times GPU kernels
from their FLOPs and memory traffic and calibrates the model against measurements. Results are
projections: state the assumptions (each spec's ``source``) beside every number.
"""

from .cotrain import CoSimReport, cosimulate_training
from .roofline import (
    BYTES_PER_ELEMENT,
    CalibrationWarning,
    MeasurementWarning,
    RooflineError,
    RooflineModel,
    RooflineTerms,
    Timing,
    Work,
    calibrate,
    cholesky,
    cholesky_inverse,
    cpu_spec,
    eigh,
    elementwise,
    gemm,
    measure,
    measure_stable,
    relative_spread,
    timing_of,
)
from .runs import RunProjection, compare, project_run, steps_to_target, write_csv
from .schedule import (
    Projection,
    Schedule,
    ScheduleError,
    StepGraph,
    Task,
    TaskRecord,
    project,
    simulate,
)
from .system import (
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
from .shapes import LayerShape, ModelShape, WorkloadError
from .step_graphs import METHODS, STEP_KINDS, StepCoster, StepModel, device_tasks, label_of, step_pattern

__all__ = [
    "CoSimReport",
    "cosimulate_training",
    "RunProjection",
    "compare",
    "steps_to_target",
    "project_run",
    "write_csv",
    "LayerShape",
    "METHODS",
    "STEP_KINDS",
    "device_tasks",
    "label_of",
    "ModelShape",
    "Projection",
    "Schedule",
    "ScheduleError",
    "StepCoster",
    "StepGraph",
    "StepModel",
    "Task",
    "TaskRecord",
    "WorkloadError",
    "project",
    "simulate",
    "step_pattern",
    "A100",
    "BYTES_PER_ELEMENT",
    "DEFAULT_LAUNCH_OVERHEAD_S",
    "GPU_PRESETS",
    "H100",
    "PRECISIONS",
    "V100",
    "CalibrationWarning",
    "MeasurementWarning",
    "GPUSpec",
    "RooflineError",
    "RooflineModel",
    "RooflineTerms",
    "Timing",
    "SystemSpec",
    "SystemSpecError",
    "Work",
    "calibrate",
    "cholesky",
    "cholesky_inverse",
    "cpu_spec",
    "eigh",
    "elementwise",
    "gemm",
    "gpu_preset",
    "measure",
    "measure_stable",
    "relative_spread",
    "timing_of",
]
