"""Many videos in one run: ``hmhi segment a.mp4 b.mov clips/ -o out/`` segments each video into
``out/<name>/`` with one loading of the weights.

The videos are sorted (natural order of their paths), so that every machine given the same
command line sees the same list, and ``--shard i/n`` picks every n-th video from the i-th
(0-based, as in ``hmhi flow precompute``): a Slurm array or an indexed Kubernetes job splits a
batch with no coordination. A batch resumes: a video whose outputs are all there is skipped
unless overwriting, and a video that fails is reported while the others go on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hmhi_cli.errors import HmhiError, InputError
from hmhi_cli.flow import parse_shard
from hmhi_cli.segment import OnFrame, OnMessage, OnStart, SegmentationEngine, SegmentResult
from hmhi_cli.video import IMAGE_SUFFIXES, natural_key

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts",
                            ".m2ts", ".wmv", ".flv", ".3gp", ".ogv", ".mxf", ".nut", ".y4m"})
"""What a folder of videos is expanded to (its other files are left alone)."""


@dataclass(frozen=True)
class BatchVideo:
    """One video of a batch: a video file or a folder of images, and the name of its output subfolder."""

    source: Path
    name: str


@dataclass
class VideoOutcome:
    """How one video of a batch ended: ``status`` is ``done`` (with ``result``), ``skipped``
    (its outputs were all there) or ``failed`` (with ``error``, one line)."""

    video: BatchVideo
    output: Path
    status: str
    result: SegmentResult | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        data = {"name": self.video.name, "input": str(self.video.source), "output": str(self.output),
                "status": self.status}
        if self.result is not None:
            data.update(self.result.to_dict())
        if self.error is not None:
            data["error"] = self.error
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

    Names are the file stems (folder names for image folders); a name already taken gets
    ``-2``, ``-3``... in list order. Raises :class:`InputError` for a missing input, a folder
    with neither images nor videos, and ``-`` (stdin) among other inputs.
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
    taken: set[str] = set()
    batch = []
    for video in sorted(found.values(), key=lambda path: natural_key(str(path))):
        stem = video.resolve().name if video.is_dir() else video.stem
        name, number = stem, 1
        while name in taken:
            number += 1
            name = f"{stem}-{number}"
        taken.add(name)
        batch.append(BatchVideo(video, name))
    return batch


def shard_videos(videos: Sequence[BatchVideo], shard: str) -> list[BatchVideo]:
    """The videos shard ``"i/n"`` (0-based ``i``) does: every n-th from the i-th."""
    index, count = parse_shard(shard)
    return list(videos[index::count])


def segment_batch(videos: Sequence[BatchVideo], out_root: str | os.PathLike, engine: SegmentationEngine,
                  on_video: Callable[[BatchVideo], None] | None = None, on_start: OnStart | None = None,
                  on_frame: OnFrame | None = None, on_warning: OnMessage | None = None) -> Iterator[VideoOutcome]:
    """Segment each video into ``out_root/<name>/`` with ``engine``; yield each outcome as it ends.

    ``on_video(video)`` is called as each video begins, the other callbacks are those of
    :func:`hmhi_cli.segment.segment_video`. A video whose outputs all exist is skipped unless
    the engine's options overwrite. A video that fails is reported and the batch goes on; weights
    that cannot be loaded, and interruptions, stop it.
    """
    if engine.options.flow_dir is not None and len(videos) > 1:
        raise InputError("--flow-dir holds the flow of one video; it cannot serve several")
    for video in videos:
        out_dir = Path(out_root) / video.name
        if on_video:
            on_video(video)
        outputs = engine.planned_outputs(out_dir).values()
        if not engine.options.overwrite and all(os.path.lexists(path) for path in outputs):
            yield VideoOutcome(video, out_dir, "skipped")
            continue
        engine.load()
        try:
            outcome = VideoOutcome(video, out_dir, "done", engine.segment(video.source, out_dir, on_start, on_frame,
                                                                          on_warning))
        except HmhiError as err:
            outcome = VideoOutcome(video, out_dir, "failed", error=str(err))
        except Exception as err:  # anything one video raises, such as running out of memory, ends that video only
            outcome = VideoOutcome(video, out_dir, "failed", error=f"{type(err).__name__}: {err}")
        yield outcome
