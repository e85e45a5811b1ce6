"""The shortcuts of a bulk load give what the careful paths give, or leave the work to them.

`_meta`, `_pod` and `_endpoint` are each one reader for both cases: values of the
expected type are taken as they are, the checker reads the others.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from types import MappingProxyType
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from kdns.registry import manifests, objects
from kdns.registry.admission import Context, RandomUids, admit
from kdns.registry.allocator import ClusterIPAllocator, NodePortAllocator
from kdns.registry.errors import Invalid
from kdns.registry.objects import ENDPOINT_SLICE, NAMESPACE, NODE, POD, SERVICE

_ODD = st.sampled_from([None, "", 0, 1, True, False, 1.5, [], {}, ["a"], {"a": "b"}, "x" * 70, "UPPER", "a_b", "-a"])
_TEXT = st.sampled_from(["web", "web-1", "ns-00", "a.b", "kube-system", "10.0.0.1", "app", "example.com/app", "Web"])
_VALUE = st.one_of(_ODD, _TEXT)


def _sometimes(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field that may be missing (None here: left out of the dict)."""
    return st.one_of(st.none(), strategy)


def _dict_of(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


_LABELS = st.one_of(_ODD, st.dictionaries(st.one_of(_TEXT, st.sampled_from([1, "a/b/c", "", "x/"])), _VALUE, max_size=3))
_METADATA = _dict_of(
    name=_VALUE, namespace=_VALUE, labels=_LABELS, annotations=_LABELS, uid=_VALUE,
    resourceVersion=st.sampled_from([None, "", "12", 12, -1, "x", "١٢", True, 1.0]),
    creationTimestamp=_VALUE, deletionTimestamp=_VALUE, generateName=_VALUE,
)


@settings(max_examples=1000, deadline=None)
@given(_METADATA, st.sampled_from([NAMESPACE, SERVICE, POD, NODE, ENDPOINT_SLICE]))
def test_meta_without_problems_is_the_metadata_as_given(metadata, kind):
    """_meta takes values of the expected type as they are (the fast case) and has the
    checker read the others: what it returns without a problem is exactly what was given."""
    check = manifests._Checker()
    meta = manifests._meta({"metadata": metadata}, kind, check)
    careful = manifests._Checker()
    assert manifests._meta({"metadata": MappingProxyType(metadata)}, kind, careful) == meta
    assert careful.causes == check.causes
    if check.causes:
        return
    namespaced = kind in (SERVICE, POD, ENDPOINT_SLICE)
    assert (meta.name, meta.namespace) == (metadata["name"], (metadata.get("namespace") or "default") if namespaced else "")
    assert meta.labels == (metadata.get("labels") or {})
    assert (meta.uid, meta.creation_timestamp) == (metadata.get("uid") or "", metadata.get("creationTimestamp") or "")
    assert meta.deletion_timestamp == (metadata.get("deletionTimestamp") or None)
    assert meta.resource_version == int(metadata.get("resourceVersion") or 0)


def test_meta_reads_a_stored_pod():
    metadata = {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}, "uid": "u", "resourceVersion": "7",
                "creationTimestamp": "2024-01-01T00:00:00Z", "generation": 1}
    check = manifests._Checker()
    meta = manifests._meta({"metadata": metadata}, POD, check)
    assert check.causes == [] and meta.resource_version == 7 and meta.labels == metadata["labels"]
    # Pods with equal labels hold one mapping of them (objects.shared_labels).
    other = manifests._meta({"metadata": {**metadata, "name": "web-2", "labels": {"app": "web"}}}, POD, check)
    assert check.causes == [] and other.labels is meta.labels


