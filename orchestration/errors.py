"""Errors a user can cause, each rendered as one line by the CLI.

Hierarchy::

    AlphalineError
     ├── ConfigError          a setting or option is invalid
     ├── SourceFileError      a CSV/Parquet file cannot be read as bars (file, line, column)
     ├── SourceError          a remote data source answered with an error (Alpaca)
     └── BatchRejectedError   a batch broke the reject-share limit of its blocking check

Bugs are not wrapped: they still raise their own exception with a traceback.
"""

from __future__ import annotations


class AlphalineError(Exception):
    """Base of every user-facing error; ``str(err)`` is the one-line message."""


class ConfigError(AlphalineError):
    """A setting, option or config file value is invalid."""


class SourceFileError(AlphalineError):
    """A file cannot be read as bars.

    Args:
        path: the file.
        reason: why, in a few words.
        line: 1-based line number in the file (the header is line 1), if known.
        column: the offending column name, if known.
    """

    def __init__(self, path: str, reason: str, *, line: int | None = None, column: str | None = None):
        self.path, self.reason, self.line, self.column = path, reason, line, column
        where = path + (f":{line}" if line is not None else "")
        field = f" column {column!r}:" if column else ""
        super().__init__(f"{where}:{field} {reason}")


class SourceError(AlphalineError):
    """A remote data source failed in a way the user must act on (auth, rate limit, outage)."""


class BatchRejectedError(AlphalineError):
    """A batch's rejected share is above the configured limit."""
