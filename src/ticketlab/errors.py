"""User-facing errors.

Anything a user can cause (a wrong path, a corrupt file, a bad sparsity) raises a `TicketlabError`
whose message names the file or value and the problem. The CLI prints that message alone, without a
traceback, and exits non-zero. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations


class TicketlabError(Exception):
    """An error caused by the user's input; its message is meant to be read, not debugged."""


class MaskFileError(TicketlabError):
    """A mask file is missing, corrupt, truncated or of an unknown format."""


class MaskMismatchError(TicketlabError):
    """A mask does not fit a model: other weight names or shapes, or other base weights."""


class DataError(TicketlabError):
    """A data file is missing, malformed or lacks a column or label."""


class ConfigError(TicketlabError):
    """A configuration value is out of range or inconsistent."""
