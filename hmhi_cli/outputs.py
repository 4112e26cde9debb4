"""What ``hmhi segment`` writes: the output kinds ``--save`` names, and the one place that turns
them into the paths of a run, into a folder or into one video file (``-o cut.mov``).

Every output shows one *layer* of each frame: ``mask`` (0/255), ``soft`` (the raw soft map),
``alpha`` (the frame with the matte as alpha), ``foreground`` (the object's own colour with the
matte as alpha), ``composite`` (the object on ``--background``) or ``overlay`` (the mask tinted
over the frame). A path without a video suffix is a folder of PNGs; a video's codec follows
from its layer and suffix (see :mod:`hmhi_cli.segment`).
"""

from __future__ import annotations

import os
from pathlib import Path

from hmhi_cli.errors import InputError

KIND_GROUPS: dict[str, tuple[str, ...]] = {
    "alpha": ("alpha-png", "alpha-webm", "alpha-mov"),
    "foreground": ("foreground-png", "foreground-mov"),
}
"""Kinds that stand for several outputs: ``alpha`` all three alpha formats, ``foreground`` both foreground ones."""
OUTPUT_KINDS = ("masks", "probs", "mask-video", "alpha", "alpha-png", "alpha-webm", "alpha-mov", "composite",
                "foreground", "foreground-png", "foreground-mov", "overlay")
DEFAULT_OUTPUTS = ("masks", "mask-video")
STREAM_DEFAULT = "mask-video"

FOLDER_OUTPUTS: dict[str, tuple[str, str, str]] = {
    "masks": ("masks", "mask", "masks"),
    "probs": ("probs", "soft", "probs"),
    "mask-video": ("mask_video", "mask", "mask.mp4"),
    "alpha-png": ("alpha_png", "alpha", "alpha"),
    "alpha-webm": ("alpha_webm", "alpha", "alpha.webm"),
    "alpha-mov": ("alpha_mov", "alpha", "alpha.mov"),
    "composite": ("composite", "composite", "composite.mp4"),
    "foreground-png": ("foreground_png", "foreground", "foreground"),
    "foreground-mov": ("foreground_mov", "foreground", "foreground.mov"),
    "overlay": ("overlay", "overlay", "overlay.mp4"),
}
"""For each single output kind: its key (in ``--json``), its layer and its name in the output folder."""
KEY_LAYERS = {key: layer for key, layer, _ in FOLDER_OUTPUTS.values()} | {"alpha": "alpha", "foreground": "foreground"}
"""The layer of each output key (those of folders, and ``alpha``/``foreground`` of a file)."""
STREAM_CHANNELS = {"mask": 1, "soft": 1, "alpha": 4, "foreground": 4, "composite": 3, "overlay": 3}
"""Channels of each layer in the one video ``-o -`` streams."""

FILE_SUFFIXES = {
    "mask": (".mp4", ".mov", ".mkv"),
    "composite": (".mp4", ".mov", ".mkv"),
    "overlay": (".mp4", ".mov", ".mkv"),
    "alpha": (".mov", ".webm", ".mkv"),
    "foreground": (".mov", ".webm", ".mkv"),
}
"""What one video file may hold: .mp4 and .mov H.264 (no alpha), .webm VP9 with alpha, .mov
ProRes 4444 with alpha, .mkv FFV1 (lossless, alpha included)."""
VIDEO_SUFFIXES = frozenset(suffix for suffixes in FILE_SUFFIXES.values() for suffix in suffixes)
_FILE_KEYS = {"mask": "mask_video", "composite": "composite", "overlay": "overlay", "alpha": "alpha",
              "foreground": "foreground"}
_PNG_KINDS = ("masks", "probs", "alpha-png", "foreground-png")
_FIXED_SUFFIXES = {"alpha-webm": ".webm", "alpha-mov": ".mov", "foreground-mov": ".mov"}
_VIDEO_ALTERNATIVE = {"masks": "mask-video", "probs": "mask-video", "alpha-png": "alpha",
                      "foreground-png": "foreground"}


