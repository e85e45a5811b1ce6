"""The EndpointSlice controller: which endpoints a Service's slices hold, and how they follow pods."""

from __future__ import annotations

import json
import random
import textwrap
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.registry.admission import Context, admit, controller_slice
from kdns.registry.allocator import ClusterIPAllocator, NodePortAllocator
from kdns.registry.endpoints import desired_slices
from kdns.registry.manifests import from_manifest, read_documents
from kdns.registry.objects import CONTROLLER_NAME, EndpointSlice, Event, Service
from kdns.registry.store import Store

NOW = 1_714_557_600.0

WEB = """
apiVersion: v1
kind: Service
metadata: {name: web, labels: {tier: front}}
spec:
  selector: {app: web}
  ports:
    - {name: http, port: 80, targetPort: http}
    - {name: admin, port: 9000, targetPort: 9000}
"""


def pod(name: str, ip: str | list[str], *, labels: str = "{app: web}", ready: bool = True, phase: str = "Running",
        port: int = 8080, extra_metadata: str = "", spec: str = "", namespace: str = "default") -> str:
    """A Pod manifest: one container with a port named http, the given IPs and readiness."""
    ips = [ip] if isinstance(ip, str) else ip
    pod_ips = ", ".join(f'{{ip: "{i}"}}' for i in ips)
    return textwrap.dedent(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, namespace: {namespace}, labels: {labels}{extra_metadata}}}
        spec:
          nodeName: node-1
          containers: [{{name: app, image: nginx, ports: [{{name: http, containerPort: {port}}}]}}]
          {spec}
        status:
          phase: {phase}
          podIPs: [{pod_ips}]
          conditions: [{{type: Ready, status: "{'True' if ready else 'False'}"}}]
    """)


def apply(store: Store, *texts: str) -> list[Event]:
    """Apply manifests in one transaction; the events of that commit."""
    seen: list[Event] = []
    unsubscribe = store.subscribe(seen.extend)
    with store.transaction() as txn:
        for text in texts:
            for document in read_documents(textwrap.dedent(text)):
                txn.apply(document)
    unsubscribe()
    return seen


def delete(store: Store, kind: str, name: str) -> list[Event]:
    seen: list[Event] = []
    unsubscribe = store.subscribe(seen.extend)
    with store.transaction() as txn:
        txn.delete(kind, "default", name)
    unsubscribe()
    return seen


def managed(store: Store, service: str = "web") -> list[EndpointSlice]:
    return [s for s in store.list("EndpointSlice", "default")
            if s.service_name == service and s.managed_by == CONTROLLER_NAME]  # type: ignore[attr-defined]


def endpoints(store: Store, service: str = "web") -> list[tuple[Any, ...]]:
    """(address, ready, serving, terminating, ports) of every endpoint of the service's slices."""
    rows = []
    for endpoint_slice in managed(store, service):
        ports = tuple((p.name, p.port) for p in endpoint_slice.ports)
        for endpoint in endpoint_slice.endpoints:
            c = endpoint.conditions
            rows.append((endpoint.addresses[0], c.ready, c.serving, c.terminating, ports))
    return sorted(rows)


def changes(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.type, e.object.kind, e.object.meta.name) for e in events]


def new_store() -> Store:
    return Store(clock=lambda: NOW)


HTTP = (("http", 8080), ("admin", 9000))


def test_service_without_pods_has_a_placeholder_slice():
    """A selector that matches nothing still gets one empty slice, as kube-controller-manager keeps."""
    store = new_store()
    apply(store, WEB)
    (placeholder,) = managed(store)
    assert placeholder.endpoints == () and placeholder.ports == () and placeholder.address_type == "IPv4"


