"""What build a meshplane process is: the installed package's version."""

from __future__ import annotations

from importlib import metadata

__all__ = ["package_version"]


def package_version() -> str:
    """The installed meshplane package version ("0.0.0+unknown" when run from a bare tree)."""
    try:
        return metadata.version("meshplane")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"
