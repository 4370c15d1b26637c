"""Errors the store raises on purpose, so callers can tell them from driver failures."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's own errors."""


class StoreClosedError(StoreError):
    """The store was used after close()."""
