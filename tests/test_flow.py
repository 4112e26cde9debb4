"""Tests for hmhi_cli.flow: estimators, rendering, .flo files, streaming, dataset pre-computation, CLI."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.utils import _make_colorwheel, flow_to_image

from hmhi_cli import flow as flowlib
from hmhi_cli.flow import estimators, precompute, render
from hmhi_cli.errors import InputError, WeightsError
from hmhi_cli.flow import (
    DisFlowEstimator,
    FlowEstimator,
    RaftFlowEstimator,
    flow_images,
    flow_to_rgb,
    parse_shard,
    precompute_flow,
    read_flo,
    resolve_flow_backend,
    shard_sequences,
    write_flo,
)

REPO = Path(__file__).resolve().parents[1]
DAVIS = REPO.parent / "shared" / "davis16-dev"
needs_davis = pytest.mark.skipif(not (DAVIS / "JPEGImages").is_dir(), reason=f"real DAVIS frames not found at {DAVIS}")


# ---------------------------------------------------------------- synthetic moving square


def moving_square_clip(
    count: int, step: tuple[int, int], size: tuple[int, int] = (128, 160), side: int = 40
) -> list[np.ndarray]:
    """``count`` RGB frames: a textured square moving by ``step`` (dx, dy) per frame over a static background."""
    rng = np.random.default_rng(7)
    height, width = size
    background = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 3)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), (0, 0), 1.5)
    frames = []
    for index in range(count):
        frame = background.copy()
        x, y = 30 + index * step[0], 30 + index * step[1]
        frame[y : y + side, x : x + side] = texture
        frames.append(frame)
    return frames


def square_flow(flow: np.ndarray, index: int, step: tuple[int, int], side: int = 40) -> np.ndarray:
    """Median flow vector over the inner part of the square as placed in frame ``index``."""
    x, y = 30 + index * step[0], 30 + index * step[1]
    return np.median(flow[y + 8 : y + side - 8, x + 8 : x + side - 8].reshape(-1, 2), axis=0)


# ---------------------------------------------------------------- rendering and .flo


def test_flow_to_rgb_matches_torchvision_and_renders_zero_as_white():
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 5, (24, 32, 2)).astype(np.float32)
    expected = flow_to_image(torch.from_numpy(flow).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    rendered = flow_to_rgb(flow)
    assert rendered.dtype == np.uint8 and rendered.shape == (24, 32, 3)
    np.testing.assert_array_equal(rendered, expected)
    np.testing.assert_array_equal(render._WHEEL, _make_colorwheel().numpy())
    # A real 480p field: float rounding may move a handful of values by one level, no more.
    large = rng.normal(0, 5, (480, 854, 2)).astype(np.float32)
    expected = flow_to_image(torch.from_numpy(large).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    difference = np.abs(flow_to_rgb(large).astype(int) - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-4
    # Normalised by the frame's largest vector: scaling the whole field changes nothing.
    np.testing.assert_array_equal(flow_to_rgb(flow * 10), rendered)
    assert (flow_to_rgb(np.zeros((4, 5, 2), np.float32)) == 255).all()
    with pytest.raises(InputError):
        flow_to_rgb(np.zeros((4, 5, 3), np.float32))


def test_flo_header_bytes_and_round_trip(tmp_path):
    flow = np.arange(3 * 5 * 2, dtype=np.float32).reshape(3, 5, 2) / 4 - 2
    path = tmp_path / "sub" / "a.flo"
    write_flo(path, flow)
    data = path.read_bytes()
    assert data[:4] == b"PIEH"  # 202021.25 as little-endian float32
    assert struct.unpack("<f", data[:4])[0] == 202021.25
    assert struct.unpack("<ii", data[4:12]) == (5, 3)  # width, then height
    assert len(data) == 12 + 3 * 5 * 2 * 4
    assert struct.unpack("<ff", data[12:20]) == (flow[0, 0, 0], flow[0, 0, 1])  # row-major, u/v interleaved
    assert struct.unpack("<f", data[12 + (5 * 2 + 2) * 4 : 12 + (5 * 2 + 3) * 4])[0] == flow[1, 1, 0]
    back = read_flo(path)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, flow)
    assert [p.name for p in path.parent.iterdir()] == ["a.flo"]  # no temp file left


def test_read_flo_rejects_bad_files(tmp_path):
    bad_magic = tmp_path / "bad.flo"
    bad_magic.write_bytes(struct.pack("<fii", 1.0, 1, 1) + b"\0" * 8)
    truncated = tmp_path / "short.flo"
    truncated.write_bytes(struct.pack("<fii", 202021.25, 4, 4) + b"\0" * 8)
    for path in (bad_magic, truncated, tmp_path / "missing.flo"):
        with pytest.raises(InputError, match=path.name):
            read_flo(path)


# ---------------------------------------------------------------- DIS and streaming


def test_dis_flow_and_stream_pairing_on_moving_square():
    step = (3, 2)
    frames = moving_square_clip(4, step)
    consumed = []

    def source():
        for frame in frames:
            consumed.append(frame)
            yield frame

    items = []
    for index, item in enumerate(flow_images(source(), DisFlowEstimator())):
        # One frame of look-ahead: frame t is out once t+1 has been read (the last once all are read).
        assert len(consumed) == min(index + 2, len(frames))
        items.append(item)
    assert len(items) == 4
    for index, (frame, flow_rgb, flow_raw) in enumerate(items):
        assert frame is frames[index]
        assert flow_raw.shape == (128, 160, 2) and flow_raw.dtype == np.float32
        np.testing.assert_array_equal(flow_rgb, flow_to_rgb(flow_raw))
        expected = (-step[0], -step[1]) if index == 3 else step
        np.testing.assert_allclose(square_flow(flow_raw, index, step), expected, atol=0.5)
    # The static background does not move.
    assert np.abs(np.median(items[0].flow_raw[:20, :20].reshape(-1, 2), axis=0)).max() < 0.3


def test_dis_working_resolution_cap_rescales_vectors():
    step = (6, 4)
    frames = moving_square_clip(2, step, size=(256, 320), side=80)
    flow = DisFlowEstimator(preset="medium", max_side=160).estimate(frames[0], frames[1])
    assert flow.shape == (256, 320, 2)
    np.testing.assert_allclose(square_flow(flow, 0, step, side=80), step, atol=0.8)


def test_stream_of_one_frame_and_of_none():
    frame = moving_square_clip(1, (0, 0))[0]
    (item,) = list(flow_images([frame], DisFlowEstimator()))
    assert item.frame is frame
    assert not item.flow_raw.any() and item.flow_raw.shape == (128, 160, 2)
    assert (item.flow_rgb == 255).all()
    assert list(flow_images([], DisFlowEstimator())) == []


def test_estimate_rejects_bad_frames():
    dis = DisFlowEstimator()
    frame = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(InputError, match="differ in size"):
        dis.estimate(frame, np.zeros((32, 40, 3), np.uint8))
    with pytest.raises(InputError, match="uint8"):
        dis.estimate(frame.astype(np.float32), frame)
    with pytest.raises(InputError, match="preset"):
        DisFlowEstimator(preset="slowest")


# ---------------------------------------------------------------- RAFT with random weights


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def empty_torch_hub(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


@pytest.fixture(scope="module")
def raft_small_files(tmp_path_factory):
    from safetensors.torch import save_file
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    state = raft_small(weights=None).state_dict()
    folder = tmp_path_factory.mktemp("raft")
    torch.save(state, folder / "raft_small_random.pth")
    save_file(state, str(folder / "raft_small_random.safetensors"))
    return folder / "raft_small_random.pth", folder / "raft_small_random.safetensors"


def test_raft_loads_both_formats_and_returns_input_resolution(raft_small_files):
    pth, safetensors = raft_small_files
    frames = moving_square_clip(2, (3, 2), size=(130, 150))  # not multiples of 8: padded inside
    flows = []
    for path in (pth, safetensors):
        estimator = RaftFlowEstimator("raft-small", weights=path, num_flow_updates=2)
        assert (estimator.name, estimator.device) == ("raft-small", "cpu")
        flow = estimator.estimate(frames[0], frames[1])
        assert flow.shape == (130, 150, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()
        flows.append(flow)
    # Freshly built models differ (random init), so equal outputs prove both files were loaded.
    np.testing.assert_array_equal(flows[0], flows[1])
    # Downscaled working resolution (longer side 128): flow comes back at the input resolution.
    capped = RaftFlowEstimator("raft-small", weights=pth, num_flow_updates=2, max_side=128)
    assert capped.estimate(frames[0], frames[1]).shape == (130, 150, 2)


def test_flow_resize_scales_vectors():
    small = np.empty((50, 100, 2), np.float32)
    small[..., 0], small[..., 1] = 2.0, -1.0
    big = estimators._resize_flow(small, 100, 300)
    assert big.shape == (100, 300, 2)
    np.testing.assert_allclose(big[..., 0], 6.0)
    np.testing.assert_allclose(big[..., 1], -2.0)


def test_raft_weight_errors_without_network(raft_small_files, empty_torch_hub, tmp_path):
    pth, _ = raft_small_files
    with pytest.raises(WeightsError) as missing:
        RaftFlowEstimator("raft-large")
    message = str(missing.value)
    assert "\n" not in message
    assert str(empty_torch_hub / "checkpoints") in message and "raft_large_C_T_SKHT_V2-ff5fadd5.pth" in message
    assert "--raft-weights" in message
    with pytest.raises(WeightsError, match="not found"):
        RaftFlowEstimator("raft-small", weights=tmp_path / "nope.pth")
    with pytest.raises(WeightsError, match="does not match raft-large"):
        RaftFlowEstimator("raft-large", weights=pth)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="not a PyTorch checkpoint"):
        RaftFlowEstimator("raft-small", weights=garbage)


def test_auto_backend_uses_raft_large_only_when_weights_are_cached(empty_torch_hub):
    from torchvision.models.optical_flow import raft_large

    auto = resolve_flow_backend("auto")
    assert isinstance(auto, FlowEstimator) and auto.name == "dis"
    # the CLI allows downloads for every backend: auto must still never fetch anything
    assert resolve_flow_backend("auto", allow_download=True).name == "dis"
    cached = flowlib.raft_cache_path("raft-large")
    assert cached.parent == empty_torch_hub / "checkpoints"
    cached.parent.mkdir(parents=True)
    torch.save(raft_large(weights=None).state_dict(), cached)
    assert resolve_flow_backend("auto").name == "raft-large"
    # weights trained on DIS flow (they record its working size) keep auto on DIS, at that size
    trained_on_dis = resolve_flow_backend("auto", dis_max_side=256)
    assert trained_on_dis.name == "dis" and trained_on_dis.max_side == 256
    assert resolve_flow_backend("dis").name == "dis"
    with pytest.raises(InputError, match="unknown flow backend"):
        resolve_flow_backend("farneback")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error for a machine without CUDA")
def test_cuda_without_gpu_is_a_user_error(raft_small_files):
    with pytest.raises(InputError, match="CUDA"):
        RaftFlowEstimator("raft-small", weights=raft_small_files[0], device="cuda")


# ---------------------------------------------------------------- dataset pre-computation


SEQUENCES = {"blackswan": 3, "bmx-trees": 4}


@pytest.fixture
def davis_tree(tmp_path):
    """A small DAVIS-layout dataset: the first frames of two real sequences."""
    root = tmp_path / "davis"
    for name, count in SEQUENCES.items():
        for sub, suffix in (("JPEGImages", "jpg"), ("Annotations", "png")):
            target = root / sub / "480p" / name
            target.mkdir(parents=True)
            for index in range(count):
                shutil.copy(DAVIS / sub / "480p" / name / f"{index:05d}.{suffix}", target)
    (root / "ImageSets" / "2016").mkdir(parents=True)
    (root / "ImageSets" / "2016" / "val.txt").write_text("".join(f"{name}\n" for name in SEQUENCES))
    return root


class CountingEstimator(FlowEstimator):
    """DIS that counts how many flows it was asked for."""

    def __init__(self) -> None:
        self.name, self.device = "dis", "cpu"
        self.inner = DisFlowEstimator()
        self.calls = 0

    def _estimate(self, frame_a, frame_b):
        self.calls += 1
        return self.inner.estimate(frame_a, frame_b)


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@needs_davis
def test_precompute_davis_writes_the_right_flow_for_every_frame(davis_tree):
    from hmhi_cli.data.layouts import load_dataset

    sequences = load_dataset(davis_tree)
    events = []
    summary = precompute_flow(
        sequences, davis_tree, DisFlowEstimator(), image_format="png", write_flo=True, progress=events.append
    )
    assert (summary.sequences, summary.computed, summary.skipped) == (2, 7, 0)
    swan_events = [(e.done, e.total, e.computed) for e in events if e.sequence == "blackswan"]
    assert swan_events == [(i, 3, i) for i in range(4)]

    frames = [read_rgb(davis_tree / "JPEGImages" / "480p" / "blackswan" / f"{i:05d}.jpg") for i in range(3)]
    dis = DisFlowEstimator()
    for index, other in ((0, 1), (1, 2), (2, 1)):  # t -> t+1, last frame -> t-1
        stem = f"{index:05d}"
        flo = read_flo(davis_tree / "Flow" / "480p" / "blackswan" / f"{stem}.flo")
        np.testing.assert_allclose(flo, dis.estimate(frames[index], frames[other]), atol=1e-4)
        image = read_rgb(davis_tree / "FlowImages" / "480p" / "blackswan" / f"{stem}.png")
        assert image.shape == (480, 854, 3)
        np.testing.assert_array_equal(image, flow_to_rgb(flo))
    pngs = sorted(p.name for p in (davis_tree / "FlowImages" / "480p" / "bmx-trees").iterdir())
    assert pngs == [f"{i:05d}.png" for i in range(4)]
    for sequence in load_dataset(davis_tree):  # the loader finds what was written
        assert sorted(sequence.flows) == [frame.stem for frame in sequence.frames]


@needs_davis
def test_precompute_resumes_after_interruption(davis_tree, monkeypatch):
    from hmhi_cli.data.layouts import load_dataset

    sequences = load_dataset(davis_tree)
    first = precompute_flow(sequences, davis_tree, DisFlowEstimator())
    assert (first.computed, first.skipped) == (7, 0)
    swan = davis_tree / "FlowImages" / "480p" / "blackswan"
    bmx = davis_tree / "FlowImages" / "480p" / "bmx-trees"
    middle, last = swan / "00001.jpg", bmx / "00003.jpg"
    middle.unlink()
    last.unlink()
    stale = swan / ".00002.jpg.x1y2z3.part.jpg"  # what an interrupted atomic write leaves behind
    stale.write_bytes(b"half")

    decoded = []
    real_read = precompute.read_image
    monkeypatch.setattr(precompute, "read_image", lambda path: decoded.append(path) or real_read(path))
    counting = CountingEstimator()
    second = precompute_flow(sequences, davis_tree, counting)
    assert (second.computed, second.skipped, counting.calls) == (2, 5, 2)
    assert middle.is_file() and last.is_file() and not stale.exists()
    # Only the frames the two missing flows need were decoded.
    assert sorted((p.parent.name, p.name) for p in decoded) == [
        ("blackswan", "00001.jpg"),
        ("blackswan", "00002.jpg"),
        ("bmx-trees", "00002.jpg"),
        ("bmx-trees", "00003.jpg"),
    ]
    third = precompute_flow(sequences, davis_tree, counting)
    assert (third.computed, third.skipped) == (0, 7)


def test_shards_cover_every_sequence_exactly_once():
    from hmhi_cli.data.layouts import Sequence

    names = ["kite", "bear", "dog", "car", "swan", "elk", "ant"]
    sequences = [Sequence(name=name, frames=[], annotations={}, flows={}) for name in names]
    shards = [[s.name for s in shard_sequences(sequences, index, 3)] for index in range(3)]
    assert shards == [["ant", "dog", "swan"], ["bear", "elk"], ["car", "kite"]]
    assert sorted(sum(shards, [])) == sorted(names)
    assert shards == [[s.name for s in shard_sequences(list(reversed(sequences)), index, 3)] for index in range(3)]
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "1", "-1/3", "a/b", "0/0"):
        with pytest.raises(InputError, match="shard"):
            parse_shard(bad)


@needs_davis
def test_precompute_only_does_its_shard(davis_tree):
    from hmhi_cli.data.layouts import load_dataset

    summary = precompute_flow(load_dataset(davis_tree), davis_tree, DisFlowEstimator(), shard=(1, 2))
    assert (summary.sequences, summary.computed) == (1, 4)
    assert not (davis_tree / "FlowImages" / "480p" / "blackswan").exists()
    assert len(list((davis_tree / "FlowImages" / "480p" / "bmx-trees").glob("*.jpg"))) == 4


def test_reference_layout_output_is_found_by_the_loader(tmp_path):
    from hmhi_cli.data.layouts import detect_layout, load_dataset

    root = tmp_path / "ref"
    for name in ("cows", "dog"):
        (root / name / "frame").mkdir(parents=True)
        for index, frame in enumerate(moving_square_clip(3, (2, 1))):
            cv2.imwrite(str(root / name / "frame" / f"{index:05d}.png"), frame)
    assert detect_layout(root) == "reference"
    summary = precompute_flow(load_dataset(root), root, DisFlowEstimator(), write_flo=True)
    assert (summary.sequences, summary.computed, summary.skipped) == (2, 6, 0)
    assert sorted(p.name for p in (root / "cows" / "flow").iterdir()) == ["00000.jpg", "00001.jpg", "00002.jpg"]
    assert read_flo(root / "dog" / "flo" / "00002.flo").shape == (128, 160, 2)
    for sequence in load_dataset(root):
        assert sequence.flows == {f"{i:05d}": root / sequence.name / "flow" / f"{i:05d}.jpg" for i in range(3)}


def test_precompute_single_frame_sequence_gets_zero_flow(tmp_path):
    from hmhi_cli.data.layouts import load_dataset

    (tmp_path / "still" / "frame").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "still" / "frame" / "0.png"), moving_square_clip(1, (0, 0))[0])
    summary = precompute_flow(load_dataset(tmp_path), tmp_path, DisFlowEstimator(), image_format="png")
    assert summary.computed == 1
    assert (cv2.imread(str(tmp_path / "still" / "flow" / "0.png")) == 255).all()


def test_class_level_jpegimages_tree_is_not_taken_for_davis(tmp_path):
    from hmhi_cli.data.layouts import Sequence

    frame = tmp_path / "yto" / "JPEGImages" / "cat" / "0001" / "00007.jpg"
    sequence = Sequence(name="cat/0001", frames=[frame], annotations={}, flows={})
    targets = flowlib.flow_targets(sequence, frame, tmp_path / "out", "png")
    assert targets.image == tmp_path / "out" / "cat" / "0001" / "flow" / "00007.png" and targets.flo is None


# ---------------------------------------------------------------- CLI


def run_cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "hmhi_cli", "flow", "precompute", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )


@needs_davis
def test_cli_precompute_auto_falls_back_to_dis(davis_tree, tmp_path):
    out = tmp_path / "flows"
    no_weights = {"TORCH_HOME": str(tmp_path / "torch-home")}
    result = run_cli(str(davis_tree), "--out", str(out), "--shard", "0/2", env_extra=no_weights)
    assert result.returncode == 0, result.stderr
    assert "flow backend: dis" in result.stderr
    assert "3 computed, 0 skipped" in result.stdout
    written = sorted(p.name for p in (out / "FlowImages" / "480p" / "blackswan").iterdir())
    assert written == ["00000.jpg", "00001.jpg", "00002.jpg"]
    assert not (davis_tree / "FlowImages").exists()


def test_cli_bad_root_is_one_line_error(tmp_path):
    result = run_cli(str(tmp_path / "no-such-dataset"), "--flow", "dis")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no-such-dataset" in result.stderr


def reference_dataset(root: Path, frames: int, size: tuple[int, int] = (128, 160)) -> Path:
    """One sequence ``clip`` in the reference layout (``<root>/clip/frame/*.png``) of a moving square."""
    (root / "clip" / "frame").mkdir(parents=True)
    for index, frame in enumerate(moving_square_clip(frames, (3, 2), size=size)):
        cv2.imwrite(str(root / "clip" / "frame" / f"{index:05d}.png"), frame)
    return root


def test_cli_precompute_recomputes_empty_and_truncated_flow_images(tmp_path):
    root = reference_dataset(tmp_path / "data", 4)
    first = run_cli(str(root), "--flow", "dis", "-q")
    assert first.returncode == 0, first.stderr
    flows = sorted((root / "clip" / "flow").glob("*.jpg"))
    assert [path.name for path in flows] == [f"{i:05d}.jpg" for i in range(4)]
    flows[1].write_bytes(b"")
    flows[2].write_bytes(flows[2].read_bytes()[: flows[2].stat().st_size // 2])
    second = run_cli(str(root), "--flow", "dis", "-q")
    assert second.returncode == 0, second.stderr
    assert "2 computed, 2 skipped" in second.stdout, second.stdout
    for path in flows:
        assert cv2.imread(str(path)) is not None, path
    third = run_cli(str(root), "--flow", "dis", "-q")
    assert "0 computed, 4 skipped" in third.stdout, third.stdout


def test_cli_offline_raft_download_says_what_to_do_in_one_line(tmp_path):
    root = reference_dataset(tmp_path / "data", 2)
    closed_port = "http://127.0.0.1:9"
    offline = {"TORCH_HOME": str(tmp_path / "torch-home"), "https_proxy": closed_port, "HTTPS_PROXY": closed_port,
               "no_proxy": "", "NO_PROXY": ""}
    result = run_cli(str(root), "--flow", "raft-small", "-q", env_extra=offline)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "raft-small" in lines[0] and "--raft-weights FILE" in lines[0] and "--flow dis" in lines[0], lines[0]
    assert "urlopen" not in lines[0] and not (root / "clip" / "flow").exists()
    assert "Downloading" not in result.stdout, result.stdout


def test_cli_auto_uses_the_raft_variant_of_the_given_weights(raft_small_files, tmp_path):
    root = reference_dataset(tmp_path / "data", 2, size=(80, 96))
    pth, _ = raft_small_files
    result = run_cli(str(root), "--raft-weights", str(pth), "--device", "cpu",
                     env_extra={"TORCH_HOME": str(tmp_path / "torch-home")})
    assert result.returncode == 0, result.stderr
    assert "flow backend: raft-small on cpu" in result.stderr
    assert "flow (raft-small): 2 computed" in result.stdout


def test_raft_cache_file_names_are_torchvisions():
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    for variant, weights in (("raft-large", Raft_Large_Weights.DEFAULT), ("raft-small", Raft_Small_Weights.DEFAULT)):
        assert flowlib.raft_cache_path(variant).name == weights.url.rsplit("/", 1)[1]


def test_segmenting_with_dis_imports_no_torchvision(tmp_path):
    """torchvision's import costs over a second of start-up; DIS flow and the model need none of it."""
    code = ("import sys; from hmhi_cli.flow import flow_images, resolve_flow_backend; import hmhi_cli.segment; "
            "import numpy as np; e = resolve_flow_backend('auto'); "
            "list(flow_images([np.zeros((32, 32, 3), np.uint8)] * 2, e)); print('torchvision' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "TORCH_HOME": str(tmp_path)})
    assert result.stdout.strip() == "False"