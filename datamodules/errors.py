"""The errors of loading a data set, importable without Lightning (the command line maps them
to one line and exit status 2)."""

from __future__ import annotations


class DataFileError(FileNotFoundError):
    """A data file is missing or unreadable; the message says which and how to provide it."""


class DataSizeError(DataFileError):
    """The data loaded does not fit the config: images of another shape than the data set's,
    or too few images for the validation split and one training batch."""