_CONDITION = st.sampled_from([None, True, False, 1, 0, "true"])
_ENDPOINT = st.one_of(_ODD, _dict_of(
    addresses=st.one_of(_ODD, st.lists(st.sampled_from(["10.0.0.1", "10.0.0.2", "fd00::1", "010.0.0.1", 7, ""]), max_size=3)),
    conditions=st.one_of(_ODD, _dict_of(ready=_CONDITION, serving=_CONDITION, terminating=_CONDITION)),
    hostname=_VALUE, nodeName=_VALUE,
    targetRef=st.one_of(_ODD, _dict_of(kind=_VALUE, namespace=_VALUE, name=_VALUE, uid=_VALUE)),
    zone=_VALUE,
))


@settings(max_examples=2000, deadline=None)
@given(_ENDPOINT, st.sampled_from(["IPv4", "IPv6", "FQDN"]))
def test_endpoint_reads_the_fast_case_as_the_checker_does(raw, address_type):
    """_endpoint, like _pod: with every mapping a proxy (the checker's path for each), the
    same Endpoint comes out, with problems at the same paths, in the same order."""
    check, careful = manifests._Checker(), manifests._Checker()
    endpoint = manifests._endpoint(raw, 0, address_type, check)
    assert manifests._endpoint(_proxied(raw), 0, address_type, careful) == endpoint
    assert [path for path, _ in careful.causes] == [path for path, _ in check.causes]


