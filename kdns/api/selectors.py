"""Label and field selectors, as `?labelSelector=` and `?fieldSelector=` spell them.

The grammar is k8s.io/apimachinery/pkg/labels `Parse` (`=`, `==`, `!=`, `in`, `notin`,
`key`, `!key`, `>`, `<`) and pkg/fields `ParseSelector` (`=`, `==`, `!=` on the field
labels each kind supports). A selector is parsed once into a predicate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kdns.errors import KdnsError
from kdns.registry import objects


class SelectorError(KdnsError):
    """The selector cannot be parsed."""


# Label keys: an optional DNS-subdomain prefix and a name (apimachinery validation.go).
_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}$")
_VALUE = re.compile(rf"^({_NAME})?$")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator == "in":
            return present and labels[self.key] in self.values
        if self.operator == "notin":
            return not present or labels[self.key] not in self.values
        if not present:
            return False
        try:
            have, want = int(labels[self.key]), int(self.values[0])
        except ValueError:
            return False
        return have > want if self.operator == "gt" else have < want


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside `( )`."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


_SET = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")
_BINARY = re.compile(r"^\s*([^!=<>\s]+)\s*(==|=|!=|>|<)\s*(\S*)\s*$")


def _check_key(key: str, text: str) -> str:
    if not _KEY.match(key) or len(key.split("/")[-1]) > 63:
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r} in {text!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(
            f"unable to parse requirement: invalid label value {value!r} in {text!r}"
        )
    return value


def parse_label_selector(text: str) -> tuple[Requirement, ...]:
    """`app=web,tier in (a,b),!legacy` -> requirements; "" selects everything."""
    requirements = []
    if not text.strip():
        return ()
    for part in _split_top_level(text):
        clause = part.strip()
        if not clause:
            raise SelectorError(f"found '', expected: identifier in {text!r}")
        if m := _SET.match(clause):
            key, op, inner = m.groups()
            values = tuple(_check_value(v.strip(), text) for v in inner.split(","))
            if op == "in" and values == ("",):
                raise SelectorError(f"for 'in' operator, values set can't be empty in {text!r}")
            requirements.append(Requirement(_check_key(key, text), op, values))
        elif m := _BINARY.match(clause):
            key, op, value = m.groups()
            _check_key(key, text)
            if op in (">", "<"):
                if not value.lstrip("-").isdigit():
                    raise SelectorError(f"for '{op}' operator, the value must be an integer")
                requirements.append(Requirement(key, "gt" if op == ">" else "lt", (value,)))
            else:
                _check_value(value, text)
                requirements.append(Requirement(key, "notin" if op == "!=" else "in", (value,)))
        elif clause.startswith("!"):
            requirements.append(Requirement(_check_key(clause[1:].strip(), text), "!"))
        else:
            requirements.append(Requirement(_check_key(clause, text), "exists"))
    return tuple(requirements)


def _dig(manifest: Mapping[str, Any], *path: str) -> str:
    value: Any = manifest
    for step in path:
        if not isinstance(value, Mapping):
            return ""
        value = value.get(step)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _field(*path: str) -> Callable[[Any], str]:
    return lambda obj: _dig(obj.manifest, *path)


_COMMON_FIELDS: dict[str, Callable[[Any], str]] = {
    "metadata.name": lambda obj: obj.meta.name,
    "metadata.namespace": lambda obj: obj.meta.namespace,
}
# The extra field labels kube-apiserver registers per kind (pkg/registry/*/strategy.go).
FIELDS: Mapping[str, Mapping[str, Callable[[Any], str]]] = {
    objects.NAMESPACE: {**_COMMON_FIELDS, "status.phase": _field("status", "phase")},
    objects.SERVICE: {
        **_COMMON_FIELDS,
        "spec.clusterIP": _field("spec", "clusterIP"),
        "spec.type": _field("spec", "type"),
    },
    objects.POD: {
        **_COMMON_FIELDS,
        "spec.nodeName": _field("spec", "nodeName"),
        "spec.restartPolicy": _field("spec", "restartPolicy"),
        "spec.schedulerName": _field("spec", "schedulerName"),
        "spec.serviceAccountName": _field("spec", "serviceAccountName"),
        "spec.hostNetwork": lambda obj: _dig(obj.manifest, "spec", "hostNetwork") or "false",
        "status.phase": _field("status", "phase"),
        "status.podIP": _field("status", "podIP"),
        "status.nominatedNodeName": _field("status", "nominatedNodeName"),
    },
    objects.NODE: {
        **_COMMON_FIELDS,
        "spec.unschedulable": lambda obj: _dig(obj.manifest, "spec", "unschedulable") or "false",
    },
    objects.ENDPOINT_SLICE: {**_COMMON_FIELDS, "addressType": _field("addressType")},
}


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    value: str
    equal: bool
    read: Callable[[Any], str]

    def matches(self, obj: Any) -> bool:
        return (self.read(obj) == self.value) == self.equal


def parse_field_selector(kind: str, text: str) -> tuple[FieldRequirement, ...]:
    """`metadata.name=web,metadata.namespace!=kube-system` -> requirements."""
    requirements = []
    if not text.strip():
        return ()
    for part in text.split(","):
        clause = part.strip()
        m = re.match(r"^([^!=]+?)\s*(==|=|!=)\s*(.*)$", clause)
        if not m:
            raise SelectorError(f"invalid selector: {text!r}; can't understand {clause!r}")
        field, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        read = FIELDS[kind].get(field)
        if read is None:
            raise SelectorError(f'field label not supported: {field}')
        requirements.append(FieldRequirement(field, value, op != "!=", read))
    return tuple(requirements)


@dataclass(frozen=True, slots=True)
class Selector:
    """What a LIST or WATCH asked for: a kind, maybe a namespace, label and field requirements."""

    kind: str
    namespace: str | None = None
    labels: tuple[Requirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Any) -> bool:
        if obj is None or obj.kind != self.kind:
            return False
        if self.namespace is not None and obj.meta.namespace != self.namespace:
            return False
        labels = obj.meta.labels
        return all(r.matches(labels) for r in self.labels) and all(
            f.matches(obj) for f in self.fields
        )
