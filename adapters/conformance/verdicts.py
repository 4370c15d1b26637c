"""What one check concludes: a row of the conformance table (pass, fail or skip, and why)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["CheckFailed", "CheckResult", "CheckSkipped", "Outcome", "require"]


class Outcome(enum.Enum):
    """The verdict of one row."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    """One row: a check (and, for per-operation checks, the operation it ran) and its verdict."""

    check: str
    outcome: Outcome
    message: str
    subject: str = ""
    """Catalogue id the row is about (empty for adapter-wide checks)."""
    seconds: float = 0.0

    @property
    def name(self) -> str:
        """The row's label: ``check`` or ``check[subject]``."""
        return f"{self.check}[{self.subject}]" if self.subject else self.check


class CheckFailed(Exception):
    """Raised inside a check: the adapter broke the contract; the message says how."""


class CheckSkipped(Exception):
    """Raised inside a check: the check does not apply to this adapter; the message says why."""


def require(condition: bool, message: str) -> None:
    """Fail the running check with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(message)