def test_endpoint_reads_the_controllers_endpoints():
    raw = {"addresses": ["10.0.0.1"], "conditions": {"ready": True, "serving": True, "terminating": False},
           "nodeName": "node-1", "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "u"}}
    check = manifests._Checker()
    endpoint = manifests._endpoint(raw, 0, "IPv4", check)
    assert check.causes == [] and endpoint == manifests.Endpoint(
        ("10.0.0.1",), manifests.objects.ENDPOINT_CONDITIONS[(True, True, False)], "", "node-1",
        manifests.ObjectReference("Pod", "shop", "web-1", "u"))


def test_random_uids_are_version_4_uuids():
    uids = RandomUids()
    made = [uids() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text


_IP = st.sampled_from(["10.0.0.1", "10.0.0.2", "fd00::1", "010.0.0.1", "", 7, None, "x"])
_PORT = st.one_of(_ODD, _dict_of(
    name=st.one_of(_VALUE, st.sampled_from(["http", "a--b", "metrics"])),
    containerPort=st.sampled_from([None, 0, 80, 65536, "80", True, 8080]),
    protocol=st.one_of(_VALUE, st.sampled_from(["TCP", "UDP", "SCTP", "tcp"])),
))
_POD = _dict_of(
    spec=st.one_of(_ODD, _dict_of(
        hostname=_VALUE, subdomain=_VALUE, nodeName=_VALUE,
        containers=st.one_of(_ODD, st.lists(st.one_of(_ODD, _dict_of(
            name=_VALUE, ports=st.one_of(_ODD, st.lists(_PORT, max_size=3)))), max_size=2)),
    )),
    status=st.one_of(_ODD, _dict_of(
        phase=st.one_of(_VALUE, st.sampled_from(["Running", "Pending", "Failed", "running"])),
        podIP=_IP,
        podIPs=st.one_of(_ODD, st.lists(st.one_of(_ODD, _dict_of(ip=_IP)), max_size=3)),
        conditions=st.one_of(_ODD, st.lists(st.one_of(_ODD, _dict_of(
            type=st.one_of(_VALUE, st.just("Ready")),
            status=st.sampled_from([None, "", "True", "False", "Unknown", "true", 1, True]),
        )), max_size=2)),
    )),
)


def _proxied(value: Any) -> Any:
    """`value` with every mapping a MappingProxyType: no `type(x) is dict` fast case applies."""
    if isinstance(value, dict):
        return MappingProxyType({key: _proxied(item) for key, item in value.items()})
    if isinstance(value, list):
        return [_proxied(item) for item in value]
    return value


@settings(max_examples=2000, deadline=None)
@given(_POD)
def test_pod_reads_the_fast_case_as_the_checker_does(doc):
    """_pod takes values of the expected type as they are and has the checker read the
    others: with every mapping a proxy (the checker's path for each), the same fields come
    out, and problems at the same paths (their messages show the proxies)."""
    check, careful = manifests._Checker(), manifests._Checker()
    fields = manifests._pod(doc, manifests.ObjectMeta(name="p"), check)
    assert manifests._pod(_proxied(doc), manifests.ObjectMeta(name="p"), careful) == fields
    assert [path for path, _ in careful.causes] == [path for path, _ in check.causes]


def test_pod_reads_a_bulk_loads_pods():
    doc = {"spec": {"hostname": "web-0", "subdomain": "web", "nodeName": "node-1", "containers": [
               {"name": "main", "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}]}]},
           "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}],
                      "conditions": [{"type": "Ready", "status": "True"}]}}
    check = manifests._Checker()
    fields = manifests._pod(doc, manifests.ObjectMeta(name="web-0"), check)
    assert check.causes == [] and fields["ready"] and fields["pod_ips"] == ("10.0.0.1",)
    assert fields["container_ports"] == (manifests.ContainerPort("http", 80, "TCP"),)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(alphabet="abz019-.A_é", max_size=260), st.sampled_from(["a" * 253, "a" * 254, "a." * 127])))
def test_name_validity_is_what_the_name_checks_say(name: str) -> None:
    """_NAME_VALID answers what an empty _NAME_CHECKS result means, for every kind."""
    for kind, valid in manifests._NAME_VALID.items():
        assert valid(name) == (not manifests._NAME_CHECKS[kind](name))


def test_meta_remembers_a_valid_label_set_and_nothing_else():
    """A label set found valid is remembered (the next pod of its workload shares its
    mapping); the same keys with values that are no strings are still refused, as is an
    annotation key found valid before, with a value that is no string."""
    first, second = manifests._Checker(), manifests._Checker()
    meta = manifests._meta({"metadata": {"name": "p-0", "labels": {"app": "web", "tier": "db"}}}, POD, first)
    again = manifests._meta({"metadata": {"name": "p-1", "labels": {"app": "web", "tier": "db"}}}, POD, second)
    assert first.causes == second.causes == [] and again.labels is meta.labels
    assert again.labels == {"app": "web", "tier": "db"}
    for labels, causes in (
        ({"app": ["web"], "tier": "db"}, [("metadata.labels.app", 'Invalid value: []string{"web"}: must be a string')]),
        ({"app": 1, "tier": "db"}, [("metadata.labels.app", "Invalid value: 1: must be a string")]),
        ({"app": "web", "tier": "db", "x": True}, [("metadata.labels.x", "Invalid value: true: must be a string")]),
        ({"app": "web", "tier": "d b"}, [("metadata.labels", f'Invalid value: "d b": {manifests._LABEL_VALUE_ERROR}')]),
    ):
        check = manifests._Checker()
        manifests._meta({"metadata": {"name": "p-2", "labels": labels}}, POD, check)
        assert check.causes == causes, labels
    annotated = {"metadata": {"name": "p-3", "annotations": {"example.com/note": "ok"}}}
    check = manifests._Checker()
    manifests._meta(annotated, POD, check)
    assert check.causes == []
    annotated["metadata"]["annotations"]["example.com/note"] = 7
    manifests._meta(annotated, POD, check)
    assert check.causes == [("metadata.annotations.example.com/note", "Invalid value: 7: must be a string")]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="abz019-._A/é", max_size=70))