def is_file_target(out: str | Path) -> bool:
    """Whether ``-o out`` names one video file: a known video suffix, not an existing folder, and
    no ``/`` at the end (``-o out.mov/`` is a folder)."""
    path = Path(out)
    return path.suffix.lower() in VIDEO_SUFFIXES and not path.is_dir() and not str(out).endswith(("/", os.sep))


def check_kinds(requested: tuple[str, ...], background: bool) -> None:
    """Raise :class:`InputError` for an unknown kind, or a composite with nothing to put it on."""
    unknown = [kind for kind in requested if kind not in OUTPUT_KINDS]
    if unknown:
        raise InputError(f"unknown output {', '.join(unknown)}; choose from {', '.join(OUTPUT_KINDS)}")
    if "composite" in requested and not background:
        raise InputError("--save composite needs --background COLOUR, IMAGE or VIDEO")


def folder_kinds(requested: tuple[str, ...], background: bool) -> tuple[str, ...]:
    """The single kinds a folder run writes: groups expanded, and a bare ``alpha`` with a
    background (and no ``composite`` asked for) meaning the composite, as in earlier versions."""
    kinds: list[str] = []
    for kind in requested or DEFAULT_OUTPUTS:
        if kind == "alpha" and background and "composite" not in requested:
            kinds.append("composite")
        else:
            kinds.extend(KIND_GROUPS.get(kind, (kind,)))
    return tuple(dict.fromkeys(kinds))


def _family(kind: str, requested: tuple[str, ...], background: bool) -> str:
    """The layer one kind shows, in a run that writes one video (a file, or ``-o -``)."""
    if kind == "alpha" and background and "composite" not in requested:
        return "composite"
    return FOLDER_OUTPUTS[kind][1] if kind in FOLDER_OUTPUTS else kind


def single_layer(requested: tuple[str, ...], background: bool) -> str | None:
    """The one layer that ``requested`` names for a run into one video, or None when the kinds
    name more than one."""
    layers = dict.fromkeys(_family(kind, requested, background) for kind in requested)
    return next(iter(layers)) if len(layers) == 1 else None


def file_layer(requested: tuple[str, ...], background: bool, path: Path) -> str:
    """The layer ``-o path`` (one video file) holds: from ``requested``, else from the suffix
    (.mp4/.mkv the mask video, .mov/.webm the alpha video; with a background, the composite).
    Raises :class:`InputError` for what one file of this suffix cannot hold."""
    suffix = path.suffix.lower()
    if not requested:
        layer = "composite" if background else ("alpha" if suffix in (".mov", ".webm") else "mask")
    else:
        layer = single_layer(requested, background)
        if layer is None:
            raise InputError(f"-o {path} holds one kind of output, not {','.join(requested)}: "
                             "choose one with --save, or give a folder")
    png = [kind for kind in requested if kind in _PNG_KINDS]
    if png:
        raise InputError(f"{png[0]} is a folder of PNGs, not a video: -o {path} takes "
                         f"{_VIDEO_ALTERNATIVE[png[0]]}, or give a folder")
    for kind in requested:
        fixed = _FIXED_SUFFIXES.get(kind)
        if fixed and fixed != suffix:
            raise InputError(f"--save {kind} writes a {fixed} file, not {path}")
    allowed = FILE_SUFFIXES[layer]
    if suffix not in allowed:
        if layer in ("alpha", "foreground") and suffix == ".mp4":
            raise InputError(f"MP4 cannot carry alpha: write {layer} as .mov (ProRes 4444), .webm (VP9) "
                             "or .mkv (FFV1), or give --background for a composite")
        raise InputError(f"-o {path}: {layer} is written as {', '.join(allowed)}")
    return layer


def planned_outputs(out: Path, requested: tuple[str, ...], lossless: bool, background: str | None,
                    single_file: bool = False) -> dict[str, Path]:
    """Final paths of every output a run writes, by key: into the folder ``out``, or, with
    ``single_file``, exactly the one video file ``out`` (see :func:`file_layer`)."""
    if single_file:
        return {_FILE_KEYS[file_layer(requested, bool(background), out)]: out}
    paths: dict[str, Path] = {}
    for kind in folder_kinds(requested, bool(background)):
        key, _, name = FOLDER_OUTPUTS[kind]
        paths[key] = out / ("mask.mkv" if kind == "mask-video" and lossless else name)
    return paths
