"""API errors and the `Status` objects the real apiserver answers them with."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered as a `Status` object with the apiserver's reason and code."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if not self.reason:
            del body["reason"]  # as the apiserver's plain internal errors
        if self.details is not None:
            body["details"] = self.details
        return body

    @staticmethod
    def _details(name: str, group: str, plural: str, **extra: Any) -> dict[str, Any]:
        details: dict[str, Any] = {"name": name, "kind": plural}
        if group:
            details["group"] = group
        details.update(extra)
        return details

    @classmethod
    def not_found(cls, group: str, plural: str, name: str) -> ApiError:
        qualified = _qualified(group, plural)
        return cls(
            404,
            "NotFound",
            f'{qualified} "{name}" not found',
            details=cls._details(name, group, plural),
        )

    @classmethod
    def not_found_path(cls) -> ApiError:
        return cls(404, "NotFound", "the server could not find the requested resource", details={})

    @classmethod
    def already_exists(cls, group: str, plural: str, name: str) -> ApiError:
        qualified = _qualified(group, plural)
        return cls(
            409,
            "AlreadyExists",
            f'{qualified} "{name}" already exists',
            details=cls._details(name, group, plural),
        )

    @classmethod
    def conflict(cls, group: str, plural: str, name: str, why: str) -> ApiError:
        qualified = _qualified(group, plural)
        return cls(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {qualified} "{name}": {why}',
            details=cls._details(name, group, plural),
        )

    @classmethod
    def invalid(
        cls, group: str, kind: str, name: str, causes: list[tuple[str, str, str]]
    ) -> ApiError:
        """causes: (reason type, field path, message), as in `details.causes`."""
        qualified = _qualified(group, kind)
        text = "; ".join(f"{fld}: {msg}" if fld else msg for _, fld, msg in causes)
        return cls(
            422,
            "Invalid",
            f'{qualified} "{name}" is invalid: {text}',
            details={
                "name": name,
                "group": group,
                "kind": kind,
                "causes": [{"reason": r, "message": m, "field": f} for r, f, m in causes],
            },
        )

    @classmethod
    def forbidden(cls, group: str, plural: str, name: str, why: str) -> ApiError:
        qualified = _qualified(group, plural)
        return cls(
            403,
            "Forbidden",
            f'{qualified} "{name}" is forbidden: {why}',
            details=cls._details(name, group, plural),
        )

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, "BadRequest", message)

    @classmethod
    def internal_plain(cls, message: str) -> ApiError:
        """A 500 with no reason: what the apiserver answers for some refusals its storage
        layer makes (a create carrying a resourceVersion)."""
        return cls(500, "", message)

    @classmethod
    def unsupported_media_type(cls, content_type: str) -> ApiError:
        return cls(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown "
            f"format - accepted media types include: {content_type}",
        )

    @classmethod
    def gone(cls, message: str) -> ApiError:
        return cls(410, "Expired", message)

    @classmethod
    def method_not_allowed(cls, message: str) -> ApiError:
        return cls(405, "MethodNotAllowed", message)


def _qualified(group: str, name: str) -> str:
    """``name.group`` as the apiserver names a resource or kind in messages (core: bare name)."""
    return f"{name}.{group}" if group else name
