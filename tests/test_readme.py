"""Every example in README.md is run here, covered by a named test, or says why it cannot run here.

Each command of the README's ```bash blocks (``\\`` continuations joined, comments cut off) must be a
key of :data:`COMMANDS`, and every key must still be in the README, so an edited example is never
left untested. A :class:`Run` is executed as written through ``bash -c`` in a fresh sandbox that
holds small stand-in inputs (``input.mp4``, ``clips/``, ``DAVIS/``, ... made from a few
``../shared/davis16-dev`` frames at 128x72), with this environment's ``bin`` first on PATH, and its
outputs are checked against what the README says. Stand-ins are named for what they are: the
published checkpoint and torchvision's RAFT weights are files of the same layout with
deterministic random values (they test the commands, not the published quality).

Each hmhi process spends seconds importing torch, so the commands that other tests do not cover
run by default and those marked ``full`` (variants of covered features) run with
``HMHI_README_ALL=1``; the whole set passes either way.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DAVIS_DEV = ROOT.parent / "shared" / "davis16-dev"
FRAMES = DAVIS_DEV / "JPEGImages" / "480p"
SIZE = (128, 72)
FFMPEG = shutil.which("ffmpeg")
RAFT_LARGE = "raft_large_C_T_SKHT_V2-ff5fadd5.pth"
CLIP_FRAMES = 3
"""Frames of each stand-in clip: enough for flow, memory and every output, small enough to be quick."""


# ---------------------------------------------------------------- the README's commands


def strip_comment(line: str) -> str:
    """``line`` without its shell comment: a ``#`` that starts a word outside quotes (bash's rule),
    so ``'#00ff00'`` and ``a#b`` stay."""
    quote = None
    escaped = False
    for index, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def bash_commands(text: str) -> list[str]:
    """Each command of the ```bash blocks, continuations joined and comments removed."""
    commands = []
    for block in code_blocks(text, "bash"):
        joined = re.sub(r"[ \t]*\\\n[ \t]*", " ", block)
        commands += [command for command in map(strip_comment, joined.splitlines()) if command.strip()]
    return commands


def test_comments_are_cut_only_where_bash_cuts_them():
    assert strip_comment("hmhi segment x --background '#00ff00'   # green") == "hmhi segment x --background '#00ff00'"
    assert strip_comment('echo "a # b" c#d # note') == 'echo "a # b" c#d'
    assert strip_comment(r"echo \# kept") == r"echo \# kept"
    assert bash_commands("```bash\nhmhi a \\\n  --b 1   # c\n\n# only a comment\n```\n") == ["hmhi a --b 1"]


# ---------------------------------------------------------------- how each command is covered


@dataclass(frozen=True)
class Run:
    """Run the command in a sandbox; ``creates`` must exist afterwards (relative to the sandbox) and
    ``check(sandbox, result)`` holds. ``inputs`` replaces stand-ins for this command only (name ->
    builder), ``env`` adds variables, ``only`` runs that part of the command alone (the rest is
    named in ``why_only``), ``then`` runs after it in the same shell to see what it left (a variable,
    an activated venv), ``needs`` names a program that must be on PATH (else a skip saying so)."""

    creates: tuple[str, ...] = ()
    check: Callable | None = None
    inputs: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    only: str | None = None
    why_only: str = ""
    then: str | None = None
    needs: str | None = None
    full: bool = False
    """Run only with HMHI_README_ALL=1: each hmhi process spends about 7 s importing torch on the
    project's busy 2-core machine, so the quick set is kept to the commands nothing else runs."""


@dataclass(frozen=True)
class CoveredBy:
    """The command is exercised by an existing test (``file::function``)."""

    test: str


@dataclass(frozen=True)
class CannotRunHere:
    """The command needs what a test cannot have (the network, a GPU cluster, hours); ``reason`` says what."""

    reason: str


# ---------------------------------------------------------------- stand-in inputs


def dev_frames(sequence: str, count: int) -> list[np.ndarray]:
    return [cv2.resize(cv2.imread(str(path)), SIZE, interpolation=cv2.INTER_AREA)
            for path in sorted((FRAMES / sequence).glob("*.jpg"))[:count]]


