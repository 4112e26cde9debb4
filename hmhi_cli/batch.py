"""Many videos in one run: ``hmhi segment a.mp4 b.mov clips/ -o out/`` segments each video into
``out/<name>/`` with one loading of the weights.

The videos are sorted (natural order of their paths), so that every machine given the same
command line sees the same list, and ``--shard i/n`` picks every n-th video from the i-th
(0-based, as in ``hmhi flow precompute``): a Slurm array or an indexed Kubernetes job splits a
batch with no coordination. A batch resumes: a video whose outputs are all there is skipped
unless overwriting, and a video that fails is reported while the others go on.

Each output folder records which input and which settings made it (:mod:`hmhi_cli.reruns`), so
that a rerun never takes another video's outputs, or outputs of other settings, for this one's,
and a video's name depends only on the videos that share its stem (see :func:`collect_videos`).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from hmhi_cli.errors import HmhiError, InputError, OutputError
from hmhi_cli.flow import parse_shard
from hmhi_cli.interrupt import raise_if_stopped
from hmhi_cli.output_folder import remove_debris
from hmhi_cli.reruns import EarlierRun
from hmhi_cli.segment import OnFinish, OnFrame, OnMessage, OnStart, SegmentationEngine, SegmentResult
from hmhi_cli.video import DEFAULT_IMAGE_FPS, IMAGE_SUFFIXES, natural_key
from hmhi_cli.video.trim import Trim, expected_frames

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts",
                            ".m2ts", ".wmv", ".flv", ".3gp", ".ogv", ".mxf", ".nut", ".y4m"})
"""What a folder of videos is expanded to (its other files are left alone)."""
EARLIER_VERSION_NOTE = "made by an earlier version; settings unknown"

@dataclass(frozen=True)
class BatchVideo:
    """One video of a batch: a video file or a folder of images, and the name of its output subfolder."""

    source: Path
    name: str


@dataclass
class VideoOutcome:
    """How one video of a batch ended: ``status`` is ``done`` (with ``result``), ``skipped``
    (its outputs were all there; ``note`` says when their settings are unknown) or ``failed``
    (with ``error``, one line)."""

    video: BatchVideo
    output: Path
    status: str
    result: SegmentResult | None = None
    error: str | None = None
    note: str | None = None

    def to_dict(self) -> dict:
        data = {"name": self.video.name, "input": str(self.video.source), "output": str(self.output),
                "status": self.status}
        if self.result is not None:
            data.update(self.result.to_dict())
        if self.error is not None:
            data["error"] = self.error
        if self.note is not None:
            data["note"] = self.note
        return data


def _files(folder: Path, suffixes: frozenset[str]) -> list[Path]:
    return [path for path in folder.iterdir()
            if path.suffix.lower() in suffixes and not path.name.startswith(".") and path.is_file()]


def is_video_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder of videos (and holds no images, which would make it one video)."""
    folder = Path(path)
    return folder.is_dir() and not _files(folder, IMAGE_SUFFIXES) and bool(_files(folder, VIDEO_SUFFIXES))


def is_batch(sources: Sequence[str | os.PathLike]) -> bool:
    """Whether ``sources`` make a batch (outputs in one subfolder per video) rather than one video."""
    return len(sources) > 1 or is_video_folder(sources[0])


