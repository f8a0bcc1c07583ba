#!/usr/bin/env bash
# GPU readiness check in one table (see benchmarks/gpu_check.py for what each row measures).
#
#   bash benchmarks/gpu_check.sh            # CUDA machine, offline, under 5 minutes
#   bash benchmarks/gpu_check.sh --smoke    # CPU, tiny sizes, seconds
#
# Extra arguments go to gpu_check.py (e.g. --backbone-weights resnet50.pth, --steps 20).
# PYTHON selects the interpreter (default: the project's .venv if present, else python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
# Idle OpenMP threads sleep instead of spinning (matters on shared CPUs, harmless on GPUs).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
# The script stops starting rows after --budget-s (default 270 s); this is the hard stop.
exec timeout "${GPU_CHECK_TIMEOUT:-300}" "$PYTHON" "$here/gpu_check.py" "$@"