def write_video(path: Path, sequence: str = "blackswan", frames: int = CLIP_FRAMES, fps: Fraction = Fraction(25),
                codec: str = "libx264") -> None:
    """A short clip of dev frames (H.264, or VP9 with ``codec="libvpx-vp9"``)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = *SIZE, "yuv420p"
        for index, bgr in enumerate(dev_frames(sequence, frames)):
            frame = av.VideoFrame.from_ndarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))


def write_frames(folder: Path, count: int = CLIP_FRAMES, sequence: str = "blackswan") -> None:
    """``count`` JPEG frames, the dev sequence repeated when it is shorter."""
    folder.mkdir(parents=True)
    images = dev_frames(sequence, min(count, 50))
    for index in range(count):
        cv2.imwrite(str(folder / f"{index:05d}.jpg"), images[index % len(images)])


def write_davis(root: Path, sequences: tuple[str, ...] = ("blackswan", "dog", "kite-surf"), frames: int = 3) -> None:
    """A DAVIS layout of a few dev frames per sequence, annotations shrunk the same way."""
    for sequence in sequences:
        write_frames(root / "JPEGImages" / "480p" / sequence, frames, sequence)
        masks = root / "Annotations" / "480p" / sequence
        masks.mkdir(parents=True)
        for path in sorted((DAVIS_DEV / "Annotations" / "480p" / sequence).glob("*.png"))[:frames]:
            mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            cv2.imwrite(str(masks / path.name), cv2.resize(mask, SIZE, interpolation=cv2.INTER_NEAREST))


def write_fbms(root: Path, sequence: str = "dog", frames: int = 3) -> None:
    """An FBMS layout (``Testset/<seq>/<seq>_NN.jpg``, ``GroundTruth/NNN_gt.png``) and predictions
    for it in ``out/fbms`` (the true masks)."""
    folder = root / "Testset" / sequence
    folder.mkdir(parents=True)
    (folder / "GroundTruth").mkdir()
    predictions = root.parent / "out" / "fbms" / sequence
    predictions.mkdir(parents=True)
    masks = sorted((DAVIS_DEV / "Annotations" / "480p" / sequence).glob("*.png"))
    for index, bgr in enumerate(dev_frames(sequence, frames), start=1):
        cv2.imwrite(str(folder / f"{sequence}_{index:02d}.jpg"), bgr)
        mask = cv2.resize(cv2.imread(str(masks[index - 1]), cv2.IMREAD_GRAYSCALE), SIZE,
                          interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(folder / "GroundTruth" / f"{index:03d}_gt.png"), mask)
        cv2.imwrite(str(predictions / f"{sequence}_{index:02d}.png"), mask)


def write_published_checkpoint(path: Path) -> None:
    """A stand-in for the published HMHI_davis.pth: its layout (``network``, ``module.`` keys, MiT-b1)
    with the parity fixture's deterministic values."""
    import torch
    from parity import deterministic_state_dict

    torch.save({"network": {f"module.{k}": v for k, v in deterministic_state_dict().items()}, "epoch": 1}, path)


def write_raft_large(path: Path) -> None:
    """A stand-in for torchvision's RAFT-large weights file: the same tensors, random values."""
    import torch
    from torchvision.models.optical_flow import raft_large

    torch.manual_seed(0)
    torch.save(raft_large(weights=None).state_dict(), path)


def write_converted(path: Path) -> None:
    from hmhi_cli import weights

    source = path.with_name("HMHI_davis.pth")
    write_published_checkpoint(source)
    weights.convert(source, path)


def link_repository_weights(path: Path) -> None:
    path.symlink_to(ROOT / "weights")


def link_repository_venv(path: Path) -> None:
    path.symlink_to(sys.prefix)


def predictions_from_annotations(path: Path) -> None:
    """``out/davis``: the true masks as predictions, so ``hmhi eval --pred`` has something to score."""
    shutil.copytree(path.parents[1] / "DAVIS" / "Annotations" / "480p", path)


@dataclass(frozen=True)
class Shared:
    """A stand-in that takes seconds to make: made once per session, linked into each sandbox."""

    build: Callable[[Path], None]


