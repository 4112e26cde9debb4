"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class HmhiError(Exception):
    """A problem the user can fix (bad input, missing file, mismatched weights)."""

    exit_code = 2


class InputError(HmhiError):
    """The input (video, image folder, dataset) is missing, unreadable or empty."""


class OutputError(HmhiError):
    """The output location cannot be written, or would overwrite existing files."""


class WeightsError(HmhiError):
    """A weights file is missing, truncated, or does not match the model."""


class WriteError(OutputError):
    """Writing failed: a full disk, no permission, a read-only file system, or an output folder
    another run holds. A failure of the run, not of the values given: exit code 1."""

    exit_code = 1
