"""The GPU test set: the simulator and the training paths on CUDA, checked against the CPU.

Every test here is marked ``gpu`` and the whole folder is skipped, with the reason on each test,
when ``torch.cuda.is_available()`` is false (CI, and machines without a GPU). On a machine with
one: ``pytest tests/gpu -m gpu -q`` (or ``benchmarks/gpu_check.sh``, which also runs the GPU
benchmark).

``TCD_GPU_TESTS_DEVICE`` names another device for the suite (``cuda:1``; or ``cpu`` to dry-run
the tests' own logic on a machine without a GPU, which checks nothing about CUDA: the header of
the run says which device it used).

Conventions of the tests: the CPU reference is computed on the host (numpy or torch ``cpu``),
the same inputs are moved to the device, results are moved back with ``.cpu()`` (which
synchronizes), and deterministic parts are compared to float tolerances; stochastic parts use a
different random stream on each device (``torch.Generator(device="cuda")``), so they are
compared in law, with tolerances from the repeat counts.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

_HERE = Path(__file__).resolve().parent
_REQUESTED = os.environ.get("TCD_GPU_TESTS_DEVICE", "cuda")


def _usable(device: str) -> str | None:
    """None when ``device`` can run the suite, else why not (the skip reason)."""
    kind = torch.device(device).type
    if kind == "cpu":
        return None
    if kind != "cuda":
        return f"TCD_GPU_TESTS_DEVICE={device!r}: the GPU tests run on cuda (or cpu for a dry run)"
    if not torch.cuda.is_available():
        return f"needs CUDA: torch {torch.__version__} reports torch.cuda.is_available() == False"
    index = torch.device(device).index or 0
    if index >= torch.cuda.device_count():
        return f"{device!r} requested but only {torch.cuda.device_count()} CUDA device(s) are visible"
    return None


SKIP_REASON = _usable(_REQUESTED)


def pytest_report_header(config: pytest.Config) -> str:
    if SKIP_REASON is not None:
        return f"tests/gpu: skipped ({SKIP_REASON})"
    kind = torch.device(_REQUESTED).type
    if kind == "cpu":
        return "tests/gpu: DRY RUN on the CPU (TCD_GPU_TESTS_DEVICE=cpu): nothing about CUDA is checked"
    return f"tests/gpu: on {_REQUESTED} ({torch.cuda.get_device_name(torch.device(_REQUESTED))}, torch {torch.__version__})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every test of this folder (only this folder's) when the device is not usable."""
    if SKIP_REASON is None:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The device under test (``cuda`` unless ``TCD_GPU_TESTS_DEVICE`` says otherwise)."""
    return torch.device(_REQUESTED)


@pytest.fixture(autouse=True)
def _synchronized(device: torch.device):
    """Each test starts and ends with the device idle, so an asynchronous CUDA error surfaces in
    the test that caused it (not in a later one) and the CPU threads stay pinned to one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    torch.set_num_threads(threads)
