"""Dataset layouts: find the frames, ground-truth masks and flow images of every sequence.

:func:`detect_layout` tells four layouts apart by what exists under the root; :func:`load_dataset`
reads one into :class:`Sequence` records. Folder names for frames, masks and flows are matched
case-insensitively from these sets:

- frames: ``frame``, ``frames``, ``images``, ``imgs``, ``jpegimages``
- masks: ``mask``, ``masks``, ``gt``, ``groundtruth``, ``annotations``
- flows: ``flowimages``, ``flow``, ``flows``, ``jpegflows`` (a flow folder without images, such as
  one holding only ``.flo`` files, is passed over)

``davis``
    ``JPEGImages/<res>/<seq>/*.jpg`` and ``Annotations/<res>/<seq>/*.png`` (``<res>`` is
    ``480p`` unless asked otherwise). The default sequences are those listed in
    ``ImageSets/2016/val.txt``, or every sequence folder when that file is absent; any sequence
    folder may be asked for by name. Flows come from ``FlowImages/<res>/<seq>/`` (what
    ``hmhi flow precompute`` writes), ``<flow folder>/<res>/<seq>/`` or ``<flow folder>/<seq>/``.

``reference`` (the HMHI-Net / Isomer test-set layout)
    One folder per sequence, ``<seq>/frame/``, ``<seq>/flow/``, ``<seq>/mask/`` (Isomer names
    them ``Frame``, ``Flow``, ``GT``), or one folder per kind, ``frame/<seq>/``, ``flow/<seq>/``,
    ``mask/<seq>/``. A root that has a frames folder is read per kind, otherwise per sequence.
    The flat ``JPEGImages/<seq>`` + ``Annotations/<seq>`` trees into which many UVOS papers
    convert FBMS and YouTube-Objects (sparse masks) are this layout too.

``fbms``
    The FBMS-59 release: ``Testset/<seq>/*.jpg`` (else ``Trainingset/``, or a root that is itself
    such a split folder) with sparse ground truth converted to binary PNG in
    ``<seq>/GroundTruth/``, named ``001_gt.png`` or ``<seq>_<num>_gt.png``. A mask belongs to the
    frame whose file name ends in the same number (``cars1_01.jpg`` for ``001_gt.png``).

``ytobj`` (YouTube-Objects as UVOS papers distribute it)
    The reference layout with a class level: ``JPEGImages/<class>/<seq>/`` +
    ``Annotations/<class>/<seq>/`` (sparse masks), or ``<class>/<seq>/frames/`` +
    ``<class>/<seq>/gt/``. Sequences are named ``<class>/<seq>``.

Everywhere, a mask or flow belongs to the frame with the same file stem (FBMS masks excepted), a
flow image is also looked for in ``<root>/<seq>/flow/`` (the generic output of
``hmhi flow precompute``), and hidden files (such as unfinished atomic writes) are ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from hmhi_cli.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
FRAME_DIR_NAMES = ("frame", "frames", "images", "imgs", "jpegimages")
MASK_DIR_NAMES = ("mask", "masks", "gt", "groundtruth", "annotations")
FLOW_DIR_NAMES = ("flowimages", "flow", "flows", "jpegflows")
LAYOUTS = ("davis", "reference", "fbms", "ytobj")
FBMS_SPLITS = ("testset", "trainingset")
DAVIS_SEQUENCE_LIST = Path("ImageSets") / "2016" / "val.txt"

_DIGITS = re.compile(r"(\d+)")
_LAST_NUMBER = re.compile(r"(\d+)\D*$")
_GT_SUFFIX = re.compile(r"_gt$", re.IGNORECASE)
_RESOLUTION_NAME = re.compile(r"^(\d+p|full-resolution)$", re.IGNORECASE)


@dataclass(frozen=True)
class Sequence:
    """One video of a dataset."""

    name: str
    frames: list[Path]  # frame images in natural sort order (00002 < 00010, img2 < img10)
    annotations: dict[str, Path]  # frame stem -> ground-truth mask path; may be sparse or empty
    flows: dict[str, Path]  # frame stem -> precomputed flow image path; may be empty


@dataclass(frozen=True)
class _Listing:
    """The sequences a layout reader found: names in default order, and how to read each one."""

    default: list[str]
    readers: dict[str, Callable[[], Sequence]]


def natural_sort_key(path_or_str: str | os.PathLike) -> tuple:
    """Sort key that orders digit runs by value: ``img2 < img10``, ``00002 < 00010``; case-insensitive.

    A path is compared a folder at a time, and a name by its stem before its suffix, so that
    ``good.mp4 < good2.mp4`` as ``good < good2``.
    """
    text = os.fspath(path_or_str)
    return tuple(tuple(_digits_key(piece) for piece in os.path.splitext(part)) for part in text.split(os.sep)), text


def _digits_key(text: str) -> tuple:
    return tuple(int(part) if index % 2 else part.casefold() for index, part in enumerate(_DIGITS.split(text)))


def _subdirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        (child for child in folder.iterdir() if child.is_dir() and not child.name.startswith(".")),
        key=lambda child: natural_sort_key(child.name),
    )


def _image_files(folder: Path | None) -> list[Path]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(
        (
            child
            for child in folder.iterdir()
            if child.suffix.lower() in IMAGE_SUFFIXES and not child.name.startswith(".") and child.is_file()
        ),
        key=lambda child: natural_sort_key(child.name),
    )


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The ``.jpg``/``.jpeg``/``.png`` files (any case) directly in ``folder``, in natural order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    images = _image_files(folder)
    if not images:
        raise InputError(f"no .jpg/.jpeg/.png images in {folder}")
    return images


def _child_dir(parent: Path, names: tuple[str, ...]) -> Path | None:
    """The subfolder of ``parent`` whose lower-cased name comes first in ``names``, if any."""
    by_name = {child.name.casefold(): child for child in _subdirs(parent)}
    return next((by_name[name] for name in names if name in by_name), None)


def _masks_by_stem(frames: list[Path], masks: list[Path]) -> dict[str, Path]:
    stems = {frame.stem for frame in frames}
    by_stem: dict[str, Path] = {}
    for mask in masks:
        if mask.stem not in stems:
            raise InputError(f"ground-truth mask {mask} has no frame named {mask.stem} in {frames[0].parent}")
        by_stem.setdefault(mask.stem, mask)
    return by_stem


def _flows_by_stem(frames: list[Path], candidates: Iterable[Path | None]) -> dict[str, Path]:
    """Flow images of the first candidate folder that holds any, keyed by the frame they belong to."""
    stems = {frame.stem for frame in frames}
    for folder in candidates:
        flows = _image_files(folder)
        if flows:
            by_stem: dict[str, Path] = {}
            for flow in flows:
                if flow.stem in stems:
                    by_stem.setdefault(flow.stem, flow)
            return by_stem
    return {}


def _generic_flow_dir(root: Path, name: str) -> Path | None:
    return _child_dir(root / name, FLOW_DIR_NAMES)


def _read_sequence(name: str, frame_dir: Path, mask_dir: Path | None, flow_dirs: Iterable[Path | None]) -> Sequence:
    frames = list_images(frame_dir)
    return Sequence(
        name=name,
        frames=frames,
        annotations=_masks_by_stem(frames, _image_files(mask_dir)),
        flows=_flows_by_stem(frames, flow_dirs),
    )


# --- DAVIS -------------------------------------------------------------------------------------


def _is_davis(root: Path) -> bool:
    return any(_RESOLUTION_NAME.match(child.name) for child in _subdirs(root / "JPEGImages"))


def _davis_flow_dirs(root: Path, resolution: str, name: str) -> list[Path | None]:
    candidates: list[Path | None] = [root / "FlowImages" / resolution / name]
    for folder in _subdirs(root):
        if folder.name.casefold() in FLOW_DIR_NAMES:
            candidates += [folder / resolution / name, folder / name]
    candidates.append(_generic_flow_dir(root, name))
    return candidates


def _read_davis(root: Path, resolution: str) -> _Listing:
    frames_root = root / "JPEGImages" / resolution
    if not frames_root.is_dir():
        found = ", ".join(child.name for child in _subdirs(root / "JPEGImages")) or "none"
        raise InputError(f"no {frames_root} (resolutions found: {found})")
    masks_root = root / "Annotations" / resolution
    names = [folder.name for folder in _subdirs(frames_root)]
    sequence_list = root / DAVIS_SEQUENCE_LIST
    if sequence_list.is_file():
        default = [line.strip() for line in sequence_list.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        default = names

    def reader(name: str) -> Callable[[], Sequence]:
        return lambda: _read_sequence(
            name, frames_root / name, masks_root / name, _davis_flow_dirs(root, resolution, name)
        )

    return _Listing(default, {name: reader(name) for name in names})


# --- FBMS --------------------------------------------------------------------------------------


def _fbms_split(root: Path) -> Path:
    return _child_dir(root, FBMS_SPLITS) or root


def _is_fbms(root: Path) -> bool:
    if _child_dir(root, FBMS_SPLITS) is not None:
        return True
    return any(_child_dir(folder, ("groundtruth",)) and _image_files(folder) for folder in _subdirs(root))


def _number(stem: str) -> int | None:
    match = _LAST_NUMBER.search(stem)
    return int(match.group(1)) if match else None


def _read_fbms_sequence(root: Path, folder: Path) -> Sequence:
    frames = list_images(folder)
    by_number: dict[int, Path] = {}
    for frame in frames:
        number = _number(frame.stem)
        if number is not None:
            by_number.setdefault(number, frame)
    annotations: dict[str, Path] = {}
    for mask in _image_files(_child_dir(folder, ("groundtruth",))):
        number = _number(_GT_SUFFIX.sub("", mask.stem))
        if number not in by_number:
            raise InputError(f"ground-truth mask {mask} has no frame numbered {number} in {folder}")
        annotations[by_number[number].stem] = mask
    flows = _flows_by_stem(frames, [_child_dir(folder, FLOW_DIR_NAMES), _generic_flow_dir(root, folder.name)])
    return Sequence(name=folder.name, frames=frames, annotations=annotations, flows=flows)


def _read_fbms(root: Path, resolution: str) -> _Listing:
    split = _fbms_split(root)
    folders = {folder.name: folder for folder in _subdirs(split) if _image_files(folder)}

    def reader(folder: Path) -> Callable[[], Sequence]:
        return lambda: _read_fbms_sequence(root, folder)

    return _Listing(list(folders), {name: reader(folder) for name, folder in folders.items()})


# --- reference and YouTube-Objects: per-kind or per-sequence folders, 1 or 2 levels of names ----


def _nested_dirs(folder: Path, depth: int) -> list[Path]:
    """Paths (relative to ``folder``) of the folders exactly ``depth`` levels below it."""
    level = [Path()]
    for _ in range(depth):
        level = [relative / child.name for relative in level for child in _subdirs(folder / relative)]
    return level


def _kind_first_names(root: Path, depth: int) -> list[Path]:
    frames_root = _child_dir(root, FRAME_DIR_NAMES)
    if frames_root is None:
        return []
    return [relative for relative in _nested_dirs(frames_root, depth) if _image_files(frames_root / relative)]


def _sequence_first_names(root: Path, depth: int) -> list[Path]:
    return [relative for relative in _nested_dirs(root, depth) if _child_dir(root / relative, FRAME_DIR_NAMES)]


def _read_nested(root: Path, depth: int) -> _Listing:
    readers: dict[str, Callable[[], Sequence]] = {}
    frames_root = _child_dir(root, FRAME_DIR_NAMES)
    if frames_root is not None:
        masks_root = _child_dir(root, MASK_DIR_NAMES)
        flow_roots = [folder for folder in _subdirs(root) if folder.name.casefold() in FLOW_DIR_NAMES]

        def kind_first_reader(relative: Path) -> Callable[[], Sequence]:
            name = relative.as_posix()
            return lambda: _read_sequence(
                name,
                frames_root / relative,
                masks_root / relative if masks_root else None,
                [flow_root / relative for flow_root in flow_roots] + [_generic_flow_dir(root, name)],
            )

        for relative in _kind_first_names(root, depth):
            readers[relative.as_posix()] = kind_first_reader(relative)
    else:

        def sequence_first_reader(folder: Path, name: str) -> Callable[[], Sequence]:
            return lambda: _read_sequence(
                name,
                _child_dir(folder, FRAME_DIR_NAMES),
                _child_dir(folder, MASK_DIR_NAMES),
                [_child_dir(folder, FLOW_DIR_NAMES)],
            )

        for relative in _sequence_first_names(root, depth):
            readers[relative.as_posix()] = sequence_first_reader(root / relative, relative.as_posix())
    return _Listing(list(readers), readers)


def _read_reference(root: Path, resolution: str) -> _Listing:
    return _read_nested(root, depth=1)


def _read_ytobj(root: Path, resolution: str) -> _Listing:
    return _read_nested(root, depth=2)


_READERS: dict[str, Callable[[Path, str], _Listing]] = {
    "davis": _read_davis,
    "reference": _read_reference,
    "fbms": _read_fbms,
    "ytobj": _read_ytobj,
}


def _existing_dir(root: str | os.PathLike) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"dataset folder not found: {root}")
    return root


def detect_layout(root: str | os.PathLike) -> str:
    """Which layout ``root`` uses: ``"davis"``, ``"reference"``, ``"fbms"`` or ``"ytobj"`` (see the module doc)."""
    root = _existing_dir(root)
    if _is_davis(root):
        return "davis"
    if _is_fbms(root):
        return "fbms"
    if _kind_first_names(root, 1) or _sequence_first_names(root, 1):
        return "reference"
    if _kind_first_names(root, 2) or _sequence_first_names(root, 2):
        return "ytobj"
    raise InputError(
        f"cannot tell the dataset layout of {root}: looked for DAVIS (JPEGImages/480p/<seq>/), "
        "FBMS (Testset/<seq>/GroundTruth/), per-sequence folders (<seq>/frame/), per-kind folders "
        "(frame/<seq>/ or JPEGImages/<seq>/) and YouTube-Objects (<class>/<seq>/frames/ or JPEGImages/<class>/<seq>/)"
    )


def load_dataset(
    root: str | os.PathLike,
    layout: str = "auto",
    sequences: list[str] | None = None,
    resolution: str = "480p",
) -> list[Sequence]:
    """Read the sequences of the dataset at ``root``.

    ``layout`` is one of :data:`LAYOUTS` or ``"auto"`` (:func:`detect_layout`). ``sequences``
    picks sequences by name, in the order given; by default every sequence of the layout's
    default list is read. ``resolution`` names the DAVIS resolution folder.
    """
    root = _existing_dir(root)
    if layout == "auto":
        layout = detect_layout(root)
    elif layout not in _READERS:
        raise InputError(f"unknown dataset layout {layout!r}; expected auto, {', '.join(LAYOUTS)}")
    listing = _READERS[layout](root, resolution)
    names = listing.default if sequences is None else list(dict.fromkeys(sequences))
    missing = [name for name in names if name not in listing.readers]
    if missing:
        noun = "sequence" if len(missing) == 1 else "sequences"
        raise InputError(f"{noun} not found in {root} ({layout} layout): {', '.join(missing)}")
    if not names:
        raise InputError(f"no sequences found in {root} ({layout} layout)")
    return [listing.readers[name]() for name in names]