def test_name_matchers_match_what_the_quoted_regexes_match(text: str) -> None:
    """The patterns the checks run (groups not capturing) match what the regexes their
    messages quote match."""
    import re

    for fmt, matcher in ((manifests._DNS1123_LABEL_FMT, manifests._DNS1123_LABEL_RE),
                         (manifests._DNS1123_SUBDOMAIN_FMT, manifests._DNS1123_SUBDOMAIN_RE),
                         (manifests._DNS1035_LABEL_FMT, manifests._DNS1035_LABEL_RE),
                         (manifests._QUALIFIED_NAME_FMT, manifests._QUALIFIED_NAME_RE),
                         (manifests._LABEL_VALUE_FMT, manifests._LABEL_VALUE_RE)):
        assert (re.fullmatch(fmt, text) is None) == (matcher.fullmatch(text) is None)


def _context() -> Context:
    """Admission with a fixed clock and numbered uids: two admissions give equal objects."""
    numbers = iter(range(1, 1000))
    return Context(cluster_ips=ClusterIPAllocator(("10.96.0.0/12",)), node_ports=NodePortAllocator(30000, 32767),
                   clock=lambda: 1_700_000_000.0, new_uid=lambda: f"uid-{next(numbers)}")


def _admitted(doc: dict[str, Any], deferred: bool) -> objects.KubeObject | list[tuple[str, str]]:
    """A new Pod admitted from a copy of `doc` (as a bulk load does, its document
    Deferred, or step by step and packed), or the causes it is refused for."""
    remake = (lambda: copy.deepcopy(doc)) if deferred else None
    try:
        return admit(copy.deepcopy(doc), None, _context(), 7, owned=True, kind=POD, remake=remake)
    except Invalid as exc:
        return list(exc.causes)


def _mostly(*plain: Any) -> st.SearchStrategy[Any]:
    """One of the `plain` values, mostly, else an odd one."""
    return st.sampled_from([*plain] * 12 + [None, "", 0, True, 1.5, [], {}, "UPPER", "a_b", "10.0.0.1"])


# Pods as a bulk load's are, but for a value here and there.
_PLAIN_POD = st.fixed_dictionaries({
    "metadata": st.fixed_dictionaries({"name": _mostly("web-0", "svc-0001-0", "a.b")}, optional={
        "namespace": _mostly("ns-01", "default", ""), "labels": _mostly({"app": "web"}, {}, {"app": "web", "t": "x"}),
        "annotations": _mostly({"kdns.dev/source": "/m"}), "deletionTimestamp": _mostly("2024-01-01T00:00:00Z", ""),
        "resourceVersion": _VALUE, "uid": _VALUE, "generation": _VALUE,
    }),
    "spec": _dict_of(
        hostname=_mostly("web-0", ""), subdomain=_mostly("web"), nodeName=_mostly("node-1", "n.example"),
        containers=st.lists(_dict_of(name=_mostly("main"), ports=st.lists(_dict_of(
            name=_mostly("http", "dns", ""), containerPort=_mostly(80, 53, 65535), protocol=_mostly("TCP", "UDP", ""),
        ), max_size=2)), max_size=2),
    ),
    "status": st.fixed_dictionaries({}, optional={
        "phase": _mostly("Running", "Pending", "Failed", ""), "podIP": _mostly("10.0.0.1", "10.0.0.1", "", "fd00::1"),
        "podIPs": _mostly([{"ip": "10.0.0.1"}], [{"ip": "10.0.0.1"}], [], [{"ip": "10.0.0.2"}],
                          [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]),
        "conditions": st.lists(_dict_of(type=_mostly("Ready", "Other"), status=_mostly("True", "False", "Unknown")),
                               max_size=2),
    }),
})
_NEW_POD = st.builds(lambda metadata, pod: {"apiVersion": "v1", "kind": "Pod", **pod, **metadata},
                     st.one_of(*[st.just({})] * 3, _dict_of(metadata=st.one_of(_ODD, _METADATA, st.fixed_dictionaries(
                         {"name": st.just("web-0"), "managedFields": st.sampled_from([[], [{}], [{"manager": "m"}], 1])})))),
                     st.one_of(_PLAIN_POD, _PLAIN_POD, _POD))


