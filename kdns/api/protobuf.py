"""Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`) for the kinds kdns serves.

The wire form, as kube-apiserver and client-go speak it: the four bytes `k8s\\x00`, then a
`runtime.Unknown` message {typeMeta {apiVersion, kind}, raw, contentEncoding, contentType}
whose `raw` is the object's own message. kubectl's typed clients (`kubectl create
namespace`, `kubectl create service ...`) send their bodies that way and ask for answers
that way first (`Accept: application/vnd.kubernetes.protobuf,application/json`).

The wire itself is the `protobuf` package's (Google's well-kept implementation); what is
kdns's own is the schema below: the messages of the fields kdns serves, with the field
numbers of the Kubernetes API (k8s.io/api v0.32), which are its public wire contract,
checked against the real kubectl v1.32 (tests/api/test_protobuf.py): the bodies it sends
(Namespaces, Services) and the answers it reads (those, Pods, Nodes, EndpointSlices). No
.proto file is compiled: the descriptors are built from `MESSAGES` when the module loads.

Going from a message to the JSON-shaped document the rest of the API reads follows Go's
encoder, which writes every field that is not a pointer, empty or not: a zero value of such
a field means "unset" (as `omitempty` drops it from JSON), while a pointer field
(`presence`) that is on the wire is set, even to zero. A field this schema does not know
is reported by number as an unknown field (the API then treats it as it treats an unknown
JSON field), unless it carries nothing (Go writes empty strings and empty structs too).

Going the other way, a document is encoded only when every field in it has a place here;
otherwise `encode` returns None and the API answers in JSON, which every client that
asks for protobuf also accepts (kdns keeps parts of a Pod it does not read as written,
and has no field numbers for them).
"""

from __future__ import annotations

import calendar
import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

MEDIA = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

STRING, INT32, INT64, BOOL, BYTES = "string", "int32", "int64", "bool", "bytes"
_SCALARS = {
    STRING: descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    INT32: descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    INT64: descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    BOOL: descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    BYTES: descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
}


@dataclass(frozen=True, slots=True)
class Field:
    number: int
    name: str  # the JSON name
    type: str = STRING  # a scalar above, or the name of a message in MESSAGES
    repeated: bool = False
    map: bool = False  # map<string, type>
    presence: bool = False  # a Go pointer: on the wire means set, zero or not


def many(number: int, name: str, type: str = STRING) -> Field:
    return Field(number, name, type, repeated=True)


def mapping(number: int, name: str, type: str = STRING) -> Field:
    return Field(number, name, type, map=True)


def pointer(number: int, name: str, type: str = STRING) -> Field:
    return Field(number, name, type, presence=True)


def _object(metadata: str = "ObjectMeta") -> tuple[Field, ...]:
    return (Field(1, "metadata", metadata),)


