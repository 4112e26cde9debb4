"""``hmhi label``: the teacher's labels as a photo set, resumable; the npm package's model assembled
from its chunks; onnxruntime never needed by ``hmhi segment``. The teacher here is
:mod:`tiny_onnx`'s stand-in (red channel = object), never the real IS-Net."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from hmhi_cli.data.photos import load_photo_set, read_mask
from hmhi_cli.errors import InputError
from hmhi_cli.training.teacher import assemble_package_model, resolve_teacher_model
from test_segment import one_line_error
from tiny_onnx import tiny_teacher_bytes, write_tiny_teacher

REPO = Path(__file__).resolve().parents[1]
DAVIS_TRAIN = REPO.parent / "shared" / "davis16-train"
needs_onnxruntime = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None,
    reason="onnxruntime not installed (pip install 'hmhi[test]')")


def run(*args: str, cache: Path, code: str | None = None) -> subprocess.CompletedProcess:
    """``hmhi label ARGS`` (or ``python -c CODE ARGS``) in a subprocess, with its teacher cache in ``cache``."""
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "hmhi_cli", "label", *args]
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "OMP_NUM_THREADS": "1", "COLUMNS": "160"}
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def red_box_photo(path: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    """A blue photo (width, height) with a pure red box (x0, y0, x1, y1): the stand-in's object."""
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[..., 0] = 255
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = (0, 0, 255)
    assert cv2.imwrite(str(path), image)


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    red_box_photo(folder / "wide.png", (320, 160), (80, 40, 240, 120))
    red_box_photo(folder / "tall.jpg", (60, 90), (0, 0, 30, 90))
    red_box_photo(folder / "small.png", (40, 30), (10, 10, 30, 20))
    return folder


@pytest.fixture
def teacher(tmp_path) -> Path:
    return write_tiny_teacher(tmp_path / "teacher.onnx")


def fake_package(root: Path, model: bytes, chunk_size: int = 64) -> Path:
    """The npm package's layout: dist/resources.json listing /models/small as chunks named by SHA-256."""
    (root / "dist").mkdir(parents=True)
    chunks = []
    for start in range(0, len(model), chunk_size):
        data = model[start:start + chunk_size]
        name = hashlib.sha256(data).hexdigest()
        (root / "dist" / name).write_bytes(data)
        chunks.append({"hash": name, "offsets": [start, start + len(data)]})
    resources = {"/models/small": {"chunks": chunks, "size": len(model), "mime": "application/octet-steam"},
                 "/models/medium": {"chunks": chunks[:1], "size": len(model)}}  # chunks short of the size
    (root / "dist" / "resources.json").write_text(json.dumps(resources))
    (root / "package.json").write_text('{"name": "@imgly/background-removal-data"}')
    return root


