"""End-to-end ``hmhi segment`` speed per flow backend at 480p, and peak memory for a short and a
10x longer clip (memory must not grow with video length).

    .venv/bin/python benchmarks/bench_segment.py [--frames 12] [--encoder mit_b1 --size 512]

``--compare BASELINE CANDIDATE`` instead times ``hmhi segment clip.mp4 -o out`` with all
defaults (``$HMHI_WEIGHTS`` selects the default weights, so every setting comes from the file)
for two weights files, alternating over ``--rounds``, start-up included; e.g. the previous
default against the current one:

    git show b93cd84:weights/hmhi_default.safetensors > /tmp/previous.safetensors
    .venv/bin/python benchmarks/bench_segment.py --compare /tmp/previous.safetensors \
        weights/hmhi_default.safetensors --frames 40 --rounds 3

``--baseline-tree DIR`` runs the baseline with the code of another checkout (e.g.
``git worktree add /tmp/previous b93cd84``), so the comparison is against that release as a
user had it, code and weights.

``--busy N`` adds a loaded condition to ``--compare``: each round times both pipelines quiet,
then both again while N other processes (``python -c "while True: pass"``) keep cores busy, as
a user's own programs would; it prints each pipeline's loaded/quiet ratio. The same code
against itself under load, e.g. against commit 2956a20 (before the thread settings):

    git worktree add /tmp/base 2956a20
    .venv/bin/python benchmarks/bench_segment.py --compare weights/hmhi_default.safetensors \
        weights/hmhi_default.safetensors --baseline-tree /tmp/base --busy 1 --frames 40 --rounds 3

Clips are made from ../shared/davis16-dev frames (looped for the long clip) and encoded to
H.264 854x480. Model weights are random (speed does not depend on their values); RAFT runs with
random weights too, saved to a temporary file, since no download is possible here.
Every measurement runs the real CLI in a fresh process; peak memory is that process's max RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import torch

ROOT = Path(__file__).resolve().parents[1]
DAVIS = ROOT.parent / "shared" / "davis16-dev" / "JPEGImages" / "480p"


def make_clip(path: Path, frames: int) -> Path:
    sources = sorted((DAVIS / "breakdance").glob("*.jpg"))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24, options={"crf": "20"})
        stream.width, stream.height, stream.pix_fmt = 854, 480, "yuv420p"
        for index in range(frames):
            cycle = index // len(sources)
            position = index % len(sources)
            if cycle % 2:
                position = len(sources) - 1 - position
            rgb = cv2.cvtColor(cv2.imread(str(sources[position])), cv2.COLOR_BGR2RGB)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


# Runs the CLI and records the process's own peak resident memory in the file $HMHI_BENCH_RSS.
CLI_WITH_PEAK_MEMORY = """
import os, resource, sys
from hmhi_cli.cli import main
sys.argv = ["hmhi", *sys.argv[1:]]
try:
    main()
finally:
    with open(os.environ["HMHI_BENCH_RSS"], "w") as handle:
        handle.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def run_segment(clip: Path, out: Path, weights: Path, flow: str, raft_weights: Path | None,
                precision: str = "fp32", save: str = "masks,mask-video") -> dict:
    args = [sys.executable, "-c", CLI_WITH_PEAK_MEMORY, "segment", str(clip), "-o", str(out),
            "--weights", str(weights), "--flow", flow, "--json", "-q", "--overwrite", "--precision", precision,
            "--save", save]
    if raft_weights:
        args += ["--raft-weights", str(raft_weights)]
    rss_file = out.parent / f"{out.name}.rss"
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, check=False,
                            env={**os.environ, "HMHI_BENCH_RSS": str(rss_file)})
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    summary = json.loads(result.stdout)
    summary["wall_s"] = wall
    summary["peak_rss_mib"] = int(rss_file.read_text()) / 1024
    return summary