# Messages the JSON form spells differently (see _WRAPPERS): a time is an RFC 3339 string,
# an IntOrString an int or a string, a Quantity a string, FieldsV1 a JSON object.
MESSAGES: Mapping[str, tuple[Field, ...]] = {
    # --- k8s.io/apimachinery: the envelope, metadata and options --------------------------
    "TypeMeta": (Field(1, "apiVersion"), Field(2, "kind")),
    "Unknown": (Field(1, "typeMeta", "TypeMeta"), Field(2, "raw", BYTES), Field(3, "contentEncoding"),
                Field(4, "contentType")),
    "Time": (Field(1, "seconds", INT64), Field(2, "nanos", INT32)),
    "IntOrString": (Field(1, "type", INT64), Field(2, "intVal", INT32), Field(3, "strVal")),
    "Quantity": (Field(1, "string"),),
    "FieldsV1": (Field(1, "Raw", BYTES),),
    "OwnerReference": (
        Field(1, "kind"), Field(3, "name"), Field(4, "uid"), Field(5, "apiVersion"),
        pointer(6, "controller", BOOL), pointer(7, "blockOwnerDeletion", BOOL),
    ),
    "ManagedFieldsEntry": (
        Field(1, "manager"), Field(2, "operation"), Field(3, "apiVersion"), pointer(4, "time", "Time"),
        Field(6, "fieldsType"), pointer(7, "fieldsV1", "FieldsV1"), Field(8, "subresource"),
    ),
    "ObjectMeta": (
        Field(1, "name"), Field(2, "generateName"), Field(3, "namespace"), Field(4, "selfLink"),
        Field(5, "uid"), Field(6, "resourceVersion"), Field(7, "generation", INT64),
        Field(8, "creationTimestamp", "Time"), pointer(9, "deletionTimestamp", "Time"),
        pointer(10, "deletionGracePeriodSeconds", INT64), mapping(11, "labels"), mapping(12, "annotations"),
        many(13, "ownerReferences", "OwnerReference"), many(14, "finalizers"),
        many(17, "managedFields", "ManagedFieldsEntry"),
    ),
    "ListMeta": (Field(1, "selfLink"), Field(2, "resourceVersion"), Field(3, "continue"),
                 pointer(4, "remainingItemCount", INT64)),
    "Preconditions": (pointer(1, "uid"), pointer(2, "resourceVersion")),
    "DeleteOptions": (
        pointer(1, "gracePeriodSeconds", INT64), pointer(2, "preconditions", "Preconditions"),
        pointer(3, "orphanDependents", BOOL), pointer(4, "propagationPolicy"), many(5, "dryRun"),
        pointer(6, "ignoreStoreReadErrorWithClusterBreakingPotential", BOOL),
    ),
    "Condition": (
        Field(1, "type"), Field(2, "status"), Field(3, "observedGeneration", INT64),
        Field(4, "lastTransitionTime", "Time"), Field(5, "reason"), Field(6, "message"),
    ),
    # --- Namespace -------------------------------------------------------------------------
    "Namespace": (*_object(), Field(2, "spec", "NamespaceSpec"), Field(3, "status", "NamespaceStatus")),
    "NamespaceSpec": (many(1, "finalizers"),),
    "NamespaceStatus": (Field(1, "phase"), many(2, "conditions", "NamespaceCondition")),
    "NamespaceCondition": (
        Field(1, "type"), Field(2, "status"), Field(4, "lastTransitionTime", "Time"), Field(5, "reason"),
        Field(6, "message"),
    ),
    # --- Service ---------------------------------------------------------------------------
    "Service": (*_object(), Field(2, "spec", "ServiceSpec"), Field(3, "status", "ServiceStatus")),
    "ServiceSpec": (
        many(1, "ports", "ServicePort"), mapping(2, "selector"), Field(3, "clusterIP"), Field(4, "type"),
        many(5, "externalIPs"), Field(7, "sessionAffinity"), Field(8, "loadBalancerIP"),
        many(9, "loadBalancerSourceRanges"), Field(10, "externalName"), Field(11, "externalTrafficPolicy"),
        Field(12, "healthCheckNodePort", INT32), Field(13, "publishNotReadyAddresses", BOOL),
        pointer(14, "sessionAffinityConfig", "SessionAffinityConfig"), pointer(17, "ipFamilyPolicy"),
        many(18, "clusterIPs"), many(19, "ipFamilies"), pointer(20, "allocateLoadBalancerNodePorts", BOOL),
        pointer(21, "loadBalancerClass"), pointer(22, "internalTrafficPolicy"), pointer(23, "trafficDistribution"),
    ),
    "ServicePort": (
        Field(1, "name"), Field(2, "protocol"), Field(3, "port", INT32), Field(4, "targetPort", "IntOrString"),
        Field(5, "nodePort", INT32), pointer(6, "appProtocol"),
    ),
    "SessionAffinityConfig": (pointer(1, "clientIP", "ClientIPConfig"),),
    "ClientIPConfig": (pointer(1, "timeoutSeconds", INT32),),
    "ServiceStatus": (Field(1, "loadBalancer", "LoadBalancerStatus"), many(2, "conditions", "Condition")),
    "LoadBalancerStatus": (many(1, "ingress", "LoadBalancerIngress"),),
    "LoadBalancerIngress": (Field(1, "ip"), Field(2, "hostname"), pointer(3, "ipMode"),
                            many(4, "ports", "PortStatus")),
    "PortStatus": (Field(1, "port", INT32), Field(2, "protocol"), pointer(3, "error")),
    # --- Pod: what kdns reads, and a container's common fields; the rest (probes, volumes,
    # security contexts...) kdns keeps as written, in JSON only --------------------------
    "Pod": (*_object(), Field(2, "spec", "PodSpec"), Field(3, "status", "PodStatus")),
    "PodSpec": (
        many(2, "containers", "Container"), Field(3, "restartPolicy"),
        pointer(4, "terminationGracePeriodSeconds", INT64), pointer(5, "activeDeadlineSeconds", INT64),
        Field(6, "dnsPolicy"), mapping(7, "nodeSelector"), Field(8, "serviceAccountName"),
        Field(9, "serviceAccount"), Field(10, "nodeName"), Field(11, "hostNetwork", BOOL),
        Field(12, "hostPID", BOOL), Field(13, "hostIPC", BOOL), Field(16, "hostname"), Field(17, "subdomain"),
        Field(19, "schedulerName"), many(20, "initContainers", "Container"),
        pointer(21, "automountServiceAccountToken", BOOL), Field(24, "priorityClassName"),
        pointer(25, "priority", INT32), pointer(27, "shareProcessNamespace", BOOL), pointer(29, "runtimeClassName"),
        pointer(30, "enableServiceLinks", BOOL), pointer(31, "preemptionPolicy"),
        mapping(32, "overhead", "Quantity"), pointer(35, "setHostnameAsFQDN", BOOL), pointer(37, "hostUsers", BOOL),
    ),
    "Container": (
        Field(1, "name"), Field(2, "image"), many(3, "command"), many(4, "args"), Field(5, "workingDir"),
        many(6, "ports", "ContainerPort"), many(7, "env", "EnvVar"), Field(8, "resources", "ResourceRequirements"),
        many(9, "volumeMounts", "VolumeMount"), Field(13, "terminationMessagePath"), Field(14, "imagePullPolicy"),
        Field(16, "stdin", BOOL), Field(17, "stdinOnce", BOOL), Field(18, "tty", BOOL),
        Field(20, "terminationMessagePolicy"), pointer(24, "restartPolicy"),
    ),
    "EnvVar": (Field(1, "name"), Field(2, "value")),
    "ResourceRequirements": (mapping(1, "limits", "Quantity"), mapping(2, "requests", "Quantity")),
    "VolumeMount": (Field(1, "name"), Field(2, "readOnly", BOOL), Field(3, "mountPath"), Field(4, "subPath"),
                    pointer(5, "mountPropagation"), Field(6, "subPathExpr")),
    "ContainerPort": (Field(1, "name"), Field(2, "hostPort", INT32), Field(3, "containerPort", INT32),
                      Field(4, "protocol"), Field(5, "hostIP")),
    "PodStatus": (
        Field(1, "phase"), many(2, "conditions", "PodCondition"), Field(3, "message"), Field(4, "reason"),
        Field(5, "hostIP"), Field(6, "podIP"), pointer(7, "startTime", "Time"), Field(9, "qosClass"),
        Field(11, "nominatedNodeName"), many(12, "podIPs", "PodIP"), Field(14, "resize"),
        many(16, "hostIPs", "PodIP"),
    ),
    "PodCondition": (
        Field(1, "type"), Field(2, "status"), Field(3, "lastProbeTime", "Time"),
        Field(4, "lastTransitionTime", "Time"), Field(5, "reason"), Field(6, "message"),
        Field(7, "observedGeneration", INT64),
    ),
    "PodIP": (Field(1, "ip"),),  # HostIP has the same one field
    # --- Node ------------------------------------------------------------------------------
    "Node": (*_object(), Field(2, "spec", "NodeSpec"), Field(3, "status", "NodeStatus")),
    "NodeSpec": (Field(1, "podCIDR"), Field(2, "externalID"), Field(3, "providerID"),
                 Field(4, "unschedulable", BOOL), many(7, "podCIDRs")),
    "NodeStatus": (
        mapping(1, "capacity", "Quantity"), mapping(2, "allocatable", "Quantity"), Field(3, "phase"),
        many(4, "conditions", "NodeCondition"), many(5, "addresses", "NodeAddress"), many(9, "volumesInUse"),
    ),
    "NodeCondition": (
        Field(1, "type"), Field(2, "status"), Field(3, "lastHeartbeatTime", "Time"),
        Field(4, "lastTransitionTime", "Time"), Field(5, "reason"), Field(6, "message"),
    ),
    "NodeAddress": (Field(1, "type"), Field(2, "address")),
    # --- EndpointSlice (discovery.k8s.io/v1) ------------------------------------------------
    "EndpointSlice": (*_object(), many(2, "endpoints", "Endpoint"), many(3, "ports", "EndpointPort"),
                      Field(4, "addressType")),
    "Endpoint": (
        many(1, "addresses"), Field(2, "conditions", "EndpointConditions"), pointer(3, "hostname"),
        pointer(4, "targetRef", "ObjectReference"), mapping(5, "deprecatedTopology"), pointer(6, "nodeName"),
        pointer(7, "zone"), pointer(8, "hints", "EndpointHints"),
    ),
    "EndpointConditions": (pointer(1, "ready", BOOL), pointer(2, "serving", BOOL), pointer(3, "terminating", BOOL)),
    "EndpointHints": (many(1, "forZones", "ForZone"), many(2, "forNodes", "ForZone")),
    "ForZone": (Field(1, "name"),),  # ForNode has the same one field
    "EndpointPort": (pointer(1, "name"), pointer(2, "protocol"), pointer(3, "port", INT32), pointer(4, "appProtocol")),
    "ObjectReference": (
        Field(1, "kind"), Field(2, "namespace"), Field(3, "name"), Field(4, "uid"), Field(5, "apiVersion"),
        Field(6, "resourceVersion"), Field(7, "fieldPath"),
    ),
}

