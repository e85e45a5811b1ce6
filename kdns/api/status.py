"""Kubernetes `Status` objects: how every refused request is answered.

The reasons and codes are those of k8s.io/apimachinery/pkg/api/errors, so clients
(kubectl, client-go, the Python client) recognise them: `IsNotFound`, `IsConflict`,
`IsAlreadyExists`, `IsGone`, `IsInvalid`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kdns.errors import KdnsError

MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's request body limit


class ApiError(KdnsError):
    """The API refused the request."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        # A 410 for an expired continue token carries a token for the inconsistent rest.
        self.list_continue: str | None = None

    def status(self) -> dict[str, Any]:
        body = status_object(self.code, self.reason, self.message, self.details)
        if self.list_continue:
            body["metadata"] = {"continue": self.list_continue}
        return body


def status_object(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def not_found(group_resource: str, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{group_resource} "{name}" not found', {"name": name, "kind": group_resource}
    )


def path_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")


def method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        f"the server does not allow this method on the requested resource ({method})",
    )


def not_implemented(message: str) -> ApiError:
    """What kdns cannot do at all (it runs no containers): 501, a reason no client retries."""
    return ApiError(501, "NotImplemented", message)


def conflict(group_resource: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {group_resource} "{name}": {why}',
        {"name": name, "kind": group_resource},
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unavailable(message: str) -> ApiError:
    """The registry cannot take writes now (its etcd is unreachable); the client may retry."""
    return ApiError(503, "ServiceUnavailable", message)


def too_large() -> ApiError:
    return ApiError(
        413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}"
    )


def unsupported_media_type(content_type: str, accepted: Iterable[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format ({content_type or 'none'})"
        f" - accepted media types include: {', '.join(accepted)}",
    )


def invalid(
    kind: str,
    name: str,
    causes: Iterable[tuple[str, str]],
    *,
    group: str = "",
    reason: str = "FieldValueInvalid",
) -> ApiError:
    """422, as `errors.NewInvalid`: `Service "web" is invalid: spec.ports[0].port: ...`."""
    causes = list(causes)
    parts = [f"{field}: {message}" if field else message for field, message in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "causes": [{"reason": reason, "message": m, "field": f} for f, m in causes],
    }
    if group:
        details["group"] = group
    # errors.NewInvalid names the qualified kind: `ListOptions.meta.k8s.io "" is invalid`.
    qualified = f"{kind}.{group}" if group else kind
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details)


def unprocessable(message: str) -> ApiError:
    """422 without a field, as kube-apiserver answers a patch that cannot be applied."""
    return ApiError(422, "Invalid", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")
