"""Video files with alpha (VP9 WebM, ProRes 4444 MOV) and lossless FFV1 Matroska files; written
like the other writers of :mod:`hmhi_cli.video.writers` (temporary file, renamed when complete)."""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Any

import numpy as np
from av.video.reformatter import ColorRange

from hmhi_cli.errors import InputError
from hmhi_cli.video.compose import as_uint8_mask
from hmhi_cli.video.writers import (
    FFV1_OPTIONS,
    LOSSLESS_PIXEL_FORMATS,
    VideoFileWriter,
    lossless_frame,
    rgb_frame,
    tag_bt709,
)

VP9_CRF = 18
"""libvpx-vp9 CRF of the alpha WebM unless told otherwise."""
CRF_RANGE = (0, 51)
"""CRFs accepted for every lossy encoder (x264 takes 0-51, libvpx-vp9 0-63)."""
PRORES_PROFILES = ("4444", "4444xq")
"""The ProRes profiles that carry alpha (prores_ks)."""


def premultiplied(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rgb`` (HxWx3 uint8) multiplied by ``alpha`` (HxW uint8, 255 = opaque), rounded."""
    weight = alpha.astype(np.uint16)[..., None]
    return ((rgb.astype(np.uint16) * weight + 127) // 255).astype(np.uint8)


class AlphaVideoWriter(VideoFileWriter):
    """The frames with a transparency matte.

    ``.webm``: VP9 (libvpx-vp9, yuva420p, CRF ``crf``, default 18); FFmpeg's built-in VP9 decoder
    ignores the alpha, decode with libvpx-vp9 to see it. ``.mov``: ProRes ``prores_profile``
    (``4444`` or ``4444xq``; prores_ks, yuva444p10le). Colours are BT.709 limited range and tagged
    so. Alpha is straight (colours as given) unless ``premultiply``, which multiplies the colours
    by the alpha before encoding (premultiplied on black).
    """

    allowed_suffixes = (".webm", ".mov")

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        *,
        fps: Fraction | float = Fraction(25),
        time_base: Fraction | None = None,
        crf: int = VP9_CRF,
        prores_profile: str = "4444",
        premultiply: bool = False,
    ) -> None:
        if prores_profile not in PRORES_PROFILES:
            raise InputError(f"--prores-profile must be {' or '.join(PRORES_PROFILES)} (the profiles with alpha), "
                             f"got {prores_profile}")
        self.crf = crf
        self.prores_profile = prores_profile
        self.premultiply = premultiply
        super().__init__(path, width, height, fps=fps, time_base=time_base)

    def _encoding(self) -> tuple[str, str]:
        if self.path.suffix.lower() == ".webm":
            return "libvpx-vp9", "yuva420p"
        return "prores_ks", "yuva444p10le"

    def _codec_options(self) -> dict[str, str]:
        if self.codec == "libvpx-vp9":
            return {"crf": str(self.crf), "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"}
        return {"profile": self.prores_profile, "vendor": "apl0"}

    def _configure(self, stream: Any) -> None:
        tag_bt709(stream)

    def write(
        self, rgb: np.ndarray, alpha: np.ndarray, pts: int | None = None, duration: int | None = None
    ) -> None:
        """Append one HxWx3 uint8 RGB frame with its HxW matte (uint8 0..255 = opaque, bool, or float 0..1)."""
        alpha = as_uint8_mask(alpha)
        self._check_shape(rgb, 3, "rgb")
        self._check_shape(alpha, None, "alpha")
        colours = premultiplied(rgb, alpha) if self.premultiply else rgb
        self._encode(rgb_frame(colours, self.pix_fmt, alpha), pts, duration)


class LosslessVideoWriter(VideoFileWriter):
    """A lossless ``.mkv`` file: FFV1 as :class:`~hmhi_cli.video.writers.StreamVideoWriter` codes it
    (``channels`` 1 grey, 3 RGB, 4 RGBA with straight alpha; every pixel exact)."""

    allowed_suffixes = (".mkv",)
    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        *,
        channels: int,
        fps: Fraction | float = Fraction(25),
        time_base: Fraction | None = None,
    ) -> None:
        if channels not in LOSSLESS_PIXEL_FORMATS:
            raise ValueError(f"channels must be 1, 3 or 4, got {channels}")
        self.channels = channels
        super().__init__(path, width, height, fps=fps, time_base=time_base)

    def _encoding(self) -> tuple[str, str]:
        return "ffv1", LOSSLESS_PIXEL_FORMATS[self.channels]

    def _codec_options(self) -> dict[str, str]:
        return dict(FFV1_OPTIONS)

    def _configure(self, stream: Any) -> None:
        stream.codec_context.color_range = ColorRange.JPEG.value

    def write(self, image: np.ndarray, pts: int | None = None, duration: int | None = None) -> None:
        """Append one uint8 frame: HxW grey, HxWx3 RGB or HxWx4 RGBA, as ``channels`` says."""
        self._check_shape(image, None if self.channels == 1 else self.channels, "frame")
        self._encode(lossless_frame(image, self.pix_fmt), pts, duration)
