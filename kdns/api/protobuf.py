"""Kubernetes' protobuf wire format (`application/vnd.kubernetes.protobuf`), both ways.

kubectl and client-go send the built-in kinds as protobuf (`kubectl create service`,
`kubectl create namespace`, `kubectl run`) and accept it back. The body is the four
magic bytes `k8s\\x00`, then a `runtime.Unknown` message whose `typeMeta` names the
apiVersion and kind and whose `raw` is the object's own message, as in
k8s.io/apimachinery/pkg/runtime/serializer/protobuf.

The messages are those protoc compiles from the published Kubernetes schemas
(`kdns.api.k8s_pb`, with the `protobuf` library doing the wire encoding); this module
only maps them to and from the JSON documents the rest of the API works with. Proto
field names are the JSON names, so the mapping is by name, through the message
descriptors; the types whose JSON form is not their message form are converted here
as apimachinery marshals them: Time and MicroTime (RFC 3339 strings), IntOrString (a
number or a string), Quantity (a string), FieldsV1 and RawExtension (embedded JSON),
Duration (a Go duration string).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from kdns.api import status
from kdns.api.k8s_pb import core_v1_pb2, discovery_v1_pb2, meta_v1_pb2, runtime_pb2

__all__ = ["MEDIA_TYPE", "ConversionError", "decode", "encodable", "encode"]

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_CORE = ("Namespace", "Service", "Pod", "Node", "Endpoints", "Event")
MESSAGES: dict[tuple[str, str], type[Message]] = {
    **{("v1", kind): getattr(core_v1_pb2, kind) for kind in _CORE},
    **{("v1", f"{kind}List"): getattr(core_v1_pb2, f"{kind}List") for kind in _CORE},
    ("discovery.k8s.io/v1", "EndpointSlice"): discovery_v1_pb2.EndpointSlice,
    ("discovery.k8s.io/v1", "EndpointSliceList"): discovery_v1_pb2.EndpointSliceList,
    ("v1", "Status"): meta_v1_pb2.Status,
    ("meta.k8s.io/v1", "Status"): meta_v1_pb2.Status,
    ("v1", "DeleteOptions"): meta_v1_pb2.DeleteOptions,
    ("meta.k8s.io/v1", "DeleteOptions"): meta_v1_pb2.DeleteOptions,
}

_META = "k8s.io.apimachinery.pkg.apis.meta.v1"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_MICRO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_NANOSECONDS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


class ConversionError(ValueError):
    """A document does not fit its message (or a message its document)."""


# --- the types whose JSON is not their message -------------------------------------------


def _time_to_json(message: Any, micro: bool) -> str:
    moment = datetime.fromtimestamp(message.seconds + message.nanos / 1e9, UTC)
    return moment.strftime(_MICRO_FORMAT if micro else _TIME_FORMAT)


def _time_from_json(value: Any, message: Any) -> None:
    if not isinstance(value, str):
        raise ConversionError(f"a time must be an RFC 3339 string, not {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConversionError(f"{value!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = int(moment.timestamp())
    message.seconds = seconds
    if moment.microsecond:
        message.nanos = moment.microsecond * 1000


def _int_or_string_to_json(message: Any) -> int | str:
    return str(message.strVal) if message.type == 1 else int(message.intVal)


def _int_or_string_from_json(value: Any, message: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConversionError(f"an int-or-string must be a number or a string, not {value!r}")
    if isinstance(value, str):
        message.type, message.strVal = 1, value
    else:
        message.type, message.intVal = 0, value


def _raw_to_json(data: bytes) -> Any:
    return json.loads(data) if data else None


def _duration_to_json(message: Any) -> str:
    nanoseconds = int(message.duration)
    sign, nanoseconds = ("-", -nanoseconds) if nanoseconds < 0 else ("", nanoseconds)
    hours, rest = divmod(nanoseconds, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds = f"{rest / 10**9:f}".rstrip("0").rstrip(".")
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{seconds}s"
    return sign + text


def _duration_from_json(value: Any, message: Any) -> None:
    text = value if isinstance(value, str) else ""
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    parts = _DURATION.findall(body)
    if not body or "".join(number + unit for number, unit in parts) != body:
        raise ConversionError(f"{value!r} is not a duration")
    message.duration = sign * int(sum(float(number) * _NANOSECONDS[unit] for number, unit in parts))


# Message full name -> (to JSON, from JSON).
_SPECIAL: dict[str, tuple[Callable[[Any], Any], Callable[[Any, Any], None]]] = {
    f"{_META}.Time": (lambda m: _time_to_json(m, False), _time_from_json),
    f"{_META}.MicroTime": (lambda m: _time_to_json(m, True), _time_from_json),
    f"{_META}.Duration": (_duration_to_json, _duration_from_json),
    f"{_META}.FieldsV1": (lambda m: _raw_to_json(m.Raw), lambda v, m: setattr(m, "Raw", json.dumps(v).encode())),
    "k8s.io.apimachinery.pkg.runtime.RawExtension": (
        lambda m: _raw_to_json(m.raw), lambda v, m: setattr(m, "raw", json.dumps(v).encode())
    ),
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": (_int_or_string_to_json, _int_or_string_from_json),
    "k8s.io.apimachinery.pkg.api.resource.Quantity": (
        lambda m: str(m.string), lambda v, m: setattr(m, "string", str(v))
    ),
}


# --- message -> JSON ------------------------------------------------------------------------


def _map_value(field: FieldDescriptor) -> FieldDescriptor | None:
    """The value field of a map field's entries; None for a field that is no map."""
    entry = field.message_type
    if entry is None or not entry.GetOptions().map_entry:
        return None
    return entry.fields_by_name["value"]