# The kinds with a message, and their lists ({metadata: ListMeta, items}).
KINDS = ("Namespace", "Service", "Pod", "Node", "EndpointSlice")
LISTS = {f"{kind}List": kind for kind in KINDS}
DECODED = (*KINDS, "DeleteOptions")  # the kinds a request body may be
_PACKAGE = "kdns.k8s"


def _descriptors() -> dict[str, Any]:
    """The message classes of MESSAGES (and of the lists), built by the protobuf package."""
    file = descriptor_pb2.FileDescriptorProto(name="kdns/k8s.proto", package=_PACKAGE, syntax="proto2")
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    as_message = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
    messages = dict(MESSAGES)
    messages.update({lst: (Field(1, "metadata", "ListMeta"), many(2, "items", kind)) for lst, kind in LISTS.items()})
    for name, fields in messages.items():
        message = file.message_type.add(name=name)
        for f in fields:
            out = message.field.add(name=f.name, number=f.number, label=repeated if f.repeated or f.map else optional)
            if f.map:
                entry = message.nested_type.add(name=f"{f.name[0].upper()}{f.name[1:]}Entry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, label=optional, type=_SCALARS[STRING])
                value = entry.field.add(name="value", number=2, label=optional)
                _type(value, f.type)
                out.type = as_message
                out.type_name = f".{_PACKAGE}.{name}.{entry.name}"
            else:
                _type(out, f.type)
    file.message_type.add(name="Nothing")  # parses any bytes, all as unknown fields
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name in [*messages, "Nothing"]
    }