def collect_videos(sources: Sequence[str | os.PathLike]) -> list[BatchVideo]:
    """The videos of ``sources``, sorted by path in natural order, each once: a video file, a
    folder of images (one video), or each video of a folder of videos (not its subfolders).

    A video is named after its file's stem (an image folder after the folder). Videos that share
    a stem are named after their whole file name instead (``a.mp4``, ``a.mov``), and those that
    share that too after the folders above it, one more at a time (``clips-a.mp4``,
    ``other-a.mp4``): a name depends on no video but those with the same stem. Characters that
    cannot be printed become ``_``, and a name that would be empty or start with a dot (``.``,
    ``..``, a hidden name) gets a ``_`` in front. Raises :class:`InputError` for a missing input,
    a folder with neither images nor videos, and ``-`` (stdin) among other inputs.
    """
    if len(sources) > 1 and any(str(source) == "-" for source in sources):
        raise InputError("'-' (a video on stdin) cannot be combined with other inputs")
    found: dict[Path, Path] = {}
    for source in map(Path, sources):
        if not source.exists():
            raise InputError(f"input not found: {source}")
        if source.is_dir() and not _files(source, IMAGE_SUFFIXES):
            videos = _files(source, VIDEO_SUFFIXES)
            if not videos:
                raise InputError(f"no images (.jpg, .jpeg, .png) or videos in folder {source}")
        else:
            videos = [source]
        for video in videos:
            found.setdefault(video.resolve(), video)
    videos = sorted(found.values(), key=lambda path: natural_key(str(path)))
    return [BatchVideo(video, name) for video, name in zip(videos, _output_names(videos))]


def _output_names(videos: Sequence[Path]) -> list[str]:
    """Folder names for ``videos``, all different: see :func:`collect_videos`."""
    candidates = [_name_candidates(video) for video in videos]
    levels = [0] * len(videos)
    while True:
        names = [_safe_name(options[level]) for options, level in zip(candidates, levels)]
        counts = Counter(names)
        clashing = [index for index, name in enumerate(names)
                    if counts[name] > 1 and levels[index] + 1 < len(candidates[index])]
        if not clashing:
            break
        for index in clashing:
            levels[index] += 1
    taken: set[str] = set()
    unique = []
    for name in names:  # still the same (names that differ only in unprintable characters): -2, -3...
        chosen, number = name, 1
        while chosen in taken:
            number += 1
            chosen = f"{name}-{number}"
        taken.add(chosen)
        unique.append(chosen)
    return unique


def _name_candidates(video: Path) -> list[str]:
    """A video's possible names, plainest first: its stem, its file name, then the file name after
    the names of the folders above it, one more each time."""
    parts = [part for part in Path(os.path.abspath(video)).parts if part != os.sep]
    stem = parts[-1] if video.is_dir() else video.stem
    return [stem, *("-".join(parts[-count:]) for count in range(1, len(parts) + 1))]


def _safe_name(name: str) -> str:
    """``name`` as a plain folder name inside the output folder."""
    name = "".join(char if char.isprintable() else "_" for char in name)
    return f"_{name}" if not name or name.startswith(".") else name


def _outside(out_root: Path, out_dir: Path) -> str | None:
    """Why ``out_dir`` is not a folder of its own inside ``out_root`` (one line), or None."""
    if os.path.realpath(out_dir) == os.path.join(os.path.realpath(out_root), out_dir.name):
        return None
    what = "a link" if out_dir.is_symlink() else "not a folder inside it"
    return f"{out_dir} is {what}: each video's outputs go into a folder of its own inside {out_root}"


