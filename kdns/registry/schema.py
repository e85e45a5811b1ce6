"""The shape of the documents kdns accepts (API bodies and manifests), written once and used four ways.

* strict decoding: unknown fields are reported (`?fieldValidation=Strict` refuses them,
  `Warn` reports them in a `Warning` header, `Ignore` drops them silently) and fields of the
  wrong JSON type are refused, as kube-apiserver's decoder does;
* strategic merge patch: the list merge keys and patch strategies of k8s.io/api (the
  `patchMergeKey` / `patchStrategy` struct tags);
* OpenAPI v3 documents for `/openapi/v3`;
* strict reading of manifest files (`unknown_fields`), with the paths the API reports.

The field lists follow k8s.io/api v0.32. Parts kdns never reads (container details,
volumes, affinity, node info...) are `OPEN`: any content is kept as written, because the
registry stores documents as the user wrote them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Schema:
    # "object", "array", "map", "string", "integer", "number", "boolean",
    # "int-or-string", "quantity", "any"
    type: str
    properties: Mapping[str, Schema] = field(default_factory=dict)
    items: Schema | None = None  # array items, map values
    open: bool = False  # object: fields not listed are kept (x-kubernetes-preserve-unknown-fields)
    merge_key: str | None = None  # x-kubernetes-patch-merge-key
    strategy: str | None = None  # x-kubernetes-patch-strategy: "merge", "retainKeys", "merge,retainKeys"
    name: str | None = None  # its name under components/schemas
    format: str | None = None


def obj(name: str | None = None, /, *, open: bool = False, **properties: Schema) -> Schema:
    return Schema("object", properties, open=open, name=name)


def arr(items: Schema, merge_key: str | None = None, strategy: str | None = None) -> Schema:
    return Schema("array", items=items, merge_key=merge_key, strategy=strategy)


def smap(values: Schema | None = None) -> Schema:
    return Schema("map", items=values or STR)


STR = Schema("string")
TIME = Schema("string", format="date-time")
INT = Schema("integer")
BOOL = Schema("boolean")
INT_OR_STR = Schema("int-or-string")
QUANTITY = Schema("quantity")
ANY = Schema("any")
OPEN = obj(open=True)

CONDITION = obj(
    "io.k8s.apimachinery.pkg.apis.meta.v1.Condition",
    type=STR,
    status=STR,
    observedGeneration=INT,
    lastTransitionTime=TIME,
    reason=STR,
    message=STR,
)


def conditions(item: Schema = CONDITION) -> Schema:
    return arr(item, "type", "merge")


OWNER_REFERENCE = obj(
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
    apiVersion=STR,
    kind=STR,
    name=STR,
    uid=STR,
    controller=BOOL,
    blockOwnerDeletion=BOOL,
)

OBJECT_META = obj(
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    name=STR,
    generateName=STR,
    namespace=STR,
    selfLink=STR,
    uid=STR,
    resourceVersion=STR,
    generation=INT,
    creationTimestamp=TIME,
    deletionTimestamp=TIME,
    deletionGracePeriodSeconds=INT,
    labels=smap(),
    annotations=smap(),
    ownerReferences=arr(OWNER_REFERENCE, "uid", "merge"),
    finalizers=arr(STR, strategy="merge"),
    managedFields=arr(OPEN),
)


def top(name: str, **properties: Schema) -> Schema:
    # Schema(), not obj(): a property may be called "open", which obj() takes as its flag.
    return Schema("object", {"apiVersion": STR, "kind": STR, "metadata": OBJECT_META, **properties}, name=name)


# --- Namespace ---------------------------------------------------------------------------

NAMESPACE = top(
    "io.k8s.api.core.v1.Namespace",
    spec=obj("io.k8s.api.core.v1.NamespaceSpec", finalizers=arr(STR)),
    status=obj(
        "io.k8s.api.core.v1.NamespaceStatus",
        phase=STR,
        conditions=conditions(
            obj(
                "io.k8s.api.core.v1.NamespaceCondition",
                type=STR,
                status=STR,
                lastTransitionTime=TIME,
                reason=STR,
                message=STR,
            )
        ),
    ),
)

# --- Service -----------------------------------------------------------------------------

SERVICE_PORT = obj(
    "io.k8s.api.core.v1.ServicePort",
    name=STR,
    protocol=STR,
    appProtocol=STR,
    port=INT,
    targetPort=INT_OR_STR,
    nodePort=INT,
)

SERVICE = top(
    "io.k8s.api.core.v1.Service",
    spec=obj(
        "io.k8s.api.core.v1.ServiceSpec",
        ports=arr(SERVICE_PORT, "port", "merge"),
        selector=smap(),
        clusterIP=STR,
        clusterIPs=arr(STR),
        type=STR,
        externalIPs=arr(STR),
        sessionAffinity=STR,
        loadBalancerIP=STR,
        loadBalancerSourceRanges=arr(STR),
        externalName=STR,
        externalTrafficPolicy=STR,
        healthCheckNodePort=INT,
        publishNotReadyAddresses=BOOL,
        sessionAffinityConfig=obj(clientIP=obj(timeoutSeconds=INT)),
        ipFamilies=arr(STR),
        ipFamilyPolicy=STR,
        allocateLoadBalancerNodePorts=BOOL,
        loadBalancerClass=STR,
        internalTrafficPolicy=STR,
        trafficDistribution=STR,
    ),
    status=obj(
        "io.k8s.api.core.v1.ServiceStatus",
        loadBalancer=obj(
            ingress=arr(
                obj(
                    ip=STR,
                    hostname=STR,
                    ipMode=STR,
                    ports=arr(obj(port=INT, protocol=STR, error=STR)),
                )
            )
        ),
        conditions=conditions(),
    ),
)

# --- Pod ---------------------------------------------------------------------------------

CONTAINER_PORT = obj(
    "io.k8s.api.core.v1.ContainerPort",
    name=STR,
    hostPort=INT,
    containerPort=INT,
    protocol=STR,
    hostIP=STR,
)

# Containers keep whatever they hold; only the lists with merge keys are spelled out.
CONTAINER = obj(
    "io.k8s.api.core.v1.Container",
    open=True,
    name=STR,
    image=STR,
    ports=arr(CONTAINER_PORT, "containerPort", "merge"),
    env=arr(OPEN, "name", "merge"),
    volumeMounts=arr(OPEN, "mountPath", "merge"),
    volumeDevices=arr(OPEN, "devicePath", "merge"),
)

POD_SPEC = obj(
    "io.k8s.api.core.v1.PodSpec",
    volumes=arr(OPEN, "name", "merge,retainKeys"),
    initContainers=arr(CONTAINER, "name", "merge"),
    containers=arr(CONTAINER, "name", "merge"),
    ephemeralContainers=arr(CONTAINER, "name", "merge"),
    restartPolicy=STR,
    terminationGracePeriodSeconds=INT,
    activeDeadlineSeconds=INT,
    dnsPolicy=STR,
    nodeSelector=smap(),
    serviceAccountName=STR,
    serviceAccount=STR,
    automountServiceAccountToken=BOOL,
    nodeName=STR,
    hostNetwork=BOOL,
    hostPID=BOOL,
    hostIPC=BOOL,
    shareProcessNamespace=BOOL,
    securityContext=OPEN,
    imagePullSecrets=arr(OPEN, "name", "merge"),
    hostname=STR,
    subdomain=STR,
    affinity=OPEN,
    schedulerName=STR,
    tolerations=arr(OPEN),
    hostAliases=arr(OPEN, "ip", "merge"),
    priorityClassName=STR,
    priority=INT,
    dnsConfig=OPEN,
    readinessGates=arr(OPEN),
    runtimeClassName=STR,
    enableServiceLinks=BOOL,
    preemptionPolicy=STR,
    overhead=smap(QUANTITY),
    topologySpreadConstraints=arr(OPEN, "topologyKey", "merge"),
    setHostnameAsFQDN=BOOL,
    os=OPEN,
    hostUsers=BOOL,
    schedulingGates=arr(OPEN, "name", "merge"),
    resourceClaims=arr(OPEN, "name", "merge,retainKeys"),
    resources=OPEN,
)

POD_IP = obj("io.k8s.api.core.v1.PodIP", ip=STR)

POD_STATUS = obj(
    "io.k8s.api.core.v1.PodStatus",
    open=True,
    phase=STR,
    conditions=conditions(
        obj(
            "io.k8s.api.core.v1.PodCondition",
            type=STR,
            observedGeneration=INT,
            status=STR,
            lastProbeTime=TIME,
            lastTransitionTime=TIME,
            reason=STR,
            message=STR,
        )
    ),
    message=STR,
    reason=STR,
    nominatedNodeName=STR,
    hostIP=STR,
    hostIPs=arr(obj("io.k8s.api.core.v1.HostIP", ip=STR), "ip", "merge"),
    podIP=STR,
    podIPs=arr(POD_IP, "ip", "merge"),
    startTime=TIME,
    initContainerStatuses=arr(OPEN),
    containerStatuses=arr(OPEN),
    ephemeralContainerStatuses=arr(OPEN),
    qosClass=STR,
    resize=STR,
    resourceClaimStatuses=arr(OPEN, "name", "merge,retainKeys"),
)

POD = top("io.k8s.api.core.v1.Pod", spec=POD_SPEC, status=POD_STATUS)

# --- Node --------------------------------------------------------------------------------

NODE = top(
    "io.k8s.api.core.v1.Node",
    spec=obj(
        "io.k8s.api.core.v1.NodeSpec",
        podCIDR=STR,
        podCIDRs=arr(STR, strategy="merge"),
        providerID=STR,
        unschedulable=BOOL,
        taints=arr(OPEN),
        configSource=OPEN,
        externalID=STR,
    ),
    status=obj(
        "io.k8s.api.core.v1.NodeStatus",
        capacity=smap(QUANTITY),
        allocatable=smap(QUANTITY),
        phase=STR,
        conditions=conditions(
            obj(
                "io.k8s.api.core.v1.NodeCondition",
                type=STR,
                status=STR,
                lastHeartbeatTime=TIME,
                lastTransitionTime=TIME,
                reason=STR,
                message=STR,
            )
        ),
        addresses=arr(
            obj("io.k8s.api.core.v1.NodeAddress", type=STR, address=STR), "type", "merge"
        ),
        daemonEndpoints=OPEN,
        nodeInfo=OPEN,
        images=arr(OPEN),
        volumesInUse=arr(STR),
        volumesAttached=arr(OPEN),
        config=OPEN,
        runtimeHandlers=arr(OPEN),
        features=OPEN,
    ),
)

# --- EndpointSlice -----------------------------------------------------------------------

OBJECT_REFERENCE = obj(
    "io.k8s.api.core.v1.ObjectReference",
    kind=STR,
    namespace=STR,
    name=STR,
    uid=STR,
    apiVersion=STR,
    resourceVersion=STR,
    fieldPath=STR,
)

ENDPOINT = obj(
    "io.k8s.api.discovery.v1.Endpoint",
    addresses=arr(STR),
    conditions=obj(
        "io.k8s.api.discovery.v1.EndpointConditions", ready=BOOL, serving=BOOL, terminating=BOOL
    ),
    hostname=STR,
    targetRef=OBJECT_REFERENCE,
    nodeName=STR,
    zone=STR,
    hints=obj(forZones=arr(obj(name=STR)), forNodes=arr(obj(name=STR))),
    deprecatedTopology=smap(),
)

ENDPOINT_SLICE = top(
    "io.k8s.api.discovery.v1.EndpointSlice",
    addressType=STR,
    endpoints=arr(ENDPOINT),
    ports=arr(
        obj("io.k8s.api.discovery.v1.EndpointPort", name=STR, protocol=STR, port=INT, appProtocol=STR)
    ),
)

# --- Endpoints, Event, Lease (read-only: made when read, described for /openapi/v3) -------

ENDPOINT_ADDRESS = obj(
    "io.k8s.api.core.v1.EndpointAddress", ip=STR, hostname=STR, nodeName=STR, targetRef=OBJECT_REFERENCE
)

ENDPOINTS = top(
    "io.k8s.api.core.v1.Endpoints",
    subsets=arr(
        obj(
            "io.k8s.api.core.v1.EndpointSubset",
            addresses=arr(ENDPOINT_ADDRESS),
            notReadyAddresses=arr(ENDPOINT_ADDRESS),
            ports=arr(obj("io.k8s.api.core.v1.EndpointPort", name=STR, port=INT, protocol=STR, appProtocol=STR)),
        )
    ),
)

EVENT = top(
    "io.k8s.api.core.v1.Event",
    involvedObject=OBJECT_REFERENCE,
    reason=STR,
    message=STR,
    source=obj("io.k8s.api.core.v1.EventSource", component=STR, host=STR),
    firstTimestamp=TIME,
    lastTimestamp=TIME,
    count=INT,
    type=STR,
    eventTime=TIME,
    series=obj("io.k8s.api.core.v1.EventSeries", count=INT, lastObservedTime=TIME),
    action=STR,
    related=OBJECT_REFERENCE,
    reportingComponent=STR,
    reportingInstance=STR,
)

MICRO_TIME = Schema("string", format="date-time")

LEASE = top(
    "io.k8s.api.coordination.v1.Lease",
    spec=obj(
        "io.k8s.api.coordination.v1.LeaseSpec",
        holderIdentity=STR,
        leaseDurationSeconds=INT,
        acquireTime=MICRO_TIME,
        renewTime=MICRO_TIME,
        leaseTransitions=INT,
        strategy=STR,
        preferredHolder=STR,
    ),
)

BY_KIND: Mapping[str, Schema] = {
    "Namespace": NAMESPACE,
    "Service": SERVICE,
    "Pod": POD,
    "Node": NODE,
    "EndpointSlice": ENDPOINT_SLICE,
    "Endpoints": ENDPOINTS,
    "Event": EVENT,
    "Lease": LEASE,
}


# --- Decoding ----------------------------------------------------------------------------

_GO_TYPES = {
    "string": "string",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "object": "object",
    "map": "map",
    "array": "array",
    "int-or-string": "int or string",
    "quantity": "quantity",
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _type_ok(schema: Schema, value: Any) -> bool:
    t = schema.type
    if t == "any":
        return True
    if t in ("object", "map"):
        return isinstance(value, dict)
    if t == "array":
        return isinstance(value, list)
    if t == "string":
        return isinstance(value, str)
    if t == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if t == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if t == "int-or-string":
        return isinstance(value, (int, str))
    if t in ("number", "quantity"):
        return isinstance(value, (int, float)) or (t == "quantity" and isinstance(value, str))
    return True


@dataclass
class Decoded:
    document: Any
    unknown: list[str] = field(default_factory=list)  # paths, as `spec.ports[0].foo`
    wrong_types: list[str] = field(default_factory=list)  # messages


def decode(document: Any, schema: Schema) -> Decoded:
    """Check `document` against `schema`: unknown fields are listed and dropped, nulls in
    declared fields dropped (null means unset), values of the wrong JSON type reported."""
    try:
        return Decoded(_plain(document, schema))
    except _Noteworthy:
        pass  # decoded again below, saying where
    result = Decoded(None)
    result.document = _decode(document, schema, "", result)
    return result


class _Noteworthy(Exception):
    """A value `_plain` leaves to `_decode`: an unknown field, a wrong type, or a value
    of a type it does not take the short way (`_decode` says which and where)."""


def _plain(value: Any, schema: Schema) -> Any:
    """What `_decode` makes of a document with nothing to report (nearly every one: the
    API decodes every write's whole object, a patch's unchanged parts too), without the
    path of every field, which only a report names: _Noteworthy at the first value that
    may have something to report, and then `_decode` reads the document again."""
    kind = schema.type
    if kind == "object":
        if type(value) is not dict:
            raise _Noteworthy
        decoded = {}
        properties = schema.properties
        for key, item in value.items():
            field_schema = properties.get(key)
            if field_schema is None:
                if not schema.open:
                    raise _Noteworthy
                decoded[key] = item
            elif item is not None:
                decoded[key] = _plain(item, field_schema)
        return decoded
    if kind == "string":
        if type(value) is not str:
            raise _Noteworthy
        return value
    if kind == "array":
        if type(value) is not list:
            raise _Noteworthy
        items = schema.items
        assert items is not None
        # (Loops, here and below: a comprehension is a call of its own.)
        copied = []
        for item in value:
            copied.append(_plain(item, items))  # noqa: PERF401
        return copied
    if kind == "map":
        if type(value) is not dict:
            raise _Noteworthy
        items = schema.items
        assert items is not None
        mapped = {}
        for key, item in value.items():
            if item is not None:
                mapped[key] = _plain(item, items)
        return mapped
    if kind == "any":
        return value
    if type(value) in _PLAIN_SCALARS.get(kind, ()):
        return value
    raise _Noteworthy


# The scalar types each scalar schema type takes as they are (a float for an integer is
# made an int by `_decode`; bool is a type of its own here, not an int).
_PLAIN_SCALARS: Mapping[str, tuple[type, ...]] = {
    "boolean": (bool,),
    "integer": (int,),
    "int-or-string": (int, str),
    "number": (int, float),
    "quantity": (int, float, str),
}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _decode(value: Any, schema: Schema, path: str, out: Decoded) -> Any:
    if schema.type == "any":
        return value
    if not _type_ok(schema, value):
        out.wrong_types.append(
            f"{path or '<root>'}: expected {_GO_TYPES.get(schema.type, schema.type)},"
            f" got {_json_type(value)}"
        )
        return value
    if schema.type == "integer" and isinstance(value, float):
        return int(value)
    if schema.type == "array":
        assert schema.items is not None
        return [_decode(v, schema.items, f"{path}[{i}]", out) for i, v in enumerate(value)]
    if schema.type == "map":
        assert schema.items is not None
        decoded = {}
        for key, v in value.items():
            if v is None:
                continue
            decoded[key] = _decode(v, schema.items, _join(path, key), out)
        return decoded
    if schema.type == "object":
        decoded = {}
        for key, v in value.items():
            child = schema.properties.get(key)
            if child is None:
                if schema.open:
                    decoded[key] = v
                else:
                    out.unknown.append(_join(path, key))
                continue
            if v is None:
                continue
            decoded[key] = _decode(v, child, _join(path, key), out)
        return decoded
    return value


def unknown_fields(document: Mapping[str, Any], schema: Schema) -> list[str]:
    """The paths of the fields of `document` that `schema` does not know (`spec.selectr`,
    `spec.ports[0].targetPrt`): what strict decoding refuses, as `decode` reports them,
    without copying the document (a start-up reads 100,000 of them). Values of the wrong
    type are not looked into: validation names those."""
    found: list[str] = []
    if type(document) is dict:
        _unknown(document, _strict_plan(schema), (), found)
    return found


# A schema as strict reading walks it: (the field names, or None when any field is
# allowed; the fields that can hold a field that is not, each with whether it is a list
# and the plan of its items). Made once per schema; schemas are module constants.
_Plan = tuple[frozenset[str] | None, tuple[tuple[str, bool, "_Plan"], ...]]
_PLANS: dict[int, _Plan] = {}


def _strict_plan(schema: Schema) -> _Plan:
    plan = _PLANS.get(id(schema))
    if plan is None:
        nested = []
        for key, field_schema in schema.properties.items():
            many = field_schema.type == "array"
            target = field_schema.items if many else field_schema
            if target is not None and target.type == "object" and _checked(target):
                nested.append((key, many, _strict_plan(target)))
        plan = _PLANS[id(schema)] = (None if schema.open else frozenset(schema.properties), tuple(nested))
    return plan


def _checked(schema: Schema) -> bool:
    """Whether an object of `schema` can hold a field that is not allowed. (No map of
    objects is declared: maps hold strings and quantities.)"""
    return not schema.open or any(
        _checked(target)
        for child_schema in schema.properties.values()
        if (target := child_schema.items if child_schema.type == "array" else child_schema) is not None
        and target.type == "object"
    )


def _unknown(value: dict[str, Any], plan: _Plan, path: tuple[Any, ...], found: list[str]) -> None:
    # `path` is a chain (parent's chain, key or index), spelled out only for an unknown
    # field: most documents have none, and a start-up reads 100,000 of them.
    known, nested = plan
    if known is not None and not known.issuperset(value):
        found.extend(_spell((path, key)) for key in value if key not in known)
    for key, many, item_plan in nested:
        item = value.get(key)
        if item is None:
            continue
        if not many:
            if type(item) is dict:
                _unknown(item, item_plan, (path, key), found)
        elif type(item) is list:
            for i, element in enumerate(item):
                if type(element) is dict:
                    _unknown(element, item_plan, ((path, key), i), found)


def _spell(path: tuple[Any, ...]) -> str:
    """`((((), "spec"), "ports"), 0), "targetPrt")` -> `spec.ports[0].targetPrt`."""
    parts: list[str] = []
    while path:
        path, step = path
        parts.append(f"[{step}]" if type(step) is int else f".{step}")
    return "".join(reversed(parts)).lstrip(".")


def child(schema: Schema | None, key: str) -> Schema | None:
    """The schema of field `key` of an object (None when unknown: patched generically)."""
    if schema is None:
        return None
    if schema.type == "object":
        return schema.properties.get(key)
    if schema.type == "map":
        return schema.items
    return None