@needs_onnxruntime
def test_label_writes_a_photo_set_the_trainer_reads(photos, teacher, tmp_path):
    out = tmp_path / "labels"
    result = run(str(photos), "-o", str(out), "--teacher", str(teacher), "--max-side", "64", cache=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "labelled 3, already labelled 0, unreadable 0" in result.stdout
    loaded = {photo.image.stem: photo for photo in load_photo_set(out)}
    assert sorted(loaded) == ["small", "tall", "wide"]
    expected_sizes = {"wide": (32, 64), "tall": (64, 43), "small": (30, 40)}  # shrunk to 64, never enlarged
    for name, photo in loaded.items():
        image = cv2.imread(str(photo.image))
        mask = cv2.imread(str(photo.mask), cv2.IMREAD_UNCHANGED)
        assert photo.image.suffix == ".jpg" and photo.mask.suffix == ".png"
        assert image.shape[:2] == mask.shape == expected_sizes[name] and mask.dtype == np.uint8
    wide = read_mask(loaded["wide"].mask)
    assert wide[12:19, 20:44].min() > 0.95, "the red box is the object"
    assert wide[:, :14].max() < 0.05 and wide[:6].max() < 0.05, "blue is background (RGB order, not BGR)"
    assert 0.2 < (wide >= 0.5).mean() < 0.3


@needs_onnxruntime
def test_label_resumes_and_leaves_no_partial_files(photos, teacher, tmp_path):
    out = tmp_path / "labels"
    args = (str(photos), "-o", str(out), "--teacher", str(teacher), "--max-side", "0", "-q")
    assert run(*args, cache=tmp_path).returncode == 0
    written = {path: path.stat().st_mtime_ns for path in out.rglob("*.*")}
    again = run(*args, cache=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "labelled 0, already labelled 3" in again.stdout
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*.*")} == written
    (out / "masks" / "tall.png").unlink()  # as if stopped after the photo, before its mask
    (out / "masks" / ".wide.png.abc.part.png").write_bytes(b"half")
    third = run(*args, cache=tmp_path)
    assert third.returncode == 0, third.stderr
    assert "labelled 1, already labelled 2" in third.stdout
    assert sorted(path.name for path in (out / "masks").iterdir()) == ["small.png", "tall.png", "wide.png"]
    assert cv2.imread(str(out / "images" / "tall.jpg")).shape[:2] == (90, 60)


@needs_onnxruntime
def test_an_interrupted_run_leaves_only_whole_labels_and_resumes(teacher, tmp_path):
    photos = tmp_path / "many"
    photos.mkdir()
    for index in range(200):
        red_box_photo(photos / f"p{index:03d}.png", (64, 48), (index % 32, 8, 32 + index % 32, 40))
    out = tmp_path / "labels"
    args = [str(photos), "-o", str(out), "--teacher", str(teacher), "--threads", "1", "-q"]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "-m", "hmhi_cli", "label", *args], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any((out / "masks").glob("p*.png")):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "hmhi label never wrote a mask"
        time.sleep(0.02)
    process.send_signal(signal.SIGSTOP)  # wherever it is now, even half-way through a file
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGCONT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr.decode()
    assert not [path.name for path in out.rglob(".*")], "no temporary files left"
    masks = sorted((out / "masks").iterdir())
    assert 0 < len(masks) < 200
    for mask in masks:
        assert cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE).shape == (48, 64)
        assert cv2.imread(str(out / "images" / f"{mask.stem}.jpg")).shape == (48, 64, 3)
    resumed = run(*args, cache=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"labelled {200 - len(masks)}, already labelled {len(masks)}" in resumed.stdout
    assert len(load_photo_set(out)) == 200


@needs_onnxruntime
@pytest.mark.skipif(not DAVIS_TRAIN.is_dir(), reason="../shared/davis16-train absent")
def test_label_takes_every_nth_frame_of_a_davis_layout(teacher, tmp_path):
    root = tmp_path / "davis"
    frames = sorted((DAVIS_TRAIN / "JPEGImages" / "480p" / "bear").glob("*.jpg"))[:5]
    for sequence in ("bear", "bear-copy"):
        (root / "JPEGImages" / "480p" / sequence).mkdir(parents=True)
        for frame in frames:
            shutil.copy(frame, root / "JPEGImages" / "480p" / sequence / frame.name)
    (root / "Annotations" / "480p" / "bear").mkdir(parents=True)
    shutil.copy(frames[0], root / "Annotations" / "480p" / "bear" / "ignored.jpg")
    out = tmp_path / "labels"
    result = run(str(root), "-o", str(out), "--teacher", str(teacher), "--every", "2", "--max-side", "96",
                 cache=tmp_path)
    assert result.returncode == 0, result.stderr
    stems = [frame.stem for frame in frames[::2]]
    assert sorted(photo.image.stem for photo in load_photo_set(out)) == sorted(
        [f"bear_{stem}" for stem in stems] + [f"bear-copy_{stem}" for stem in stems])
    image = cv2.imread(str(out / "images" / f"bear_{stems[0]}.jpg"))
    assert image.shape[:2] == (54, 96)


def test_package_model_is_assembled_from_its_chunks_once(tmp_path):
    model = tiny_teacher_bytes()
    package = fake_package(tmp_path / "package", model)
    cache = tmp_path / "cache"
    assembled = assemble_package_model(package, "small", cache)
    assert assembled.parent == cache and assembled.read_bytes() == model
    tgz = tmp_path / "imgly-background-removal-data-1.4.5.tgz"
    with tarfile.open(tgz, "w:gz") as archive:
        archive.add(package, arcname="package")
    assert resolve_teacher_model(tgz, "small", tmp_path / "from-tgz").read_bytes() == model
    assert resolve_teacher_model(tmp_path / "from-tgz" / assembled.name) == tmp_path / "from-tgz" / assembled.name
    for chunk in (package / "dist").glob("[0-9a-f]*"):
        chunk.unlink()
    assert assemble_package_model(package, "small", cache) == assembled, "taken from the cache"


def test_damaged_or_incomplete_packages_are_refused(tmp_path):
    package = fake_package(tmp_path / "package", tiny_teacher_bytes())
    with pytest.raises(InputError, match="unreadable resources.json entry /models/medium"):
        assemble_package_model(package, "medium", tmp_path / "cache")
    first = json.loads((package / "dist" / "resources.json").read_text())["/models/small"]["chunks"][0]["hash"]
    (package / "dist" / first).write_bytes(b"x" * 64)
    with pytest.raises(InputError, match=f"chunk {first} of /models/small is damaged"):
        assemble_package_model(package, "small", tmp_path / "cache")
    (package / "dist" / first).unlink()
    with pytest.raises(InputError, match=f"chunk {first} of /models/small is missing"):
        assemble_package_model(package, "small", tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir()), "no half-assembled model left in the cache"
    with pytest.raises(InputError, match="not the @imgly/background-removal-data package"):
        resolve_teacher_model(tmp_path / "cache", "small", tmp_path / "cache")


@needs_onnxruntime
def test_label_through_the_npm_package_uses_the_cache(photos, tmp_path):
    tgz = tmp_path / "package.tgz"
    with tarfile.open(tgz, "w:gz") as archive:
        archive.add(fake_package(tmp_path / "unpacked", tiny_teacher_bytes()), arcname="package")
    result = run(str(photos), "-o", str(tmp_path / "labels"), "--teacher", str(tgz), "--variant", "small", "-q",
                 cache=tmp_path / "xdg")
    assert result.returncode == 0, result.stderr
    assert [path.name.split("-")[:2] for path in (tmp_path / "xdg" / "hmhi" / "teacher").iterdir()] == [["isnet", "small"]]
    assert len(load_photo_set(tmp_path / "labels")) == 3


@needs_onnxruntime
def test_label_errors_are_one_line(photos, teacher, tmp_path):
    out = tmp_path / "labels"
    missing = one_line_error(run(str(photos), "-o", str(out), "--teacher", str(tmp_path / "nope.onnx"), cache=tmp_path))
    assert "no such teacher model or package" in missing
    other = write_tiny_teacher(tmp_path / "other.onnx", input_name="image")
    wrong = run(str(photos), "-o", str(out), "--teacher", str(other), cache=tmp_path)
    assert wrong.returncode == 2 and "not the IS-Net teacher" in one_line_error(wrong)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    assert "cannot load the teacher model" in one_line_error(run(str(photos), "-o", str(out), "--teacher", str(garbage),
                                                                 cache=tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no .jpg/.jpeg/.png images" in one_line_error(run(str(empty), "-o", str(out), "--teacher", str(teacher),
                                                             cache=tmp_path))
    assert not out.exists()


@needs_onnxruntime
def test_unreadable_photos_are_reported_and_the_rest_labelled(photos, teacher, tmp_path):
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    result = run(str(photos), "-o", str(tmp_path / "labels"), "--teacher", str(teacher), "-q", cache=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"warning: cannot read {photos / 'broken.jpg'}"
    assert "labelled 3, already labelled 0, unreadable 1" in result.stdout


def test_missing_onnxruntime_is_one_line_naming_the_extra(photos, teacher, tmp_path):
    code = textwrap.dedent("""
        import sys
        sys.modules["onnxruntime"] = None  # import onnxruntime now raises ImportError
        sys.argv = ["hmhi", *sys.argv[1:]]
        from hmhi_cli.cli import main
        main()
    """)
    result = run("label", str(photos), "-o", str(tmp_path / "labels"), "--teacher", str(teacher), cache=tmp_path, code=code)
    assert result.returncode == 2
    assert "needs onnxruntime: pip install onnxruntime (or pip install 'hmhi[train]')" in one_line_error(result)


@pytest.mark.skipif(not DAVIS_TRAIN.is_dir(), reason="../shared/davis16-train absent")
def test_segment_does_not_import_onnxruntime_or_the_teacher(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for frame in sorted((DAVIS_TRAIN / "JPEGImages" / "480p" / "bear").glob("*.jpg"))[:3]:
        cv2.imwrite(str(frames / f"{frame.stem}.png"), cv2.resize(cv2.imread(str(frame)), (64, 48)))
    code = textwrap.dedent("""
        import sys
        import torch
        from hmhi_cli.model import build_model
        from hmhi_cli.weights import save_weights
        weights, frames, out = sys.argv[1:]
        torch.manual_seed(0)
        save_weights(build_model("mit_b0"), weights, input_size=64, provenance={"purpose": "tests"})
        sys.argv = ["hmhi", "segment", frames, "-o", out, "--weights", weights, "--flow", "dis", "-q"]
        from hmhi_cli.cli import main
        main()
        loaded = sorted(name for name in sys.modules if name.startswith(("onnxruntime", "hmhi_cli.training")))
        print("loaded:", loaded)
    """)
    result = run(str(tmp_path / "tiny.safetensors"), str(frames), str(tmp_path / "out"), cache=tmp_path, code=code)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "out" / "masks").glob("*.png"))) == 3
    assert result.stdout.strip().splitlines()[-1] == "loaded: []"
