#!/usr/bin/env bash
# The CUDA check, in one command (planned for under 5 minutes on a fresh NVIDIA H200 machine):
#
#   benchmarks/device_check.sh              segment samples/sample.mp4 and a 1080p clip made from it on CUDA
#                                           in fp32, bf16 and fp16 with DIS, RAFT-small and RAFT-large (random
#                                           RAFT weights), check each against the CPU's fp32 run, run the tests
#                                           marked cuda, and write $OUT/device-check.json (frames per second
#                                           per setting, peak GPU memory, differences) and $OUT/pytest-cuda.log
#   benchmarks/device_check.sh --cpu-smoke  the same code on the CPU with 3 frames (no fp16), where no GPU is
#
# $OUT defaults to ./device-check-out. Exit status: 0 every run within tolerance and the tests passed,
# 1 something failed, 3 no CUDA device (without --cpu-smoke). Options for a shorter run: --frames N,
# --compare-frames N, --flows dis raft-small (see benchmarks/device_check.py --help).
#
# Needs Python 3.11 or later with torch and torchvision (a CUDA build), timm, typer, rich, av (PyAV),
# numpy, opencv-python-headless, safetensors and pytest. It runs this checkout's code (PYTHONPATH) rather
# than installing the project, whose pins would replace the machine's torch. $PYTHON picks the interpreter
# (default: .venv/bin/python when there is one, else python3). The H200 machines' image has all of these
# but PyAV: download its wheel into .whl/ beside this checkout's code before sending the tree, and the
# script installs it into a private folder:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==18.1.0
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
wheels="${HMHI_WHEELS:-$root/.whl}"
if ! "$PYTHON" -c "import av" 2>/dev/null; then
    if ! compgen -G "$wheels/*.whl" > /dev/null; then
        echo "device_check: PyAV (av) is missing and $wheels holds no wheels (see the top of $0)" >&2
        exit 1
    fi
    site="${TMPDIR:-/tmp}/hmhi-device-check-site"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PYTHON" "$root/benchmarks/device_check.py" --out "${OUT:-./device-check-out}" "$@"