def write_tiny_weights(path: Path) -> None:
    """MiT-b0 at 64 x 64, random: the tests' tiny weights, for the Python block's default weights."""
    import torch
    from hmhi_cli.model import build_model
    from hmhi_cli.weights import save_weights

    torch.manual_seed(0)
    save_weights(build_model("mit_b0"), path, input_size=64, provenance={"purpose": "tests"})


PUBLISHED = Shared(write_published_checkpoint)
TINY_WEIGHTS = Shared(write_tiny_weights)
CONVERTED = Shared(write_converted)
RAFT_LARGE_FILE = Shared(write_raft_large)


INPUTS: dict[str, Callable[[Path], None]] = {
    "input.mp4": lambda p: write_video(p),
    "input.mov": lambda p: write_video(p, "dog"),
    "clip.mp4": lambda p: write_video(p, "cows"),
    "clip.webm": lambda p: write_video(p, "dog", codec="libvpx-vp9"),
    "a.mp4": lambda p: write_video(p, "dog"),
    "b.mov": lambda p: write_video(p, "cows"),
    "clips": lambda p: (p.mkdir(), write_video(p / "one.mp4", "parkour"), write_video(p / "two.mp4", "dog")),
    "frames": lambda p: write_frames(p, CLIP_FRAMES, "car-roundabout"),
    "DAVIS": write_davis,
    "samples/sample.mp4": lambda p: (p.parent.mkdir(), write_video(p, "car-roundabout")),
}
"""Made once per session, copied into each sandbox."""


def long_input(path: Path) -> None:
    """16 s at 1 fps, so that ``--start 12.5 --duration 3`` has frames to keep (13, 14 and 15 s)."""
    write_video(path, "dog", frames=16, fps=Fraction(1))


def one_small_sequence(root: Path) -> None:
    """One sequence of two frames: RAFT-large takes a while on a CPU even at 128 x 72."""
    write_davis(root, ("blackswan",), 2)


def two_frames(path: Path) -> None:
    """Two frames: MiT-b1 at 512 x 512 takes seconds a frame on a CPU."""
    write_video(path, frames=2)


def folder_of_70_frames(path: Path) -> None:
    """2.3 s at 30 fps, for ``--start 2 --frames 10``."""
    write_frames(path, 70, "car-roundabout")


# ---------------------------------------------------------------- checks


def count(pattern: str, expected: int) -> Callable:
    def check(sandbox: Path, result) -> None:
        found = sorted(sandbox.glob(pattern))
        assert len(found) == expected, f"{pattern}: {len(found)} files, expected {expected}"
    return check


def video_frames(relative: str, expected: int) -> Callable:
    def check(sandbox: Path, result) -> None:
        with av.open(str(sandbox / relative)) as container:
            assert sum(1 for _ in container.decode(video=0)) == expected, relative
    return check


def stderr_says(*words: str) -> Callable:
    def check(sandbox: Path, result) -> None:
        for word in words:
            assert word in result.stderr, result.stderr
    return check


def weights_info(sandbox: Path, result) -> None:
    """What the README's comment says: encoder mit_b1, input_size 512, memory_limit 3."""
    for field_name, value in (("encoder", "mit_b1"), ("input_size", "512"), ("memory_limit", "3"),
                              ("source_format", "published-checkpoint")):
        assert re.search(rf"^\s*{field_name}\s+{value}\s*$", result.stdout, flags=re.M), result.stdout


def perfect_scores(sandbox: Path, result) -> None:
    """The predictions are the true masks."""
    scores = json.loads((sandbox / "scores.json").read_text())
    assert scores["J&F"] == pytest.approx(1.0) and set(scores["sequences"]) == {"blackswan", "dog", "kite-surf"}


def shard_of(expected: str) -> Callable:
    def check(sandbox: Path, result) -> None:
        done = sorted(path.name for path in (sandbox / "out").iterdir() if not path.name.startswith("."))
        assert done == [expected], done
    return check


def hmhi_on_path(sandbox: Path, result) -> None:
    assert shutil.which("hmhi", path=PATH_WITHOUT_VENV) is None, "hmhi is on PATH without the venv: nothing to test"
    assert Path(result.stdout.strip()) == Path(sys.prefix) / "bin" / "hmhi", result.stdout


