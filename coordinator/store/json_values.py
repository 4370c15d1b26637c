"""How JSON columns are written, identically for both backends.

PostgreSQL's JSONB refuses NaN/Infinity and the NUL character; SQLite's TEXT would take them.
Refusing them on both keeps "same behaviour" true and fails at the caller, not at a migration.
"""

from __future__ import annotations

import json
import re

# An escaped NUL: "\u0000" preceded by an even number of backslashes (so not a literal "\\u").
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def dump_json(value: object) -> str:
    """Compact JSON text for a column; ValueError for what JSONB cannot hold."""
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    if _ESCAPED_NUL.search(text):
        raise ValueError("JSON values must not contain the NUL character (\\u0000)")
    return text
