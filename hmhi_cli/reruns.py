"""What a rerun into an output folder finds there: the notes each run leaves with its outputs.

Each output folder holds, beside the outputs and committed with them, :data:`SETTINGS_NOTE`:
the settings that made them (:func:`settings_record`, every field of
:class:`~hmhi_cli.segment.SegmentOptions` but those in :data:`UNRECORDED_OPTIONS`, files named
by their content), and :data:`INPUT_NOTE`: the input they were made from.
:func:`examine` compares them with a new run's: the same input and settings with every output
there is done, another input or other settings are refused in one line naming the difference,
and outputs with no settings note (from earlier versions) are done, settings unknown.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from hmhi_cli import __version__
from hmhi_cli.data.layouts import list_images
from hmhi_cli.errors import OutputError
from hmhi_cli.weights import default_weights_path, file_sha256, read_metadata, without_machine_paths

SETTINGS_NOTE = ".hmhi-settings.json"
INPUT_NOTE = ".hmhi-input.json"
"""The file, in each output folder, that records the input it was made from: its path, size in
bytes and modification time (for a folder of images, their total size and latest time)."""
UNRECORDED_OPTIONS = {
    "overwrite": "says whether to replace outputs, not how to make them",
    "device": "the same settings give the same masks on any device, up to rounding, so that a batch "
              "split over CPU and GPU machines resumes anywhere (the device used is noted in made_with)",
}
"""Fields of the options left out of :data:`SETTINGS_NOTE`, and why: every other field is recorded."""
FLAG_NAMES = {"outputs": "--save", "matte.kind": "--matte"}
"""CLI spellings of recorded settings whose option is not ``--`` and the field's last name."""
INVERTED_FLAGS = {"audio": "--no-audio"}
"""Boolean settings whose option is given to turn them off."""
NONE_SHOWN_AS = {"background": "none"}
"""How an unset setting reads in messages (else ``default``)."""
_NAME_ONLY = "outputs"
_hashes: dict[tuple[str, int, int], str] = {}


class EarlierRun(enum.Enum):
    """What an output folder holds for a run: ``NONE`` (nothing to reuse: segment), ``DONE`` (all its
    outputs, from this input with these settings), ``SETTINGS_UNKNOWN`` (all its outputs, from a
    version that recorded no settings)."""

    NONE = "none"
    DONE = "done"
    SETTINGS_UNKNOWN = "settings unknown"


def file_identity(path: Path) -> dict:
    """A file as the record names it: its name, size and SHA-256 (hashed once per process while it
    keeps its size and modification time)."""
    stat = path.stat()
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _hashes:
        _hashes[key] = file_sha256(path)
    return {"file": path.name, "bytes": stat.st_size, "sha256": _hashes[key]}