def stated_frames(video: BatchVideo, fps: float | None = None, trim: Trim | None = None) -> int | None:
    """How many frames ``video`` will give, from what it states without decoding (its images, its
    container's frame count) and ``trim``; None when it does not say (Matroska, WebM) or cannot be read.
    ``fps``: the frame rate of a folder of images (default 25)."""
    if video.source.is_dir():
        return expected_frames(len(_files(video.source, IMAGE_SUFFIXES)), Fraction(fps or DEFAULT_IMAGE_FPS), trim)
    try:
        with av.open(str(video.source)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or DEFAULT_IMAGE_FPS
            return expected_frames(stream.frames or None, Fraction(rate), trim)
    except (av.FFmpegError, OSError, IndexError):
        return None


def stated_counts(videos: Sequence[BatchVideo], fps: float | None = None, trim: Trim | None = None) -> list[int | None]:
    """:func:`stated_frames` of each of ``videos``; a stop signal is acted on between them."""
    counts = []
    for video in videos:
        raise_if_stopped()
        counts.append(stated_frames(video, fps, trim))
    return counts


class BatchFrames:
    """How many frames a batch segments, for its overall progress and time left.

    A video counts as its stated frames (:func:`stated_frames`) until it starts and states its
    own (trimmed), and as the frames it did once it ends (none when skipped). A video that states
    nothing counts as the mean of the videos done, or of those that state a count before any is done.
    """

    def __init__(self, stated: Sequence[int | None]) -> None:
        self.counts = list(stated)
        self.ended: list[int] = []
        self._done_frames: list[int] = []

    def start(self, index: int, frame_count: int | None) -> None:
        if frame_count is not None:
            self.counts[index] = frame_count

    def end(self, index: int, frames: int, done: bool) -> None:
        self.counts[index] = frames
        self.ended.append(index)
        if done:
            self._done_frames.append(frames)

    @property
    def total(self) -> int | None:
        known = [count for count in self.counts if count is not None]
        unknown = len(self.counts) - len(known)
        if not unknown:
            return sum(known)
        examples = self._done_frames or [count for index, count in enumerate(self.counts)
                                         if count is not None and index not in self.ended]
        if not examples:
            return None
        return sum(known) + round(unknown * sum(examples) / len(examples))


def shard_videos(videos: Sequence[BatchVideo], shard: str) -> list[BatchVideo]:
    """The videos shard ``"i/n"`` (0-based ``i``) does: every n-th from the i-th."""
    index, count = parse_shard(shard)
    return list(videos[index::count])


def segment_batch(videos: Sequence[BatchVideo], out_root: str | os.PathLike, engine: SegmentationEngine,
                  on_video: Callable[[BatchVideo], None] | None = None, on_start: OnStart | None = None,
                  on_frame: OnFrame | None = None, on_warning: OnMessage | None = None,
                  on_finish: OnFinish | None = None) -> Iterator[VideoOutcome]:
    """Segment each video into ``out_root/<name>/`` with ``engine``; yield each outcome as it ends.

    ``on_video(video)`` is called as each video begins, the other callbacks are those of
    :func:`hmhi_cli.segment.segment_video`. A video whose outputs all exist, made from it with the
    same settings (or by an earlier version, which recorded none), is skipped unless the engine's
    options overwrite; what a killed run left in its folder is deleted all the same. A folder
    whose outputs were made from another input (or an earlier state of this one) or with other
    settings, and a folder name that leads out of ``out_root`` (a link), fail that video unless
    overwriting (the link always). A video that fails is reported and the batch goes on; weights that cannot
    be loaded, and interruptions (checked before each video), stop it.
    """
    if engine.options.flow_dir is not None and len(videos) > 1:
        raise InputError("--flow-dir holds the flow of one video; it cannot serve several")
    for video in videos:
        raise_if_stopped()
        out_dir = Path(out_root) / video.name
        if on_video:
            on_video(video)
        earlier = EarlierRun.NONE
        try:
            problem = _outside(Path(out_root), out_dir)
            if problem is None:
                earlier = engine.earlier_run(video.source, out_dir)
        except OutputError as err:  # the folder holds outputs of another input or other settings
            problem = str(err)
        except OSError as err:  # the input vanished or cannot be read meanwhile
            problem = f"cannot read {video.source}: {err.strerror or err}"
        if problem is not None:
            yield VideoOutcome(video, out_dir, "failed", error=problem)
            continue
        remove_debris(out_dir)
        if earlier is not EarlierRun.NONE:
            note = EARLIER_VERSION_NOTE if earlier is EarlierRun.SETTINGS_UNKNOWN else None
            yield VideoOutcome(video, out_dir, "skipped", note=note)
            continue
        engine.load()
        try:
            outcome = VideoOutcome(video, out_dir, "done", engine.segment(video.source, out_dir, on_start, on_frame,
                                                                          on_warning, on_finish=on_finish))
        except HmhiError as err:
            outcome = VideoOutcome(video, out_dir, "failed", error=str(err))
        except Exception as err:  # anything one video raises, such as running out of memory, ends that video only
            outcome = VideoOutcome(video, out_dir, "failed", error=f"{type(err).__name__}: {err}")
        yield outcome
