"""The CUDA check that ``benchmarks/device_check.sh`` runs (it says what the check needs).

Segments ``samples/sample.mp4`` (640x360) and a 1080p clip made from it on CUDA in fp32, bf16
and fp16, with DIS, RAFT-small and RAFT-large flow, through the library's segmentation engine
(the one ``hmhi segment`` drives), writing masks, soft maps and mask.mp4 as the command does.
RAFT's weights are random (its speed does not depend on them) and it runs in float32 in every
setting (the precision is the model's); the model's weights are the embedded default weights. Each CUDA run is checked against the CPU's float32 run with the same flow on
the clip's first frames (TOLERANCES), then the tests marked ``cuda`` run, and
``OUT/device-check.json`` gets frames per second per setting, peak GPU memory and the
differences. ``--cpu-smoke`` runs the same code on the CPU with 3 frames (fp16 left out: it
needs CUDA), to try the check where there is no GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from hmhi_cli.runtime import keep_freed_memory, share_cores_between_stages
from hmhi_cli.segment import SegmentationEngine, SegmentOptions
from hmhi_cli.video import open_source
from hmhi_cli.weights import default_weights_path, describe

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "sample.mp4"
FLOWS = ("dis", "raft-small", "raft-large")
PRECISIONS = ("fp32", "bf16", "fp16")
FULL_HD = (1920, 1080)
CLIP_RATE = 24
WARM_UP_FRAMES = 3
OUTPUTS = ("masks", "probs", "mask-video")
NO_CUDA = 3


@dataclass(frozen=True)
class Tolerance:
    """How far a run may be from the CPU's float32 run with the same flow, over the compared frames."""

    mean_abs: float
    """Mean absolute difference of the soft maps (probabilities, 0 to 1)."""
    iou: float
    """Intersection over union of the masks, all compared frames together."""


TOLERANCES = {"fp32": Tolerance(0.01, 0.98), "bf16": Tolerance(0.03, 0.93), "fp16": Tolerance(0.01, 0.97)}


def decoded_frames(video: Path, count: int | None = None) -> list[np.ndarray]:
    """The first ``count`` frames (all when None) as hmhi's own decoder gives them, RGB."""
    with open_source(video) as source:
        frames = []
        for frame in source:
            if count is not None and len(frames) == count:
                break
            frames.append(frame.rgb)
    return frames


