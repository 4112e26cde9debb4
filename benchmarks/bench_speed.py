"""Model speed: the reference computation against the fast kernels and bf16, in one run.

    .venv/bin/python benchmarks/bench_speed.py [--size 512] [--frames 4] [--weights W --sequences a,b]

Prints seconds per ``stream.step`` (memory banks full) for: the straightforward port of the
reference (full score matrices, masked top-k, manual attention), the fast kernels in float32,
and the fast kernels under bf16 autocast; the speed-up ratios; the largest difference of the
float32 paths from the reference fixture (../shared/parity, tolerance 2e-4 relative); and, with
trained weights, the J&F of fp32 and bf16 on ../shared/davis16-dev and their difference.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DAVIS = ROOT.parent / "shared" / "davis16-dev"


def seconds_per_step(net, size: int, frames: int, precision: str) -> float:
    torch.manual_seed(0)
    images = torch.randn(frames + 4, 1, 3, size, size)
    flows = torch.randn_like(images)
    stream = net.stream()
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    timings = []
    with torch.inference_mode(), cast:
        for t in range(len(images)):
            start = time.perf_counter()
            stream.step(images[t], flows[t])
            if t >= 4:
                timings.append(time.perf_counter() - start)
    return float(np.median(timings))


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
    from hmhi_cli.model import build_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=4, help="timed frames after 4 warm-up frames")
    parser.add_argument("--encoder", default="mit_b1")
    parser.add_argument("--weights", type=Path, help="trained weights for the bf16 J&F check (default: embedded)")
    parser.add_argument("--sequences", help="comma-separated davis16-dev sequences for the J&F check (default: all)")
    args = parser.parse_args()

    net = build_model(args.encoder)
    rows = {}
    rows["reference fp32"] = seconds_per_step(net.use_fast_kernels(False), args.size, args.frames, "fp32")
    rows["fast fp32"] = seconds_per_step(net.use_fast_kernels(True), args.size, args.frames, "fp32")
    rows["fast bf16"] = seconds_per_step(net, args.size, args.frames, "bf16")
    baseline = rows["reference fp32"]
    print(f"stream.step, {args.encoder} S={args.size}, {torch.get_num_threads()} threads, median of {args.frames}")
    for name, seconds in rows.items():
        print(f"  {name:15} {seconds:7.3f} s/frame   {baseline / seconds:5.2f}x vs reference")
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
