"""Opaque page tokens for keyset pagination over (created_at, id), newest first.

A token names the last row a page returned, so rows inserted between pages neither repeat nor
shift later pages (OFFSET would).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from coordinator.store.records import utc
from serving.input_quoting import quoted

MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, kw_only=True)
class PageKey:
    """The position after which the next page starts (exclusive)."""

    created_at: datetime
    row_id: str


def encode_page_token(key: PageKey) -> str:
    """Serialise a position as URL-safe text clients pass back unchanged."""
    raw = json.dumps([utc(key.created_at).isoformat(), key.row_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str) -> PageKey | None:
    """Parse a token; empty means the first page. A malformed token is a caller error."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        created_at, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return PageKey(created_at=utc(datetime.fromisoformat(created_at)), row_id=str(row_id))
    except (ValueError, TypeError, binascii.Error) as error:
        raise ValueError(f"invalid page token {quoted(token)}") from error


def check_page_size(page_size: int, name: str = "page_size") -> None:
    """Bound page sizes so one request cannot pull a whole table."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"{name} must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
