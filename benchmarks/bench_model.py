"""Seconds per frame of ``stream.step`` and peak memory, per input size.

    .venv/bin/python benchmarks/bench_model.py [--sizes 256 512] [--frames 6] [--encoder mit_b1]

Each size runs in a fresh process so that its peak resident memory is its own, with the heap
kept for reuse as the ``hmhi`` command runs (:func:`hmhi_cli.runtime.keep_freed_memory`).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(encoder: str, size: int, frames: int, warmup: int) -> dict:
    import torch

    from hmhi_cli.model import build_model
    from hmhi_cli.runtime import keep_freed_memory

    keep_freed_memory()
    torch.manual_seed(0)
    net = build_model(encoder)
    stream = net.stream()
    images = torch.randn(frames + warmup, 1, 3, size, size)
    flows = torch.randn_like(images)
    timings = []
    with torch.inference_mode():
        for t in range(frames + warmup):
            start = time.perf_counter()
            stream.step(images[t], flows[t])
            if t >= warmup:
                timings.append(time.perf_counter() - start)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"encoder": encoder, "size": size, "threads": torch.get_num_threads(),
            "seconds_per_frame": sum(timings) / len(timings), "min_seconds": min(timings), "peak_rss_mib": peak_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--frames", type=int, default=6, help="timed frames (after warm-up, memory banks full)")
    parser.add_argument("--warmup", type=int, default=4, help="untimed frames that fill the memory banks")
    parser.add_argument("--encoder", default="mit_b1")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.encoder, args.sizes[0], args.frames, args.warmup)))
        return
    print(f"{'encoder':8} {'S':>5} {'s/frame':>9} {'min s':>7} {'peak RSS MiB':>13}")
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--child", "--sizes", str(size), "--frames", str(args.frames),
                              "--warmup", str(args.warmup), "--encoder", args.encoder],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{r['encoder']:8} {r['size']:>5} {r['seconds_per_frame']:>9.3f} {r['min_seconds']:>7.3f} {r['peak_rss_mib']:>13.0f}")


if __name__ == "__main__":
    main()