SEGMENTED = ("out/masks/00000.png", "out/mask.mp4")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
"""The model on one thread: on a machine whose cores are busy, two threads wait on each other
(a step of the tiny weights takes 2 s instead of 0.09 s); the library API does not adapt by itself."""
PATH_WITHOUT_VENV = os.pathsep.join(folder for folder in os.environ["PATH"].split(os.pathsep)
                                    if Path(folder).resolve() != (Path(sys.prefix) / "bin").resolve())
DEFAULT_TORCH_CACHE = {"TORCH_HOME": None, "XDG_CACHE_HOME": None}
"""Neither set, so torchvision's cache is ~/.cache/torch/hub/checkpoints (HOME is the sandbox)."""
SHARD_ENV = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "JOB_COMPLETION_INDEX": "0"}
FIRST_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/hmhi segment samples/sample.mp4 "
                 "-o out/sample")
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q"
TORCH_CPU = ("pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu")
NETWORK = "downloads from the network, which tests must not need"

COMMANDS: dict[str, Run | CoveredBy | CannotRunHere] = {
    # the first code block
    FIRST_COMMAND: Run(
        only=".venv/bin/hmhi segment samples/sample.mp4 -o out/sample", inputs={".venv": link_repository_venv},
        why_only="creating .venv and pip install -e . need the network for build dependencies (.ci/run does "
                 "both; tests/test_packaging.py installs the wheel offline); samples/sample.mp4 is a 3-frame stand-in",
        creates=("out/sample/masks/00000.png", "out/sample/mask.mp4"), check=count("out/sample/masks/*.png", CLIP_FRAMES)),
    TEST_COMMAND: CannotRunHere("it is the whole test suite, this file included; .ci/run runs exactly this line"),
    # install
    "python3 -m venv .venv && source .venv/bin/activate": Run(
        only="source .venv/bin/activate", inputs={".venv": link_repository_venv}, env={"PATH": PATH_WITHOUT_VENV},
        why_only="python3 -m venv .venv is .ci/run's first step; here .venv is this environment",
        then="command -v hmhi", check=hmhi_on_path),
    TORCH_CPU: CannotRunHere(NETWORK + "; test_cpu_torch_pins_are_pyprojects checks the pins"),
    "pip install -e .": CoveredBy("tests/test_packaging.py::test_installed_wheel_finds_its_default_weights"),
    "hmhi --version": Run(check=lambda sandbox, result: result.stdout.startswith("hmhi ")),
    # segment a video
    "hmhi segment input.mp4 -o out/": Run(full=True, creates=SEGMENTED, check=count("out/masks/*.png", CLIP_FRAMES)),
    "hmhi segment input.mov -o out/ --save masks,probs,mask-video,alpha,overlay": Run(
        creates=("out/masks/00002.png", "out/probs/00002.png", "out/mask.mp4", "out/alpha/00002.png", "out/alpha.webm",
                 "out/alpha.mov", "out/overlay.mp4")),
    "hmhi segment frames/ -o out/ --fps 30 --save alpha --background '#00ff00'": Run(
        creates=("out/composite.mp4",), check=video_frames("out/composite.mp4", CLIP_FRAMES)),
    "cat clip.webm | hmhi segment - -o out/ --json": CoveredBy("tests/test_segment.py::test_stdin_and_image_folder_inputs"),
    "hmhi segment input.mp4 -o cut.mov": CoveredBy(
        "tests/test_segment_outputs.py::test_one_video_file_of_the_kind_its_suffix_or_save_names"),
    "hmhi segment input.mp4 -o cut.webm --crf 30": CoveredBy(
        "tests/test_segment_outputs.py::test_one_video_file_of_the_kind_its_suffix_or_save_names"),
    "hmhi segment input.mp4 -o green.mp4 --background '#00ff00'": CoveredBy(
        "tests/test_segment_outputs.py::test_one_video_file_of_the_kind_its_suffix_or_save_names"),
    "hmhi segment input.mp4 -o out/ --save alpha-mov,composite --background beach.mp4": CoveredBy(
        "tests/test_segment_outputs.py::test_video_background_foreground_and_matte_with_composite"),
    "hmhi segment input.mp4 -o - --save alpha | ffmpeg -i - -c:v prores_ks -profile:v 4444 cutout.mov": Run(
        needs="ffmpeg", creates=("cutout.mov",), check=video_frames("cutout.mov", CLIP_FRAMES)),
    "hmhi segment a.mp4 b.mov clips/ frames/ -o out/": Run(
        full=True, creates=("out/a/mask.mp4", "out/b/mask.mp4", "out/one/mask.mp4", "out/two/mask.mp4", "out/frames/mask.mp4")),
    # the matte
    "hmhi segment clip.mp4 -o out/ --save alpha": CoveredBy(
        "tests/test_segment.py::test_every_output_has_the_right_count_size_and_timing"),
    "hmhi segment clip.mp4 -o out/ --save alpha --choke 2 --feather 3": Run(full=True, creates=("out/alpha/00002.png",)),
    "hmhi segment clip.mp4 -o out/ --save alpha --background green --choke -4": Run(
        full=True, creates=("out/composite.mp4",)),
    "hmhi segment clip.mp4 -o - --save alpha --matte hard --invert | ffmpeg -i - -c:v prores_ks -profile:v 4444 "
    "holdout.mov": Run(needs="ffmpeg", creates=("holdout.mov",)),
    # part of a video
    "hmhi segment input.mp4 -o try/ --start 12.5 --duration 3": Run(
        inputs={"input.mp4": long_input}, creates=("try/masks/00013.png", "try/masks/00015.png"),
        check=count("try/masks/*.png", 3)),
    "hmhi segment input.mp4 -o try/ --frames 20": CoveredBy(
        "tests/test_segment_trim.py::test_stdin_image_folders_and_batches_are_trimmed_too"),
    "hmhi segment frames/ -o try/ --fps 30 --start 2 --frames 10": Run(
        full=True, inputs={"frames": folder_of_70_frames}, creates=("try/masks/00060.png", "try/masks/00069.png"),
        check=count("try/masks/*.png", 10)),
    # one video on stdout
    "hmhi segment input.mp4 -o - | ffmpeg -i - -c:v libx264 mask.mp4": Run(
        needs="ffmpeg", creates=("mask.mp4",), check=video_frames("mask.mp4", CLIP_FRAMES)),
    # batches
    "hmhi segment clips/ -o out/ --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT": Run(
        full=True, env=SHARD_ENV, check=shard_of("two")),
    "hmhi segment clips/ -o out/ --shard $JOB_COMPLETION_INDEX/8": Run(full=True, env=SHARD_ENV, check=shard_of("one")),
    # benchmarks: evaluation and flow
    "hmhi flow precompute DAVIS --flow raft-large --out flows/": Run(
        full=True, inputs={"DAVIS": one_small_sequence, f".cache/torch/hub/checkpoints/{RAFT_LARGE}": RAFT_LARGE_FILE},
        env=DEFAULT_TORCH_CACHE, creates=("flows/FlowImages/480p/blackswan/00000.jpg",
                                          "flows/FlowImages/480p/blackswan/00001.jpg")),
    "hmhi eval --dataset davis16 --root DAVIS --pred out/davis --json scores.json": Run(
        inputs={"out/davis": predictions_from_annotations}, creates=("scores.json",), check=perfect_scores),
    "hmhi eval --dataset davis16 --root DAVIS --weights weights.pth --flow-dir flows/": CoveredBy(
        "tests/test_eval_with_weights.py::test_eval_with_weights_computed_and_precomputed_flow_agree"),
    "hmhi eval --dataset fbms --root FBMS --pred out/fbms": Run(
        inputs={"FBMS": write_fbms}, check=lambda sandbox, result: "1.000" in result.stdout),
    "hmhi eval --dataset davis16 --root DAVIS --weights weights/hmhi_default.safetensors --sequences "
    "blackswan,dog,kite-surf --report report/": Run(
        full=True, inputs={"weights": link_repository_weights},
        creates=("report/overview.png", "report/worst-frames/dog.png")),
    # weights
    "hmhi weights info HMHI_davis.pth": Run(inputs={"HMHI_davis.pth": PUBLISHED}, check=weights_info),
    "hmhi weights convert HMHI_davis.pth hmhi_mit_b1.safetensors": Run(
        inputs={"HMHI_davis.pth": PUBLISHED}, creates=("hmhi_mit_b1.safetensors",),
        check=stderr_says("wrote hmhi_mit_b1.safetensors (mit_b1, input 512, memory limit 3)")),
    f"hmhi segment input.mp4 -o out/ --weights hmhi_mit_b1.safetensors --flow raft-large --raft-weights {RAFT_LARGE}":
        Run(inputs={"input.mp4": two_frames, "hmhi_mit_b1.safetensors": CONVERTED, RAFT_LARGE: RAFT_LARGE_FILE},
            creates=SEGMENTED, check=count("out/masks/*.png", 2)),
    # optical flow
    "mkdir -p ~/.cache/torch/hub/checkpoints": Run(creates=(".cache/torch/hub/checkpoints",)),
    f"curl -L -o ~/.cache/torch/hub/checkpoints/{RAFT_LARGE} https://download.pytorch.org/models/{RAFT_LARGE}":
        CannotRunHere(NETWORK + "; the flow precompute example finds a file saved there"),
    # train and fine-tune
    "pip install -e '.[train]'": CannotRunHere(NETWORK + " (the train extra's wheels)"),
    "hmhi train --data ../shared/davis16-train --encoder efficientnet_lite0 --size 256 --flow-max-side 256 "
    "--out runs/lite0": CannotRunHere("a full training run (hours on a CPU); tests/test_training.py::"
                                      "test_cli_train_then_resume trains and resumes through the CLI"),
    "hmhi train --data DAVIS --data YTVOS:2 --out runs/exp1 --imagenet-encoder mit_b1.pth": CannotRunHere(
        "needs YouTube-VOS and NVlabs' mit_b1.pth, which are not here; tests/test_weights.py::"
        "test_imagenet_encoder_init loads that layout"),
    "hmhi finetune weights.pth --data DAVIS --out runs/ft --steps 2000 --val-root DAVIS --validate-every 500":
        CannotRunHere("2000 training steps (hours on a CPU)"),
    "hmhi train --out runs/exp1 --data DAVIS --resume": CoveredBy("tests/test_training.py::test_cli_train_then_resume"),
    "torchrun --nproc_per_node 4 -m hmhi_cli train --data DAVIS --out runs/exp1": CoveredBy(
        "tests/test_training.py::test_torchrun_two_cpu_processes"),
    "torchrun --nnodes 2 --node_rank 0 --master_addr HOST --nproc_per_node 8 -m hmhi_cli train ...": CannotRunHere(
        "a multi-node torchrun (two machines with 8 GPUs each)"),
    "npm pack @imgly/background-removal-data@1.4.5": CannotRunHere("needs npm and the network"),
    "hmhi label photos/ -o labels/photos --teacher imgly-background-removal-data-1.4.5.tgz --threads 1": CoveredBy(
        "tests/test_label.py::test_label_through_the_npm_package_uses_the_cache"),
    "hmhi label DAVIS/ -o labels/frames --teacher isnet.onnx --every 5": CoveredBy(
        "tests/test_label.py::test_label_takes_every_nth_frame_of_a_davis_layout"),
}


