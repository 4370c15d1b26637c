"""Where test inputs live: the shared upstream fixtures (optional) and our own small ones."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
OWN_FIXTURES = PROJECT_ROOT / "tests" / "fixtures"
SHARED_FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures"


def shared_fixtures() -> Path:
    """Return ../shared/fixtures, or skip the calling test with the reason it is missing."""
    if not (SHARED_FIXTURES / "README.md").is_file():
        pytest.skip(
            f"real upstream fixtures not found at {SHARED_FIXTURES} "
            "(a fresh clone outside the workspace); our own fixtures cover the same paths"
        )
    return SHARED_FIXTURES
