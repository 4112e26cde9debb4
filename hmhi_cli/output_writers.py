"""The writers of a run's outputs: each output path gets the writer its layer and suffix call for
(see :mod:`hmhi_cli.outputs`), and each frame's layers are made once for all the outputs showing them.

Folder (no suffix): numbered PNGs (grey mask or soft map; RGBA alpha, straight; RGBA foreground,
straight). ``.mp4``/``.mov`` without alpha: H.264. ``.webm``: VP9 with straight alpha. ``.mov``
with alpha: ProRes 4444, straight for ``alpha``, premultiplied on black for ``foreground``.
``.mkv``: FFV1, lossless, straight alpha.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hmhi_cli.matte import FrameMatte
from hmhi_cli.outputs import KEY_LAYERS, STREAM_CHANNELS
from hmhi_cli.video import (
    AlphaVideoWriter,
    Background,
    BackgroundPlayer,
    Frame,
    FrameSource,
    LosslessVideoWriter,
    MaskVideoWriter,
    PngSequenceWriter,
    RgbVideoWriter,
    composite,
    overlay,
)

Write = Callable[[Frame, np.ndarray], None]

PREMULTIPLIED_LAYERS = {(".mov", "foreground")}
"""(suffix, layer) pairs written premultiplied: the ProRes foreground, as editors read ProRes
layers rendered by Apple's and Adobe's tools (premultiplied on black)."""


def layer_image(layer: str, frame: Frame, matte: FrameMatte, backdrop: Callable[[], np.ndarray]) -> np.ndarray:
    """One frame's ``layer`` as a uint8 array: HxW (``mask``, ``soft``), HxWx3 RGB (``composite``,
    ``overlay``) or HxWx4 RGBA with straight alpha (``alpha``, ``foreground``). ``backdrop()``
    gives the composite's background."""
    if layer == "mask":
        return matte.mask
    if layer == "soft":
        return matte.soft
    if layer == "alpha":
        return np.dstack([frame.rgb, matte.alpha])
    if layer == "foreground":
        return np.dstack([matte.foreground, matte.alpha])
    if layer == "composite":
        return composite(frame.rgb, matte.alpha, backdrop())
    return overlay(frame.rgb, matte.mask)


def _video_writer(path: Path, layer: str, source: FrameSource, crf: int | None, prores_profile: str) -> Any:
    suffix = path.suffix.lower()
    quality = {} if crf is None else {"crf": crf}
    if suffix == ".mkv":
        if layer == "mask":
            return MaskVideoWriter.for_source(path, source, lossless=True)
        return LosslessVideoWriter.for_source(path, source, channels=STREAM_CHANNELS[layer])
    if layer in ("alpha", "foreground"):
        return AlphaVideoWriter.for_source(path, source, prores_profile=prores_profile,
                                           premultiply=(suffix, layer) in PREMULTIPLIED_LAYERS, **quality)
    if layer == "mask":
        return MaskVideoWriter.for_source(path, source, **quality)
    return RgbVideoWriter.for_source(path, source, **quality)


class LayerWriters:
    """Open writers for ``paths`` (output key -> path) inside ``stack``; :meth:`write` puts one
    frame into all of them. ``background`` (for a composite) plays from the source's first frame."""

    def __init__(self, stack: contextlib.ExitStack, paths: Mapping[str, Path], source: FrameSource,
                 background: Background | None, crf: int | None = None, prores_profile: str = "4444") -> None:
        self._writers: list[tuple[str, Write]] = []
        layers = {key: KEY_LAYERS[key] for key in paths}
        self._player: BackgroundPlayer | None = None
        if "composite" in layers.values() and background is not None:
            self._player = background.player(source.height, source.width)
            stack.callback(self._player.close)
        for key, path in paths.items():
            layer = layers[key]
            if not path.suffix:
                png = stack.enter_context(PngSequenceWriter(path))
                self._writers.append((layer, lambda frame, image, png=png: png.write(frame.index, image)))
                continue
            writer = stack.enter_context(_video_writer(path, layer, source, crf, prores_profile))
            if isinstance(writer, AlphaVideoWriter):
                self._writers.append((layer, lambda frame, image, writer=writer: writer.write(
                    image[..., :3], image[..., 3], pts=frame.pts, duration=frame.duration)))
            else:
                self._writers.append((layer, lambda frame, image, writer=writer: writer.write(
                    image, pts=frame.pts, duration=frame.duration)))

    def write(self, frame: Frame, matte: FrameMatte) -> None:
        """Write ``frame``'s layers, each made once, to every output."""
        images: dict[str, np.ndarray] = {}
        for layer, write in self._writers:
            if layer not in images:
                images[layer] = layer_image(layer, frame, matte, lambda: self._player.for_frame(frame))
            write(frame, images[layer])
