"""Errors of stack-file edits: each names the path it could not edit and what would be valid."""

from __future__ import annotations

from stamps.errors import UsageError


class ConfigEditError(UsageError):
    """An edit that cannot be made; the message names the offending path and what would be valid."""


class PathNotFoundError(ConfigEditError):
    """The path names a key or list item that does not exist.

    `final` is true when only the last step is missing (its parent exists): what `missing_ok` tolerates.
    """

    def __init__(self, message: str, *, final: bool) -> None:
        super().__init__(message)
        self.final = final
