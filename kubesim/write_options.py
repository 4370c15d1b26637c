"""The options of one write (a request's query parameters, or a controller's internal write)."""

from __future__ import annotations

from dataclasses import dataclass, field

FIELD_VALIDATIONS = ("Strict", "Warn", "Ignore")


@dataclass(frozen=True, kw_only=True)
class WriteOptions:
    """Query parameters of a write: `fieldManager` (None for internal writes), dryRun, force.

    `field_validation` is the request's `fieldValidation` (None for internal writes, which skip
    custom resources' schemas); `warnings` collects the `Warning` headers of the answer.
    """

    manager: str | None = None
    dry_run: bool = False
    force: bool = False
    field_validation: str | None = None
    applying: bool = False
    warnings: list[str] = field(default_factory=list, compare=False)


INTERNAL = WriteOptions()