def _pod_status(**status: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0"}, "status": status}


@settings(max_examples=2000, deadline=None)
@given(_NEW_POD)
@example(_pod_status(podIPs=""))
@example(_pod_status(podIPs=[]))
@example(_pod_status(podIP="", podIPs=[]))
@example(_pod_status(podIP="10.0.0.1", podIPs=""))
@example(_pod_status(podIP="10.0.0.1", podIPs=[{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]))
@example(_pod_status(podIP="10.0.0.1", podIPs=[{"ip": "10.0.0.2"}]))
@example(_pod_status(phase="", conditions=[{"type": "Ready", "status": None}]))
@example({"kind": "Pod", "metadata": {"name": "web-0", "namespace": 0}, "spec": {"containers": [{"ports": [
    {"containerPort": 80, "protocol": ""}, {"name": "", "containerPort": 81, "protocol": 0}]}]}})
def test_new_pod_is_what_admission_reads_step_by_step(doc):
    """A bulk load's new Pod read at once (manifests.new_pod, for plain documents) is the
    Pod admission makes step by step: the same metadata and fields, the same document
    once made, the same refusal. The document given is left as it was."""
    given = copy.deepcopy(doc)
    read = manifests.new_pod(doc)
    assert doc == given
    deferred, careful = _admitted(doc, True), _admitted(doc, False)
    if isinstance(careful, list):
        assert read is None and deferred == careful
        return
    assert isinstance(deferred, objects.Pod) and isinstance(careful, objects.Pod)
    assert isinstance(deferred.document, objects.Deferred)
    assert objects.unpack(deferred.document) == objects.unpack(careful.document)
    fields = [f.name for f in dataclasses.fields(objects.Pod) if f.name != "document"]
    assert [getattr(deferred, f) for f in fields] == [getattr(careful, f) for f in fields]


def test_new_pod_reads_a_bulk_loads_pods():
    doc = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "svc-0001-0", "namespace": "ns-01", "labels": {"app": "svc-0001"},
                        "annotations": {"kdns.dev/manifest-source": "/m/ns-01.yaml"}},
           "spec": {"containers": [{"name": "main", "image": "registry.example/app:1.0"}]},
           "status": {"phase": "Running", "podIP": "10.128.0.50", "podIPs": [{"ip": "10.128.0.50"}],
                      "conditions": [{"type": "Ready", "status": "True"}]}}
    assert manifests.new_pod(doc) is not None
    deferred, careful = _admitted(doc, True), _admitted(doc, False)
    assert isinstance(deferred, objects.Pod) and isinstance(deferred.document, objects.Deferred)
    assert isinstance(careful, objects.Pod)
    assert deferred.meta == careful.meta and deferred.pod_ips == ("10.128.0.50",) and deferred.ready


def test_services_with_equal_ports_share_them():
    """A Service's ports are those its fields make (service_port), shared with an earlier
    Service's equal ports; a port that differs in any field, or in the type of its target
    (a name, not a number), is its own."""
    spec = {"ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
                      {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": "dns"}]}
    first = manifests.parse({"apiVersion": "v1", "kind": SERVICE, "metadata": {"name": "a"}, "spec": spec})
    second = manifests.parse({"apiVersion": "v1", "kind": SERVICE, "metadata": {"name": "b"}, "spec": spec})
    assert first.ports == (objects.ServicePort("http", "TCP", 80, 8080), objects.ServicePort("dns", "UDP", 53, "dns"))
    assert all(a is b for a, b in zip(first.ports, second.ports, strict=True))
    for fields in (("http", "TCP", 80, 8081, None), ("http", "TCP", 80, "8080", None), ("http", "TCP", 80, 8080, 30080),
                   ("http", "UDP", 80, 8080, None), ("web", "TCP", 80, 8080, None)):
        port = manifests.service_port(*fields)
        assert port == objects.ServicePort(*fields) and port is not first.ports[0]
        assert dataclasses.astuple(port) == fields