def _type(field: descriptor_pb2.FieldDescriptorProto, type_name: str) -> None:
    if type_name in _SCALARS:
        field.type = _SCALARS[type_name]
    else:
        field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
        field.type_name = f".{_PACKAGE}.{type_name}"


_CLASSES = _descriptors()
_FIELDS = {name: {f.number: f for f in fields} for name, fields in MESSAGES.items()}
_FIELDS.update({lst: {1: Field(1, "metadata", "ListMeta"), 2: many(2, "items", kind)} for lst, kind in LISTS.items()})
_BY_NAME = {name: {f.name: f for f in fields.values()} for name, fields in _FIELDS.items()}


class Malformed(ValueError):
    """A body that is not a Kubernetes protobuf object; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Body:
    api_version: str
    kind: str
    document: dict[str, Any] | None  # None: a kind with no message here
    unknown: list[str]  # paths of fields this schema does not know, as `spec.<field 40>`


# --- Reading -------------------------------------------------------------------------------


def decode(body: bytes) -> Body:
    """A protobuf request body as the JSON-shaped document it stands for."""
    if not body.startswith(MAGIC):
        raise Malformed('it does not begin with the Kubernetes protobuf prefix "k8s\\x00"')
    envelope = _parse("Unknown", body[len(MAGIC):], "the envelope (runtime.Unknown)")
    kind, api_version = envelope.typeMeta.kind, envelope.typeMeta.apiVersion
    if not kind:
        raise Malformed("Object 'Kind' is missing in the envelope")
    if envelope.contentEncoding:
        raise Malformed(f'content encoding "{envelope.contentEncoding}" is not supported')
    name = kind if kind in DECODED else None
    if name is None:
        return Body(api_version, kind, None, [])
    unknown: list[str] = []
    document = _to_json(_parse(name, envelope.raw, f"the {kind}"), name, "", unknown)
    return Body(api_version, kind, {"apiVersion": api_version, "kind": kind, **document}, unknown)


def _parse(name: str, data: bytes, what: str) -> Any:
    # Any: the message classes are built at run time, their fields unknown to a type checker.
    message = _CLASSES[name]()
    try:
        message.ParseFromString(data)
    except DecodeError:
        raise Malformed(f"{what} is truncated or malformed") from None
    return message


def _to_json(message: Message, name: str, path: str, unknown: list[str]) -> dict[str, Any]:
    fields = _FIELDS[name]
    result: dict[str, Any] = {}
    for descriptor, value in message.ListFields():
        f = fields[descriptor.number]
        here = f"{path}.{f.name}" if path else f.name
        converted: Any
        if f.map:
            converted = {
                _value(STRING, key, here, unknown): _value(f.type, value[key], f"{here}.{key}", unknown)
                for key in sorted(value)
            }
        elif f.repeated:
            converted = [_value(f.type, item, f"{here}[{i}]", unknown) for i, item in enumerate(value)]
        else:
            converted = _value(f.type, value, here, unknown)
            if f.presence and converted is not None:
                result[f.name] = converted
                continue
        if converted not in (None, "", 0, {}, []):  # (False == 0: a non-pointer false is unset too)
            result[f.name] = converted
    for item in _unknown_fields(message):
        if item.field_number in fields:
            # The parser keeps a known field sent with another wire type aside as unknown.
            name = fields[item.field_number].name
            raise Malformed(f"{f'{path}.{name}' if path else name} has the wrong wire type")
        if _carries_something(item.wire_type, item.data):
            unknown.append(f"{path}.<field {item.field_number}>" if path else f"<field {item.field_number}>")
    return result


def _value(type_name: str, value: Any, path: str, unknown: list[str]) -> Any:
    if type_name in _SCALARS:
        if type_name == STRING and isinstance(value, bytes):  # (proto2 leaves UTF-8 unchecked)
            raise Malformed(f"{path} is not valid UTF-8")
        return value
    wrapper = _WRAPPERS.get(type_name)
    if wrapper is not None:
        return wrapper[0](value)
    return _to_json(value, type_name, path, unknown)


_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _carries_something(wire_type: int, data: Any) -> bool:
    """Whether an unknown field holds a value: Go writes the zero values of the fields it
    does not point to (an empty string, 0, a struct of such), and those say nothing."""
    if wire_type in (_VARINT, _FIXED64, _FIXED32):
        return bool(data)
    if wire_type != _BYTES:
        return True
    if not data:
        return False
    nested = _CLASSES["Nothing"]()
    try:
        nested.ParseFromString(data)
    except DecodeError:
        return True  # not a message: a string, with something in it
    return any(_carries_something(item.wire_type, item.data) for item in _unknown_fields(nested))


def _unknown_fields(message: Message) -> list[Any]:
    found = UnknownFieldSet(message)
    return [found[i] for i in range(len(found))]


# --- Writing -------------------------------------------------------------------------------


class _Unrepresentable(Exception):
    """A document with a field, or a value, that has no place in the messages here."""


def encode(document: Mapping[str, Any], kind: str) -> bytes | None:
    """`document` (an object of `kind`, or a `<kind>List`) as a protobuf body, or None when
    it holds something the messages here have no place for (then answer JSON)."""
    if kind not in KINDS and kind not in LISTS:
        return None
    message = _CLASSES[kind]()
    try:
        _from_json({k: v for k, v in document.items() if k not in ("apiVersion", "kind")}, kind, message)
    except _Unrepresentable:
        return None
    envelope = _CLASSES["Unknown"]()
    envelope.typeMeta.apiVersion = str(document.get("apiVersion", ""))
    envelope.typeMeta.kind = kind
    envelope.raw = message.SerializeToString(deterministic=True)
    wire: bytes = envelope.SerializeToString(deterministic=True)
    return MAGIC + wire


def _from_json(document: Any, name: str, message: Message) -> None:
    if not isinstance(document, Mapping):
        raise _Unrepresentable
    message.SetInParent()
    fields = _BY_NAME[name]
    for key, value in document.items():
        f = fields.get(key)
        if f is None:
            if name in KINDS and key in ("apiVersion", "kind"):
                continue  # the envelope says it: an object's message has no TypeMeta
            raise _Unrepresentable
        if value is None:
            continue
        if f.map:
            if not isinstance(value, Mapping):
                raise _Unrepresentable
            entries = getattr(message, key)
            for k, v in value.items():
                if f.type in _SCALARS:
                    _assign(lambda v, k=k, entries=entries: entries.__setitem__(k, v), f.type, v)
                else:
                    _fill(entries[k], f.type, v)
        elif f.repeated:
            if not isinstance(value, list):
                raise _Unrepresentable
            target = getattr(message, key)
            for item in value:
                if f.type in _SCALARS:
                    _assign(target.append, f.type, item)
                else:
                    _fill(target.add(), f.type, item)
        elif f.type in _SCALARS:
            _assign(lambda v, key=key: setattr(message, key, v), f.type, value)
        else:
            _fill(getattr(message, key), f.type, value)


def _assign(setter: Any, type_name: str, value: Any) -> None:
    wanted: type | tuple[type, ...] = {STRING: str, BOOL: bool, BYTES: bytes}.get(type_name, int)
    if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
        raise _Unrepresentable
    try:
        setter(value)
    except (TypeError, ValueError):  # an int out of the field's range
        raise _Unrepresentable from None


def _fill(message: Message, type_name: str, value: Any) -> None:
    wrapper = _WRAPPERS.get(type_name)
    if wrapper is None:
        _from_json(value, type_name, message)
        return
    message.SetInParent()
    wrapper[1](message, value)


# --- The messages JSON spells as scalars ----------------------------------------------------


def _time_to_json(message: Any) -> str | None:
    if not message.seconds and not message.nanos:
        return None  # Go's zero time: null in JSON
    moment = datetime.datetime.fromtimestamp(message.seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _time_from_json(message: Any, value: Any) -> None:
    if not isinstance(value, str):
        raise _Unrepresentable
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise _Unrepresentable from None
    if moment.tzinfo is None or moment.microsecond:
        raise _Unrepresentable  # (a time with a fraction is a MicroTime: not served here)
    message.seconds = calendar.timegm(moment.utctimetuple())


def _int_or_string_to_json(message: Any) -> int | str:
    value: int | str = message.strVal if message.type == 1 else message.intVal
    return value


def _int_or_string_from_json(message: Any, value: Any) -> None:
    if isinstance(value, str):
        message.type, message.strVal = 1, value
    elif isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31:
        message.type, message.intVal = 0, value
    else:
        raise _Unrepresentable


def _quantity_from_json(message: Any, value: Any) -> None:
    # JSON may spell a quantity as a number; its wire form is always the string.
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Unrepresentable
    message.string = value if isinstance(value, str) else json.dumps(value)


def _fields_to_json(message: Any) -> Any:
    try:
        return json.loads(message.Raw) if message.Raw else {}
    except ValueError:
        raise Malformed("managedFields[].fieldsV1 is not JSON") from None


def _fields_from_json(message: Any, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise _Unrepresentable
    message.Raw = json.dumps(value, separators=(",", ":")).encode()


_WRAPPERS: Mapping[str, tuple[Any, Any]] = {
    "Time": (_time_to_json, _time_from_json),
    "IntOrString": (_int_or_string_to_json, _int_or_string_from_json),
    "Quantity": (lambda message: message.string, _quantity_from_json),
    "FieldsV1": (_fields_to_json, _fields_from_json),
}