def test_pods_appearing_fill_the_existing_slice():
    """New pods become endpoints in the slice the service already has: one MODIFIED, no churn."""
    store = new_store()
    apply(store, WEB)
    (placeholder,) = managed(store)
    events = apply(store, pod("web-0", "10.244.0.10"), pod("web-1", "10.244.0.9"))
    assert changes(events) == [
        ("ADDED", "Pod", "web-0"), ("ADDED", "Pod", "web-1"), ("MODIFIED", "EndpointSlice", placeholder.meta.name),
    ]
    (endpoint_slice,) = managed(store)
    assert endpoint_slice.meta.name == placeholder.meta.name
    assert [e.addresses[0] for e in endpoint_slice.endpoints] == ["10.244.0.9", "10.244.0.10"]  # numeric order
    assert endpoints(store) == [
        ("10.244.0.10", True, True, False, HTTP),
        ("10.244.0.9", True, True, False, HTTP),
    ]


def test_slice_manifest_is_what_kube_controller_manager_writes():
    """The slice carries the service's labels, the controller's labels, an owner reference and full endpoints."""
    store = new_store()
    apply(store, WEB, pod("web-0", "10.244.0.10", spec="hostname: web-0\n          subdomain: web"))
    (endpoint_slice,) = managed(store)
    web, web0 = store.get("Service", "default", "web"), store.get("Pod", "default", "web-0")
    manifest = endpoint_slice.manifest
    assert manifest["metadata"]["labels"] == {
        "tier": "front", "kubernetes.io/service-name": "web",
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
    }
    assert manifest["metadata"]["ownerReferences"] == [{
        "apiVersion": "v1", "kind": "Service", "name": "web", "uid": web.meta.uid,
        "controller": True, "blockOwnerDeletion": True,
    }]
    assert manifest["metadata"]["generateName"] == "web-"
    assert manifest["addressType"] == "IPv4"
    assert manifest["endpoints"] == [{
        "addresses": ["10.244.0.10"],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "hostname": "web-0",
        "nodeName": "node-1",
        "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-0", "uid": web0.meta.uid},
    }]
    assert manifest["ports"] == [
        {"name": "http", "port": 8080, "protocol": "TCP"},
        {"name": "admin", "port": 9000, "protocol": "TCP"},
    ]


def test_hostname_only_under_the_subdomain_service():
    """A pod's hostname is published only in the slices of the service its subdomain names."""
    store = new_store()
    apply(store, WEB, pod("web-0", "10.244.0.10", spec="hostname: web-0\n          subdomain: other"))
    assert managed(store)[0].endpoints[0].hostname == ""


def test_label_change_moves_a_pod_between_services():
    """A pod relabelled away from a selector leaves its slices and joins the new service's."""
    store = new_store()
    apply(store, WEB, WEB.replace("web", "api"), pod("p", "10.244.0.10"))
    assert endpoints(store, "web") and not managed(store, "api")[0].endpoints
    events = apply(store, pod("p", "10.244.0.10", labels="{app: api}"))
    assert endpoints(store, "web") == []
    assert [e[0] for e in endpoints(store, "api")] == ["10.244.0.10"]
    assert changes(events) == [
        ("MODIFIED", "Pod", "p"),
        ("MODIFIED", "EndpointSlice", managed(store, "web")[0].meta.name),
        ("MODIFIED", "EndpointSlice", managed(store, "api")[0].meta.name),
    ]


def test_not_ready_pod_is_neither_ready_nor_serving():
    """A pod whose Ready condition turns False stays an endpoint, not ready and not serving."""
    store = new_store()
    apply(store, WEB, pod("web-0", "10.244.0.10"))
    apply(store, pod("web-0", "10.244.0.10", ready=False))
    assert endpoints(store) == [("10.244.0.10", False, False, False, HTTP)]


def test_terminating_pod_is_serving_but_not_ready():
    """A pod with a deletionTimestamp is terminating: serving if Ready, never ready."""
    store = new_store()
    apply(store, WEB, pod("web-0", "10.244.0.10", extra_metadata=", deletionTimestamp: 2024-05-01T10:00:00Z"))
    assert endpoints(store) == [("10.244.0.10", False, True, True, HTTP)]