# ---------------------------------------------------------------- the tests


def test_every_readme_command_is_accounted_for():
    commands = bash_commands(README.read_text())
    missing = [command for command in commands if command not in COMMANDS]
    stale = [command for command in COMMANDS if command not in commands]
    assert not missing, "README commands not in tests/test_readme.py's COMMANDS:\n" + "\n".join(missing)
    assert not stale, "COMMANDS entries no longer in README.md:\n" + "\n".join(stale)


def test_covering_tests_exist():
    for command, entry in COMMANDS.items():
        if isinstance(entry, CoveredBy):
            file, function = entry.test.split("::")
            tree = ast.parse((ROOT / file).read_text())
            names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
            assert function in names, f"{command}: {entry.test} does not exist"
        elif isinstance(entry, CannotRunHere):
            assert entry.reason.strip(), command
        elif entry.only is not None:
            assert entry.why_only, command


def test_cpu_torch_pins_are_pyprojects():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(re.match(r"(torch|torchvision)==(\S+)$", d).groups() for d in dependencies
                if re.match(r"(torch|torchvision)==", d))
    assert TORCH_CPU == (f"pip install torch=={pins['torch']} torchvision=={pins['torchvision']} "
                         "--index-url https://download.pytorch.org/whl/cpu")
    assert TORCH_CPU in bash_commands(README.read_text())


