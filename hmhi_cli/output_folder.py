"""The output folder of a run, written as one transaction.

One run at a time writes into an output folder (a lock file there, released by the kernel when
the process dies). Outputs are written into a hidden staging folder inside it and renamed into
place together at the end, all or none; a run that fails or is interrupted leaves nothing behind,
and the next run deletes what a killed one left.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

from hmhi_cli.atomic import deferred_signals, remove_path
from hmhi_cli.errors import OutputError, WriteError
from hmhi_cli.video import check_writable

_LOCK_NAME = ".hmhi-segment.lock"
_STAGING_PREFIX, _STAGING_SUFFIX = ".hmhi-segment-", ".partial"
_EARLIER_DEBRIS = tuple(f".{name}.*part*" for name in (
    "masks", "probs", "alpha", "mask.mp4", "mask.mkv", "alpha.webm", "alpha.mov", "composite.mp4", "overlay.mp4"))
"""What killed runs of hmhi versions without the folder lock left: ``.masks.partial/``,
``.mask.mp4.*.part.mp4`` and the like."""
_DEBRIS = (f"{_STAGING_PREFIX}*{_STAGING_SUFFIX}", *_EARLIER_DEBRIS)


class OutputFolder:
    """The output folder of one run, as a context manager.

    Entering creates the folder (and missing parents), locks it against other runs, deletes
    what killed runs left there and makes a hidden :attr:`staging` folder to write the outputs
    into; :meth:`commit` renames them into place. Leaving deletes the staging folder and the
    lock and, after a failure, the folders that entering created when they are still empty;
    stop signals wait for it to end, so that it is never cut in the middle.
    """

    staging: Path

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._created: list[Path] = []
        self._lock_descriptor = -1

    def __enter__(self) -> OutputFolder:
        with contextlib.ExitStack() as undo:
            undo.callback(self._remove_created)
            self._create()
            check_writable(self.path)
            self._lock_descriptor = _lock(self.path)
            undo.callback(self._unlock)
            try:
                _remove_debris(self.path)
                self.staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, suffix=_STAGING_SUFFIX, dir=self.path))
            except OSError as err:
                raise WriteError(f"cannot write to output folder {self.path}: {err.strerror or err}") from err
            undo.pop_all()
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        with deferred_signals():
            try:
                shutil.rmtree(self.staging, ignore_errors=True)
            finally:
                self._unlock()
                if exc is not None:
                    self._remove_created()

    def commit(self, finals: Iterable[Path], overwrite: bool, replaceable: Collection[Path] = ()) -> None:
        """Rename the staged outputs (``staging / final.name``) to ``finals``, all or none.

        An output already at a final path is moved into the staging folder, to be deleted with
        it, when ``overwrite`` or when the path is ``replaceable``; else it is refused. Stop
        signals wait for the renames to end; when one fails, those already done are undone.
        """
        done: list[tuple[Path, Path]] = []

        def move(source: Path, target: Path) -> None:
            os.rename(source, target)
            done.append((source, target))

        with deferred_signals():
            try:
                for final in finals:
                    if os.path.lexists(final):
                        if not (overwrite or final in replaceable):
                            raise OutputError(f"output appeared during the run: {final}; "
                                              "pass --overwrite to replace it")
                        move(final, self.staging / f"{final.name}.replaced")
                    move(self.staging / final.name, final)
            except BaseException as err:
                for source, target in reversed(done):
                    os.rename(target, source)
                if isinstance(err, OSError):
                    raise WriteError(f"cannot write {final}: {err.strerror or err}") from err
                raise

    def stage_note(self, name: str, data: dict) -> Path:
        """Write ``data`` as JSON to the staging folder's file ``name``; return where :meth:`commit`
        is to put it."""
        try:
            (self.staging / name).write_text(json.dumps(data) + "\n", encoding="utf-8")
        except OSError as err:
            raise WriteError(f"cannot write {self.path / name}: {err.strerror or err}") from err
        return self.path / name

    def _create(self) -> None:
        missing = []
        for folder in (self.path, *self.path.parents):
            if os.path.lexists(folder):
                break
            missing.append(folder)
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except OSError:  # made by someone else meanwhile, or impossible: check_writable says why
                continue
            self._created.append(folder)

    def _remove_created(self) -> None:
        for folder in reversed(self._created):
            try:
                folder.rmdir()
            except OSError:  # not empty: something else was put there
                return

    def _unlock(self) -> None:
        _unlock(self.path, self._lock_descriptor)


def make_way_for(folder: str | os.PathLike, overwrite: bool) -> None:
    """Make way for the output folder ``folder`` where a link to nothing stands: with ``overwrite``
    the link goes (the folder is made in its place, never where the link points), else it is
    refused in one line."""
    folder = Path(folder)
    if not folder.is_symlink() or folder.exists():
        return
    if not overwrite:
        raise OutputError(f"cannot use {folder} as output folder: it is a dangling link (to {os.readlink(folder)}, "
                          "which does not exist); pass --overwrite to replace the link")
    try:
        folder.unlink()
    except OSError as err:
        raise WriteError(f"cannot replace the link {folder}: {err.strerror or err}") from err


def remove_debris(folder: str | os.PathLike) -> None:
    """Delete what killed runs left in the output folder ``folder`` (staging folders, temporary
    files, a stale lock file), unless a run is writing there now. A folder without any is left
    untouched, and so is a path that is not a folder."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return
    if not any(next(folder.glob(pattern), None) for pattern in (_LOCK_NAME, *_DEBRIS)):
        return
    try:
        descriptor = _lock(folder)
    except OutputError:  # another run holds it, or it cannot be written: left as it is
        return
    try:
        with contextlib.suppress(OSError):
            _remove_debris(folder)
    finally:
        _unlock(folder, descriptor)


def _remove_debris(folder: Path) -> None:
    for pattern in _DEBRIS:
        for debris in folder.glob(pattern):
            remove_path(debris)


def _unlock(folder: Path, descriptor: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        (folder / _LOCK_NAME).unlink()
    os.close(descriptor)


@contextlib.contextmanager
def locked_output_file(target: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of the one output file ``target`` (``.NAME.hmhi-segment.lock`` beside it)
    for a run that writes exactly that file, after deleting the temporary files that killed runs
    writing it left there (``.NAME.*.part.EXT``)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.parent / f".{target.name}{_LOCK_NAME}"
    descriptor = _lock_file(path, str(target), "another output file")
    try:
        for debris in target.parent.glob(f".{glob.escape(target.name)}.*.part{glob.escape(target.suffix)}"):
            remove_path(debris)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(descriptor)


def _lock(folder: Path) -> int:
    """Lock ``folder`` for this process; return the lock file's descriptor. The kernel releases
    the lock when the process ends, however it ends."""
    return _lock_file(folder / _LOCK_NAME, f"output folder {folder}", "another output folder")


def _lock_file(path: Path, what: str, elsewhere: str) -> int:
    """Lock the lock file ``path`` of ``what`` (named in messages, as is ``elsewhere`` to choose
    instead); return its descriptor."""
    while True:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise WriteError(f"cannot lock {what}: {err.strerror or err}") from err
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(descriptor)
            if isinstance(err, BlockingIOError):
                raise WriteError(f"another hmhi run is writing to {what.removeprefix('output folder ')}; "
                                 f"wait for it to end or choose {elsewhere}") from None
            raise WriteError(f"cannot lock {what}: {err.strerror or err}") from err
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(descriptor), os.stat(path)):
                return descriptor
        os.close(descriptor)  # the last holder deleted this file as it let go: lock a fresh one