def test_publish_not_ready_addresses_makes_every_endpoint_ready():
    """publishNotReadyAddresses reports not-ready and terminating pods as ready."""
    store = new_store()
    service = WEB.replace("selector:", "publishNotReadyAddresses: true\n  selector:")
    apply(store, service, pod("a", "10.244.0.1", ready=False),
          pod("b", "10.244.0.2", extra_metadata=", deletionTimestamp: 2024-05-01T10:00:00Z"))
    assert endpoints(store) == [
        ("10.244.0.1", True, False, False, HTTP),
        ("10.244.0.2", True, True, True, HTTP),
    ]


def test_deleting_a_pod_removes_its_endpoint():
    """A deleted pod's endpoint disappears in the same commit."""
    store = new_store()
    apply(store, WEB, pod("a", "10.244.0.1"), pod("b", "10.244.0.2"))
    events = delete(store, "Pod", "a")
    assert changes(events) == [("DELETED", "Pod", "a"), ("MODIFIED", "EndpointSlice", managed(store)[0].meta.name)]
    assert [e[0] for e in endpoints(store)] == ["10.244.0.2"]


def test_finished_and_addressless_pods_are_not_endpoints():
    """Succeeded and Failed pods, pods without an IP, and pods of other namespaces are left out."""
    store = new_store()
    apply(store, "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n")
    no_ip = pod("pending", "10.0.0.1").replace("podIPs: [{ip: \"10.0.0.1\"}]", "podIPs: []")
    apply(store, WEB, pod("done", "10.244.0.1", phase="Succeeded"), pod("failed", "10.244.0.2", phase="Failed"),
          no_ip, pod("elsewhere", "10.244.0.3", namespace="other"), pod("ok", "10.244.0.4"))
    assert [e[0] for e in endpoints(store)] == ["10.244.0.4"]


def test_named_target_port_resolves_per_pod():
    """A named targetPort is looked up in each pod; pods with different numbers go to different slices."""
    store = new_store()
    apply(store, WEB, pod("a", "10.244.0.1", port=8080), pod("b", "10.244.0.2", port=8443))
    assert endpoints(store) == [
        ("10.244.0.1", True, True, False, HTTP),
        ("10.244.0.2", True, True, False, (("http", 8443), ("admin", 9000))),
    ]
    assert len(managed(store)) == 2


def test_unresolvable_named_port_is_left_out_for_that_pod():
    """A pod without the named port (or with it under another protocol) is an endpoint without that port."""
    store = new_store()
    udp = pod("udp", "10.244.0.2").replace("containerPort: 8080}", "containerPort: 8080, protocol: UDP}")
    apply(store, WEB, udp)
    assert endpoints(store) == [("10.244.0.2", True, True, False, (("admin", 9000),))]


def test_dual_stack_pods_appear_in_a_slice_per_family():
    """A dual-stack service has an IPv4 and an IPv6 slice; a single-stack one only its family's."""
    store = new_store()
    dual = WEB.replace("selector:", "ipFamilyPolicy: RequireDualStack\n  selector:")
    apply(store, dual, WEB.replace("name: web", "name: single"), pod("a", ["10.244.0.1", "fd00:244::1"]))
    families = sorted((s.address_type, [e.addresses[0] for e in s.endpoints]) for s in managed(store))
    assert families == [("IPv4", ["10.244.0.1"]), ("IPv6", ["fd00:244::1"])]
    assert [(s.address_type, len(s.endpoints)) for s in managed(store, "single")] == [("IPv4", 1)]


def test_more_than_a_hundred_endpoints_are_split():
    """250 pods make slices of 100, 100 and 50; one more pod fills the slice with room, touching only it."""
    store = new_store()
    pods = [pod(f"web-{i}", f"10.244.{i // 200}.{i % 200 + 1}") for i in range(250)]
    apply(store, WEB, *pods)
    slices = managed(store)
    assert sorted(len(s.endpoints) for s in slices) == [50, 100, 100]
    assert len({e.addresses[0] for s in slices for e in s.endpoints}) == 250
    for endpoint_slice in slices:
        addresses = [e.addresses[0] for e in endpoint_slice.endpoints]
        assert addresses == sorted(addresses, key=lambda a: tuple(map(int, a.split("."))))
    half_full = next(s.meta.name for s in slices if len(s.endpoints) == 50)
    events = apply(store, pod("web-250", "10.244.9.9"))
    assert changes(events) == [("ADDED", "Pod", "web-250"), ("MODIFIED", "EndpointSlice", half_full)]


