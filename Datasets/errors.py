"""Exceptions of the dataset readers: every bad file, line, record or path becomes one of these, with one line
naming what is at fault (file and offset, file and line number, record key, or config key and path)."""
from __future__ import annotations

__all__ = ["DataFormatError", "DataPathError", "BadImageWarning"]


class DataFormatError(ValueError):
    """A data file that cannot be read as its format says: the message names the file and the place in it."""


class DataPathError(DataFormatError):
    """A configured path that does not exist: the message names the config key and the path."""


class BadImageWarning(UserWarning):
    """A training image that could not be decoded and was replaced by another sample.

    The message names the file, so Python's default warning filter shows each bad file once per process.
    """

