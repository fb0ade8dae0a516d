"""Errors the store raises; each message says what happened and what to do."""

from __future__ import annotations


class StoreError(RuntimeError):
    """Base class of trace-store errors."""


class CorruptDatabaseError(StoreError):
    """The file is not a readable SQLite database (or is damaged). It is left untouched."""


class ForeignDatabaseError(StoreError):
    """The database holds tables that are not a trace store. It is left untouched."""


class SchemaTooNewError(StoreError):
    """The database was migrated by a newer version of this code."""


class AmbiguousIdError(StoreError, ValueError):
    """A shortened episode id that more than one episode's id starts with."""


class NotFoundError(StoreError, KeyError):
    """No such episode, run, job or label set."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""