def test_unchanged_state_produces_no_events():
    """Re-applying the same manifests changes nothing, so nobody is told anything."""
    store = new_store()
    texts = [WEB] + [pod(f"web-{i}", f"10.244.0.{i + 1}") for i in range(120)]
    apply(store, *texts)
    version = store.resource_version
    names = [s.meta.name for s in managed(store)]
    assert apply(store, *texts) == []
    assert store.resource_version == version and [s.meta.name for s in managed(store)] == names


def test_hand_written_slices_of_a_selectorless_service_are_kept():
    """A service without a selector gets no managed slices, and its hand-written ones are left alone."""
    store = new_store()
    apply(store, """
        apiVersion: v1
        kind: Service
        metadata: {name: legacy}
        spec:
          ports: [{name: sql, port: 5432}]
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: legacy-1
          labels: {kubernetes.io/service-name: legacy}
        addressType: IPv4
        endpoints: [{addresses: [192.0.2.10]}]
        ports: [{name: sql, port: 5432}]
    """)
    apply(store, pod("a", "10.244.0.1", labels="{app: legacy}"))
    (endpoint_slice,) = store.list("EndpointSlice")
    assert endpoint_slice.meta.name == "legacy-1" and endpoint_slice.meta.resource_version == 4


def test_slices_of_other_managers_are_never_touched():
    """A slice labelled for a selector service but managed by someone else survives reconciles."""
    store = new_store()
    apply(store, WEB, """
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: web-extra
          labels: {kubernetes.io/service-name: web, endpointslice.kubernetes.io/managed-by: me}
        addressType: IPv4
        endpoints: [{addresses: [192.0.2.10]}]
    """, pod("a", "10.244.0.1"))
    apply(store, WEB.replace("selector: {app: web}", "selector: {app: nothing}"))
    extra = store.get("EndpointSlice", "default", "web-extra")
    assert extra is not None and extra.endpoints[0].addresses == ("192.0.2.10",)
    delete(store, "Service", "web")
    assert [s.meta.name for s in store.list("EndpointSlice")] == ["web-extra"]


def test_selector_removed_or_external_name_deletes_managed_slices():
    """A service that loses its selector, or becomes ExternalName, loses its managed slices."""
    store = new_store()
    apply(store, WEB, WEB.replace("name: web", "name: api"), pod("a", "10.244.0.1"))
    apply(store, WEB.replace("  selector: {app: web}\n", ""))
    assert managed(store, "web") == []
    apply(store, "apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec: {type: ExternalName, externalName: a.example}")
    assert managed(store, "api") == []


def test_deleting_a_service_deletes_its_slices():
    """The service goes first, then its managed slices, in one commit."""
    store = new_store()
    apply(store, WEB, pod("a", "10.244.0.1"))
    name = managed(store)[0].meta.name
    assert changes(delete(store, "Service", "web")) == [
        ("DELETED", "Service", "web"), ("DELETED", "EndpointSlice", name),
    ]


def test_port_change_updates_slices_in_place():
    """A changed targetPort rewrites the same slice (its name is reused), rather than replacing it."""
    store = new_store()
    apply(store, WEB, pod("a", "10.244.0.1"))
    (before,) = managed(store)
    events = apply(store, WEB.replace("targetPort: 9000", "targetPort: 9001"))
    (after,) = managed(store)
    assert after.meta.name == before.meta.name
    assert changes(events) == [("MODIFIED", "Service", "web"), ("MODIFIED", "EndpointSlice", before.meta.name)]
    assert after.ports[1].port == 9001


# --- desired_slices on its own -------------------------------------------------------------------


