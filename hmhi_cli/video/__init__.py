"""Video and image-sequence input/output for hmhi: PyAV for every video, OpenCV for image files.

Read with :func:`open_source`; write masks, cut-outs and previews with the writers; blend
frames with :func:`composite` and :func:`overlay`; put the source's sound into a rendered MP4
with :func:`add_audio`.
"""

from hmhi_cli.video.audio import MP4_AUDIO_CODECS, add_audio

from hmhi_cli.video.alpha_writers import AlphaVideoWriter, LosslessVideoWriter
from hmhi_cli.video.background import (
    COLOR_NAMES,
    Background,
    BackgroundPlayer,
    Color,
    cover,
    parse_background,
    parse_color,
)
from hmhi_cli.video.compose import DEFAULT_OVERLAY_COLOR, as_uint8_mask, composite, overlay
from hmhi_cli.video.source import (
    DEFAULT_IMAGE_FPS,
    IMAGE_SUFFIXES,
    Frame,
    FrameSource,
    ImageFolderSource,
    VideoSource,
    clockwise_rotation,
    natural_key,
    open_source,
    read_image,
    upright,
)
from hmhi_cli.video.writers import (
    MaskVideoWriter,
    OverlayVideoWriter,
    PngSequenceWriter,
    RgbVideoWriter,
    StreamVideoWriter,
    check_writable,
    write_image,
)

__all__ = [
    "COLOR_NAMES",
    "DEFAULT_IMAGE_FPS",
    "DEFAULT_OVERLAY_COLOR",
    "IMAGE_SUFFIXES",
    "MP4_AUDIO_CODECS",
    "AlphaVideoWriter",
    "Background",
    "BackgroundPlayer",
    "Color",
    "Frame",
    "FrameSource",
    "ImageFolderSource",
    "LosslessVideoWriter",
    "MaskVideoWriter",
    "OverlayVideoWriter",
    "PngSequenceWriter",
    "RgbVideoWriter",
    "StreamVideoWriter",
    "VideoSource",
    "add_audio",
    "as_uint8_mask",
    "check_writable",
    "clockwise_rotation",
    "composite",
    "cover",
    "natural_key",
    "open_source",
    "overlay",
    "parse_background",
    "parse_color",
    "read_image",
    "upright",
    "write_image",
]
