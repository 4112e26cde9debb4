"""Model speed: the straightforward port of the reference against the fast kernels, in one run.

    .venv/bin/python benchmarks/bench_speed.py [--size 512] [--frames 6] [--rounds 2]
                                               [--weights W --sequences a,b]

Prints seconds per ``stream.step`` (memory banks full, float32 unless marked) for:
  - the reference port: full score matrices, masked top-k, manual attention, direct
    convolutions, PyTorch's bicubic kernel, out-of-place activations;
  - the fast kernels (Winograd decoder convolutions, top-k through group maxima, fused
    attention, matrix bicubic, in-place activations), in float32 and under bf16 autocast;
each with glibc's default allocator ("plain malloc") and with the heap kept for reuse
(:func:`hmhi_cli.runtime.keep_freed_memory`, what the ``hmhi`` command runs with). Every
configuration runs in its own process, the configurations take turns for ``--rounds`` rounds
(so a machine that speeds up or slows down affects all of them alike), and each number is the
median over all timed frames. Ratios are against the reference port with plain malloc (the
straightforward port as a Python process runs it) and against the reference port with the
same allocator (the kernels alone).

Then: the largest difference of the float32 paths from the reference fixture (../shared/parity,
tolerance 2e-4 relative) and, with trained weights, the J&F of fp32 and bf16 on
../shared/davis16-dev and their difference.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DAVIS = ROOT.parent / "shared" / "davis16-dev"
WARM_UP = 4

CONFIGURATIONS = {  # name: (fast kernels, precision, keep freed memory)
    "reference, plain malloc": (False, "fp32", False),
    "reference": (False, "fp32", True),
    "fast, plain malloc": (True, "fp32", False),
    "fast": (True, "fp32", True),
    "fast bf16": (True, "bf16", True),
}


def step_times(encoder: str, size: int, frames: int, fast: bool, precision: str) -> list[float]:
    """Seconds of each ``stream.step`` after the memory banks are full, in this process."""
    from hmhi_cli.model import build_model

    net = build_model(encoder).use_fast_kernels(fast)
    torch.manual_seed(0)
    images = torch.randn(WARM_UP + frames, 1, 3, size, size)
    flows = torch.randn_like(images)
    stream = net.stream()
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    timings = []
    with torch.inference_mode(), cast:
        for t in range(len(images)):
            start = time.perf_counter()
            stream.step(images[t], flows[t])
            if t >= WARM_UP:
                timings.append(time.perf_counter() - start)
    return timings


def run_worker(args: argparse.Namespace) -> None:
    fast, precision, keep = CONFIGURATIONS[args.worker]
    if keep:
        from hmhi_cli.runtime import keep_freed_memory

        keep_freed_memory()
    print(json.dumps(step_times(args.encoder, args.size, args.frames, fast, precision)))


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Median seconds per step of every configuration, each in its own process, in turns."""
    timings: dict[str, list[float]] = {name: [] for name in CONFIGURATIONS}
    for _ in range(args.rounds):
        for name in CONFIGURATIONS:
            command = [sys.executable, __file__, "--worker", name, "--encoder", args.encoder,
                       "--size", str(args.size), "--frames", str(args.frames)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            timings[name] += json.loads(out.strip().splitlines()[-1])
    return {name: float(np.median(values)) for name, values in timings.items()}


def fixture_difference(fast: bool) -> tuple[float, float]:
    from parity import FIXTURE, deterministic_state_dict, load_fixture, tolerance

    from hmhi_cli.model import build_model

    if not FIXTURE.exists():
        return float("nan"), float("nan")
    arrays = load_fixture()
    net = build_model("mit_b1").use_fast_kernels(fast)
    net.load_state_dict(deterministic_state_dict())
    with torch.inference_mode():
        logits = net.forward_clip(torch.from_numpy(arrays["images"]).float(), torch.from_numpy(arrays["flows"]).float())
    return float(np.abs(logits[0, :, 0].numpy() - arrays["logits"]).max()), tolerance(arrays["logits"])


def davis_scores(weights: Path, sequences: list[str] | None, precision: str) -> float:
    from hmhi_cli.evaluation import evaluate
    from hmhi_cli.flow import DisFlowEstimator
    from hmhi_cli.inference import load_segmentation_weights, segment_dataset

    net, info, _ = load_segmentation_weights(weights)
    with tempfile.TemporaryDirectory(prefix="hmhi-bench-") as pred:
        segment_dataset(net, DAVIS, Path(pred), info.input_size, DisFlowEstimator(), sequences=sequences,
                        precision=precision)
        return evaluate(DAVIS, pred, sequences=sequences).j_and_f


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=6, help=f"timed frames per run, after {WARM_UP} warm-up frames")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every configuration, in turns")
    parser.add_argument("--encoder", default="mit_b1")
    parser.add_argument("--weights", type=Path, help="trained weights for the bf16 J&F check (default: embedded)")
    parser.add_argument("--sequences", help="comma-separated davis16-dev sequences for the J&F check (default: all)")
    parser.add_argument("--worker", choices=CONFIGURATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return

    seconds = measure(args)
    port, same_allocator = seconds["reference, plain malloc"], seconds["reference"]
    print(f"stream.step, {args.encoder} S={args.size}, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} x {args.frames} frames per configuration")
    print(f"  {'':26} {'s/frame':>8}  {'vs port':>8}  {'vs reference, same allocator':>28}")
    for name, value in seconds.items():
        same = same_allocator if not name.endswith("plain malloc") else port
        print(f"  {name:26} {value:8.3f}  {port / value:7.2f}x  {same / value:27.2f}x")
    for name, fast in (("reference", False), ("fast", True)):
        difference, allowed = fixture_difference(fast)
        print(f"  parity ({name} kernels, fp32): max |logits - fixture| = {difference:.2e} (tolerance {allowed:.2e})")

    from hmhi_cli.weights import default_weights_path

    weights = args.weights or default_weights_path()
    if not weights.is_file() or not DAVIS.exists():
        print("  bf16 J&F check skipped: no trained weights or no ../shared/davis16-dev")
        return
    sequences = args.sequences.split(",") if args.sequences else None
    fp32 = davis_scores(weights, sequences, "fp32")
    bf16 = davis_scores(weights, sequences, "bf16")
    print(f"  J&F on davis16-dev ({weights.name}): fp32 {fp32:.4f}, bf16 {bf16:.4f}, difference {bf16 - fp32:+.4f}")


if __name__ == "__main__":
    main()