def _recorded_value(value):
    """``value`` as JSON: dataclasses as objects of all their fields, existing files by
    :func:`file_identity` (a string naming one too: a background image), other paths as strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {item.name: _recorded_value(getattr(value, item.name)) for item in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return _recorded_value(value.value)
    if isinstance(value, (os.PathLike, str)) and os.path.isfile(value):
        return file_identity(Path(value))
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (tuple, list)):
        return [_recorded_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _recorded_value(item) for key, item in value.items()}
    return value


def settings_record(options) -> dict:
    """The settings of ``options`` (a dataclass such as SegmentOptions) that decide its outputs: every
    field but :data:`UNRECORDED_OPTIONS`, as JSON. Unset weights are the default weights, and weights
    are named by content and carry their metadata (provenance without machine paths)."""
    record = {}
    for item in dataclasses.fields(options):
        if item.name in UNRECORDED_OPTIONS:
            continue
        value = getattr(options, item.name)
        if item.name == "weights":
            value = Path(value) if value is not None else default_weights_path()
            record[item.name] = _weights_identity(value)
        else:
            record[item.name] = _recorded_value(value)
    return json.loads(json.dumps(record))


def _weights_identity(path: Path) -> dict | str:
    if not path.is_file():  # loading them says what is wrong
        return str(path)
    metadata = read_metadata(path)
    if "provenance" in metadata:
        try:
            metadata["provenance"] = without_machine_paths(json.loads(metadata["provenance"]))
        except ValueError:
            pass
    return {**file_identity(path), "metadata": metadata}


def settings_note(record: dict, made_with: dict) -> dict:
    """What :data:`SETTINGS_NOTE` holds: the settings, and what they resolved to on this run (the
    device, flow backend, input size), for people to read; only the settings are compared."""
    return {"hmhi": __version__, "settings": record, "made_with": made_with}


def input_record(source: Path | None) -> dict:
    """What :data:`INPUT_NOTE` records of ``source`` (None: stdin)."""
    if source is None:
        return {"input": "-", "stdin": True}
    if source.is_dir():
        stats = [path.stat() for path in list_images(source)]
        size, modified = sum(stat.st_size for stat in stats), max((stat.st_mtime_ns for stat in stats), default=0)
    else:
        stat = source.stat()
        size, modified = stat.st_size, stat.st_mtime_ns
    return {"input": str(source.resolve()), "size": size, "mtime_ns": modified}


def examine(out_dir: Path, planned: Iterable[Path], source: Path | None, record: dict,
            defaults: Callable[[], dict]) -> EarlierRun:
    """What ``out_dir`` holds for a run of ``source`` (None: stdin, which is never the same input)
    with the settings ``record`` writing the outputs ``planned``; ``defaults()`` is the record of
    the default options, which settings the earlier record lacks (added since) are taken to be.

    Raises :class:`OutputError` (one line, ending in how to go on) when the folder holds the outputs
    of another input, or of an earlier state of this one, or of other settings (naming each
    difference), or notes that cannot be read. A folder whose settings differ only in outputs
    the new run does not ask for is done, when all that it asks for is there.
    """
    planned = list(planned)
    input_matches = source is not None and _check_input(out_dir, source)
    recorded = _read_note(out_dir / SETTINGS_NOTE, out_dir)
    complete = all(os.path.lexists(path) for path in planned)
    if recorded is None:
        return EarlierRun.SETTINGS_UNKNOWN if complete else EarlierRun.NONE
    earlier = recorded.get("settings")
    if not isinstance(earlier, dict):
        raise _unreadable(out_dir, SETTINGS_NOTE)
    differences = _differences(earlier, record, defaults)
    if differences and (set(differences) != {_NAME_ONLY} or not complete):
        was = ", ".join(before for before, _ in differences.values())
        now = ", ".join(after for _, after in differences.values())
        raise OutputError(f"{out_dir} was made with {was}; now {now}: pass --overwrite to redo it")
    return EarlierRun.DONE if complete and input_matches else EarlierRun.NONE


def existing_outputs_message(out_dir: Path, existing: list[str]) -> str:
    """The refusal for outputs that a run would replace."""
    more = f" (+{len(existing) - 1} more)" if len(existing) > 1 else ""
    unknown = "" if os.path.lexists(out_dir / SETTINGS_NOTE) else \
        ", made by an earlier version of hmhi or by hand (settings unknown)"
    return f"output exists: {existing[0]}{more}{unknown}; pass --overwrite to replace"


def _check_input(out_dir: Path, source: Path) -> bool | None:
    """Whether ``out_dir``'s outputs were made from ``source`` as it is now (None: no input recorded).
    Raises :class:`OutputError` when they were made from another input, or from an earlier state of it."""
    recorded = _read_note(out_dir / INPUT_NOTE, out_dir)
    if recorded is None:
        return None
    if recorded.get("stdin") is True:
        raise OutputError(f"{out_dir} holds the outputs of a video read from stdin; pass --overwrite to replace them")
    try:
        made_from = Path(recorded["input"])
        same = (made_from.name, recorded["size"], recorded["mtime_ns"])
    except (TypeError, KeyError):
        raise _unreadable(out_dir, INPUT_NOTE) from None
    current = input_record(source)
    if same == (Path(current["input"]).name, current["size"], current["mtime_ns"]):
        return True
    if str(made_from) == current["input"]:
        raise OutputError(f"{out_dir} holds the outputs of {source} as it was before it changed; "
                          "pass --overwrite to redo it")
    raise OutputError(f"{out_dir} holds the outputs of another input, {made_from}; pass --overwrite to replace them")


def _read_note(note: Path, out_dir: Path) -> dict | None:
    """The JSON object in ``note`` (None: no such file). Raises :class:`OutputError` for one that cannot be read."""
    if not os.path.lexists(note):
        return None
    try:
        data = json.loads(note.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        raise _unreadable(out_dir, note.name)
    return data


def _unreadable(out_dir: Path, name: str) -> OutputError:
    what = "input" if name == INPUT_NOTE else "settings"
    return OutputError(f"{out_dir} holds outputs of {what} it does not name ({name} is unreadable); "
                       "pass --overwrite to replace them")


def _flatten(record: dict, prefix: str = "") -> dict[str, object]:
    """Settings by dotted name (``matte.kind``); named files stay whole."""
    flat: dict[str, object] = {}
    for key, value in record.items():
        if isinstance(value, dict) and "sha256" not in value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _differences(earlier: dict, now: dict, defaults: Callable[[], dict]) -> dict[str, tuple[str, str]]:
    """Each setting that differs, as it was and as it is now, spelled as options. A setting the
    earlier record lacks (added since) was at its default."""
    before, after = _flatten(earlier), _flatten(now)
    if not after.keys() <= before.keys():
        before = {**_flatten(defaults()), **before}
    return {name: (_shown(name, before.get(name)), _shown(name, value)) for name, value in after.items()
            if before.get(name) != value}


def _shown(name: str, value) -> str:
    """A setting as an option on the command line: ``--threshold 0.5``, ``--invert``, ``no --lossless``."""
    if name in INVERTED_FLAGS and isinstance(value, bool):
        return f"no {INVERTED_FLAGS[name]}" if value else INVERTED_FLAGS[name]
    flag = FLAG_NAMES.get(name, "--" + name.rsplit(".", 1)[-1].replace("_", "-"))
    if isinstance(value, bool):
        return flag if value else f"no {flag}"
    if value is None:
        text = NONE_SHOWN_AS.get(name, "default")
    elif isinstance(value, dict) and "sha256" in value:
        text = f"{value.get('file')} (sha256 {str(value['sha256'])[:12]})"
    elif isinstance(value, list):
        text = ",".join(map(str, value))
    else:
        text = str(value)
    return f"{flag} {text}"
