"""The errors a user can fix by changing their input, config or files (docs/design.md, "Errors").

Every command prints one of these as a single line and exits with code 1; any other exception is a bug in
ofasys_fs or a plugin and is shown with its traceback. Each class keeps the built-in base it replaced, so
`except ValueError` in user code still works.
"""
from __future__ import annotations


class OFASysError(Exception):
    """Base of every error whose message tells the user what to change."""

    def one_line(self) -> str:
        """The message as one line, as the commands print it."""
        return " ".join(str(self).split())


class ConfigError(OFASysError, ValueError):
    """An option, a task definition or a model setting that cannot be used; names the key and the source."""


class DataError(OFASysError, ValueError):
    """A data file, row, column or media value that cannot be read; names the file, row and column."""


class CheckpointError(OFASysError, RuntimeError):
    """A checkpoint that cannot be written or read, with the file and the reason."""


class PluginError(OFASysError, ValueError):
    """An unknown registered name, or a plugin folder that cannot be imported or registers something wrong."""


class TrainingError(OFASysError, RuntimeError):
    """A run that cannot go on (diverged, a rank died or hung); says what to change."""