# ``python -m hmhi_cli`` with the package of another checkout: an editable install's import
# hook would otherwise win over PYTHONPATH and run this checkout's code under the other's name.
RUN_CODE_OF_TREE = """
import runpy, sys
tree = sys.argv.pop(1)
sys.meta_path = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path.insert(0, tree)
import hmhi_cli
if not hmhi_cli.__file__.startswith(tree):
    raise SystemExit(f"baseline code came from {hmhi_cli.__file__}, not {tree}")
runpy.run_module("hmhi_cli", run_name="__main__", alter_sys=True)
"""


def run_defaults(clip: Path, out: Path, weights: Path, code: Path | None = None) -> float:
    """Wall seconds of ``hmhi segment clip -o out`` with the default weights set to ``weights``,
    with this checkout's code or that of the checkout ``code``."""
    command = ["-m", "hmhi_cli"] if code is None else ["-c", RUN_CODE_OF_TREE, str(code.resolve())]
    args = [sys.executable, *command, "segment", str(clip), "-o", str(out), "-q"]
    env = {**os.environ, "HMHI_WEIGHTS": str(weights.resolve())}
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, check=False, env=env, cwd=out.parent)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return wall


BUSY_LOOP = "while True: pass"


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """Within the block, ``count`` other processes spin on the CPU."""
    spinners = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def compare_defaults(baseline: Path, candidate: Path, frames: int, rounds: int, baseline_tree: Path | None,
                     busy: int = 0) -> None:
    """Alternate the two default pipelines on one clip, quiet and (``busy`` > 0) beside that many
    busy processes; print medians, the speed-up and each pipeline's loaded/quiet ratio."""
    from hmhi_cli.weights import describe

    with tempfile.TemporaryDirectory(prefix="hmhi-bench-") as tmp:
        tmp = Path(tmp)
        clip = make_clip(tmp / "clip.mp4", frames)
        runs = {"baseline": (baseline, baseline_tree), "candidate": (candidate, None)}
        conditions = {"quiet": 0, **({f"{busy} busy": busy} if busy else {})}
        walls: dict[tuple[str, str], list[float]] = {(c, role): [] for c in conditions for role in runs}
        for round_index in range(rounds):
            for condition, spinners in conditions.items():
                with busy_processes(spinners):
                    for role, (weights, code) in runs.items():
                        out = tmp / f"out-{round_index}-{spinners}-{role}"
                        walls[condition, role].append(run_defaults(clip, out, weights, code))
        print(f"hmhi segment with all defaults, {frames} frames 854x480 H.264 in, masks + mask.mp4 out, "
              f"start-up included, median of {rounds} alternating rounds, {os.cpu_count()} cores")
        for role, (weights, code) in runs.items():
            info = describe(weights)
            flow = f"DIS at {info.flow_max_side} px" if info.flow_max_side else "DIS at full size"
            tree = f", code of {code}" if code else ""
            print(f"  {role} {weights}: {info.encoder} S={info.input_size}, {flow}{tree}")
        medians = {key: median(times) for key, times in walls.items()}
        for (condition, role), times in walls.items():
            print(f"  {condition:>7} {role:9}: {medians[condition, role]:.2f} s "
                  f"({frames / medians[condition, role]:.2f} fps; runs {', '.join(f'{t:.2f}' for t in times)})")
        for condition in conditions:
            print(f"speed-up candidate/baseline, {condition}: "
                  f"{medians[condition, 'baseline'] / medians[condition, 'candidate']:.2f}x")
        if busy:
            for role in runs:
                print(f"slow-down {busy} busy/quiet, {role}: "
                      f"{medians[f'{busy} busy', role] / medians['quiet', role]:.2f}x")


def random_weights(folder: Path, encoder: str, size: int) -> Path:
    from hmhi_cli.model import build_model
    from hmhi_cli.weights import save_weights

    torch.manual_seed(0)
    path = folder / f"{encoder}_{size}.safetensors"
    save_weights(build_model(encoder), path, input_size=size, provenance={"benchmark": "random weights"})
    return path