def service(text: str) -> Any:
    """A Service as admission leaves it."""
    (document,) = read_documents(textwrap.dedent(text))
    ctx = Context(ClusterIPAllocator(["10.96.0.0/12"]), NodePortAllocator(), clock=lambda: NOW)
    return admit(document, None, ctx, 1)


def test_external_name_and_selectorless_services_want_no_slices():
    """Only services with a selector, and not ExternalName, get managed slices."""
    assert desired_slices(service("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
                                  "spec: {type: ExternalName, externalName: x.example, selector: {app: a}}"),
                          [], []) == []
    assert desired_slices(service("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
                                  "spec: {ports: [{port: 80, protocol: TCP}]}"), [], []) == []


def test_new_slice_names_are_reproducible_and_avoid_taken_names():
    """A new slice's name is derived from the service, so it is the same on every run, and never a taken one."""
    web = service(WEB)
    (first,) = desired_slices(web, [], [])
    (again,) = desired_slices(web, [], [])
    name = first.name
    assert name == again.name and name.startswith("web-") and len(name) == 9
    (other,) = desired_slices(web, [], [], taken_names={name})
    assert other.name != name


# --- The controller's typed fields -----------------------------------------------------------------

_POD_STATES = st.fixed_dictionaries({
    "ips": st.sampled_from([["10.244.0.{n}"], ["fd00::{n}"], ["10.244.0.{n}", "fd00::{n}"], []]),
    "ready": st.booleans(),
    "phase": st.sampled_from(["Running", "Pending", "Succeeded", "Unknown"]),
    "terminating": st.booleans(),
    "hostname": st.sampled_from(["", "h", "db-0"]),
    "subdomain": st.sampled_from(["", "web", "other"]),
    "node": st.booleans(),
    "port": st.sampled_from([8080, 9000, None]),
})


@settings(max_examples=60, deadline=None)
@given(pods=st.lists(_POD_STATES, max_size=8), publish_not_ready=st.booleans(), dual_stack=st.booleans())
def test_controller_fields_are_what_its_manifests_say(pods: list[dict[str, Any]], publish_not_ready: bool,
                                                      dual_stack: bool) -> None:
    """The controller hands the store each slice's typed fields along with its manifest, so
    that the store does not parse what it just wrote: they must be exactly what parsing
    that manifest gives, for every kind of pod."""
    service = WEB
    if publish_not_ready:
        service = service.replace("selector:", "publishNotReadyAddresses: true\n  selector:")
    if dual_stack:
        service = service.replace("selector:", "ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv4, IPv6]\n  selector:")
    texts = []
    for n, state in enumerate(pods, start=1):
        spec = "".join(f"\n          {key}: {state[field]}" for key, field in (("hostname", "hostname"), ("subdomain", "subdomain"))
                       if state[field])
        pod_text = pod(f"p{n}", [ip.format(n=n) for ip in state["ips"]], ready=state["ready"], phase=state["phase"],
                       extra_metadata=", deletionTimestamp: 2024-05-01T10:00:00Z" if state["terminating"] else "",
                       spec=spec.strip())
        if not state["node"]:
            pod_text = pod_text.replace("nodeName: node-1", "")
        if state["port"] is None:
            pod_text = pod_text.replace(", ports: [{name: http, containerPort: 8080}]", "")
        elif state["port"] != 8080:
            pod_text = pod_text.replace("containerPort: 8080", f"containerPort: {state['port']}")
        if not state["ips"]:
            pod_text = pod_text.replace("podIPs: []", "")
        texts.append(pod_text)
    store = new_store()
    apply(store, service, *texts)
    for endpoint_slice in managed(store):
        assert from_manifest(endpoint_slice.manifest) == endpoint_slice
    # A new slice is stored from its fields alone: the object, and its document to the
    # byte, that admitting its manifest makes.
    web = store.get("Service", "default", "web")
    assert isinstance(web, Service)
    for wanted in desired_slices(web, store.list("Pod", "default"), []):  # type: ignore[arg-type]
        context = Context(ClusterIPAllocator(["10.96.0.0/12"]), NodePortAllocator(), clock=lambda: NOW,
                          new_uid=lambda: "00000000-0000-4000-8000-000000000001")
        admitted = admit(wanted.manifest, None, context, 7)
        made = controller_slice(wanted.name, "default", wanted.labels, wanted.fields, web.meta.uid, context, 7)
        assert made == admitted
        assert json.dumps(made.manifest) == json.dumps(admitted.manifest)


