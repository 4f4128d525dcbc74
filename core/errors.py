"""The core package's root exception; callers decide retry vs quarantine from `retriable`."""

from __future__ import annotations

__all__ = ["CoreError", "InvalidInput"]


class CoreError(Exception):
    retriable: bool = False


class InvalidInput(CoreError, ValueError):
    """Arguments a kernel cannot compute on (wrong shape, order, range); retrying cannot help."""
