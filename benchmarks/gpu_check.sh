#!/usr/bin/env bash
# The GPU check of issue 15 (item 5), as one command on a machine with CUDA:
#
#   bash benchmarks/gpu_check.sh            # from anywhere; writes under $OUT when it is set
#
# 1. Python environment. When the installed torch already sees CUDA it is used as it is: it is
#    never reinstalled (the project's pin, torch==2.13.0, is the CPU wheel on PyPI), and only the
#    project's other dependencies are installed if some are missing (pip; needs the network).
#    Without a CUDA torch the pinned CPU install runs (pip install torch==2.13.0 -e '.[test]'):
#    the tests then skip and the benchmark prints its one line, which is the check failing
#    visibly, not passing. The project itself runs from this checkout (PYTHONPATH), not installed.
# 2. pytest tests/gpu -m gpu -q  -> $OUT/gpu-tests.txt
# 3. python benchmarks/bench_gpu.py -> $OUT/bench-gpu.txt (its last line is the headline)
# plus $OUT/gpu-env.txt (GPU, driver, torch and CUDA versions). Exit status: 0 only when both
# steps ran on a GPU and passed (3: they ran without one). Time limits per step (seconds):
# GPU_CHECK_TEST_TIMEOUT, GPU_CHECK_BENCH_TIMEOUT; GPU_CHECK_SKIP_INSTALL=1 skips step 1.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
PY="${PYTHON:-python3}"
DEST="${OUT:-}"
if [ -n "$DEST" ]; then mkdir -p "$DEST"; else DEST="$(mktemp -d)"; fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}" NUMBA_NUM_THREADS="${NUMBA_NUM_THREADS:-1}"

if [ -n "${GPU_CHECK_SKIP_INSTALL:-}" ]; then
    echo "gpu_check: GPU_CHECK_SKIP_INSTALL is set: the environment is used as it is"
elif "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: using the installed torch $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)') (not reinstalled)"
    if ! "$PY" -c 'import numpy, scipy, numba, simpy, sklearn, tqdm, yaml, pytest' 2>/dev/null; then
        # the project's dependencies from pyproject.toml, all but torch, and pytest
        deps=$("$PY" - <<'EOF'
import re
text = open("pyproject.toml", encoding="utf-8").read()
block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
print(" ".join(d for d in re.findall(r'^\s*"([^"]+)"', block, re.M) if not re.match(r"torch\b", d)))
EOF
)
        echo "gpu_check: installing the missing dependencies: $deps pytest>=8"
        # shellcheck disable=SC2086
        "$PY" -m pip install -q $deps "pytest>=8" || echo "gpu_check: pip could not install them (offline?): the steps below may fail"
    fi
else
    echo "gpu_check: no torch with CUDA here; installing the pinned CPU wheel (the GPU tests will skip)"
    "$PY" -m pip install -q torch==2.13.0 -e '.[test]' || echo "gpu_check: the install failed"
fi

{
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available(),
        "devices", torch.cuda.device_count())'
    git -C "$ROOT" log -1 --format='commit %H %s' 2>/dev/null
} 2>&1 | tee "$DEST/gpu-env.txt"

echo "gpu_check: pytest tests/gpu -m gpu -q"
timeout "${GPU_CHECK_TEST_TIMEOUT:-330}" "$PY" -m pytest tests/gpu -m gpu -q -rs -p no:cacheprovider 2>&1 | tee "$DEST/gpu-tests.txt"
tests_rc=$?
if [ "$tests_rc" -eq 0 ] && ! grep -qE '[0-9]+ passed' "$DEST/gpu-tests.txt"; then tests_rc=3; fi  # all skipped: no GPU ran
echo "gpu_check: python benchmarks/bench_gpu.py"
timeout "${GPU_CHECK_BENCH_TIMEOUT:-240}" "$PY" benchmarks/bench_gpu.py 2>&1 | tee "$DEST/bench-gpu.txt"
bench_rc=$?
if grep -q "needs a CUDA GPU" "$DEST/bench-gpu.txt"; then bench_rc=3; fi  # exit 0 without CUDA is for CI, not here
echo "gpu_check: tests exit $tests_rc, benchmark exit $bench_rc; outputs in $DEST"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
