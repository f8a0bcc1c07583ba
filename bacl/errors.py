"""The project's error types: what ``bacl`` commands report as one line.

Every error a user can cause (a wrong parameter, a malformed annotation file, a missing
or corrupt image or checkpoint, a failed download) is a :class:`BaclError`. The CLI
prints those as one line naming the file, record or key, and lets anything else (a bug)
raise with its traceback. Subclasses also derive from the built-in type they refine
(``ValueError``, ``FileNotFoundError``, ...), so callers may catch either.
"""

from __future__ import annotations


class BaclError(Exception):
    """Base of every error the project raises on bad input."""


class MissingFileError(BaclError, FileNotFoundError):
    """A file or folder the run needs does not exist; the message names it."""