# --- Pod updates remake only their endpoints: the same slices as a whole reconcile ----------

_EDITED_SERVICES = (
    WEB.replace("selector:", "ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv4, IPv6]\n  selector:"),
    """
    apiVersion: v1
    kind: Service
    metadata: {name: api}
    spec:
      publishNotReadyAddresses: true
      selector: {app: api}
      ports: [{name: grpc, port: 9090, targetPort: 9090}]
    """,
    """
    apiVersion: v1
    kind: Service
    metadata: {name: all}
    spec:
      clusterIP: None
      ipFamilyPolicy: PreferDualStack
      selector: {tier: t}
      ports: [{name: http, port: 80, targetPort: http}]
    """,
)


def _edit(store: Store, rng: random.Random, serial: int) -> tuple[str, str]:
    """One random write to the registry, in its own transaction: what it did, to which pod."""
    pods = store.list("Pod", "default")
    victim = rng.choice(pods)
    doc = victim.manifest
    status, spec, meta = doc["status"], doc["spec"], doc["metadata"]
    what = rng.choice(["ready"] * 6 + ["node", "hostname", "terminating", "ip", "phase", "labels", "port", "create",
                                      "delete", "slice"])
    if what == "ready":
        condition = status["conditions"][0]
        condition["status"] = "False" if condition["status"] == "True" else "True"
    elif what == "node":
        spec["nodeName"] = rng.choice(["node-1", "node-2"])
    elif what == "hostname":
        spec["hostname"], spec["subdomain"] = f"h{serial}", rng.choice(["web", "all", "other"])
    elif what == "terminating":
        meta["deletionTimestamp"] = "2024-05-01T10:00:00Z"
    elif what == "ip":
        status["podIPs"] = [{"ip": f"10.245.{serial // 250}.{serial % 250 + 1}"}, {"ip": f"fd00:245::{serial:x}"}]
        status.pop("podIP", None)
    elif what == "phase":
        status["phase"] = "Succeeded" if status["phase"] == "Running" else "Running"
    elif what == "labels":
        meta["labels"] = {"app": rng.choice(["web", "api", "none"]), "tier": "t"}
    elif what == "port":
        port = spec["containers"][0]["ports"][0]
        port["containerPort"] = 8081 if port["containerPort"] == 8080 else 8080
    name = victim.meta.name
    if what == "create":
        name = f"n{serial}"
        apply(store, pod(name, [f"10.246.{serial // 250}.{serial % 250 + 1}", f"fd00:246::{serial:x}"],
                         labels=f"{{app: {rng.choice(['web', 'api'])}, tier: t}}"))
    elif what == "delete":
        delete(store, "Pod", victim.meta.name)
    elif what == "slice":
        # A hand edit of a managed slice: the controller puts it right at its next run.
        slices = [s for s in store.list("EndpointSlice", "default") if s.endpoints]
        edited = rng.choice(slices).manifest
        edited["endpoints"] = edited["endpoints"][:-1]
        with store.transaction() as txn:
            txn.update(edited)
    else:
        with store.transaction() as txn:
            txn.update(doc)
    return what, name


