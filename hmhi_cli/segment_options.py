"""What ``hmhi segment`` is asked to do: :class:`SegmentOptions`, checked as they are made, and
the warnings for options that do nothing with a given input and outputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hmhi_cli import runtime
from hmhi_cli.errors import InputError
from hmhi_cli.inference import resolve_device
from hmhi_cli.matte import MatteSettings
from hmhi_cli.outputs import KEY_LAYERS, check_kinds
from hmhi_cli.video import FrameSource, ImageFolderSource
from hmhi_cli.video.alpha_writers import CRF_RANGE, PRORES_PROFILES
from hmhi_cli.video.trim import Trim
from hmhi_cli.weights import MAX_INPUT_SIZE

MAX_SIZE = MAX_INPUT_SIZE
FPS_RANGE = (0.01, 1000.0)
"""Frame rates accepted for an image-folder input."""


@dataclass
class SegmentOptions:
    """How to segment; ``None`` sizes and limits come from the weights file."""

    outputs: tuple[str, ...] = ()
    """Kinds (:data:`OUTPUT_KINDS`); empty: the target's default (a folder's :data:`DEFAULT_OUTPUTS`,
    a file's kind from its suffix, the stream's mask video)."""
    weights: Path | None = None
    size: int | None = None
    memory_limit: int | None = None
    threshold: float = 0.5
    device: str = "auto"
    precision: str = "fp32"
    flow: str = "auto"
    raft_weights: Path | None = None
    flow_dir: Path | None = None
    lossless: bool = False
    background: str | None = None
    overwrite: bool = False
    fps: float | None = None
    audio: bool = True
    """Keep the source's sound in ``overlay.mp4`` and ``composite.mp4``."""
    matte: MatteSettings = field(default_factory=MatteSettings)
    """The matte of the alpha outputs and the composite (see :mod:`hmhi_cli.matte`)."""
    crf: int | None = None
    """CRF of the lossy encoders (H.264, VP9); None: each one's default."""
    prores_profile: str = "4444"
    trim: Trim | None = None
    """The part of each video to segment (see :mod:`hmhi_cli.video.trim`); None: all of it."""

    def __post_init__(self) -> None:
        check_kinds(self.outputs, bool(self.background))
        low, high = CRF_RANGE
        if self.crf is not None and not low <= self.crf <= high:
            raise InputError(f"--crf must be from {low} (best) to {high} (smallest), got {self.crf}")
        if self.prores_profile not in PRORES_PROFILES:
            raise InputError(f"--prores-profile must be {' or '.join(PRORES_PROFILES)} (the ProRes profiles with "
                             f"alpha), got {self.prores_profile}")
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"--threshold must be strictly between 0 and 1, got {self.threshold}")
        if self.size is not None and not (32 <= self.size <= MAX_SIZE and self.size % 32 == 0):
            raise InputError(f"--size must be a multiple of 32 from 32 to {MAX_SIZE}, got {self.size} "
                             "(memory grows with the square of the size: 4096 takes over 12 GB)")
        if self.memory_limit is not None and self.memory_limit < 1:
            raise InputError(f"--memory-limit must be at least 1 frame, got {self.memory_limit}")
        low, high = FPS_RANGE
        if self.fps is not None and not low <= self.fps <= high:
            raise InputError(f"--fps must be from {low:g} to {high:g} frames per second, got {self.fps}")
        if self.trim is not None and self.flow_dir is not None:
            raise InputError("--flow-dir holds the flow of a whole video: it cannot be combined with "
                             "--start, --duration or --frames")



Encoded = list[tuple[str, str]]
"""The outputs of a run as (layer, suffix) pairs; a suffix "" is a folder of PNGs."""


def encoded_outputs(paths: Mapping[str, Path]) -> Encoded:
    """The (layer, suffix) pairs of planned output paths."""
    return [(KEY_LAYERS[key], path.suffix.lower()) for key, path in paths.items()]


def carries_audio(outputs: Encoded) -> bool:
    """Whether ``outputs`` include a video that carries the source's sound (overlay, composite)."""
    return any(layer in ("overlay", "composite") for layer, _ in outputs)


def run_warnings(options: SegmentOptions, source: FrameSource, outputs: Encoded, mode: str = "folder") -> list[str]:
    """One sentence for each option given that does nothing with this input and these outputs
    (``mode``: ``folder``, ``file`` for -o FILE, ``stream`` for -o -), and for sound that cannot be kept."""
    warnings = []
    layers = {layer for layer, _ in outputs}
    streaming = mode == "stream"
    if options.lossless and mode != "folder":
        warnings.append(f"--lossless has no effect with -o {'-' if streaming else 'FILE'}: "
                        + ("the stream is always lossless" if streaming else "the suffix chooses (.mkv is lossless)"))
    elif options.lossless and "mask" not in {layer for layer, suffix in outputs if suffix}:
        warnings.append("--lossless has no effect without --save mask-video")
    if options.background and "composite" not in layers:
        warnings.append("--background has no effect without a composite (--save composite, or alpha alone)")
    if options.matte != MatteSettings() and not layers & {"alpha", "foreground", "composite"}:
        warnings.append("--matte, --choke, --feather and --invert have no effect without --save alpha, "
                        "foreground or composite")
    if options.crf is not None and not any(suffix in (".mp4", ".webm") or (suffix == ".mov" and layer not in (
            "alpha", "foreground")) for layer, suffix in outputs):
        warnings.append("--crf has no effect: no H.264 (.mp4, .mov) or VP9 (.webm) output")
    if options.prores_profile != "4444" and (".mov", "alpha") not in {(s, l) for l, s in outputs} \
            and (".mov", "foreground") not in {(s, l) for l, s in outputs}:
        warnings.append("--prores-profile has no effect: no ProRes (.mov with alpha) output")
    if options.fps is not None and not isinstance(source, ImageFolderSource):
        warnings.append("--fps has no effect on a video input: videos keep their own timing")
    if not options.audio and (streaming or not carries_audio(outputs)):
        warnings.append("--no-audio has no effect: only the overlay and composite videos carry sound")
    if options.audio and not streaming and carries_audio(outputs) and source.audio_codec and not source.rewindable:
        warnings.append(f"the sound of {source.label} is not kept: a pipe is read once; "
                        "pipe an MP4 or give the file's name to keep it")
    return warnings


def precision_warnings(options: SegmentOptions) -> list[str]:
    """A sentence when the precision asked for is slow on the device: bf16 on a CPU that has no bf16 instructions."""
    if options.precision != "bf16" or resolve_device(options.device).type != "cpu" or runtime.cpu_has_native_bf16():
        return []
    return ["--precision bf16 will be slow: this CPU has no native bf16 (AVX-512 BF16 or AMX), so it is emulated, "
            "several times slower than fp32; use --precision fp32"]
