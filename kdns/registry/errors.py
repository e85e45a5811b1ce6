"""The registry's exceptions, worded as kube-apiserver words them.

The API edge picks HTTP statuses from the class (NotFound 404, AlreadyExists and Conflict
409, Invalid 422, Expired 410); the messages are the API server's, so that a client or a
person who knows Kubernetes recognises them (k8s.io/apimachinery/pkg/api/errors and
pkg/util/validation/field/errors.go).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from kdns.errors import KdnsError

# The plural resource names of the kinds kdns serves, group-qualified as the API server
# prints them (`endpointslices.discovery.k8s.io "web-abc12" not found`).
RESOURCES = {
    "Namespace": "namespaces",
    "Service": "services",
    "Pod": "pods",
    "Node": "nodes",
    "EndpointSlice": "endpointslices.discovery.k8s.io",
}
# Group-qualified kinds, as in `EndpointSlice.discovery.k8s.io "x" is invalid`.
QUALIFIED_KINDS = {"EndpointSlice": "EndpointSlice.discovery.k8s.io"}


def resource(kind: str) -> str:
    """`Service` -> `services`: the name the API server's messages use for a kind."""
    return RESOURCES.get(kind, kind.lower() + "s")


class RegistryError(KdnsError):
    """The registry refused the request."""


class NotFound(RegistryError):
    """The object was not found."""

    def __init__(self, kind: str = "", name: str = "") -> None:
        self.kind, self.name = kind, name
        super().__init__(f"{resource(kind)} {_quote(name)} not found" if kind else None)


class AlreadyExists(RegistryError):
    """The object already exists."""

    def __init__(self, kind: str = "", name: str = "") -> None:
        self.kind, self.name = kind, name
        super().__init__(f"{resource(kind)} {_quote(name)} already exists" if kind else None)


class Conflict(RegistryError):
    """The object has been modified; please apply your changes to the latest version and try again."""

    def __init__(self, kind: str = "", name: str = "") -> None:
        self.kind, self.name = kind, name
        super().__init__(
            f"Operation cannot be fulfilled on {resource(kind)} {_quote(name)}: the object has "
            "been modified; please apply your changes to the latest version and try again"
            if kind
            else None
        )


class Invalid(RegistryError):
    """The object is invalid."""

    def __init__(self, kind: str = "", name: str = "", causes: Iterable[tuple[str, str]] = ()) -> None:
        self.kind, self.name = kind, name
        # (field path, message) pairs, e.g. ("spec.ports[0].port", "Invalid value: 70000: ...").
        self.causes: tuple[tuple[str, str], ...] = tuple(causes)
        if not kind:
            super().__init__()
            return
        head = f"{QUALIFIED_KINDS.get(kind, kind)} {_quote(name)} is invalid"
        parts = [f"{path}: {message}" if path else message for path, message in self.causes]
        # utilerrors.NewAggregate: one error is printed bare, several inside brackets.
        if len(parts) == 1:
            head += f": {parts[0]}"
        elif parts:
            head += f": [{', '.join(parts)}]"
        super().__init__(head)


class ManifestError(RegistryError):
    """The manifest cannot be read."""

    def __init__(self, message: str | None = None, *, source: str | None = None, index: int | None = None) -> None:
        # `detail` is the message without its location, `source` the file (or "<input>"),
        # `index` the 1-based position of the document in that file.
        self.detail = message or (self.__doc__ or "").strip()
        self.source, self.index = source, index
        where = ""
        if source is not None:
            where = f"{source}: "
        if index is not None:
            where += f"document {index}: "
        super().__init__(where + self.detail)


class Expired(RegistryError):
    """The requested resource version is too old."""

    def __init__(self, requested: int | None = None, oldest: int | None = None) -> None:
        # `oldest` is the newest version a watcher may resume from that the log no longer
        # covers, printed as the watch cache does (`too old resource version: 5 (120)`).
        self.requested, self.oldest = requested, oldest
        super().__init__(
            f"too old resource version: {requested} ({oldest})" if requested is not None else None
        )


# Field errors: the `field.Error.ErrorBody()` texts of apimachinery, as (path, message) pairs.


def invalid(path: str, value: Any, detail: str) -> tuple[str, str]:
    return path, f"Invalid value: {go_value(value)}: {detail}"


def required(path: str, detail: str = "") -> tuple[str, str]:
    return path, "Required value" + (f": {detail}" if detail else "")


def forbidden(path: str, detail: str) -> tuple[str, str]:
    return path, f"Forbidden: {detail}"


def duplicate(path: str, value: Any) -> tuple[str, str]:
    return path, f"Duplicate value: {go_value(value)}"


def unsupported(path: str, value: Any, supported: Iterable[str]) -> tuple[str, str]:
    choices = ", ".join(_quote(s) for s in sorted(supported))
    return path, f"Unsupported value: {go_value(value)}: supported values: {choices}"


def too_many(path: str, actual: int, limit: int) -> tuple[str, str]:
    return path, f"Too many: {actual}: must have at most {limit} items"


def go_value(value: Any) -> str:
    """A bad value printed as Go's fmt does in field errors: strings %q, lists of strings
    as `[]string{"a", "b"}`, numbers and booleans bare, nil as null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(_quote(v) for v in value) + "}"
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _quote(text: str) -> str:
    """Go's %q for the strings that occur in names and values."""
    return json.dumps(text, ensure_ascii=False)