def test_pod_updates_leave_the_slices_a_whole_reconcile_would():
    """A pod update that leaves its endpoints where they are (readiness, node, hostname,
    terminating) remakes only those endpoints, in the slices holding them. Over random
    writes of every kind, each commit must leave every service's slices exactly as
    desired_slices makes them from the slices before it: names, manifests and fields."""
    rng = random.Random(19)
    store = new_store()
    texts = [pod(f"p{i}", [f"10.244.{i // 200}.{i % 200 + 1}", f"fd00:244::{i:x}"],
                 labels=f"{{app: {'web' if i % 3 else 'api'}, tier: t}}", ready=i % 4 != 0) for i in range(130)]
    apply(store, *_EDITED_SERVICES, *texts)
    services = [s for s in store.list("Service", "default") if s.meta.name in ("web", "api", "all")]
    assert len(managed(store, "all")) == 2 * 2  # two families, 130 endpoints each: 100 + 30
    done: list[str] = []
    for serial in range(250):
        before = {s.meta.name: managed(store, s.meta.name) for s in services}
        taken = {s.meta.name for s in store.list("EndpointSlice", "default")}
        labels = {p.meta.name: p.meta.labels for p in store.list("Pod", "default")}
        what, name = _edit(store, rng, serial)
        done.append(what)
        if what == "slice":
            continue  # written by hand: no controller run to compare
        written = store.get("Pod", "default", name)
        label_sets = [labels.get(name), written.meta.labels if written is not None else None]
        for service in services:
            stored = managed(store, service.meta.name)
            if not any(found is not None and service.selector.items() <= found.items() for found in label_sets):
                # Not the written pod's service: not reconciled (a hand edit stays till then).
                assert all(a is b for a, b in zip(stored, before[service.meta.name], strict=True))
                continue
            selected = [p for p in store.list("Pod", "default") if service.selector.items() <= p.meta.labels.items()]
            wanted = desired_slices(service, selected, before[service.meta.name], taken_names=taken)  # type: ignore[arg-type]
            assert [s.meta.name for s in stored] == [w.name for w in wanted], (serial, what)
            for have, want in zip(stored, wanted, strict=True):
                manifest = have.manifest
                metadata = {key: manifest["metadata"].get(key) for key in want.manifest["metadata"]}
                assert {**manifest, "metadata": metadata} == want.manifest, (serial, what, have.meta.name)
                fields = {key: getattr(have, key) for key in want.fields}
                assert fields == want.fields, (serial, what, have.meta.name)
    assert done.count("ready") > 60 and all(done.count(what) for what in ("node", "hostname", "ip", "slice"))


_RESERVED = ["kubernetes.io/service-name", "endpointslice.kubernetes.io/managed-by", "service.kubernetes.io/headless"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["tier", "app", "zone", *_RESERVED]), unique=True, max_size=5), st.booleans())
def test_slice_labels_are_the_service_labels_then_the_controllers_last(keys: list[str], headless: bool) -> None:
    """DesiredSlice.labels, in both of its ways (a Service holding none of the controller's
    own labels, or some): the Service's labels without the reserved ones, in their order,
    then the service name, the managed-by label and, when headless, the headless one, last."""
    import dataclasses

    from kdns.registry.endpoints import DesiredSlice

    store = new_store()
    apply(store, WEB)
    web = store.get("Service", "default", "web")
    assert isinstance(web, Service)
    held = {key: f"v-{key}" for key in keys}
    web = dataclasses.replace(web, meta=dataclasses.replace(web.meta, labels=held),
                              headless=headless)
    expected = [(key, value) for key, value in held.items() if key not in _RESERVED]
    expected += [(_RESERVED[0], "web"), (_RESERVED[1], CONTROLLER_NAME)] + ([(_RESERVED[2], "")] if web.headless else [])
    assert list(DesiredSlice(web, "web-x", "IPv4", (), ()).labels.items()) == expected


def test_endpoint_conditions_table_is_the_rule() -> None:
    """endpoints._CONDITIONS, indexed by bools, is podToEndpoint's rule for every case."""
    from kdns.registry.endpoints import _CONDITIONS
    from kdns.registry.objects import ENDPOINT_CONDITIONS

    for publish in (False, True):
        for serving in (False, True):
            for terminating in (False, True):
                ready = publish or (serving and not terminating)
                assert _CONDITIONS[publish][serving][terminating] is ENDPOINT_CONDITIONS[(ready, serving, terminating)]