def test_the_first_block_keeps_the_commands_ci_runs():
    first = code_blocks(README.read_text(), "bash")[0].splitlines()
    assert first == [FIRST_COMMAND, TEST_COMMAND]
    assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text()


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> Path:
    if not DAVIS_DEV.exists():
        pytest.skip("../shared/davis16-dev absent: the stand-in inputs are made from its frames")
    folder = tmp_path_factory.mktemp("stand-ins")
    for name, build in INPUTS.items():
        build(folder / name)
    return folder


@pytest.fixture(scope="module")
def shared_files(tmp_path_factory) -> Callable[[Shared], Path]:
    folder = tmp_path_factory.mktemp("shared-stand-ins")
    made: dict[Shared, Path] = {}

    def path_of(stand_in: Shared) -> Path:
        if stand_in not in made:
            made[stand_in] = folder / f"{len(made)}-{stand_in.build.__name__}"
            stand_in.build(made[stand_in])
        return made[stand_in]
    return path_of


def sandbox_for(base: Path, stand_ins: Path, entry: Run, shared_files: Callable[[Shared], Path]) -> Path:
    sandbox = base / "sandbox"
    shutil.copytree(stand_ins, sandbox, symlinks=True)
    for name, build in entry.inputs.items():
        target = sandbox / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        if isinstance(build, Shared):
            target.symlink_to(shared_files(build))
        else:
            build(target)
    return sandbox