def _value_to_json(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_json(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


# Go's protobuf marshaller writes a non-pointer field even when it is zero, where its
# JSON marshaller (`omitempty`) leaves it out; a pointer field is written only when set.
# The schema does not say which is which, so a zero number or empty string is read as
# absent, as the JSON would have it, except where zero says something: booleans
# (EndpointConditions' `ready: false` is not-ready, absent is ready) and grace periods
# (0 is now).
_ZERO_IS_A_VALUE = frozenset({"gracePeriodSeconds", "terminationGracePeriodSeconds", "deletionGracePeriodSeconds"})
_TIMES = frozenset({f"{_META}.Time", f"{_META}.MicroTime"})


def _absent(field: FieldDescriptor, value: Any) -> bool:
    """`value`, read from a present field, stands for no value (see above)."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        # A zero Time is `null` in JSON.
        kind = field.message_type
        return kind is not None and kind.full_name in _TIMES and not (value.seconds or value.nanos)
    if field.type == FieldDescriptor.TYPE_BOOL or field.name in _ZERO_IS_A_VALUE:
        return False
    return value in (0, "", b"")


def to_json(message: Any) -> Any:
    """The JSON document of a message, as apimachinery marshals the Go object."""
    special = _SPECIAL.get(message.DESCRIPTOR.full_name)
    if special is not None:
        return special[0](message)
    doc: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        value_field = _map_value(field)
        if value_field is not None:
            if value:
                doc[field.name] = {k: _value_to_json(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            if value:
                doc[field.name] = [_value_to_json(field, item) for item in value]
        elif message.HasField(field.name) and not _absent(field, value):
            doc[field.name] = _value_to_json(field, value)
    return doc


# --- JSON -> message ------------------------------------------------------------------------


def _set_scalar(message: Any, field: FieldDescriptor, value: Any, where: str) -> None:
    if field.type == FieldDescriptor.TYPE_BYTES:
        value = base64.b64decode(value) if isinstance(value, str) else value
    try:
        setattr(message, field.name, value)
    except (TypeError, ValueError) as exc:
        raise ConversionError(f"{where}: {exc}") from None


def _append(container: Any, field: FieldDescriptor, value: Any, where: str) -> None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        from_json(value, container.add(), where)
        return
    try:
        container.append(value)
    except (TypeError, ValueError) as exc:
        raise ConversionError(f"{where}: {exc}") from None


def from_json(doc: Any, message: Any, where: str = "") -> Any:
    """Fill `message` from its JSON document; keys the schema does not have are dropped
    (a protobuf body could not carry them either). Returns `message`."""
    descriptor: Descriptor = message.DESCRIPTOR
    special = _SPECIAL.get(descriptor.full_name)
    if special is not None:
        special[1](doc, message)
        return message
    if not isinstance(doc, Mapping):
        raise ConversionError(f"{where or descriptor.name}: expected an object, not {doc!r}")
    for key, value in doc.items():
        field = descriptor.fields_by_name.get(key)
        if field is None or value is None:
            continue
        path = f"{where}.{key}" if where else key
        value_field = _map_value(field)
        if value_field is not None:
            if not isinstance(value, Mapping):
                raise ConversionError(f"{path}: expected an object")
            target = getattr(message, key)
            for map_key, item in value.items():
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    from_json(item, target[map_key], f"{path}.{map_key}")
                else:
                    try:
                        target[map_key] = item
                    except (TypeError, ValueError) as exc:
                        raise ConversionError(f"{path}.{map_key}: {exc}") from None
        elif field.is_repeated:
            if not isinstance(value, list):
                raise ConversionError(f"{path}: expected a list")
            container = getattr(message, key)
            for number, item in enumerate(value):
                _append(container, field, item, f"{path}[{number}]")
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            from_json(value, getattr(message, key), path)
        else:
            _set_scalar(message, field, value, path)
    return message


# --- the envelope ---------------------------------------------------------------------------


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body as its JSON document (400 as the API server words it when
    it is not one)."""
    if not body.startswith(MAGIC):
        raise status.bad_request("the body of the request is not a Kubernetes protobuf object: no 'k8s\\x00' prefix")
    envelope = runtime_pb2.Unknown()
    try:
        envelope.ParseFromString(body[len(MAGIC):])
    except DecodeError as exc:
        raise status.bad_request(f"the body of the request cannot be decoded as protobuf: {exc}") from None
    api_version, kind = envelope.typeMeta.apiVersion, envelope.typeMeta.kind
    cls = MESSAGES.get((api_version, kind))
    if cls is None:
        raise status.bad_request(f'no kind "{kind}" is registered for version "{api_version}" in protobuf')
    message = cls()
    try:
        message.ParseFromString(envelope.raw)
        doc = to_json(message)
    except (DecodeError, ValueError) as exc:
        raise status.bad_request(f"the body of the request cannot be decoded as a {kind}: {exc}") from None
    return {"apiVersion": api_version, "kind": kind, **doc}


def encodable(doc: Mapping[str, Any]) -> bool:
    """Whether `doc` (a document with apiVersion and kind) has a protobuf message here."""
    return (str(doc.get("apiVersion", "")), str(doc.get("kind", ""))) in MESSAGES


def encode(doc: Mapping[str, Any]) -> bytes:
    """The protobuf body of a JSON document that `encodable` accepts."""
    api_version, kind = str(doc["apiVersion"]), str(doc["kind"])
    message = from_json({k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}, MESSAGES[(api_version, kind)]())
    envelope = runtime_pb2.Unknown(
        typeMeta=runtime_pb2.TypeMeta(apiVersion=api_version, kind=kind),
        raw=message.SerializeToString(),
    )
    return MAGIC + envelope.SerializeToString()