def write_clip(path: Path, frames: list[np.ndarray], size: tuple[int, int] | None = None) -> Path:
    """H.264 at CLIP_RATE fps, each frame resized (bicubic) to ``size`` when given."""
    height, width = frames[0].shape[:2] if size is None else size[::-1]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=CLIP_RATE, options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for rgb in frames:
            if size is not None:
                rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def reference_frames(clip: Path, folder: Path, count: int) -> Path:
    """The clip's first ``count`` decoded frames as PNGs: the CPU reference segments exactly the
    pixels the video runs see, without running over the whole clip."""
    folder.mkdir(parents=True)
    for index, rgb in enumerate(decoded_frames(clip, count)):
        cv2.imwrite(str(folder / f"{index:05d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder


def random_raft(folder: Path, variant: str) -> Path:
    from torchvision.models.optical_flow import raft_large, raft_small

    torch.manual_seed(0)
    path = folder / f"{variant}.pth"
    torch.save((raft_large if variant == "raft-large" else raft_small)(weights=None).state_dict(), path)
    return path


def engine_for(device: str, precision: str, flow: str, raft: dict[str, Path], fps: float | None = None) -> SegmentationEngine:
    return SegmentationEngine(SegmentOptions(outputs=OUTPUTS, device=device, precision=precision, flow=flow,
                                             raft_weights=raft.get(flow), fps=fps))


def compare(out: Path, reference: Path, frames: int) -> dict:
    """Soft-map and mask differences of ``out`` from ``reference`` over their first ``frames`` frames."""
    total_abs = pixels = intersection = union = 0
    for kind in ("probs", "masks"):
        ours = sorted((out / kind).glob("*.png"))[:frames]
        theirs = sorted((reference / kind).glob("*.png"))[:frames]
        if len(ours) != frames or len(theirs) != frames:
            raise SystemExit(f"{out / kind}: {len(ours)} frames, reference {len(theirs)}, {frames} to compare")
        for a, b in zip(ours, theirs):
            image_a = cv2.imread(str(a), cv2.IMREAD_GRAYSCALE).astype(np.int32)
            image_b = cv2.imread(str(b), cv2.IMREAD_GRAYSCALE).astype(np.int32)
            if kind == "probs":
                total_abs += int(np.abs(image_a - image_b).sum())
                pixels += image_a.size
            else:
                intersection += int(np.count_nonzero((image_a > 127) & (image_b > 127)))
                union += int(np.count_nonzero((image_a > 127) | (image_b > 127)))
    return {"frames": frames, "mean_abs_soft": round(total_abs / pixels / 255, 5),
            "mask_iou": round(intersection / union, 5) if union else 1.0}


def timed_segment(engine: SegmentationEngine, clip: Path, out: Path, cuda: bool) -> dict:
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    result = engine.segment(clip, out)
    steady = result.seconds - result.startup_seconds
    run = {"frames": result.frames, "fps": round(result.frames / steady, 2), "seconds": round(result.seconds, 3),
           "model_ms_per_frame": round(1000 * result.stages["model_s_per_frame"], 2),
           "decode_flow_ms_per_frame": round(1000 * result.stages["decode_flow_s_per_frame"], 2),
           "encode_ms_per_frame": round(1000 * result.stages["encode_s_per_frame"], 2)}
    if cuda:
        run["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        run["peak_gpu_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    return run


def run_cuda_tests(out: Path) -> dict:
    """``pytest -m cuda`` on the test suite; its output goes to OUT/pytest-cuda.log."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", str(ROOT / "tests")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    (out / "pytest-cuda.log").write_text(result.stdout + result.stderr)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return {"exit_code": result.returncode, "summary": lines[-1] if lines else ""}


def environment(device: str) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
            "cpu_threads": torch.get_num_threads()}
    if device == "cuda":
        info.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return info


def write_json(path: Path, data: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for device-check.json and pytest-cuda.log")
    parser.add_argument("--cpu-smoke", action="store_true", help="run on the CPU with 3 frames (no fp16)")
    parser.add_argument("--frames", type=int, help="frames per clip (default: all 48 of the sample; 3 with --cpu-smoke)")
    parser.add_argument("--flows", nargs="+", choices=FLOWS, default=list(FLOWS), help="flow backends to run")
    parser.add_argument("--compare-frames", type=int, default=16,
                        help="leading frames checked against the CPU (at most --frames)")
    args = parser.parse_args()
    if not args.cpu_smoke and not torch.cuda.is_available():
        print(f"device_check: no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
              "this check needs a GPU (--cpu-smoke tries it on the CPU)", file=sys.stderr)
        return NO_CUDA
    started = time.perf_counter()
    keep_freed_memory()
    share_cores_between_stages()
    device = "cpu" if args.cpu_smoke else "cuda"
    precisions = ("fp32", "bf16") if args.cpu_smoke else PRECISIONS
    frames = args.frames or (3 if args.cpu_smoke else None)
    compared = min(args.compare_frames, frames or args.compare_frames)
    # The last frame's flow looks back instead of ahead, so the reference's last frame is not compared.
    checked = compared - 1
    args.out.mkdir(parents=True, exist_ok=True)
    info = describe(default_weights_path())
    report: dict = {"mode": "cpu-smoke" if args.cpu_smoke else "cuda", "environment": environment(device),
                    "weights": {"encoder": info.encoder, "input_size": info.input_size,
                                "flow_max_side": info.flow_max_side},
                    "tolerances": {name: asdict(tolerance) for name, tolerance in TOLERANCES.items()},
                    "runs": []}
    if args.cpu_smoke:
        report["skipped"] = ["fp16: needs CUDA"]
    with tempfile.TemporaryDirectory(prefix="hmhi-device-check-") as tmp:
        tmp = Path(tmp)
        source = decoded_frames(SAMPLE, frames)
        clips = {"sample": write_clip(tmp / "sample.mp4", source),
                 "1080p": write_clip(tmp / "1080p.mp4", source, FULL_HD)}
        warm_up = write_clip(tmp / "warm-up.mp4", source[:WARM_UP_FRAMES])
        report["clips"] = {name: {"size": "x".join(map(str, decoded_frames(clip, 1)[0].shape[1::-1])),
                                  "frames": len(source)} for name, clip in clips.items()}
        report["compared_frames"] = checked
        raft = {flow: random_raft(tmp, flow) for flow in args.flows if flow.startswith("raft")}
        references = {}
        for flow in args.flows:
            engine = engine_for("cpu", "fp32", flow, raft, fps=CLIP_RATE)
            for name, clip in clips.items():
                folder = reference_frames(clip, tmp / f"frames-{name}-{flow}", compared)
                references[name, flow] = tmp / f"cpu-{name}-{flow}"
                engine.segment(folder, references[name, flow])
            print(f"CPU reference, {flow}: done", flush=True)
        for flow in args.flows:
            for precision in precisions:
                engine = engine_for(device, precision, flow, raft)
                engine.segment(warm_up, tmp / f"warm-up-{flow}-{precision}")
                for name, clip in clips.items():
                    out = tmp / f"{device}-{name}-{flow}-{precision}"
                    run = {"clip": name, "flow": flow, "precision": precision,
                           **timed_segment(engine, clip, out, device == "cuda")}
                    difference = compare(out, references[name, flow], checked)
                    tolerance = TOLERANCES[precision]
                    run["vs_cpu_fp32"] = {**difference, "ok": difference["mean_abs_soft"] <= tolerance.mean_abs
                                          and difference["mask_iou"] >= tolerance.iou}
                    report["runs"].append(run)
                    print(f"{name:6} {flow:10} {precision}: {run['fps']:8.2f} fps, model {run['model_ms_per_frame']:7.2f} ms"
                          f"/frame, peak GPU {run.get('peak_gpu_mib', '-')} MiB, vs CPU: soft "
                          f"{difference['mean_abs_soft']:.4f}, IoU {difference['mask_iou']:.4f}"
                          f"{'' if run['vs_cpu_fp32']['ok'] else '  OUT OF TOLERANCE'}", flush=True)
                del engine
                if device == "cuda":
                    torch.cuda.empty_cache()
    report["cuda_tests"] = run_cuda_tests(args.out)
    print(f"tests marked cuda: {report['cuda_tests']['summary']}", flush=True)
    report["passed"] = all(run["vs_cpu_fp32"]["ok"] for run in report["runs"]) and report["cuda_tests"]["exit_code"] == 0
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_json(args.out / "device-check.json", report)
    print(f"{'passed' if report['passed'] else 'FAILED'} in {report['seconds']} s: {args.out / 'device-check.json'}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