def random_raft(folder: Path, variant: str) -> Path:
    from torchvision.models.optical_flow import raft_large, raft_small

    path = folder / f"{variant}.pth"
    torch.save((raft_large if variant == "raft-large" else raft_small)(weights=None).state_dict(), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=12, help="frames of the speed clip and of the short memory clip")
    parser.add_argument("--encoder", default="mit_b1")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--flows", nargs="+", default=["dis", "raft-small", "raft-large"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--memory-encoder", default="mit_b0", help="encoder for the short/long memory runs")
    parser.add_argument("--memory-size", type=int, default=256)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BASELINE", "CANDIDATE"),
                        help="time two weights files' default pipelines against each other instead")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of --compare")
    parser.add_argument("--baseline-tree", type=Path, help="checkout whose code runs the --compare baseline")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="--compare also with N competing busy processes, alternating with the quiet runs")
    args = parser.parse_args()
    if args.busy and not args.compare:
        parser.error("--busy needs --compare")
    if args.busy < 0:
        parser.error("--busy must be 0 or more")
    if args.compare:
        compare_defaults(*args.compare, frames=args.frames, rounds=args.rounds, baseline_tree=args.baseline_tree,
                         busy=args.busy)
        return
    with tempfile.TemporaryDirectory(prefix="hmhi-bench-") as tmp:
        tmp = Path(tmp)
        weights = random_weights(tmp, args.encoder, args.size)
        clip = make_clip(tmp / "clip.mp4", args.frames)
        print(f"end to end, 854x480 in, {args.encoder} S={args.size} {args.precision}, {args.frames} frames, "
              f"masks + mask.mp4, {torch.get_num_threads()} threads")
        print("stages run in parallel threads; 'wall/model' is the run's time from its first frame to its end over "
              "the model's own time ('startup': opening files, loading weights and flow backend, before the first "
              "frame; 'total/model' includes it)")
        print(f"{'flow':11} {'fps':>6} {'s/frame':>8} {'decode+flow s/f':>16} {'model s/f':>10} {'encode s/f':>11} "
              f"{'wall/model':>11} {'startup s':>10} {'total/model':>12} {'peak MiB':>9}")
        for flow in args.flows:
            raft = random_raft(tmp, flow) if flow.startswith("raft") else None
            r = run_segment(clip, tmp / f"out-{flow}", weights, flow, raft, args.precision)
            frames = r["frames"]
            stages = r["stages"]
            print(f"{flow:11} {frames / (r['seconds'] - r['startup_seconds']):>6.2f} "
                  f"{(r['seconds'] - r['startup_seconds']) / frames:>8.3f} "
                  f"{stages['decode_flow_s_per_frame']:>16.3f} {stages['model_s_per_frame']:>10.3f} "
                  f"{stages['encode_s_per_frame']:>11.3f} "
                  f"{(r['seconds'] - r['startup_seconds']) / stages['model_s']:>11.2f} {r['startup_seconds']:>10.2f} "
                  f"{r['seconds'] / stages['model_s']:>12.2f} {r['peak_rss_mib']:>9.0f}")
        small = random_weights(tmp, args.memory_encoder, args.memory_size)
        short_clip = make_clip(tmp / "short.mp4", args.frames)
        long_clip = make_clip(tmp / "long.mp4", 10 * args.frames)
        short = run_segment(short_clip, tmp / "short", small, "dis", None)
        long = run_segment(long_clip, tmp / "long", small, "dis", None)
        print(f"memory ({args.memory_encoder} S={args.memory_size}, dis, all outputs default): "
              f"{short['frames']} frames {short['peak_rss_mib']:.0f} MiB, {long['frames']} frames "
              f"{long['peak_rss_mib']:.0f} MiB, ratio {long['peak_rss_mib'] / short['peak_rss_mib']:.2f}")


if __name__ == "__main__":
    main()
