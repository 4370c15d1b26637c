"""Fault injection for reliability tests: error rates by verb, added latency, dropped watches.

Configured from a JSON document (the `--faults` flag, the `KUBESIM_FAULTS` environment
variable, or `PUT /kubesim/faults` at run time), for example::

    {"error_rate": {"create": 0.2, "*": 0.05}, "error_code": 503, "retry_after": 1,
     "latency_ms": {"*": 20}, "drop_watch_after": 2.5, "seed": 7}
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from kubesim.errors import ApiError

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
ERROR_CODES = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


@dataclass(kw_only=True)
class Faults:
    """What to inject; every field defaults to nothing."""

    # verb (or "*") -> probability of failing a request
    error_rate: dict[str, float] = field(default_factory=dict)
    # 429 (with Retry-After), 500 or 503
    error_code: int = 503
    retry_after: int = 1
    # verb (or "*") -> milliseconds added before answering
    latency_ms: dict[str, float] = field(default_factory=dict)
    # seconds after which an open watch stream is cut (0: never)
    drop_watch_after: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        # verb -> how many errors were injected so far (reported by GET /kubesim/faults)
        self.injected: dict[str, int] = {}
        if self.error_code not in ERROR_CODES:
            raise ValueError(f"error_code must be one of {sorted(ERROR_CODES)}")
        for table in (self.error_rate, self.latency_ms):
            for verb in table:
                if verb != "*" and verb not in VERBS:
                    raise ValueError(f"unknown verb {verb!r}: use one of {VERBS} or '*'")

    @classmethod
    def from_json(cls, text: str | bytes | None) -> Faults:
        if not text:
            return cls()
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("faults must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        return cls(**data)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "injected": dict(self.injected)}

    def _for(self, table: dict[str, float], verb: str) -> float:
        return float(table.get(verb, table.get("*", 0.0)))

    def latency(self, verb: str) -> float:
        """Seconds to wait before answering a request of `verb`."""
        return self._for(self.latency_ms, verb) / 1000.0

    def error(self, verb: str) -> ApiError | None:
        """The error to answer instead, drawn at this verb's rate, or None."""
        rate = self._for(self.error_rate, verb)
        if rate <= 0 or self._random.random() >= rate:
            return None
        self.injected[verb] = self.injected.get(verb, 0) + 1
        code = self.error_code
        headers = {"Retry-After": str(self.retry_after)} if code in (429, 503) else {}
        details = {"retryAfterSeconds": self.retry_after} if headers else None
        return ApiError(
            code,
            ERROR_CODES[code],
            f"kubesim injected fault ({code}) for {verb}",
            details=details,
            headers=headers,
        )