RUNS = [command for command, entry in COMMANDS.items() if isinstance(entry, Run)]


@pytest.mark.parametrize("command", RUNS, ids=[command[:60] for command in RUNS])
def test_readme_command_runs(command, stand_ins, shared_files, tmp_path):
    entry = COMMANDS[command]
    if entry.needs and not shutil.which(entry.needs):
        pytest.skip(f"{entry.needs} is not installed here")
    if entry.full and not os.environ.get("HMHI_README_ALL"):
        pytest.skip("in the full set only (HMHI_README_ALL=1): another hmhi process, ~7 s of torch import on a busy CPU")
    if entry.only:
        assert entry.only in command, f"{entry.only!r} is not part of {command!r}"
    sandbox = sandbox_for(tmp_path, stand_ins, entry, shared_files)
    env = {**os.environ, **ONE_THREAD, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HOME": str(sandbox)}
    for key, value in entry.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    script = entry.only or command
    if entry.then:
        script += f" && {entry.then}"
    result = subprocess.run(["bash", "-c", f"set -eo pipefail; {script}"], cwd=sandbox, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"{script}\nexit {result.returncode}\n{result.stderr[-3000:]}"
    for relative in entry.creates:
        assert (sandbox / relative).exists(), f"{relative} missing after: {script}\n{result.stderr[-2000:]}"
    if entry.check:
        entry.check(sandbox, result)


API_PRELUDE = """
import torch
images, flows = torch.rand(1, 2, 3, 64, 64), torch.rand(1, 2, 3, 64, 64)
image_t, flow_t = images[:, 0], flows[:, 0]
"""


def test_python_api_block_runs(stand_ins, shared_files, tmp_path):
    """The README's Python block as written, after a prelude that gives it small ``images``/``flows``,
    with the tests' tiny weights as the default weights (``HMHI_WEIGHTS``)."""
    (block,) = code_blocks(README.read_text(), "python")
    sandbox = sandbox_for(tmp_path, stand_ins, Run(), shared_files)
    env = {**os.environ, **ONE_THREAD, "HMHI_WEIGHTS": str(shared_files(TINY_WEIGHTS))}
    result = subprocess.run([sys.executable, "-c", API_PRELUDE + block], cwd=sandbox, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((sandbox / "out" / "masks").glob("*.png"))) == CLIP_FRAMES
    assert (sandbox / "out" / "alpha.webm").is_file()
    assert (sandbox / "out" / "one" / "masks" / "00000.png").is_file()
    assert result.stdout.split() == ["one", "done", "None", "two", "done", "None"]
    with av.open(str(sandbox / "mask.mkv")) as container:
        assert sum(1 for _ in container.decode(video=0)) == CLIP_FRAMES
